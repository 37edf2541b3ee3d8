"""The settings every stage shares (`StageConfig`) and how a stage's config is built.

No torch here: the owning process (`training.jobs`) validates overrides with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from data.errors import ConfigError

C = TypeVar("C")


def help_field(default: Any, help: str) -> Any:
    """A dataclass field with help text (TRL style: `metadata={"help": ...}`)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class StageConfig:
    """Settings every stage shares; each stage's config adds its own."""

    max_steps: int = help_field(40, "Optimizer steps (upper bound; early stopping may end sooner).")
    learning_rate: float = help_field(
        5e-4, "Peak learning rate (LoRA on a tiny model likes it high)."
    )
    batch_size: int = help_field(8, "Pairs or sequences per device per step.")
    max_length: int = help_field(256, "Tokens per sequence; longer prompts are cut at the start.")
    use_lora: bool = help_field(True, "Train a LoRA adapter (PEFT) instead of all weights.")
    lora_r: int = help_field(16, "LoRA rank.")
    lora_alpha: int = help_field(32, "LoRA scaling numerator (alpha / r scales the update).")
    bucket_by_length: bool = help_field(True, "Batch sequences of similar length (less padding).")
    compact_scoring: bool = help_field(
        True,
        "CPU: TRL's fused LM head scores only completion tokens, as it does on CUDA (TRL "
        "scores every prompt position too off-CUDA). Same values; off: TRL as shipped.",
    )
    bf16: bool | None = help_field(
        None,
        "Mixed precision. None: bf16 autocast on a GPU that supports it, and a LoRA run "
        "keeps its frozen base in bf16 (a full fine-tune keeps fp32 master weights); "
        "False: fp32 throughout; True: bf16 even where None would not choose it.",
    )
    gradient_checkpointing: bool = help_field(
        False,
        "Recompute activations during the backward pass: less memory, about a third more "
        "compute. TRL turns it on by default; turn it on for models that do not fit in memory.",
    )
    eval_every: int = help_field(10, "Evaluate held-out accuracy every N steps (0: never).")
    patience: int = help_field(3, "Early stop after N evaluations without improvement (0: off).")
    stop_at_accuracy: float | None = help_field(
        None, "Stop as soon as held-out preference accuracy reaches this (e.g. the parent's)."
    )
    max_heldout_rows: int = help_field(128, "Held-out pairs used for evaluation (a seeded sample).")
    replay_ratio: float = help_field(1.0, "Incremental runs: old pairs replayed per new pair.")
    min_replay: int = help_field(16, "Incremental runs: replay at least this many old pairs.")
    seed: int = help_field(0, "Random seed for data order, replay sample and initialisation.")
    report_to: str = help_field(
        "auto",
        "Experiment tracking, passed to TRL: none, tensorboard, wandb, mlflow, trackio (or a "
        "comma list). auto: TensorBoard event files in the run folder when tensorboard is "
        "installed. A named tracker must be installed, and gets its own environment "
        "variables (WANDB_API_KEY, MLFLOW_TRACKING_URI, ...).",
    )
    tiny_layers: int = help_field(4, "Embedded default policy: transformer layers.")
    tiny_width: int = help_field(192, "Embedded default policy: hidden size.")
    tiny_vocab: int = help_field(
        4096, "Embedded default policy: BPE vocabulary trained on the store's texts."
    )

    def __post_init__(self) -> None:  # at submit: a tracker that is not there fails now
        from training.tracking import check_report_to

        check_report_to(self.report_to)

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        return config_from_dict(cls, values)


PROFILES = ("tiny", "pretrained")
"""Which defaults a run starts from: `tiny` (the embedded random GPT-2 and what descends
from it: the dataclass defaults above) or `pretrained` (a real model such as SmolLM2:
`PRETRAINED_DEFAULTS` over them). The planner picks it from the policy; `--set` wins."""

PRETRAINED_DEFAULTS: dict[str, dict[str, Any]] = {
    # every stage; sized so a demo retrain of SmolLM2-135M fits 10 minutes on 2 CPU cores
    # (bench/RESULTS-training.md, "SmolLM2 demo retrain")
    "*": {
        "learning_rate": 2e-4,
        "max_steps": 12,
        "batch_size": 4,
        "max_length": 192,
        "max_heldout_rows": 32,
        "eval_every": 0,
    },
    # instruction-tuned already: SFT is optional, and trains a LoRA adapter (merged) if run
    "SFTStageConfig": {"use_lora": True, "learning_rate": 1e-4},
}


def profile_defaults(cls: type, profile: str | None) -> dict[str, Any]:
    """The settings `profile` changes for the config class `cls` (only its own fields)."""
    if profile != "pretrained":
        return {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {**PRETRAINED_DEFAULTS["*"], **PRETRAINED_DEFAULTS.get(cls.__name__, {})}
    return {k: v for k, v in values.items() if k in names}


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build a config dataclass; unknown keys are an error that lists the valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid: {', '.join(sorted(names))}"
        )
    return cls(**values)
