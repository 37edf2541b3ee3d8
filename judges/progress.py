"""How far judging has got, read from `judgements`, `judge_calls` and the judge labels
(the Judge tab's status line and failure table; the writer is `judges/writer.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data.store import PreferenceStore


@dataclass(frozen=True)
class JudgeProgress:
    """Judgements by status, the call cache, and the pairs that have a judge label."""

    judgements_ok: int
    judgements_failed: int
    cached_calls: int
    prompt_tokens: int
    completion_tokens: int
    judged_pairs: int


def judge_progress(store: PreferenceStore) -> JudgeProgress:
    counts = dict(store.query("SELECT status, count(*) FROM judgements GROUP BY status"))
    calls, prompt, completion = store.query(
        "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
        "FROM judge_calls"
    )[0]
    judged = store.scalar(
        "SELECT count(DISTINCT pair_id) FROM active_labels WHERE source = 'judge'"
    )
    return JudgeProgress(
        judgements_ok=int(counts.get("ok", 0)),
        judgements_failed=int(counts.get("failed", 0)),
        cached_calls=int(calls),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
        judged_pairs=int(judged),
    )


def failed_judgements(store: PreferenceStore, limit: int = 50) -> list[list[Any]]:
    """The newest failed judgements: pair, model, order, error, the answer's start."""
    rows = store.query(
        "SELECT pair_id, model, order_shown, coalesce(error, ''), left(coalesce(raw_text, ''), 200) "
        "FROM judgements WHERE status = 'failed' ORDER BY created_at DESC LIMIT ?",
        [limit],
    )
    return [list(r) for r in rows]


def tokens_by_model(store: PreferenceStore) -> dict[str, tuple[int, int]]:
    """Prompt and completion tokens of the cached calls, per model."""
    rows = store.query(
        "SELECT model, coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
        "FROM judge_calls GROUP BY model"
    )
    return {model: (int(p), int(c)) for model, p, c in rows}
