"""What one `prefloop loop` does: a frozen config whose fields carry the CLI's help text."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from data.errors import ConfigError

PIPELINES = ("dpo", "rm+ppo", "rm+grpo", "rm+rloo")
REWARDS = ("rm", "judge")


def _help(default: Any, text: str, **kwargs: Any) -> Any:
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata={"help": text})
    return field(default=default, metadata={"help": text}, **kwargs)


@dataclass(frozen=True)
class LoopConfig:
    """Options of one loop; stored in `loops.config` so `--resume` runs the same plan."""

    rounds: int = _help(3, "Rounds to run (fewer when the loop stops early).")
    pipeline: str = _help(
        "dpo",
        "What each round trains: dpo (incremental DPO on the labels), or rm+ppo / rm+grpo / "
        "rm+rloo (an incremental reward model, then the policy against it).",
    )
    policy: str | None = _help(
        None,
        "Base policy the policy runs train from (a folder, a Hugging Face id or "
        "smollm2-135m-instruct); round 1 samples from the last promoted policy, else this. "
        "Default: the latest promoted SFT model, else smollm2-135m-instruct.",
    )
    human_budget_per_round: int = _help(
        8, "Pairs each round adds to the human queue (where the automatic label is riskiest)."
    )
    judge_base_url: str | None = _help(
        None,
        "OpenAI-compatible endpoint of the judge, e.g. http://127.0.0.1:8000/v1 (default: "
        "$OPENAI_BASE_URL); the key comes from $OPENAI_API_KEY and is never stored.",
    )
    judge_models: tuple[str, ...] = _help(
        (), "Judge model; repeat for a panel. Without one the loop skips the judge stage."
    )
    judge_concurrency: int = _help(16, "Judge requests in flight at once.")
    reward: str = _help(
        "rm",
        "Reward of the RL stages: rm (the round's reward model) or judge (RLAIF, rm+grpo and "
        "rm+rloo only: the judge's P(completion better than the prompt's preferred response), "
        "through the judge cache; no reward model is trained).",
    )
    generate_n: int = _help(2, "Responses sampled per prompt each round (pairs: n choose 2).")
    prompts_per_round: int = _help(
        8, "Prompts each round samples for (the store's prompts in turn, by prompt id)."
    )
    max_new_tokens: int = _help(24, "Tokens per sampled response.")
    wait_for_humans: int | None = _help(
        None,
        "Make each round's cut-off wait until this many new human labels arrived (bounded by "
        "--human-deadline, default 600 s). Default: never wait; late labels go to the next round.",
    )
    human_deadline: float | None = _help(
        None,
        "Seconds each round's cut-off waits for human labels (alone: wait this long; with "
        "--wait-for-humans: at most this long).",
    )
    overlap: bool = _help(
        True,
        "Run stages without a data dependency at the same time (off: --no-overlap, one stage "
        "after another, as by hand).",
    )
    warm_trainers: bool = _help(
        True,
        "Fork each run from one process that has imported torch, transformers and TRL, so a "
        "run starts in milliseconds (off: --no-warm-trainers, every run a cold process).",
    )
    max_steps: int | None = _help(None, "Optimizer steps per training run (default: the stage's).")
    train_settings: dict[str, Any] = _help(
        {}, "Stage settings for every training run, e.g. --set beta=0.2 (see training/<stage>.py)."
    )
    min_gain: float = _help(
        0.0,
        "Early stop when the held-out metric gained less than this over the last two rounds.",
    )
    seed: int = _help(0, "Seed of routing and sampling.")
    runs_root: str | None = _help(None, "Folder for run folders. Default: runs/ next to the store.")

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"--rounds {self.rounds}: run at least 1 round")
        if self.pipeline not in PIPELINES:
            raise ConfigError(f"--pipeline {self.pipeline!r} is not one of {', '.join(PIPELINES)}")
        if self.policy == "tiny":
            raise ConfigError(
                "--policy tiny cannot sample responses (it is built inside each run): pass a "
                "policy folder, e.g. the artifact of `prefloop train sft --policy tiny`"
            )
        if self.reward not in REWARDS:
            raise ConfigError(f"--reward {self.reward!r} is not one of {', '.join(REWARDS)}")
        if self.reward == "judge" and self.pipeline not in ("rm+grpo", "rm+rloo"):
            raise ConfigError(
                f"--reward judge rewards GRPO or RLOO: use --pipeline rm+grpo or rm+rloo, not "
                f"{self.pipeline}"
            )
        if self.reward == "judge" and not self.judge_models:
            raise ConfigError("--reward judge needs a judge: pass --judge-model (and its URL)")
        if self.human_budget_per_round < 0:
            raise ConfigError("--human-budget-per-round must be >= 0")
        if self.generate_n < 2:
            raise ConfigError(f"--generate-n {self.generate_n}: sample at least 2 to form pairs")
        if self.prompts_per_round < 1:
            raise ConfigError("--prompts-per-round must be at least 1")
        if self.judge_concurrency < 1:
            raise ConfigError("--judge-concurrency must be at least 1")
        if self.wait_for_humans is not None and self.wait_for_humans < 1:
            raise ConfigError("--wait-for-humans must be at least 1 label")
        if self.human_deadline is not None and self.human_deadline <= 0:
            raise ConfigError("--human-deadline must be positive seconds")

    @property
    def stages(self) -> tuple[str, ...]:
        """The training stages of one round, in order (e.g. ("rm", "ppo"); with the judge as
        the reward, only the policy stage)."""
        stages = tuple(self.pipeline.split("+"))
        return stages[1:] if self.reward == "judge" else stages

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LoopConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in values.items() if k in names}
        if "judge_models" in kept:
            kept["judge_models"] = tuple(kept["judge_models"])
        return cls(**kept)


def help_of(name: str) -> str:
    """The help text of a `LoopConfig` field (the CLI's flags take it from here)."""
    return {f.name: f for f in dataclasses.fields(LoopConfig)}[name].metadata["help"]
