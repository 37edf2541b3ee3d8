"""A loop stage's run across a kill of the loop: the run id is recorded before the run is
submitted, so a resumed loop submits that id or waits for its run, never a second run
(a real store, real trainer subprocesses on a tiny GPT-2)."""

from __future__ import annotations

import threading
from pathlib import Path

from app.loop.config import LoopConfig
from app.loop.stages import LoopWork
from data import loop_rounds
from tests.fakes.hh import TINY
from training.jobs import JobManager, TrainRequest


def test_a_run_recorded_but_not_submitted_at_the_kill_is_submitted_under_that_id(
    labelled_store, tmp_path: Path
) -> None:
    loop_rounds.create_loop(labelled_store, "L", {})
    jobs = JobManager(labelled_store, tmp_path / "runs")
    work = LoopWork(labelled_store, LoopConfig(), "L", jobs, tmp_path, threading.Event())
    request = TrainRequest("sft", policy="tiny", max_steps=1, overrides={**TINY, "eval_every": 0})
    loop_rounds.stage_started(labelled_store, "L", 1, "train:sft")
    loop_rounds.stage_run(labelled_store, "L", 1, "train:sft", "sft-recorded")  # then killed
    try:
        final = work._run_job(1, "train:sft", request)  # the resumed loop
        assert final["run_id"] == "sft-recorded" and final["status"] == "succeeded"
        again = work._run_job(1, "train:sft", request)  # resumed again: the same run
    finally:
        jobs.close()
    assert again["run_id"] == "sft-recorded"
    assert labelled_store.scalar("SELECT count(*) FROM runs") == 1
