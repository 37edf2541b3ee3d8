"""The `loops`, `loop_rounds` and `loop_pairs` tables: the state of `prefloop loop`.

One `loops` row per loop holds its config, so `prefloop loop --resume` rebuilds the same
plan. One `loop_rounds` row per (round, stage) says whether the stage is running, done or
failed, when it started and ended (epoch seconds, so intervals can be compared across
threads and processes), what it did (`counts`) and which run it started. A stage is
marked done in the same transaction that records its counts, so a loop killed at any
point resumes after the last stage that finished. `loop_pairs` holds each round's
generated pairs with the policy they were sampled from and its staleness.

This module is the only one that writes these tables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from data.errors import StoreError
from data.store import PreferenceStore

LOOP_STATUSES = ("running", "stopped", "finished", "failed")


def create_loop(store: PreferenceStore, loop_id: str, config: dict[str, Any]) -> None:
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO loops (loop_id, config, status) VALUES (?, ?, 'running')",
            [loop_id, json.dumps(config)],
        ).fetchall()


def reopen_loop(store: PreferenceStore, loop_id: str) -> None:
    """Mark a loop running again (`--resume`); its finished stages stay as they are."""
    with store.transaction() as cur:
        cur.execute(
            "UPDATE loops SET status = 'running', stop_reason = NULL, finished_at = NULL "
            "WHERE loop_id = ?",
            [loop_id],
        ).fetchall()


def finish_loop(store: PreferenceStore, loop_id: str, status: str, reason: str | None) -> None:
    if status not in LOOP_STATUSES:
        raise StoreError(f"loop status {status!r} is not one of {', '.join(LOOP_STATUSES)}")
    with store.transaction() as cur:
        cur.execute(
            "UPDATE loops SET status = ?, stop_reason = ?, finished_at = current_timestamp "
            "WHERE loop_id = ?",
            [status, reason, loop_id],
        ).fetchall()


def get_loop(store: PreferenceStore, loop_id: str | None = None) -> dict[str, Any] | None:
    """A loop's row (config decoded); without `loop_id`, the newest loop."""
    where, params = ("WHERE loop_id = ?", [loop_id]) if loop_id else ("", [])
    rows = store.query_dicts(
        f"SELECT * FROM loops {where} ORDER BY created_at DESC, loop_id DESC LIMIT 1", params
    )
    if not rows:
        return None
    row = rows[0]
    row["config"] = json.loads(row["config"]) if isinstance(row["config"], str) else row["config"]
    return row


def stage_started(store: PreferenceStore, loop_id: str, round_: int, stage: str) -> float:
    """Record that a stage starts now (again, after a resume: the old interval is replaced)."""
    now = time.time()
    with store.transaction() as cur:
        cur.execute(
            "INSERT OR REPLACE INTO loop_rounds (loop_id, round, stage, status, started_at, "
            "run_id) VALUES (?, ?, ?, 'running', ?, (SELECT run_id FROM loop_rounds WHERE "
            "loop_id = ? AND round = ? AND stage = ?))",
            [loop_id, round_, stage, now, loop_id, round_, stage],
        ).fetchall()
    return now


def stage_run(store: PreferenceStore, loop_id: str, round_: int, stage: str, run_id: str) -> None:
    """Remember the run a stage started, so a resumed loop waits for it instead of a new one."""
    with store.transaction() as cur:
        cur.execute(
            "UPDATE loop_rounds SET run_id = ? WHERE loop_id = ? AND round = ? AND stage = ?",
            [run_id, loop_id, round_, stage],
        ).fetchall()


def loop_runs(store: PreferenceStore, run_ids: set[str]) -> set[str]:
    """Which of `run_ids` a loop started (a loop re-scores after its own runs)."""
    if not run_ids:
        return set()
    rows = store.query(
        "SELECT DISTINCT run_id FROM loop_rounds WHERE list_contains(?, run_id)", [sorted(run_ids)]
    )
    return {r[0] for r in rows}


def stage_done(
    store: PreferenceStore,
    loop_id: str,
    round_: int,
    stage: str,
    counts: dict[str, Any],
    *,
    promoted: bool | None = None,
    status: str = "done",
) -> None:
    with store.transaction() as cur:
        cur.execute(
            "UPDATE loop_rounds SET status = ?, finished_at = ?, counts = ?, promoted = ? "
            "WHERE loop_id = ? AND round = ? AND stage = ?",
            [
                status,
                time.time(),
                json.dumps(counts, default=str),
                promoted,
                loop_id,
                round_,
                stage,
            ],
        ).fetchall()


