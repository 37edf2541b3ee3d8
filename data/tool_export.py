"""`prefloop export --format labelstudio|argilla`: pairs for another labelling tool.

A team that keeps Label Studio or Argilla as its labelling UI still routes with prefloop:
``--pairs human-queue`` (the default) exports the pairs routing sent to humans and still
wanting labels, highest priority first, with prefloop's verdict as each task's
pre-annotation (`Suggestion`: the judge's majority, or the ensemble's, chosen by the caller);
the tool's export of the annotated project imports back (`prefloop import`) as human labels on
the same pair ids, which closes those pairs in the queue like votes given in the app.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from data.errors import ConfigError
from data.export import AggregationPolicy, aggregate_verdicts
from data.formats_argilla import write_argilla
from data.formats_labelstudio import write_labelstudio
from data.store import PairView, PreferenceStore
from data.tool_records import TOOL_FORMATS, Suggestion

PAIR_SETS = ("human-queue", "unlabelled", "all")


def pairs_for_tool(
    store: PreferenceStore, which: str = "human-queue", limit: int | None = None
) -> list[PairView]:
    """The pairs to send: the open human queue (by priority), the pairs with no active label,
    or every pair."""
    if which not in PAIR_SETS:
        raise ConfigError(f"--pairs {which!r} is not one of {', '.join(PAIR_SETS)}")
    where = {
        "human-queue": "WHERE p.pair_id IN (SELECT pair_id FROM human_queue) "
        "ORDER BY p.priority DESC, p.pair_id",
        "unlabelled": "WHERE p.pair_id NOT IN (SELECT pair_id FROM active_labels) "
        "ORDER BY p.priority DESC, p.pair_id",
        "all": "ORDER BY p.priority DESC, p.pair_id",
    }[which]
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit {limit} must be at least 1")
        where += f" LIMIT {int(limit)}"
    return store.pairs(where)


def judge_suggestions(store: PreferenceStore, pair_ids: Sequence[str]) -> dict[str, Suggestion]:
    """pair_id -> the judge's majority verdict (ties kept), scored by the mean confidence of
    the judge labels that gave it; pairs the judge has not labelled are absent."""
    if not pair_ids:
        return {}
    labels = store.query_dicts(
        "SELECT pair_id, source, who, verdict, confidence FROM active_labels "
        "WHERE source = 'judge' AND pair_id IN (SELECT unnest(?::VARCHAR[]))",
        [list(pair_ids)],
    )
    decided = aggregate_verdicts(labels, AggregationPolicy(include_ties=True))
    by_pair: dict[str, list[dict]] = {}
    for label in labels:
        by_pair.setdefault(label["pair_id"], []).append(label)
    out = {}
    for pair_id, (verdict, _, _) in decided.items():
        backing = [x for x in by_pair[pair_id] if x["verdict"] == verdict]
        scores = [x["confidence"] for x in backing if x["confidence"] is not None]
        judges = ",".join(sorted({x["who"] for x in backing}))
        out[pair_id] = Suggestion(
            verdict, sum(scores) / len(scores) if scores else None, f"judge:{judges}"
        )
    return out


def export_for_tool(
    out: str | Path,
    fmt: str,
    pairs: Sequence[PairView],
    suggestions: Mapping[str, Suggestion],
    *,
    template: str = "pairwise",
    name: str = "prefloop",
) -> list[str]:
    """Write Label Studio tasks (a .json file and its labeling config) or an Argilla
    `to_disk` folder; returns the paths written."""
    if fmt not in TOOL_FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(TOOL_FORMATS)}")
    if fmt == "labelstudio":
        return write_labelstudio(Path(out), pairs, suggestions, template)
    return write_argilla(Path(out), pairs, suggestions, name=name)
