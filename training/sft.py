"""SFT stage: TRL `SFTTrainer` on the chosen responses (prompt -> completion loss only).

With no `--policy` this builds and warms the embedded default (a GPT-2-shaped model of a
few million parameters with a BPE tokenizer trained on the store's texts); its artifact
is a full model folder that later stages use as their base policy and reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.hf_trainer import progress_callback, train_measured, trainer_args
from training.models import (
    load_causal_lm,
    load_tokenizer,
    resolve_policy,
)
from training.run_context import RunContext, select_rows
from training.runfiles import ARTIFACT
from training.stage_config import StageConfig, help_field
from training.trl_fixes import score_completions_only_on_cpu


@dataclass(frozen=True)
class SFTStageConfig(StageConfig):
    """SFT on chosen responses."""

    max_steps: int = help_field(60, "Optimizer steps (upper bound; early stopping may end sooner).")
    learning_rate: float = help_field(1e-3, "Peak learning rate (full fine-tune of a tiny model).")
    use_lora: bool = help_field(
        False, "Train a LoRA adapter and merge it; default trains all weights."
    )
    eval_every: int = help_field(0, "Evaluate held-out loss every N steps (0: only at the end).")


def run(ctx: RunContext) -> None:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    cfg = ctx.stage_config(SFTStageConfig)
    score_completions_only_on_cpu(cfg.compact_scoring)  # see trl_fixes
    rows = ctx.snapshot()
    train_rows, test_rows, counts = select_rows(ctx, rows, cfg)
    policy = resolve_policy(ctx, cfg, rows)
    tokenizer = load_tokenizer(policy)
    warm = ctx.config.get("warm_start")  # an SFT artifact is a full model: continue from it
    model, peft_config = load_causal_lm(warm or policy, None, cfg)

    def as_dataset(items):
        return Dataset.from_list(
            [{"prompt": r["prompt"], "completion": r["chosen"]} for r in items]
        )

    args = trainer_args(
        ctx,
        cfg,
        SFTConfig,
        len(test_rows),
        max_length=cfg.max_length,
        completion_only_loss=True,
        packing=False,
        truncation_mode="keep_end",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=as_dataset(train_rows),
        eval_dataset=as_dataset(test_rows) if test_rows else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[progress_callback(ctx, "eval_loss", cfg.patience, greater_is_better=False)],
    )
    metrics = {**train_measured(trainer), **counts}
    if test_rows:
        metrics["heldout_loss"] = trainer.evaluate()["eval_loss"]
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if ctx.is_main:
        model.save_pretrained(ctx.run_dir / ARTIFACT)
        tokenizer.save_pretrained(ctx.run_dir / ARTIFACT)
    ctx.finish(metrics, artifact=ARTIFACT, promote=True, extra={"base_policy": policy})
