"""Export labelled pairs as TRL-ready preference data.

Aggregation policy (`AggregationPolicy`, all configurable):

1. Only active labels count (undone labels are ignored), optionally only those
   with confidence >= `min_confidence` (labels without a confidence are kept).
2. Sources rank adjudication > human > import > judge > model: a pair's verdict comes
   from the highest-ranked source that labelled it; lower sources are ignored for that
   pair. An adjudication (`data.adjudication`) is an adjudicator's final verdict on a
   pair whose human votes split: it outranks every human vote.
3. Within that source, the majority verdict wins; a split vote gives no label.
4. Ties and both_bad are left out of the TRL formats (they cannot express them);
   the `pairs` format keeps them with `include_ties=True`.
5. Strength of preference (a human label's confidence, `data.project`) becomes TRL's
   reward-model `margin` column: `margin_of(confidence)`, averaged over the human labels
   that decided the pair (a label without a strength counts 0). The column is written
   only when at least one exported pair has one; pairs decided by other sources get 0.
6. Gold pairs (`data.gold`) are left out of the export: they test annotators, and their
   answers are not training labels. With `include_gold=True` they are exported with the
   gold answer as the verdict (source `gold`, above every other).
7. `min_annotator_gold_accuracy`: the human labels of an annotator whose accuracy on
   their last `GoldConfig.window` gold pairs is below it are left out (annotators with
   fewer than `GoldConfig.min_gold` gold pairs labelled are kept).
8. `human_model="dawid-skene"`: within the human source, a pair's verdict is the one
   Dawid–Skene (`data.dawid_skene`) finds most likely, each annotator weighed by their
   fitted confusion matrix, instead of the plain majority: split human votes get a verdict
   too. Adjudications still outrank it.

The train/test split is by prompt: a prompt's hash decides its side, so no
prompt is in both, and the split is stable as data grows.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from data.adjudication import adjudicated_verdicts
from data.dawid_skene import aggregate_votes
from data.errors import ConfigError
from data.gold import below_gold_accuracy, gold_answers, read_gold_config
from data.ids import render_messages, text_hash
from data.store import PreferenceStore

EXPORT_FORMATS = ("trl", "trl-conversational", "pairs")
SOURCE_RANK = ("gold", "adjudication", "human", "import", "judge", "model")
HUMAN_MODELS = ("majority", "dawid-skene")


@dataclass(frozen=True)
class AggregationPolicy:
    """How several labels on one pair become one training verdict."""

    source_rank: tuple[str, ...] = SOURCE_RANK  # earlier sources outrank later ones
    min_confidence: float | None = None  # drop labels below this confidence
    include_ties: bool = False  # keep tie/both_bad verdicts (pairs format only)
    include_gold: bool = False  # export gold pairs, with their gold answer as the verdict
    min_annotator_gold_accuracy: float | None = None  # drop humans below this gold accuracy
    human_model: str = "majority"  # or "dawid-skene": weigh each human by their fitted quality
    # only labels up to this id (a loop round's cut-off, `data.labels.newest_label_id`);
    # adjudications and gold answers are not capped: they are decisions about labels
    max_label_id: int | None = None


@dataclass(frozen=True)
class AggregatedPair:
    pair_id: str
    prompt_id: str
    messages: list[dict[str, str]]
    response_a: str
    response_b: str
    verdict: str  # relative to stored A/B
    source: str
    votes: int
    margin: float | None = None  # reward margin from human strength of preference, if any


def margin_of(confidence: float | None) -> float:
    """The Bradley-Terry reward gap at which the chosen response wins with `confidence`:
    log(c / (1 - c)); 0 for no confidence or c <= 0.5 (a plain preference)."""
    if confidence is None or confidence <= 0.5:
        return 0.0
    return round(math.log(min(confidence, 0.999) / (1.0 - min(confidence, 0.999))), 4)


def aggregate_verdicts(
    labels: list[dict[str, Any]], policy: AggregationPolicy
) -> dict[str, tuple[str, str, int]]:
    """pair_id -> (verdict, source, votes) under the policy; pairs with no decision are absent."""
    by_pair: dict[str, dict[str, list[str]]] = {}
    for label in labels:
        if (
            policy.min_confidence is not None
            and label["confidence"] is not None
            and label["confidence"] < policy.min_confidence
        ):
            continue
        if label["source"] not in policy.source_rank:
            continue
        by_pair.setdefault(label["pair_id"], {}).setdefault(label["source"], []).append(
            label["verdict"]
        )
    decided: dict[str, tuple[str, str, int]] = {}
    for pair_id, per_source in by_pair.items():
        source = min(per_source, key=policy.source_rank.index)
        counts = Counter(per_source[source]).most_common()
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            continue  # split vote
        verdict, votes = counts[0]
        if verdict in ("tie", "both_bad") and not policy.include_ties:
            continue
        decided[pair_id] = (verdict, source, votes)
    return decided


def active_labels(store: PreferenceStore, max_label_id: int | None = None) -> list[dict[str, Any]]:
    """Every active label (up to `max_label_id`) as the rows `aggregate_verdicts` takes."""
    return store.query_dicts(
        "SELECT pair_id, source, who, verdict, confidence FROM active_labels "
        "WHERE ? IS NULL OR label_id <= ? ORDER BY label_id",
        [max_label_id, max_label_id],
    )


def policy_labels(store: PreferenceStore, policy: AggregationPolicy) -> list[dict[str, Any]]:
    """The rows the export aggregates: active labels, adjudications as source `adjudication`,
    gold answers as source `gold` (only with `include_gold`; otherwise gold pairs are left
    out), without the human labels of annotators under `min_annotator_gold_accuracy`."""
    labels = active_labels(store, policy.max_label_id)
    if policy.min_annotator_gold_accuracy is not None:
        config = read_gold_config(store)
        dropped = below_gold_accuracy(
            store,
            policy.min_annotator_gold_accuracy,
            window=config.window,
            min_gold=config.min_gold,
        )
        labels = [x for x in labels if not (x["source"] == "human" and x["who"] in dropped)]
    if policy.human_model == "dawid-skene":
        labels = _dawid_skene(labels)
    elif policy.human_model != "majority":
        raise ConfigError(
            f"human model {policy.human_model!r} is not one of {', '.join(HUMAN_MODELS)}"
        )
    labels += [
        {"pair_id": p, "source": "adjudication", "who": "", "verdict": v, "confidence": None}
        for p, v in adjudicated_verdicts(store).items()
    ]
    gold = gold_answers(store)
    labels = [x for x in labels if x["pair_id"] not in gold]
    if policy.include_gold:
        labels += [
            {"pair_id": p, "source": "gold", "who": "", "verdict": v, "confidence": None}
            for p, v in gold.items()
        ]
    return labels


def _dawid_skene(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Human labels that agree with each pair's Dawid–Skene verdict (`data.dawid_skene`), so
    the majority within humans is that verdict; a verdict nobody gave becomes one row."""
    human = [x for x in labels if x["source"] == "human"]
    fitted = aggregate_votes((x["pair_id"], x["who"], x["verdict"]) for x in human)
    kept = [
        x for x in labels if x["source"] != "human" or fitted.verdicts[x["pair_id"]] == x["verdict"]
    ]
    backed = {x["pair_id"] for x in kept if x["source"] == "human"}
    kept += [
        {"pair_id": p, "source": "human", "who": "", "verdict": v, "confidence": None}
        for p, v in fitted.verdicts.items()
        if p not in backed
    ]
    return kept