def stage_failed(store: PreferenceStore, loop_id: str, round_: int, stage: str, error: str) -> None:
    with store.transaction() as cur:
        cur.execute(
            "UPDATE loop_rounds SET status = 'failed', finished_at = ?, error = ? "
            "WHERE loop_id = ? AND round = ? AND stage = ?",
            [time.time(), error[-4000:], loop_id, round_, stage],
        ).fetchall()


def stage_rows(store: PreferenceStore, loop_id: str) -> list[dict[str, Any]]:
    """Every (round, stage) row of a loop, by start time, with `counts` decoded."""
    rows = store.query_dicts(
        "SELECT round, stage, status, started_at, finished_at, counts, run_id, promoted, error "
        "FROM loop_rounds WHERE loop_id = ? ORDER BY started_at NULLS LAST, round, stage",
        [loop_id],
    )
    for row in rows:
        row["counts"] = json.loads(row["counts"]) if row["counts"] else {}
    return rows


def record_pairs(
    store: PreferenceStore,
    loop_id: str,
    round_: int,
    pair_ids: Sequence[str],
    policy: str,
    staleness: int,
) -> int:
    """Tag a round's new pairs with their policy and staleness (a pair keeps its first round)."""
    if not pair_ids:
        return 0
    with store.transaction() as cur:
        cur.execute(
            "INSERT OR IGNORE INTO loop_pairs SELECT ?, ?, unnest(?::VARCHAR[]), ?, ?",
            [loop_id, round_, list(pair_ids), policy, staleness],
        ).fetchall()
    return len(pair_ids)


def round_pair_ids(store: PreferenceStore, loop_id: str, round_: int) -> list[str]:
    """The pairs a round generated (`record_pairs`)."""
    rows = store.query(
        "SELECT pair_id FROM loop_pairs WHERE loop_id = ? AND round = ? ORDER BY pair_id",
        [loop_id, round_],
    )
    return [r[0] for r in rows]


def pair_staleness(store: PreferenceStore, loop_id: str) -> dict[int, dict[str, int]]:
    """round -> {staleness: pairs} for a loop."""
    out: dict[int, dict[str, int]] = {}
    for round_, staleness, n in store.query(
        "SELECT round, staleness, count(*) FROM loop_pairs WHERE loop_id = ? "
        "GROUP BY ALL ORDER BY ALL",
        [loop_id],
    ):
        out.setdefault(int(round_), {})[str(staleness)] = int(n)
    return out


def generated_pair_ids(store: PreferenceStore, run_id: str) -> list[str]:
    """Pairs whose two responses a generation run sampled (its `prompt_responses.meta`)."""
    rows = store.query(
        """
        WITH mine AS (SELECT prompt_id, response_id FROM prompt_responses
                      WHERE origin = 'generate' AND json_extract_string(meta, '$.run_id') = ?)
        SELECT p.pair_id FROM pairs p
        JOIN mine a ON a.prompt_id = p.prompt_id AND a.response_id = p.response_a_id
        JOIN mine b ON b.prompt_id = p.prompt_id AND b.response_id = p.response_b_id
        ORDER BY p.pair_id
        """,
        [run_id],
    )
    return [r[0] for r in rows]


def label_counts(store: PreferenceStore, max_label_id: int | None = None) -> dict[str, int]:
    """Active labels by source, now or up to a label id (a round's cut-off)."""
    return {
        str(source): int(n)
        for source, n in store.query(
            "SELECT source, count(*) FROM active_labels "
            "WHERE ? IS NULL OR label_id <= ? GROUP BY source",
            [max_label_id, max_label_id],
        )
    }


def round_prompts(
    store: PreferenceStore, round_: int, per_round: int
) -> list[list[dict[str, str]]]:
    """The message lists round `round_` (from 1) samples for: the store's prompts in turn,
    by prompt id (a content hash, so a fixed pseudo-random order), wrapping around."""
    rows = store.query("SELECT messages FROM prompts ORDER BY prompt_id")
    if not rows:
        raise StoreError(f"{store.path} has no prompts to sample for: run `prefloop import` first")
    start = (round_ - 1) * per_round
    picked = [rows[(start + i) % len(rows)][0] for i in range(min(per_round, len(rows)))]
    return [json.loads(m) if isinstance(m, str) else m for m in picked]
