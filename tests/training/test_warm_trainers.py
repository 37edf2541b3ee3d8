"""Runs forked from a process that has done the imports (`training.warm`) and the CPU share
of a run, through JobManager with real subprocesses, a real store and a tiny GPT-2."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from data.processes import alive
from tests.fakes.hh import TINY
from training import runfiles
from training.jobs import JobManager, TrainRequest


def request(stage: str, steps: int = 2) -> TrainRequest:
    return TrainRequest(stage, policy="tiny", max_steps=steps, overrides={**TINY, "eval_every": 0})


def server_ready(jobs: JobManager, timeout: float = 180) -> int:
    """The fork server's pid once its imports are done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if jobs.warm and jobs.warm["ready"]:
            return jobs.warm["pid"]
        time.sleep(0.2)
    raise AssertionError(f"the fork server was not ready in {timeout} s: {jobs.warm}")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])


def at_first_step(jobs: JobManager, run_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = jobs.status(run_id)
        if (status["progress"] or {}).get("step"):
            return status
        assert status["status"] in ("queued", "running"), status["log_tail"]
        assert time.monotonic() < deadline, "the trainer never reached step 1"
        time.sleep(0.2)


def test_runs_are_forked_from_the_server_and_keep_cancel_and_exit_codes(jobs) -> None:
    jobs.keep_warm(True)
    server = server_ready(jobs)
    jobs.cpu_threads = 1
    # a run goes to a child of the server, in its own session, with the CPU share it was given
    run_id = jobs.submit(request("sft", 500))
    status = at_first_step(jobs, run_id)
    pid = status["pid"]
    assert parent_of(pid) == server and os.getpgid(pid) == pid
    assert jobs.cancel(run_id)
    assert jobs.status(run_id)["status"] == "cancelled"
    assert not alive(pid)
    # a run that ends normally: its artifact, metrics and log are those of a cold run
    done = jobs.run(request("sft"), timeout=300)
    assert done["status"] == "succeeded", done["log_tail"]
    assert done["metrics"]["steps"] == 2 and done["metrics"]["param_change"] > 0
    assert done["metrics"]["torch_threads"] == 1
    run_dir = Path(done["run_dir"])
    assert "'loss'" in (run_dir / runfiles.LOG).read_text()  # the trainer's own output
    assert (run_dir / "artifact" / "config.json").exists()
    # the exit status of a killed child comes back through the server
    killed = jobs.submit(request("dpo", 500))
    os.kill(at_first_step(jobs, killed)["pid"], signal.SIGKILL)
    final = jobs.wait(killed, timeout=60)
    assert final["status"] == "failed" and "killed by signal 9" in final["log_tail"]
    jobs.keep_warm(False)
    assert jobs.warm is None and not alive(server)


def test_a_run_outlives_its_fork_server(jobs) -> None:
    """The server ends mid-run (killed): the run goes on and is followed by its pid."""
    jobs.keep_warm(True)
    server = server_ready(jobs)
    run_id = jobs.submit(request("sft", 40))
    pid = at_first_step(jobs, run_id)["pid"]
    os.killpg(server, signal.SIGKILL)  # its group only: the run has a session of its own
    final = jobs.wait(run_id, timeout=300)
    assert final["status"] == "succeeded", final["log_tail"]
    assert final["metrics"]["steps"] == 40
    assert not alive(pid)
    jobs.keep_warm(False)


def test_cold_runs_get_their_cpu_share_and_default_to_every_core(jobs) -> None:
    default = jobs.run(request("sft"), timeout=300)
    assert default["status"] == "succeeded", default["log_tail"]
    assert default["metrics"]["torch_threads"] == os.cpu_count()
    jobs.cpu_threads = 1
    shared = jobs.run(request("sft"), timeout=300)
    assert shared["status"] == "succeeded", shared["log_tail"]
    assert shared["metrics"]["torch_threads"] == 1


def test_inline_managers_fork_nothing(labelled_store, tmp_path) -> None:
    manager = JobManager(labelled_store, tmp_path / "runs", inline=True)
    manager.keep_warm(True)
    assert manager.warm is None
    manager.close()
