"""Trainer processes started ahead (`training.warm`) and the CPU share of a run, through
JobManager with real subprocesses, a real store and a tiny GPT-2."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tests.fakes.hh import TINY
from training import runfiles
from training.jobs import JobManager, TrainRequest
from training.launch import trainer_env
from training.warm import WarmTrainers


def request(stage: str, steps: int = 2) -> TrainRequest:
    return TrainRequest(stage, policy="tiny", max_steps=steps, overrides={**TINY, "eval_every": 0})


def wait_ready(jobs: JobManager, lane: str = "train", timeout: float = 180) -> int:
    """The pid of the lane's first idle process once its imports are done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle = jobs.warm_processes().get(lane, [])
        if idle and idle[0]["ready"]:
            return idle[0]["pid"]
        time.sleep(0.2)
    raise AssertionError(f"no warm {lane} process became ready in {timeout} s: {idle}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def test_a_run_goes_to_the_warm_process_and_a_fresh_one_replaces_it(jobs) -> None:
    jobs.keep_warm(train=1)
    warm_pid = wait_ready(jobs)
    jobs.cpu_threads = 1
    status = jobs.run(request("sft"), timeout=300)
    assert status["status"] == "succeeded", status["log_tail"]
    assert status["pid"] == warm_pid  # the run went to the process that had imported
    assert status["metrics"]["steps"] == 2 and status["metrics"]["param_change"] > 0
    assert status["metrics"]["torch_threads"] == 1  # the share it was handed
    run_dir = Path(status["run_dir"])
    log = (run_dir / runfiles.LOG).read_text()
    assert "'loss'" in log  # the trainer's own output reached the run's log
    assert (run_dir / "artifact" / "config.json").exists()
    # the pool refilled with a new process, which gets the next run
    next_pid = wait_ready(jobs)
    assert next_pid != warm_pid
    again = jobs.run(request("dpo"), timeout=300)
    assert again["status"] == "succeeded", again["log_tail"]
    assert again["pid"] == next_pid
    idle = [p["pid"] for p in jobs.warm_processes()["train"]]
    jobs.keep_warm(0, 0)  # ends the idle ones
    assert jobs.warm_processes() == {}
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in idle) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in idle)


def test_cancelling_a_run_in_a_warm_process_stops_it(jobs) -> None:
    jobs.keep_warm(train=1)
    wait_ready(jobs)
    run_id = jobs.submit(request("sft", 500))
    deadline = time.monotonic() + 240
    while not (jobs.status(run_id)["progress"] or {}).get("step"):
        assert jobs.status(run_id)["status"] == "running", jobs.status(run_id)["log_tail"]
        assert time.monotonic() < deadline, "the warm trainer never reached step 1"
        time.sleep(0.2)
    pid = jobs.status(run_id)["pid"]
    assert jobs.cancel(run_id)
    assert jobs.status(run_id)["status"] == "cancelled"
    assert not alive(pid)


def test_cold_runs_get_their_cpu_share_and_default_to_every_core(jobs) -> None:
    default = jobs.run(request("sft"), timeout=300)
    assert default["status"] == "succeeded", default["log_tail"]
    assert default["metrics"]["torch_threads"] == os.cpu_count()
    jobs.cpu_threads = 1
    shared = jobs.run(request("sft"), timeout=300)
    assert shared["status"] == "succeeded", shared["log_tail"]
    assert shared["metrics"]["torch_threads"] == 1


def test_a_warm_process_that_died_is_skipped_and_replaced(tmp_path) -> None:
    pool = WarmTrainers(sys.executable, 1, trainer_env(), tmp_path)
    try:
        first = pool.idle()[0]["pid"]
        os.kill(first, 9)
        deadline = time.monotonic() + 10
        while alive(first):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # no run goes to the dead process: the caller starts the run cold, and a fresh
        # process takes the dead one's place
        assert pool.take("sft", tmp_path, None) is None
        fresh = [p["pid"] for p in pool.idle()]
        assert len(fresh) == 1 and fresh[0] != first and alive(fresh[0])
    finally:
        pool.close()
    assert pool.idle() == []
    assert not alive(fresh[0])


def test_inline_managers_keep_no_warm_processes(labelled_store, tmp_path) -> None:
    manager = JobManager(labelled_store, tmp_path / "runs", inline=True)
    manager.keep_warm(train=2, generate=1)
    assert manager.warm_processes() == {}
    manager.close()