def aggregated_pairs(
    store: PreferenceStore, policy: AggregationPolicy | None = None
) -> list[AggregatedPair]:
    policy = policy or AggregationPolicy()
    labels = policy_labels(store, policy)
    decided = aggregate_verdicts(labels, policy)
    if not decided:
        return []
    margins = _human_margins(labels, decided, policy)
    views = {
        v.pair_id: v
        for v in store.pairs("WHERE p.pair_id IN (SELECT unnest(?::VARCHAR[]))", [list(decided)])
    }
    out = []
    for pair_id, (verdict, source, votes) in sorted(decided.items()):
        view = views[pair_id]
        out.append(
            AggregatedPair(
                pair_id,
                view.prompt_id,
                view.messages,
                view.response_a,
                view.response_b,
                verdict,
                source,
                votes,
                margins.get(pair_id),
            )
        )
    return out


def _human_margins(
    labels: list[dict[str, Any]],
    decided: dict[str, tuple[str, str, int]],
    policy: AggregationPolicy,
) -> dict[str, float]:
    """pair_id -> margin, for pairs a human majority decided where some label has a strength."""
    confidences: dict[str, list[float | None]] = {}
    floor = policy.min_confidence
    for label in labels:
        verdict, source, _ = decided.get(label["pair_id"], (None, None, 0))
        confidence = label["confidence"]
        if floor is not None and confidence is not None and confidence < floor:
            continue  # aggregate_verdicts left it out too
        if source == "human" == label["source"] and label["verdict"] == verdict:
            confidences.setdefault(label["pair_id"], []).append(label["confidence"])
    return {
        pair_id: round(sum(margin_of(c) for c in found) / len(found), 4)
        for pair_id, found in confidences.items()
        if any(c is not None for c in found)
    }


