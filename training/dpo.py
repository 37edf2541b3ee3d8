"""DPO stage: TRL `DPOTrainer` with LoRA, the adapter-disabled base as reference, and a
reference log-prob cache that survives across runs.

Reference cache: the snapshot carries the reference log-prob of every (prompt, response)
already in the store's `ref_logprobs` table for this (reference model hash, template
hash). `CachedReferenceDPOTrainer` fills in only the missing ones (one reference forward
pass per new pair) and writes them to `ref_logprobs.parquet` for the owner to cache.
TRL's own `precompute_ref_log_probs` would recompute every pair on every run.

Incremental runs (`--incremental`) warm start from the last promoted adapter, train on
the new pairs plus a replay sample, stop early on held-out preference accuracy
(`eval_rewards/accuracies`) and are promoted only if that accuracy did not drop.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

from data.errors import ConfigError
from training.hf_trainer import final_evaluation, progress_callback, train_measured, trainer_args
from training.models import (
    device_kind,
    load_causal_lm,
    load_tokenizer,
    resolve_policy,
    save_adapter,
)
from training.run_context import RunContext, gate, select_rows
from training.runfiles import ARTIFACT, REF_LOGPROBS
from training.snapshot import model_hash
from training.stage_config import StageConfig, help_field
from training.trl_fixes import score_completions_only_on_cpu


@dataclass(frozen=True)
class DPOStageConfig(StageConfig):
    """DPO with LoRA and a cached reference."""

    beta: float = help_field(
        0.1, "DPO temperature: how far the policy may move from the reference."
    )
    cache_reference: bool = help_field(
        True, "Reuse cached reference log-probs; compute only new pairs."
    )
    share_prompt: bool = help_field(
        True,
        "Reference pass: run each pair's prompt once and reuse its key/value cache for "
        "chosen and rejected (pairs cut by max_length take TRL's per-sequence path).",
    )
    ref_batch_size: int | None = help_field(
        None,
        "Pairs per reference forward batch (sorted by length, no gradients). None: 2 on "
        "CPU, where a batch's padding costs more than batching saves, else batch_size.",
    )
    loss_type: str = help_field(
        "sigmoid",
        "TRL's DPO loss: sigmoid (DPO), ipo, hinge, robust, bco_pair, sppo_hard, nca_pair, "
        "exo_pair, aot, aot_unpaired, apo_zero, apo_down, discopop, sigmoid_norm, sft; a comma "
        "list combines them (e.g. sigmoid,sft for RPO-style), weighted by loss_weights.",
    )
    loss_weights: str | None = help_field(
        None, "Comma list of weights, one per loss_type (None: 1 each)."
    )
    label_smoothing: float = help_field(
        0.0, "Assumed label noise in [0, 0.5) for the robust / conservative (cDPO) losses."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [t for t in self.loss_types if t not in DPO_LOSS_TYPES]
        if unknown or not self.loss_types:
            raise ConfigError(
                f"loss_type={self.loss_type!r}: use one or more (comma list) of "
                f"{', '.join(DPO_LOSS_TYPES)}"
            )
        if self.loss_weights is not None and len(self.weights or []) != len(self.loss_types):
            raise ConfigError(
                f"loss_weights={self.loss_weights!r}: give one number per loss_type "
                f"({len(self.loss_types)}: {', '.join(self.loss_types)})"
            )
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing={self.label_smoothing}: use a value in [0, 0.5)")

    @property
    def loss_types(self) -> list[str]:
        return [t.strip() for t in self.loss_type.split(",") if t.strip()]

    @property
    def weights(self) -> list[float] | None:
        if self.loss_weights is None:
            return None
        try:
            return [float(w) for w in str(self.loss_weights).split(",") if w.strip()]
        except ValueError:
            raise ConfigError(
                f"loss_weights={self.loss_weights!r}: use numbers separated by commas"
            ) from None


# TRL 1.16's DPOConfig.loss_type values (checked at submit, before a process starts)
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip


def cached_reference_trainer_class():
    """DPOTrainer whose reference precompute skips rows that already carry cached values."""
    import torch
    from accelerate.utils import is_peft_model
    from datasets import Dataset
    from trl import DPOTrainer

    from training.ref_logprobs import shared_prompt_logps, split_shared, supports_shared_prompt

    class CachedReferenceDPOTrainer(DPOTrainer):
        ref_forward_rows = 0  # rows that needed a reference forward pass, over all datasets
        ref_seconds = 0.0  # time spent on reference log-probs (forward passes and merging)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            """Reference columns for `dataset`, computing only rows the cache lacks.

            TRL calls this for the train set, then for the held-out set. The first call
            runs the missing rows of both in one pass: on an incremental run the new
            pairs are few, and two passes would mean two sets of partial batches.
            """
            started = time.perf_counter()
            try:
                if self._pending_ref is None:
                    datasets = {name: dataset}
                    if name == "train" and isinstance(self.eval_dataset, Dataset):
                        datasets["eval"] = self.eval_dataset
                    self._pending_ref = self._fill_missing(datasets)
                chosen, rejected = self._pending_ref.pop(name, None) or self._fill_missing(
                    {name: dataset}
                ).pop(name)
                return with_reference_columns(dataset, chosen, rejected)
            finally:
                type(self).ref_seconds += time.perf_counter() - started

        def _fill_missing(self, datasets):
            """{name: (chosen, rejected)} for each dataset, with one forward pass over the
            rows of all of them that carry no cached value."""
            values, triples, slots = {}, [], []
            for name, dataset in datasets.items():
                # columns are read once: indexing a Dataset row by row costs ~1 ms a row
                columns = {col: dataset[col] for col in (*IDS, *KEYS)}
                chosen = list(dataset["ref_chosen_logps"])
                rejected = list(dataset["ref_rejected_logps"])
                values[name] = (chosen, rejected)
                for i, (c, r) in enumerate(zip(chosen, rejected, strict=True)):
                    if c is None or r is None or math.isnan(c) or math.isnan(r):
                        triples.append(tuple(columns[key][i] for key in IDS))
                        slots.append((name, i, columns))
            if triples:
                new_c, new_r = self._reference_forward(triples, self.ref_batch_size)
                for (name, i, columns), triple, c, r in zip(
                    slots, triples, new_c, new_r, strict=True
                ):
                    values[name][0][i], values[name][1][i] = c, r
                    prompt_key, chosen_key, rejected_key = (columns[k][i] for k in KEYS)
                    self.computed.append((prompt_key, chosen_key, c, len(triple[1])))
                    self.computed.append((prompt_key, rejected_key, r, len(triple[2])))
            type(self).ref_forward_rows += len(triples)
            return values

        def _reference_forward(self, triples, batch_size):
            """Reference log-probs of (prompt, chosen, rejected) token lists, in input order.

            No gradients are kept (`torch.inference_mode`), batches are sorted by length
            (little padding), and pairs that fit `max_length` run their prompt once for
            both completions (`training.ref_logprobs`); the rest take TRL's own path.
            """
            model = self.ref_model or self.model
            device = next(model.parameters()).device
            if self.share_prompt and supports_shared_prompt(model):
                shared, other = split_shared(triples, self.args.max_length)
            else:
                shared, other = [], list(range(len(triples)))
            chosen = [0.0] * len(triples)
            rejected = [0.0] * len(triples)
            was_training = model.training
            model.eval()
            try:
                with torch.inference_mode():
                    with self._reference_weights():
                        for part in length_batches(triples, shared, batch_size):
                            c, r = shared_prompt_logps(
                                model,
                                [triples[k] for k in part],
                                self.data_collator.pad_token_id,
                                device,
                            )
                            for k, cv, rv in zip(part, c, r, strict=True):
                                chosen[k], rejected[k] = cv, rv
                    for part in length_batches(triples, other, batch_size):
                        batch = self.data_collator(
                            [dict(zip(IDS, triples[k], strict=True)) for k in part]
                        )
                        batch = {key: value.to(device) for key, value in batch.items()}
                        c, r = self.compute_ref_log_probs(model, batch)  # disables the adapter
                        for k, cv, rv in zip(
                            part, c.float().cpu().tolist(), r.float().cpu().tolist(), strict=True
                        ):
                            chosen[k], rejected[k] = cv, rv
            finally:
                model.train(was_training)
            return chosen, rejected

        def _reference_weights(self):
            """The adapter-disabled base: what the cache key (the base's hash) names.

            For a warm start TRL adds a "ref" adapter (a copy of the warm-start adapter)
            and would use it as the reference; prefloop's reference stays the base, so
            cached and new values agree and an incremental run keeps its parent's
            objective. `run()` deletes that "ref" adapter once the pass is done.
            """
            if self.ref_model is not None or not is_peft_model(self.model):
                return contextlib.nullcontext()
            return self.accelerator.unwrap_model(self.model).disable_adapter()

        def compute_ref_log_probs(self, model, inputs):
            """TRL's per-sequence reference pass, with the base as reference (see above)."""
            keys = ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")
            model_kwargs = {k: v for k, v in inputs.items() if k not in keys}
            labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
            with torch.no_grad(), self._reference_weights(), self.accelerator.autocast():
                per_token = model(
                    **model_kwargs, use_cache=False, labels=labels, fused_lm_head=True
                ).log_probs
            per_token = per_token[:, -(inputs["completion_mask"].size(1) - 1) :]
            return per_token.sum(dim=1).chunk(2, dim=0)

    CachedReferenceDPOTrainer.computed = []
    CachedReferenceDPOTrainer._pending_ref = None  # {dataset name: (chosen, rejected)}
    CachedReferenceDPOTrainer.ref_batch_size = 2
    CachedReferenceDPOTrainer.share_prompt = True
    return CachedReferenceDPOTrainer


IDS = ("prompt_ids", "chosen_ids", "rejected_ids")
KEYS = ("prompt_id", "chosen_id", "rejected_id")


def with_reference_columns(dataset, chosen: list[float], rejected: list[float]):
    """`dataset` with its reference log-prob columns set and token lengths for length buckets."""
    lengths = [
        len(p) + max(len(c), len(r))
        for p, c, r in zip(
            dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"], strict=True
        )
    ]
    drop = [
        c for c in ("ref_chosen_logps", "ref_rejected_logps", "length") if c in dataset.column_names
    ]
    dataset = dataset.remove_columns(drop)
    dataset = dataset.add_column("length", lengths)
    dataset = dataset.add_column("ref_chosen_logps", [float(x) for x in chosen])
    return dataset.add_column("ref_rejected_logps", [float(x) for x in rejected])


def length_batches(triples: list, indices: list[int], batch_size: int) -> list[list[int]]:
    """`indices` in batches of similar total length, longest first (the memory peak shows early)."""
    order = sorted(
        indices,
        key=lambda k: len(triples[k][0]) + max(len(triples[k][1]), len(triples[k][2])),
        reverse=True,
    )
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def dpo_rows(items: list[dict[str, Any]], use_cache: bool) -> list[dict[str, Any]]:
    nan = math.nan
    return [
        {
            "prompt": r["prompt"],
            "chosen": r["chosen"],
            "rejected": r["rejected"],
            "prompt_id": r["prompt_id"],
            "chosen_id": r["chosen_id"],
            "rejected_id": r["rejected_id"],
            "ref_chosen_logps": r["ref_chosen_logps"] if use_cache else nan,
            "ref_rejected_logps": r["ref_rejected_logps"] if use_cache else nan,
            "length": len(r["prompt"])
            + max(len(r["chosen"]), len(r["rejected"])),  # chars until tokenized
        }
        for r in items
    ]


def run(ctx: RunContext) -> None:
    cfg = ctx.stage_config(DPOStageConfig)
    rows = ctx.snapshot()
    train_rows, test_rows, counts = select_rows(ctx, rows, cfg)
    policy = resolve_policy(ctx, cfg, rows)
    ref_hash, use_cache = reference_key(ctx, cfg, policy)
    progress = progress_callback(
        ctx, "eval_rewards/accuracies", cfg.patience, stop_at=cfg.stop_at_accuracy
    )
    ctx.status("running", message="reference log-probs of the pairs the cache lacks")
    trainer, trainer_cls = build_trainer(
        ctx, cfg, policy, train_rows, test_rows, use_cache, callbacks=[progress]
    )
    metrics: dict[str, Any] = {
        **train_measured(trainer),
        "ref_forward_pairs": trainer_cls.ref_forward_rows,
        "ref_seconds": round(trainer_cls.ref_seconds, 3),
        "ref_cached_pairs": len(train_rows) + len(test_rows) - trainer_cls.ref_forward_rows,
        **counts,
    }
    if test_rows:
        evaluation, metrics["final_eval_reused"] = final_evaluation(trainer, progress)
        metrics["heldout_accuracy"] = float(evaluation["eval_rewards/accuracies"])
        metrics["heldout_margin"] = float(evaluation.get("eval_rewards/margins", 0.0))
    promote, gate_numbers = gate(ctx, metrics.get("heldout_accuracy"))
    metrics["gate"] = gate_numbers
    save_adapter(ctx, trainer.model, trainer.processing_class, policy)
    if ctx.is_main:
        write_ref_logprobs(ctx, trainer_cls.computed, ref_hash, ctx.config.get("template_hash"))
    ctx.finish(metrics, artifact=ARTIFACT, promote=promote, extra={"base_policy": policy})


def reference_key(ctx: RunContext, cfg: DPOStageConfig, policy: str) -> tuple[str, bool]:
    """The reference model's hash (the adapter-disabled base: it keys the cache), and
    whether cached values may be used and new ones cached."""
    ref_hash = ctx.config.get("ref_model_hash") or model_hash(policy)
    return ref_hash, cfg.cache_reference and cfg.use_lora and ref_hash == model_hash(policy)


def build_trainer(
    ctx: RunContext,
    cfg: DPOStageConfig,
    policy: str,
    train_rows: list[dict[str, Any]],
    test_rows: list[dict[str, Any]],
    use_cache: bool,
    callbacks: list[Any] | None = None,
    on_model: Any = None,
) -> tuple[Any, Any]:
    """The DPO trainer of a run, and its class (which holds the reference pass's counts).

    TRL computes the reference log-probs the rows lack while it builds the trainer, so a
    reference pass (`training.reference_pass`) is this call and no training. `on_model`
    gets the loaded model first (a reference pass follows its CPU share through it).
    """
    from datasets import Dataset
    from trl import DPOConfig

    score_completions_only_on_cpu(cfg.compact_scoring)  # see trl_fixes
    tokenizer = load_tokenizer(policy)
    model, peft_config = load_causal_lm(policy, ctx.config.get("warm_start"), cfg)
    if on_model is not None:  # before the trainer exists: its reference pass runs in __init__
        on_model(model)
    args = trainer_args(
        ctx,
        cfg,
        DPOConfig,
        len(test_rows),
        beta=cfg.beta,
        loss_type=cfg.loss_types,
        loss_weights=cfg.weights,
        label_smoothing=cfg.label_smoothing,
        max_length=cfg.max_length,
        truncation_mode="keep_end",
        precompute_ref_log_probs=cfg.use_lora,
        remove_unused_columns=False,
    )
    trainer_cls = cached_reference_trainer_class()
    trainer_cls.ref_batch_size = cfg.ref_batch_size or (
        2 if device_kind() == "cpu" else cfg.batch_size
    )
    trainer_cls.share_prompt = cfg.share_prompt
    trainer = trainer_cls(
        model=model,
        args=args,
        processing_class=tokenizer,
        peft_config=peft_config,
        train_dataset=Dataset.from_list(dpo_rows(train_rows, use_cache)),
        eval_dataset=Dataset.from_list(dpo_rows(test_rows, use_cache)) if test_rows else None,
        callbacks=callbacks or [],
    )
    if "ref" in getattr(trainer.model, "peft_config", {}):
        trainer.model.delete_adapter("ref")  # TRL's warm-start reference copy: unused here
    return trainer, trainer_cls


def write_ref_logprobs(
    ctx: RunContext,
    computed: list[tuple[str, str, float, int]],
    ref_hash: str,
    template: str | None,
) -> None:
    if not computed or not template:
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {
                "prompt_id": [c[0] for c in computed],
                "response_id": [c[1] for c in computed],
                "ref_model_hash": [ref_hash] * len(computed),
                "template_hash": [template] * len(computed),
                "logp": [float(c[2]) for c in computed],
                "n_tokens": [int(c[3]) for c in computed],
            }
        ),
        ctx.run_dir / REF_LOGPROBS,
    )
