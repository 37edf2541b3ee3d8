"""Runs forked from a process that has done the imports (`training.warm`) and the CPU share
of a run, through JobManager with real subprocesses, a real store and a tiny GPT-2."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from data.processes import alive
from tests.fakes.hh import TINY
from training import runfiles
from training.jobs import JobManager, TrainRequest, available_cores


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
    # a run goes to a child of the server, in its own session
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
    assert done["metrics"]["torch_threads"] == available_cores()  # alone: every core
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


def test_two_runs_at_once_share_the_cores_and_a_run_alone_gets_them_back(jobs, tiny_policy) -> None:
    jobs.keep_warm(True)  # three runs: one import, not three (a forked run shares as a cold one)
    server_ready(jobs)
    cores = available_cores()
    alone = jobs.run(request("sft"), timeout=300)
    assert alone["status"] == "succeeded", alone["log_tail"]
    assert alone["metrics"]["torch_threads"] == cores
    jobs.side_lane = True  # a generation may run next to a training run
    jobs.cpu_threads = 1  # the share of each while both go
    training = jobs.submit(request("sft", 100_000))
    run_dir = Path(at_first_step(jobs, training)["run_dir"])
    generation = jobs.run(
        TrainRequest(
            "generate",
            policy=str(tiny_policy),
            max_prompts=4,
            overrides={"n": 2, "max_new_tokens": 4},
        ),
        timeout=300,
    )
    assert generation["status"] == "succeeded", generation["log_tail"]
    assert generation["metrics"]["torch_threads"] == 1  # started next to the training run
    assert runfiles.read_json(run_dir / runfiles.CPU_SHARE) == cores  # alone again
    # the training run takes the cores back at its next step
    deadline = time.monotonic() + 60
    while runfiles.read_json(run_dir / runfiles.STATUS).get("torch_threads") != cores:
        assert jobs.status(training)["status"] == "running", jobs.status(training)["log_tail"]
        assert time.monotonic() < deadline, runfiles.read_json(run_dir / runfiles.STATUS)
        time.sleep(0.1)
    assert jobs.cancel(training)


def test_inline_managers_fork_nothing(labelled_store, tmp_path) -> None:
    manager = JobManager(labelled_store, tmp_path / "runs", inline=True)
    manager.keep_warm(True)
    assert manager.warm is None
    manager.close()


def test_a_generation_follows_its_share_token_by_token(tmp_path) -> None:
    """A generation or reference pass has no trainer steps: it reads its share before the
    model's forward passes, through a PEFT wrapper too (which calls the base's forward)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    from training.run_context import RunContext

    runfiles.write_json(tmp_path / runfiles.CONFIG, {"run_id": "g", "stage": "generate"})
    ctx = RunContext(tmp_path)
    base = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)).eval()
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["c_attn"]))
    ctx.follow_cpu_share_in(model, every_s=0)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        runfiles.write_json(tmp_path / runfiles.CPU_SHARE, 1)  # a training run started
        model.generate(
            input_ids=torch.tensor([[1, 2, 3]]), max_new_tokens=2, do_sample=False, pad_token_id=0
        )
        assert torch.get_num_threads() == 1
        assert runfiles.read_json(tmp_path / runfiles.STATUS)["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)


class OwnerKilled(BaseException):
    """Its owner dying between starting a run's process and recording it (kill -9)."""


def test_a_run_started_but_never_recorded_is_followed_not_started_twice(
    labelled_store, tmp_path, monkeypatch
) -> None:
    first = JobManager(labelled_store, tmp_path / "runs")
    first.keep_warm(True)  # forked, as `prefloop loop` runs it
    server_ready(first)
    with monkeypatch.context() as patched:

        def killed(*args, **kwargs) -> None:
            raise OwnerKilled

        patched.setattr("training.jobs.runs.mark_running", killed)
        with pytest.raises(OwnerKilled):
            first.submit(request("sft", 3))
    first.close()  # ends the fork server; the forked run goes on
    ((run_id,),) = labelled_store.query("SELECT run_id FROM runs WHERE status = 'queued'")
    second = JobManager(labelled_store, tmp_path / "runs")  # the next owner (a resume)
    try:
        final = second.wait(run_id, timeout=300)
    finally:
        second.close()
    assert final["status"] == "succeeded", final["log_tail"]
    # one process trained it: a second one started into the same folder repeats the steps
    steps = [m["step"] for m in runfiles.read_metrics(Path(final["run_dir"])) if "loss" in m]
    assert steps == [1, 2, 3]
