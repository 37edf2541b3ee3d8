"""`--distributed ddp|fsdp|zero3`: the accelerate config each launches with, the checks at
submit, and FSDP across two CPU processes (gloo)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from data.errors import ConfigError
from tests.fakes.hh import TINY
from training.launch import ACCELERATE_DIR, trainer_command
from training.stages import TrainRequest


def test_each_distributed_mode_launches_its_accelerate_config(tmp_path: Path) -> None:
    for mode, name in (("ddp", "ddp.yaml"), ("fsdp", "fsdp.yaml"), ("zero3", "zero3.yaml")):
        cmd = trainer_command("python", "dpo", tmp_path, 2, mode)
        assert cmd[cmd.index("--config_file") + 1] == str(ACCELERATE_DIR / name)
        assert (ACCELERATE_DIR / name).exists()
    assert trainer_command("python", "dpo", tmp_path, 1, "ddp")[1:3] == ["-m", "training"]
    one_gpu = trainer_command("python", "dpo", tmp_path, 1, "zero3")  # ZeRO-3 on one GPU
    assert (
        "accelerate.commands.launch" in one_gpu
        and one_gpu[one_gpu.index("--num_processes") + 1] == "1"
    )


def test_distributed_settings_are_checked_at_submit() -> None:
    assert TrainRequest("sft", num_processes=2, distributed="fsdp").distributed == "fsdp"
    with pytest.raises(ConfigError, match="is for sft, rm, dpo"):
        TrainRequest("grpo", num_processes=2, distributed="fsdp")
    with pytest.raises(ConfigError, match="not one of"):
        TrainRequest("dpo", num_processes=2, distributed="zero2")
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match="pip install deepspeed"):
            TrainRequest("rm", num_processes=2, distributed="zero3")


@pytest.mark.slow
def test_fsdp_on_cpu_is_refused_by_the_trainer_not_run_as_ddp(jobs, tiny_policy) -> None:
    """The FSDP CPU test, as far as it can go: accelerate 1.x selects FSDP only for
    accelerator device types (its FSDP branch excludes MULTI_CPU), so on CPU the two gloo
    processes would run plain DDP under an FSDP config. The trainer refuses that instead."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: test_fsdp_on_two_gpus runs FSDP for real")
    status = jobs.run(
        TrainRequest("dpo", policy=str(tiny_policy), max_steps=1, num_processes=2,
                     distributed="fsdp", overrides={**TINY, "eval_every": 0}),
        timeout=600,
    )  # fmt: skip
    assert status["status"] == "failed"
    log = (Path(status["run_dir"]) / "train.log").read_text()
    assert "--distributed fsdp needs GPUs" in log


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["fsdp", "zero3"])
def test_sharded_dpo_on_two_gpus_both_ranks_train(jobs, tiny_policy, mode: str) -> None:
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    if mode == "zero3" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("DeepSpeed is not installed")
    status = jobs.run(
        TrainRequest("dpo", policy=str(tiny_policy), max_steps=2, num_processes=2,
                     distributed=mode, overrides={**TINY, "eval_every": 0}),
        timeout=600,
    )  # fmt: skip
    assert status["status"] == "succeeded", status["log_tail"]
    ranks = sorted((Path(status["run_dir"]) / "ranks").glob("rank-*.json"))
    reports = [json.loads(p.read_text()) for p in ranks]
    assert [r["rank"] for r in reports] == [0, 1]
    assert all(r["world_size"] == 2 and r["steps"] == 2 and r["param_change"] > 0 for r in reports)
