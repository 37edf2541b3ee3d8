"""The `runs` table: every read and write of a training or generation run's row.

A row goes queued -> running -> succeeded / failed / cancelled (`training.jobs` moves it);
`config` and `metrics` are JSON. Readers get rows with those decoded (`decode_run`).
Imports nothing heavy: the app and the CLI read runs through here.
"""

from __future__ import annotations

import json
from typing import Any

from data.store import PreferenceStore

ENDED = ("succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")

_LISTED = (
    "run_id, kind, status, promoted, artifact_path, metrics, parent_run_id, "
    "created_at, started_at, finished_at, run_dir"
)


def decode_run(row: dict[str, Any]) -> dict[str, Any]:
    """A `runs` row with its JSON columns decoded (missing ones as {})."""
    for key in ("config", "metrics"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
        elif key in row and row[key] is None:
            row[key] = {}
    return row


# -- reads ------------------------------------------------------------------------------


def get_run(store: PreferenceStore, run_id: str) -> dict[str, Any] | None:
    """The whole row of `run_id`, decoded, or None."""
    rows = store.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])
    return decode_run(rows[0]) if rows else None


def latest_run(store: PreferenceStore) -> dict[str, Any] | None:
    """The newest run's whole row, decoded, or None."""
    rows = store.query_dicts("SELECT * FROM runs ORDER BY created_at DESC LIMIT 1")
    return decode_run(rows[0]) if rows else None


def list_runs(store: PreferenceStore, limit: int = 50) -> list[dict[str, Any]]:
    """The newest `limit` runs (without their config and log), decoded."""
    return [
        decode_run(r)
        for r in store.query_dicts(
            f"SELECT {_LISTED} FROM runs ORDER BY created_at DESC LIMIT ?", [limit]
        )
    ]


def status_counts(store: PreferenceStore) -> dict[str, int]:
    """How many runs are in each status."""
    return dict(store.query("SELECT status, count(*) FROM runs GROUP BY status ORDER BY status"))


def run_config(store: PreferenceStore, run_id: str) -> dict[str, Any]:
    return json.loads(store.scalar("SELECT config FROM runs WHERE run_id = ?", [run_id]))


def run_dir_of(store: PreferenceStore, run_id: str) -> str:
    return str(store.scalar("SELECT run_dir FROM runs WHERE run_id = ?", [run_id]))


def pid_of(store: PreferenceStore, run_id: str) -> int | None:
    return store.scalar("SELECT pid FROM runs WHERE run_id = ?", [run_id])


def status_and_pid(store: PreferenceStore, run_id: str) -> tuple[str, int | None] | None:
    rows = store.query("SELECT status, pid FROM runs WHERE run_id = ?", [run_id])
    return (rows[0][0], rows[0][1]) if rows else None


def queued_runs(store: PreferenceStore) -> list[tuple[str, str]]:
    """(run id, kind) of every queued run, oldest first."""
    return [
        (run_id, kind)
        for run_id, kind in store.query(
            "SELECT run_id, kind FROM runs WHERE status = 'queued' ORDER BY created_at"
        )
    ]


def oldest_queued(store: PreferenceStore, kind: str) -> tuple[str, dict[str, Any]] | None:
    """The oldest queued run of `kind` and its config, or None."""
    rows = store.query(
        "SELECT run_id, config FROM runs WHERE status = 'queued' AND kind = ? "
        "ORDER BY created_at LIMIT 1",
        [kind],
    )
    return (rows[0][0], json.loads(rows[0][1])) if rows else None


def running_runs(store: PreferenceStore) -> list[tuple[str, int | None]]:
    """(run id, pid) of every run marked running."""
    return [
        (run_id, pid)
        for run_id, pid in store.query("SELECT run_id, pid FROM runs WHERE status = 'running'")
    ]


def running_kinds(store: PreferenceStore) -> list[tuple[str, str, str]]:
    """(run id, kind, run folder) of every run marked running."""
    return [
        (run_id, kind, run_dir)
        for run_id, kind, run_dir in store.query(
            "SELECT run_id, kind, run_dir FROM runs WHERE status = 'running'"
        )
    ]


def running_id(
    store: PreferenceStore, side_kinds: tuple[str, ...] | None = None, side: bool = False
) -> str | None:
    """A running run: any (`side_kinds` None), else one whose kind is in `side_kinds`
    (`side`) or is not (a training run)."""
    if side_kinds is None:
        return store.scalar("SELECT run_id FROM runs WHERE status = 'running' LIMIT 1")
    return store.scalar(
        "SELECT run_id FROM runs WHERE status = 'running' "
        "AND list_contains(?::VARCHAR[], kind) = ? LIMIT 1",
        [list(side_kinds), side],
    )


