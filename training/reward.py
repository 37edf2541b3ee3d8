"""Reward-model stage: TRL `RewardTrainer` (Bradley-Terry) on any causal-LM base, LoRA by
default. Its artifact (adapter + score head, or a full model) gives PPO/GRPO rewards.

The fast embedding ensemble used for active learning is fitted by `labeling/`; PPO/GRPO
can use it instead through `training.ensemble_reward` (see docs/ENSEMBLE_ARTIFACT.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.hf_trainer import final_evaluation, progress_callback, train_measured, trainer_args
from training.models import (
    load_tokenizer,
    lora_config,
    resolve_policy,
    save_adapter,
)
from training.run_context import RunContext, gate, select_rows
from training.runfiles import ARTIFACT
from training.stage_config import StageConfig, help_field


@dataclass(frozen=True)
class RewardStageConfig(StageConfig):
    """Reward model on chosen/rejected pairs."""

    learning_rate: float = help_field(1e-3, "Peak learning rate.")
    center_rewards: float | None = help_field(
        0.01, "Pull mean reward to 0 with this weight (None: off)."
    )


def load_reward_model(base: str, adapter: str | None = None, trainable: bool = False):
    """Sequence-classification model with one output, optionally with a LoRA adapter merged in."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from data.models import resolve_model

    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(base), num_labels=1, dtype=torch.float32
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
        if not trainable:
            model = model.merge_and_unload()
    return model


def run(ctx: RunContext) -> None:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    cfg = ctx.stage_config(RewardStageConfig)
    rows = ctx.snapshot()
    train_rows, test_rows, counts = select_rows(ctx, rows, cfg)
    policy = resolve_policy(ctx, cfg, rows)
    tokenizer = load_tokenizer(policy)
    warm = ctx.config.get("warm_start")
    model = load_reward_model(policy, warm, trainable=True)
    peft_config = None if warm or not cfg.use_lora else lora_config(cfg, "SEQ_CLS")

    def as_dataset(items: list[dict[str, Any]]):
        return Dataset.from_list(
            [
                {
                    "prompt": r["prompt"],
                    "chosen": r["chosen"],
                    "rejected": r["rejected"],
                    "length": len(r["prompt"])
                    + max(len(r["chosen"]), len(r["rejected"])),  # for bucketing
                }
                for r in items
            ]
        )

    args = trainer_args(
        ctx,
        cfg,
        RewardConfig,
        len(test_rows),
        max_length=cfg.max_length,
        center_rewards_coefficient=cfg.center_rewards,
        remove_unused_columns=False,
    )
    progress = progress_callback(ctx, "eval_accuracy", cfg.patience, stop_at=cfg.stop_at_accuracy)
    trainer = RewardTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        peft_config=peft_config,
        train_dataset=as_dataset(train_rows),
        eval_dataset=as_dataset(test_rows) if test_rows else None,
        callbacks=[progress],
    )
    metrics: dict[str, Any] = {**train_measured(trainer), **counts}
    if test_rows:
        evaluation, metrics["final_eval_reused"] = final_evaluation(trainer, progress)
        metrics["heldout_accuracy"] = float(evaluation["eval_accuracy"])
    promote, metrics["gate"] = gate(ctx, metrics.get("heldout_accuracy"))
    save_adapter(ctx, trainer.model, tokenizer, policy)
    ctx.finish(metrics, artifact=ARTIFACT, promote=promote, extra={"base_policy": policy})
