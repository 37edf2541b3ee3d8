"""Which of prefloop's verdicts a Label Studio or Argilla export offers as pre-annotations.

The judge's verdicts live in the store (`data.tool_export.judge_suggestions`); the ensemble's
are its latest scores (`labeling.scoring`), which `data` may not read: so the choice is made
here, between the two packages.
"""

from __future__ import annotations

from collections.abc import Sequence

from data.errors import ConfigError
from data.store import PreferenceStore
from data.tool_export import judge_suggestions
from data.tool_records import Suggestion

PREDICTIONS = ("auto", "judge", "ensemble", "none")


def ensemble_suggestions(store: PreferenceStore, pair_ids: Sequence[str]) -> dict[str, Suggestion]:
    """pair_id -> the latest ensemble's verdict (A when its mean P(A > B) is at least 0.5),
    scored by that probability; pairs it has not scored are absent."""
    from labeling.scoring import latest_version, stored_scores  # numpy: only when asked

    version = latest_version(store)
    if version is None or not pair_ids:
        return {}
    out = {}
    for pair_id, members in stored_scores(store, version, list(pair_ids)).items():
        p_a = float(members.mean())
        verdict = "a" if p_a >= 0.5 else "b"
        out[pair_id] = Suggestion(verdict, round(max(p_a, 1 - p_a), 4), f"ensemble:v{version}")
    return out


def tool_suggestions(
    store: PreferenceStore, pair_ids: Sequence[str], which: str = "auto"
) -> dict[str, Suggestion]:
    """auto: the judge's verdict where the judge labelled the pair, else the ensemble's."""
    if which not in PREDICTIONS:
        raise ConfigError(f"--predictions {which!r} is not one of {', '.join(PREDICTIONS)}")
    if which == "none":
        return {}
    if which == "judge":
        return judge_suggestions(store, pair_ids)
    if which == "ensemble":
        return ensemble_suggestions(store, pair_ids)
    return {**ensemble_suggestions(store, pair_ids), **judge_suggestions(store, pair_ids)}
