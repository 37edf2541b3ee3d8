"""The stages a run can be, in one table, and the request that asks for one.

Every list of stages reads `STAGES`: the choices of `prefloop train` and of
`python -m training`, the trainer module and config class of each, which stages leave a
policy (generation starts from the latest), which need a reward, which may run in several
processes. Config classes are named, not imported: this module imports no torch, so the
process that owns the store (CLI, app) reads it freely.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from data.endpoints import parse_base_urls
from data.errors import ConfigError


@dataclass(frozen=True)
class Stage:
    """One kind of run: what trains it, with which settings, and what it needs."""

    name: str  # `prefloop train NAME`, `python -m training NAME`, the `runs.kind` column
    module: str  # the trainer module; `python -m training` calls its `run(ctx)`
    config: str  # the frozen config dataclass in `module` (`--set` takes its fields)
    trains_policy: bool  # its artifact is a policy (later stages and generation start from it)
    needs_reward: bool  # RL: needs a reward model or an ensemble (`--reward`)
    multi_process: bool  # may run under `accelerate launch` (`--num-processes N`, N > 1)
    help: str  # one line: what it does
    trains: bool = True  # False for generate: it samples from a policy and trains nothing
    unpaired: bool = False  # also trains on unpaired thumbs up/down rows (`data.feedback`)
    # runs next to a training run when the manager has a side lane (`prefloop loop`):
    # generation, and the reference pass that fills the cache for the next DPO run
    side_lane: bool = False


STAGES: tuple[Stage, ...] = (
    Stage(
        "sft",
        "training.sft",
        "SFTStageConfig",
        trains_policy=True,
        needs_reward=False,
        multi_process=True,
        help="supervised fine-tuning on the chosen responses (TRL SFTTrainer)",
    ),
    Stage(
        "rm",
        "training.reward",
        "RewardStageConfig",
        trains_policy=False,
        needs_reward=False,
        multi_process=True,
        help="a reward model on the preference pairs (TRL RewardTrainer)",
    ),
    Stage(
        "dpo",
        "training.dpo",
        "DPOStageConfig",
        trains_policy=True,
        needs_reward=False,
        multi_process=True,
        help="direct preference optimisation on the pairs (TRL DPOTrainer)",
    ),
    Stage(
        "kto",
        "training.kto",
        "KTOStageConfig",
        trains_policy=True,
        needs_reward=False,
        multi_process=True,
        help="KTO on thumbs up/down: unpaired feedback and each pair's two sides (TRL KTOTrainer)",
        unpaired=True,
    ),
    Stage(
        "ppo",
        "training.ppo",
        "PPOStageConfig",
        trains_policy=True,
        needs_reward=True,
        multi_process=False,
        help="PPO against a reward (prefloop's own loop, one process)",
    ),
    Stage(
        "grpo",
        "training.grpo",
        "GRPOStageConfig",
        trains_policy=True,
        needs_reward=True,
        multi_process=True,
        help="GRPO against a reward (TRL GRPOTrainer)",
    ),
    Stage(
        "rloo",
        "training.rloo",
        "RLOOStageConfig",
        trains_policy=True,
        needs_reward=True,
        multi_process=True,
        help="RLOO against a reward (TRL RLOOTrainer, leave-one-out baseline)",
    ),
    Stage(
        "evaluate",
        "training.evaluate",
        "EvaluateConfig",
        trains_policy=False,
        needs_reward=False,
        multi_process=False,
        help="preference accuracy of a reward model, ensemble or policy on a labelled file",
        trains=False,
    ),
    Stage(
        "generate",
        "training.generate",
        "GenerateConfig",
        trains_policy=False,
        needs_reward=False,
        multi_process=False,
        help="sample responses from a policy and pair them per prompt",
        trains=False,
        side_lane=True,
    ),
    Stage(
        "rollouts",
        "training.pre_rollouts",
        "PPOStageConfig",
        trains_policy=False,
        needs_reward=False,
        multi_process=False,
        help="a PPO run's first rollout batch, sampled ahead of it (while its reward trains)",
        trains=False,
        side_lane=True,
    ),
    Stage(
        "reference",
        "training.reference_pass",
        "DPOStageConfig",
        trains_policy=False,
        needs_reward=False,
        multi_process=False,
        help="reference log-probs of stored pairs the cache lacks, for the DPO runs after it",
        trains=False,
        side_lane=True,
    ),
)


# what an evaluation run measures (`prefloop eval --model`, training/evaluate.py)
EVAL_MODEL_KINDS = ("rm", "ensemble", "policy")


# `--distributed`: how several processes share a run (training/accelerate/*.yaml); the
# sharded ones are for the stages trained by TRL's Trainer on the pairs
DISTRIBUTED = ("ddp", "fsdp", "zero3")
SHARDED_STAGES = ("sft", "rm", "dpo")


def kind_names() -> tuple[str, ...]:
    """Every kind of run: the training stages, then evaluate and generate."""
    return tuple(s.name for s in STAGES)


def stage_names() -> tuple[str, ...]:
    """The stages that train something (the choices of `prefloop train`)."""
    return tuple(s.name for s in STAGES if s.trains)


def side_lane_kinds() -> tuple[str, ...]:
    """The kinds of run that may go next to a training run (`Stage.side_lane`)."""
    return tuple(s.name for s in STAGES if s.side_lane)


def policy_stages() -> tuple[str, ...]:
    """The stages whose artifact is a policy."""
    return tuple(s.name for s in STAGES if s.trains_policy)


def reward_stages() -> tuple[str, ...]:
    """The stages that train against a reward model or an ensemble."""
    return tuple(s.name for s in STAGES if s.needs_reward)


def get_stage(name: str) -> Stage:
    """The stage called `name`; `ConfigError` naming the valid ones if there is none."""
    for s in STAGES:
        if s.name == name:
            return s
    raise ConfigError(f"unknown stage {name!r}; use one of {', '.join(kind_names())}")


@dataclass(frozen=True)
class TrainRequest:
    """What `prefloop train` asks for; stage-specific settings go in `overrides`."""

    stage: str  # a name in STAGES: sft, rm, dpo, kto, ppo, grpo, rloo, generate or evaluate
    policy: str | None = (
        None  # HF id, local path, "tiny" or a named model; None: latest promoted SFT, else DEFAULT_POLICY
    )
    incremental: bool = (
        False  # warm start from the last promoted run of this stage, new labels + replay
    )
    max_steps: int | None = None  # cap on optimizer steps (None: the stage's default)
    num_processes: int = 1  # >1 launches through `accelerate launch` (gloo on CPU)
    reward: str | None = (
        None  # ppo/grpo/rloo: "rm" (latest promoted reward model), or a path to an ensemble artifact folder
    )
    test_fraction: float = 0.1  # held-out share of prompts (split by prompt hash)
    overrides: dict[str, Any] = field(
        default_factory=dict
    )  # fields of the stage's config dataclass
    prompts: str = "all"  # generate only: all, unlabelled, or a .txt/.jsonl file of prompts
    max_prompts: int | None = None  # generate only: at most this many of those prompts
    eval_file: str | None = None  # evaluate only: the labelled file (`prefloop eval --model`)
    # generate only: sample from these OpenAI-compatible servers (replicas of one model)
    # instead of a policy in the run's process (training/remote_generate.py)
    endpoints: tuple[str, ...] = ()
    endpoint_model: str | None = None  # the model name the servers serve
    concurrency: int = 8  # requests in flight at once, over all endpoints
    per_endpoint_concurrency: int | None = None  # and on each endpoint
    max_retries: int = 3  # the SDK's retries of one request (429, 5xx, timeouts, connections)
    # several processes: ddp, fsdp (PyTorch FSDP2) or zero3 (DeepSpeed ZeRO-3); see
    # training/accelerate/ and training/launch.py
    distributed: str = "ddp"
    # train only on labels up to this label id (a loop round's cut-off); None: all of them
    label_cutoff: int | None = None
    # reference only: a .txt file of pair ids (one a line) to compute; None: every pair
    pairs: str | None = None

    def __post_init__(self) -> None:
        stage = get_stage(self.stage)
        if self.num_processes < 1:
            raise ConfigError("--num-processes must be at least 1")
        if self.num_processes > 1 and not stage.multi_process:
            raise ConfigError(
                f"{self.stage} runs in one process; drop --num-processes "
                "(use grpo for multi-process RL)"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("--max-steps must be at least 1")
        if self.label_cutoff is not None and self.label_cutoff < 0:
            raise ConfigError("--label-cutoff must be a label id (0 or more)")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ConfigError("--max-prompts must be at least 1")
        self._check_distributed(stage)
        object.__setattr__(self, "endpoints", parse_base_urls(self.endpoints))
        if self.endpoints and self.stage != "generate":
            raise ConfigError(f"{self.stage} trains in its own process; --base-url is for generate")
        if self.endpoints and not self.endpoint_model:
            raise ConfigError(
                "--base-url needs --model NAME: the model the server serves (e.g. the name "
                "given to `vllm serve`, or the one `curl URL/models` lists)"
            )
        if self.endpoint_model and not self.endpoints:
            raise ConfigError(
                "--model names a model on a server: add --base-url URL (e.g. "
                "http://127.0.0.1:8000/v1), or sample in-process with --policy instead"
            )
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1 (got {self.concurrency})")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be >= 0 (got {self.max_retries})")
        if self.per_endpoint_concurrency is not None and self.per_endpoint_concurrency < 1:
            raise ConfigError(
                f"--per-endpoint-concurrency must be at least 1 (got {self.per_endpoint_concurrency})"
            )

    def _check_distributed(self, stage: Stage) -> None:
        if self.distributed not in DISTRIBUTED:
            raise ConfigError(
                f"--distributed {self.distributed!r} is not one of {', '.join(DISTRIBUTED)}"
            )
        if self.distributed == "ddp":
            return
        if self.stage not in SHARDED_STAGES:
            raise ConfigError(
                f"--distributed {self.distributed} is for {', '.join(SHARDED_STAGES)}; "
                f"{self.stage} runs with ddp"
            )
        if self.distributed == "zero3" and importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(
                "--distributed zero3 needs DeepSpeed, which is not installed here: on a machine "
                "with CUDA GPUs run `pip install deepspeed`, or use --distributed fsdp"
            )


def stage_config(stage: str, overrides: dict[str, Any] | None = None) -> Any:
    """The stage's frozen config with `overrides` applied (stage modules import torch lazily)."""
    import importlib

    from training.stage_config import config_from_dict

    info = get_stage(stage)
    config_class = getattr(importlib.import_module(info.module), info.config)
    return config_from_dict(config_class, dict(overrides or {}))
