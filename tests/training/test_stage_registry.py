"""The stage table (`training/stages.py`) is what every list of stages reads."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from data.errors import ConfigError
from training import stages
from training.jobs import KINDS, POLICY_STAGES, STAGES, TrainRequest


def test_each_stage_names_a_trainer_and_a_frozen_config() -> None:
    for stage in stages.STAGES:
        module = importlib.import_module(stage.module)  # trainers import torch lazily
        assert callable(module.run), stage.name
        config = getattr(module, stage.config)
        assert dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen
        assert stage.help


def test_the_lists_read_the_table() -> None:
    from app.commands.train import train_command
    from app.ui.train_jobs import TRAIN_KINDS, TRAIN_STAGES

    assert STAGES == ("sft", "rm", "dpo", "kto", "ppo", "grpo", "rloo")
    assert list(KINDS) == [*STAGES, "evaluate", "generate", "rollouts", "reference"]
    assert stages.side_lane_kinds() == ("generate", "rollouts", "reference")
    assert POLICY_STAGES == ("sft", "dpo", "kto", "ppo", "grpo", "rloo")
    assert stages.reward_stages() == ("ppo", "grpo", "rloo")
    assert tuple(train_command.params[0].type.choices) == STAGES
    assert TRAIN_KINDS == ("dpo", "rm+ppo", "rm+grpo", "rm+rloo", "rm")
    assert set(TRAIN_STAGES) <= set(STAGES)


def test_a_request_checks_its_stage() -> None:
    with pytest.raises(ConfigError, match="unknown stage 'sgd'"):
        TrainRequest("sgd")
    with pytest.raises(ConfigError, match="ppo runs in one process"):
        TrainRequest("ppo", num_processes=2)
    assert TrainRequest("grpo", num_processes=2).num_processes == 2
