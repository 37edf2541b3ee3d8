"""The Train tab's run watcher re-scores after a run ends, except after a loop's own runs."""

from __future__ import annotations

from pathlib import Path

from app.ui.auth import Access
from app.ui.context import AppContext
from app.ui.train_jobs import RunWatcher
from data.loop_rounds import create_loop, stage_run, stage_started
from data.store import PreferenceStore
from training import runs


def ended_run(store: PreferenceStore, run_id: str) -> None:
    runs.insert_queued(store, run_id, "dpo", {"request": {}}, "/nowhere")
    runs.mark_ended(store, run_id, "succeeded")


def test_a_loops_runs_are_left_to_the_loop(tmp_path: Path) -> None:
    with PreferenceStore(tmp_path / "s.duckdb") as store:
        ctx = AppContext.create(store, Access(None))
        watcher = RunWatcher(ctx, interval=3600)  # checked by hand below
        try:
            create_loop(store, "loop-1", {})
            stage_started(store, "loop-1", 1, "train")
            stage_run(store, "loop-1", 1, "train", "dpo-loop")
            ended_run(store, "dpo-loop")
            watcher.check()
            assert ctx.rescore_task is None  # the loop re-scores after its own run
            ended_run(store, "dpo-tab")
            watcher.check()
            assert ctx.rescore_task is not None and ctx.rescore_task.name == "rescore"
            ctx.rescore_task.thread.join(timeout=120)  # the re-score of an empty store ends
        finally:
            watcher.close()