def newest_active_id(store: PreferenceStore) -> str | None:
    """The newest queued or running run, or None."""
    return store.scalar(
        "SELECT run_id FROM runs WHERE status IN ('running', 'queued') "
        "ORDER BY created_at DESC LIMIT 1"
    )


def ended_ids(store: PreferenceStore) -> set[str]:
    """Every run that has ended (succeeded, failed or cancelled)."""
    return {
        r[0]
        for r in store.query(
            "SELECT run_id FROM runs WHERE list_contains(?, status)", [list(ENDED)]
        )
    }


def succeeded_among(store: PreferenceStore, run_ids: set[str]) -> int:
    """How many of `run_ids` succeeded."""
    return int(
        store.scalar(
            "SELECT count(*) FROM runs WHERE status = 'succeeded' AND list_contains(?, run_id)",
            [sorted(run_ids)],
        )
    )


def configs_with_artifact(store: PreferenceStore, artifact: str) -> list[dict[str, Any]]:
    """The configs of the runs whose artifact is `artifact` (a policy folder)."""
    return [
        json.loads(config) if isinstance(config, str) else (config or {})
        for (config,) in store.query("SELECT config FROM runs WHERE artifact_path = ?", [artifact])
    ]


def latest_promoted_artifact(store: PreferenceStore, kinds: tuple[str, ...]) -> str | None:
    """Artifact of the newest promoted, succeeded run of one of these kinds."""
    return store.scalar(
        "SELECT artifact_path FROM runs WHERE promoted AND status = 'succeeded' "
        "AND list_contains(?, kind) ORDER BY finished_at DESC LIMIT 1",
        [list(kinds)],
    )


def promoted_runs(store: PreferenceStore, kind: str) -> list[dict[str, Any]]:
    """Promoted, succeeded runs of `kind`, newest first, decoded."""
    return [
        decode_run(row)
        for row in store.query_dicts(
            "SELECT run_id, artifact_path, config, metrics FROM runs WHERE promoted AND "
            "status = 'succeeded' AND kind = ? ORDER BY finished_at DESC",
            [kind],
        )
    ]


def latest_evaluations(store: PreferenceStore, limit: int = 20) -> list[dict[str, Any]]:
    """The newest succeeded evaluation run of each (model, file), newest first: their metrics
    plus `finished_at` (`prefloop eval --model`)."""
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for row in store.query_dicts(
        "SELECT run_id, metrics, finished_at FROM runs WHERE kind = 'evaluate' "
        "AND status = 'succeeded' ORDER BY finished_at DESC"
    ):
        metrics = decode_run(row)["metrics"]
        key = (str(metrics.get("model")), str(metrics.get("eval_file")))
        if key in seen:
            continue
        seen.add(key)
        out.append({**metrics, "run_id": row["run_id"], "finished_at": row["finished_at"]})
        if len(out) >= limit:
            break
    return out


# -- writes -----------------------------------------------------------------------------


def insert_queued(
    store: PreferenceStore, run_id: str, kind: str, config: dict[str, Any], run_dir: str
) -> None:
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO runs (run_id, kind, status, config, run_dir) "
            "VALUES (?, ?, 'queued', ?, ?)",
            [run_id, kind, json.dumps(config), run_dir],
        ).fetchall()


def set_config(store: PreferenceStore, run_id: str, config: dict[str, Any]) -> None:
    with store.transaction() as cur:
        cur.execute(
            "UPDATE runs SET config = ? WHERE run_id = ?", [json.dumps(config), run_id]
        ).fetchall()


def mark_running(
    store: PreferenceStore,
    run_id: str,
    *,
    config: dict[str, Any],
    parent_run_id: str | None,
    pid: int | None = None,
) -> None:
    with store.transaction() as cur:
        cur.execute(
            "UPDATE runs SET status = 'running', pid = ?, config = ?, parent_run_id = ?, "
            "started_at = current_timestamp WHERE run_id = ?",
            [pid, json.dumps(config), parent_run_id, run_id],
        ).fetchall()


def mark_ended(
    store: PreferenceStore,
    run_id: str,
    status: str,
    *,
    log_tail: str = "",
    metrics: dict[str, Any] | None = None,
    artifact: str | None = None,
    promoted: bool = False,
) -> None:
    """End the run: its status, the end of its log, metrics, artifact and promotion."""
    assert status in ENDED, status
    with store.transaction() as cur:
        cur.execute(
            "UPDATE runs SET status = ?, log_tail = ?, metrics = ?, artifact_path = ?, "
            "promoted = ?, finished_at = current_timestamp WHERE run_id = ?",
            [
                status,
                log_tail[-4000:],
                json.dumps(metrics or {}, default=str),
                artifact,
                promoted,
                run_id,
            ],
        ).fetchall()
