"""KTO stage: TRL `KTOTrainer` on unpaired thumbs up/down, LoRA by default.

The rows are the store's unpaired feedback (`prefloop import` of prompt / completion /
label files: `feedback.parquet` in the run folder) and, unless `from_pairs` is off, each
labelled pair's two sides (chosen: desirable, rejected: undesirable). The held-out pairs
measure the result as DPO's are measured: preference accuracy of the implicit reward
log pi(y|x) - log pi_ref(y|x) (`training.implicit_reward`), which also gates promotion.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from data.errors import ConfigError
from training.hf_trainer import progress_callback, train_measured, trainer_args
from training.implicit_reward import implicit_reward_accuracy, pair_logps, reference_off
from training.models import (
    load_causal_lm,
    load_tokenizer,
    resolve_policy,
    save_adapter,
)
from training.run_context import RunContext, gate, select_rows
from training.runfiles import ARTIFACT, FEEDBACK
from training.stage_config import StageConfig, help_field


@dataclass(frozen=True)
class KTOStageConfig(StageConfig):
    """KTO with LoRA; the reference is the adapter-disabled base."""

    beta: float = help_field(
        0.1, "KTO temperature: how far the policy may move from the reference."
    )
    desirable_weight: float = help_field(
        1.0, "Loss weight of thumbs-up rows (raise it when they are scarcer than thumbs-down)."
    )
    undesirable_weight: float = help_field(1.0, "Loss weight of thumbs-down rows.")
    from_pairs: bool = help_field(
        True, "Also train on each labelled pair's two sides (chosen up, rejected down)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.desirable_weight <= 0 or self.undesirable_weight <= 0:
            raise ConfigError("desirable_weight and undesirable_weight must be above 0")


def unpaired_rows(
    pairs: list[dict[str, Any]], feedback: list[dict[str, Any]], from_pairs: bool
) -> list[dict[str, Any]]:
    """KTO's rows: the feedback as it is, then (optionally) both sides of every pair."""
    rows = [
        {"prompt": f["prompt"], "completion": f["completion"], "label": bool(f["label"])}
        for f in feedback
    ]
    if from_pairs:
        for pair in pairs:
            rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
            rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
    return rows


def read_feedback(ctx: RunContext, split: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    path = ctx.run_dir / FEEDBACK
    if not path.exists():
        return []
    return [row for row in pq.read_table(path).to_pylist() if row["split"] == split]


def run(ctx: RunContext) -> None:
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    cfg = ctx.stage_config(KTOStageConfig)
    pairs = ctx.snapshot()
    train_pairs, test_pairs, counts = select_rows(ctx, pairs, cfg) if pairs else ([], [], {})
    train_rows = unpaired_rows(train_pairs, read_feedback(ctx, "train"), cfg.from_pairs)
    random.Random(cfg.seed).shuffle(train_rows)
    labels = [r["label"] for r in train_rows]
    if not any(labels) or all(labels):
        raise ConfigError(
            f"KTO needs thumbs-up and thumbs-down rows; this run has {sum(labels)} up and "
            f"{len(labels) - sum(labels)} down (import more feedback, or keep from_pairs on)"
        )
    counts.update(kto_rows=len(train_rows), kto_desirable=sum(labels))
    policy = resolve_policy(ctx, cfg, pairs)
    tokenizer = load_tokenizer(policy)
    model, peft_config = load_causal_lm(policy, ctx.config.get("warm_start"), cfg)
    args = trainer_args(
        ctx,
        cfg,
        KTOConfig,
        0,  # held-out pairs are measured below, by their implicit reward
        beta=cfg.beta,
        desirable_weight=cfg.desirable_weight,
        undesirable_weight=cfg.undesirable_weight,
        max_length=cfg.max_length,
        remove_unused_columns=False,
        # KTO's KL term pairs each row with its batch neighbours: a fixed order (shuffled above)
        train_sampling_strategy="sequential",
    )
    trainer = KTOTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        peft_config=peft_config,
        train_dataset=Dataset.from_list(train_rows),
        callbacks=[progress_callback(ctx, None, 0)],
    )
    # a full fine-tune has no adapter to switch off: its reference is measured before training
    reference = None
    if test_pairs and peft_config is None and ctx.config.get("warm_start") is None:
        reference = pair_logps(trainer.model, tokenizer, test_pairs, max_length=cfg.max_length)
    metrics: dict[str, Any] = {**train_measured(trainer), **counts}
    if test_pairs:
        ctx.status("running", message="held-out pairs: implicit reward")
        trained = pair_logps(trainer.model, tokenizer, test_pairs, max_length=cfg.max_length)
        if reference is None:
            with reference_off(trainer.model):
                reference = pair_logps(
                    trainer.model, tokenizer, test_pairs, max_length=cfg.max_length
                )
        result = implicit_reward_accuracy(trained, reference)
        if not math.isnan(result["accuracy"]):
            metrics["heldout_accuracy"] = result["accuracy"]
            metrics["heldout_margin"] = result["margin"]
    promote, metrics["gate"] = gate(ctx, metrics.get("heldout_accuracy"))
    save_adapter(ctx, trainer.model, tokenizer, policy)
    ctx.finish(metrics, artifact=ARTIFACT, promote=promote, extra={"base_policy": policy})
