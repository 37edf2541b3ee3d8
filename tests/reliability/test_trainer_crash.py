"""kill -9 a training run mid-step: it is marked failed, the store is untouched, and the
next retrain (the same request again) succeeds and is promoted."""

from __future__ import annotations

import os
import signal
import time

from tests.fakes.hh import TINY
from training.jobs import TrainRequest

TABLES = ("prompts", "responses", "pairs", "labels", "ref_logprobs", "scores")


def test_killed_trainer_then_retrain_succeeds(jobs, labelled_store) -> None:  # noqa: F811
    jobs.keep_warm(True)  # forked, as the loop runs them (test_jobs kills a cold one)
    before = {t: labelled_store.count(t) for t in TABLES}
    label_rows = labelled_store.query("SELECT * FROM labels ORDER BY label_id")
    doomed = jobs.submit(
        TrainRequest("dpo", policy="tiny", max_steps=400, overrides={**TINY, "eval_every": 0})
    )
    deadline = time.monotonic() + 240
    while not (jobs.status(doomed)["progress"] or {}).get("step"):
        status = jobs.status(doomed)
        assert status["status"] in ("queued", "running"), status["log_tail"]
        assert time.monotonic() < deadline, "the trainer never reached a step"
        time.sleep(0.2)
    os.killpg(jobs.status(doomed)["pid"], signal.SIGKILL)
    failed = jobs.wait(doomed, timeout=120)
    assert failed["status"] == "failed" and "signal 9" in failed["log_tail"]
    assert {t: labelled_store.count(t) for t in TABLES} == before
    assert labelled_store.query("SELECT * FROM labels ORDER BY label_id") == label_rows

    again = jobs.run(
        TrainRequest("dpo", policy="tiny", max_steps=2, overrides={**TINY, "eval_every": 0}),
        timeout=600,
    )
    assert again["status"] == "succeeded", again["log_tail"]
    assert again["artifact_path"]
