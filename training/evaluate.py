"""Evaluation runs: preference accuracy of a reward model, an ensemble or a policy.

The owner writes the labelled file's decided pairs to `eval_pairs.parquet`
(`training.planning.plan_evaluate`); this scores each pair's chosen and rejected response
and counts the pairs the model ranks the right way round, overall and per category, with
95% Wilson intervals:

* `rm`: a reward model run's artifact (or any sequence-classification reward model);
* `ensemble`: an ensemble artifact folder (its mean reward: lambda 0);
* `policy`: a LoRA policy (DPO, KTO, ...) by its implicit reward against its reference,
  the same model with the adapter switched off.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.errors import ConfigError
from data.intervals import accuracy_with_interval
from training.run_context import RunContext
from training.runfiles import EVAL_PAIRS
from training.stage_config import config_from_dict, help_field
from training.stages import EVAL_MODEL_KINDS


@dataclass(frozen=True)
class EvaluateConfig:
    """What is evaluated and how."""

    model_kind: str = help_field("rm", "rm, ensemble or policy (implicit reward of a LoRA policy).")
    category_field: str | None = help_field(
        None, "The file's field that names each row's category (default: subset, else category)."
    )
    max_length: int = help_field(
        256, "Tokens per prompt + response (the prompt is cut at the start)."
    )
    batch_size: int = help_field(8, "Sequences per forward pass.")

    def __post_init__(self) -> None:
        if self.model_kind not in EVAL_MODEL_KINDS:
            raise ConfigError(
                f"model_kind={self.model_kind!r}: use one of {', '.join(EVAL_MODEL_KINDS)}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluateConfig:
        return config_from_dict(cls, values)


def margins(cfg: EvaluateConfig, model: str, rows: list[dict[str, Any]]) -> list[float]:
    """Per pair: the model's score of chosen minus its score of rejected."""
    prompts = [r["prompt"] for r in rows]
    if cfg.model_kind in ("rm", "ensemble"):
        from training.rewards import load_reward_fn

        score = load_reward_fn(model, conservative_lambda=0.0, max_length=cfg.max_length)
        chosen = score(prompts, [r["chosen"] for r in rows])
        rejected = score(prompts, [r["rejected"] for r in rows])
        return [c - r for c, r in zip(chosen, rejected, strict=True)]
    from training.implicit_reward import implicit_reward_margins, pair_logps, reference_off
    from training.models import load_tokenizer

    policy = load_lora_policy(model)
    tokenizer = load_tokenizer(model)
    trained = pair_logps(policy, tokenizer, rows, max_length=cfg.max_length)
    with reference_off(policy):
        reference = pair_logps(policy, tokenizer, rows, max_length=cfg.max_length)
    return implicit_reward_margins(trained, reference)


def load_lora_policy(folder: str) -> Any:
    """A LoRA policy with its adapter attached (not merged): its reference is one switch away."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from data.models import resolve_model

    base_file = Path(folder) / "prefloop_base.txt"
    if not base_file.exists():
        raise ConfigError(
            f"{folder} is not a LoRA policy from prefloop (no prefloop_base.txt): a policy is "
            "measured against its reference, the base without the adapter"
        )
    base = AutoModelForCausalLM.from_pretrained(
        resolve_model(base_file.read_text(encoding="utf-8").strip()), dtype=torch.float32
    )
    return PeftModel.from_pretrained(base, folder).eval()


def accuracy_report(rows: list[dict[str, Any]], pair_margins: list[float]) -> dict[str, Any]:
    """Overall and per-category accuracy (a pair is right when its margin is above 0)."""
    by_category: dict[str, list[bool]] = defaultdict(list)
    for row, margin in zip(rows, pair_margins, strict=True):
        by_category[row.get("category") or ""].append(margin > 0)
    right = sum(sum(v) for v in by_category.values())
    report = accuracy_with_interval(right, len(pair_margins))
    report["mean_margin"] = sum(pair_margins) / len(pair_margins) if pair_margins else None
    named = {k: v for k, v in by_category.items() if k}
    if named:
        report["categories"] = {
            name: accuracy_with_interval(sum(hits), len(hits))
            for name, hits in sorted(named.items())
        }
    return report


def run(ctx: RunContext) -> None:
    import pyarrow.parquet as pq

    cfg = ctx.stage_config(EvaluateConfig)
    rows = pq.read_table(ctx.run_dir / EVAL_PAIRS).to_pylist()
    model = str(ctx.config["policy"])
    ctx.status("running", message=f"scoring {len(rows)} pairs with the {cfg.model_kind}")
    report = accuracy_report(rows, margins(cfg, model, rows))
    metrics = {
        "model": model,
        "model_kind": cfg.model_kind,
        "eval_file": ctx.config.get("eval_file"),
        "heldout_accuracy": report["accuracy"],  # the Runs table's accuracy column
        **report,
    }
    ctx.finish(metrics, artifact=None, promote=False)
