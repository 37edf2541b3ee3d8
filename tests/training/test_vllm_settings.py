"""TRL's vLLM modes for GRPO/RLOO (`--set use_vllm=true --set vllm_mode=server|colocate`):
checked when the run is submitted, passed through to TRL's config."""

from __future__ import annotations

import importlib.util

import pytest
from click.testing import CliRunner

from app.cli import cli
from data.errors import ConfigError
from training.jobs import stage_config

VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(VLLM_INSTALLED, reason="vLLM is installed: the missing-vLLM error cannot show")
@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_use_vllm_without_vllm_fails_at_submit_with_the_fix(stage: str, tmp_path) -> None:
    result = CliRunner().invoke(
        cli,
        ["train", stage, "--db", str(tmp_path / "s.duckdb"), "--set", "use_vllm=true",
         "--set", "vllm_mode=server", "--detach"],
    )  # fmt: skip
    assert result.exit_code != 0
    message = str(result.exception)
    assert "pip install vllm" in message and "use_vllm" in message
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_bad_vllm_settings_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="vllm_mode=server"):
        stage_config("grpo", {"use_vllm": True, "vllm_mode": "remote"})
    with pytest.raises(ConfigError, match="use_vllm=true"):
        stage_config("rloo", {"vllm_server_base_url": "http://10.0.0.2:8000"})


def test_vllm_settings_pass_through_to_trl(monkeypatch, tmp_path) -> None:
    """With vLLM present (pretended here: it cannot be installed without CUDA), the settings
    are accepted and become the arguments of TRL's own GRPOConfig/RLOOConfig."""
    from trl import GRPOConfig, RLOOConfig

    from training.grpo import vllm_arguments

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a)
    )
    server = stage_config("grpo", {"use_vllm": True, "vllm_mode": "server",
                                   "vllm_server_base_url": "http://10.0.0.2:8000"})  # fmt: skip
    colocate = stage_config("rloo", {"use_vllm": True, "vllm_mode": "colocate",
                                     "vllm_gpu_memory_utilization": 0.25})  # fmt: skip
    assert vllm_arguments(stage_config("grpo", {})) == {}
    with pytest.raises(ConfigError, match="between 0 and 1"):
        stage_config("grpo", {"use_vllm": True, "vllm_mode": "colocate",
                              "vllm_gpu_memory_utilization": 1.5})  # fmt: skip
    for trl_config, cfg in ((GRPOConfig, server), (RLOOConfig, colocate)):
        args = trl_config(output_dir=str(tmp_path / "args"), use_cpu=True, report_to="none",
                          **vllm_arguments(cfg))  # fmt: skip
        assert args.use_vllm and args.vllm_mode == cfg.vllm_mode
    assert GRPOConfig(output_dir=str(tmp_path / "x"), use_cpu=True, report_to="none",
                      **vllm_arguments(server)).vllm_server_base_url == "http://10.0.0.2:8000"  # fmt: skip