def is_test_prompt(prompt_id: str, test_fraction: float) -> bool:
    return int(text_hash("split\0" + prompt_id)[:8], 16) / 0xFFFFFFFF < test_fraction


def to_row(pair: AggregatedPair, fmt: str, *, with_margin: bool = False) -> dict[str, Any]:
    """One exported row; `with_margin` adds TRL's `margin` column (0.0 where none is known)."""
    row = _row(pair, fmt)
    if with_margin:
        row["margin"] = pair.margin or 0.0
    return row


def _row(pair: AggregatedPair, fmt: str) -> dict[str, Any]:
    if fmt == "pairs":
        return {
            "prompt": pair.messages,
            "response_a": pair.response_a,
            "response_b": pair.response_b,
            "label": pair.verdict,
            "pair_id": pair.pair_id,
        }
    chosen, rejected = (
        (pair.response_a, pair.response_b)
        if pair.verdict == "a"
        else (pair.response_b, pair.response_a)
    )
    if fmt == "trl-conversational":
        return {
            "prompt": pair.messages,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
    prompt = render_messages(pair.messages)
    if prompt.startswith("\n\nHuman:"):
        prompt += "\n\nAssistant:"  # multi-turn: HH transcript the importer reads back losslessly
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


@dataclass
class ExportReport:
    train: int
    test: int
    files: list[str]
    skipped_ties: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "train": self.train,
            "test": self.test,
            "files": self.files,
            "skipped_ties": self.skipped_ties,
        }


def export_pairs(
    store: PreferenceStore,
    out: str | Path,
    *,
    fmt: str = "trl",
    test_fraction: float = 0.0,
    policy: AggregationPolicy | None = None,
) -> ExportReport:
    """Write JSONL, Parquet or a Hugging Face `save_to_disk` folder (by the extension of `out`)."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"--test-fraction {test_fraction} must be in [0, 1)")
    policy = policy or AggregationPolicy(include_ties=fmt == "pairs")
    if fmt != "pairs" and policy.include_ties:
        raise ConfigError(
            "ties and both_bad cannot be written as chosen/rejected; use --format pairs"
        )
    pairs = aggregated_pairs(store, policy)
    all_decided = aggregated_pairs(store, replace(policy, include_ties=True))
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    with_margin = any(pair.margin for pair in pairs)
    for pair in pairs:
        side = "test" if is_test_prompt(pair.prompt_id, test_fraction) else "train"
        splits[side].append(to_row(pair, fmt, with_margin=with_margin))
    files = _write(Path(out), splits, test_fraction > 0)
    return ExportReport(
        len(splits["train"]), len(splits["test"]), files, len(all_decided) - len(pairs)
    )


def _write(out: Path, splits: dict[str, list[dict[str, Any]]], with_test: bool) -> list[str]:
    suffix = "".join(out.suffixes[-1:]).lower()
    if suffix not in (".jsonl", ".parquet", ""):
        raise ConfigError(
            f"--out {out}: use a .jsonl or .parquet file, or a folder name (no extension) for a "
            "Hugging Face save_to_disk dataset"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == "":
        import datasets

        names = ["train", "test"] if with_test else ["train"]
        dataset = datasets.DatasetDict({n: datasets.Dataset.from_list(splits[n]) for n in names})
        dataset.save_to_disk(str(out))
        return [str(out)]
    names = (
        {"train": out}
        if not with_test
        else {
            "train": out.with_name(f"{out.stem}.train{suffix}"),
            "test": out.with_name(f"{out.stem}.test{suffix}"),
        }
    )
    for split, path in names.items():
        rows = splits[split]
        if suffix == ".jsonl":
            with path.open("w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), path)
    return [str(p) for p in names.values()]
