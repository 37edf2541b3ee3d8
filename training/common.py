"""Trainer-side helpers shared by the stages: run context, data, models, callbacks.

Imported only inside the `python -m training` subprocess (torch & co. load here).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from data.errors import ConfigError, TrainingError
from training import runfiles
from training.snapshot import model_hash

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
    tiny_layers: int = help_field(4, "Embedded default policy: transformer layers.")
    tiny_width: int = help_field(192, "Embedded default policy: hidden size.")
    tiny_vocab: int = help_field(
        4096, "Embedded default policy: BPE vocabulary trained on the store's texts."
    )

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        return config_from_dict(cls, values)


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


def describe(config_cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) for each field: used for `--help` texts and docs."""
    return [(f.name, f.default, f.metadata.get("help", "")) for f in dataclasses.fields(config_cls)]


# -- run context ----------------------------------------------------------------------


class RunContext:
    """The run folder as the trainer sees it."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.config: dict[str, Any] = runfiles.read_json(run_dir / runfiles.CONFIG) or {}
        if not self.config:
            raise TrainingError(
                f"{run_dir / runfiles.CONFIG} is missing; runs are started by "
                "training.jobs.JobManager (or `prefloop train`)"
            )
        self.request: dict[str, Any] = self.config.get("request", {})
        self.rank = int(os.environ.get("RANK", "0"))
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.started = time.time()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def stage_config(self, cls: type[C]) -> C:
        values = dict(self.request.get("overrides") or {})
        if self.request.get("max_steps"):
            values["max_steps"] = self.request["max_steps"]
        return cls.from_dict(values)  # type: ignore[attr-defined]

    def status(self, state: str, **fields: Any) -> None:
        if self.is_main:
            runfiles.write_status(self.run_dir, state, pid=os.getpid(), **fields)

    def log_metrics(self, row: dict[str, Any]) -> None:
        if self.is_main:
            runfiles.append_metrics(self.run_dir, row)

    def snapshot(self) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        return pq.read_table(self.run_dir / runfiles.SNAPSHOT).to_pylist()

    def finish(
        self,
        metrics: dict[str, Any],
        *,
        artifact: str | None,
        promote: bool,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write result.json last: its presence is what marks the run a success."""
        metrics = {**metrics, "wall_s": round(time.time() - self.started, 2)}
        rank_report = {
            "rank": self.rank,
            "world_size": self.world_size,
            "steps": metrics.get("steps"),
            "param_change": metrics.get("param_change"),
        }
        (self.run_dir / "ranks").mkdir(exist_ok=True)
        runfiles.write_json(self.run_dir / "ranks" / f"rank-{self.rank}.json", rank_report)
        if not self.is_main:
            return
        runfiles.write_json(
            self.run_dir / runfiles.RESULT,
            {
                "metrics": metrics,
                "artifact": artifact,
                "promote": promote,
                **(extra or {}),
            },
        )
        self.status("succeeded", message="done")


def select_rows(
    ctx: RunContext, rows: list[dict[str, Any]], cfg: StageConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(train rows, held-out rows, counts): incremental runs take new rows plus a replay sample."""
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    counts: dict[str, Any] = {"snapshot_rows": len(rows), "heldout_rows": len(test)}
    if ctx.config.get("warm_start"):
        new = [r for r in train if r["is_new"]]
        old = [r for r in train if not r["is_new"]]
        n_replay = min(len(old), max(cfg.min_replay, int(round(cfg.replay_ratio * len(new)))))
        replay = random.Random(cfg.seed).sample(old, n_replay)
        counts.update(new_rows=len(new), replay_rows=len(replay))
        train = new + replay
        if not new:
            raise TrainingError(
                "incremental run: no labels were added since the promoted run "
                f"{ctx.config.get('parent_run_id')}; label more pairs or drop --incremental"
            )
    counts["train_rows"] = len(train)
    if ctx.is_main:
        runfiles.write_json(ctx.run_dir / "train_pair_ids.json", [r["pair_id"] for r in train])
    # one pass of max_steps batches sees at most this many rows: tokenize and compute reference
    # log-probs for a seeded sample of that size only, not for rows the run would never reach
    budget = cfg.max_steps * cfg.batch_size * ctx.world_size
    if len(train) > budget:
        train = random.Random(cfg.seed + 1).sample(train, budget)
    if len(test) > cfg.max_heldout_rows:
        test = random.Random(cfg.seed + 2).sample(test, cfg.max_heldout_rows)
    counts.update(rows_used=len(train), heldout_used=len(test))
    if ctx.is_main:
        runfiles.write_json(
            ctx.run_dir / "used_pair_ids.json",
            {"train": [r["pair_id"] for r in train], "heldout": [r["pair_id"] for r in test]},
        )
    return train, test, counts


# -- models ---------------------------------------------------------------------------


def device_kind() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_policy(ctx: RunContext, cfg: StageConfig, rows: list[dict[str, Any]]) -> str:
    """The base policy folder or hub id; builds the embedded default when asked for `tiny`."""
    policy = ctx.config.get("policy") or "tiny"
    if policy != "tiny":
        return policy
    out = ctx.run_dir / "base_policy"
    done = out / ".done"
    if ctx.is_main:
        if not done.exists():
            texts = (
                [r["prompt"] for r in rows]
                + [r["chosen"] for r in rows]
                + [r["rejected"] for r in rows]
            )
            build_tiny_policy(texts, out, cfg)
            done.write_text("ok")
    else:
        deadline = time.time() + 600
        while not done.exists():
            if time.time() > deadline:
                raise TrainingError("rank 0 did not build the default policy within 10 minutes")
            time.sleep(0.2)
    return str(out)


def build_tiny_policy(texts: list[str], out: Path, cfg: StageConfig) -> None:
    """A GPT-2-shaped causal LM of a few million parameters with a BPE trained on `texts`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.tiny_vocab,
        special_tokens=[eos],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eos,
        bos_token=eos,
        pad_token=eos,
        unk_token=eos,
        model_max_length=1024,
    )
    eos_id = tokenizer.convert_tokens_to_ids(eos)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=1024,
        n_embd=cfg.tiny_width,
        n_layer=cfg.tiny_layers,
        n_head=max(1, cfg.tiny_width // 64),
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    torch.manual_seed(cfg.seed)
    model = GPT2LMHeadModel(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def load_tokenizer(policy: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.truncation_side = "left"
    return tokenizer


def lora_config(cfg: StageConfig, task_type: str):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type=task_type,
    )


def trainer_args(ctx: RunContext, cfg: StageConfig, config_cls: Any, eval_rows: int, **extra: Any):
    """TRL config with prefloop's defaults: explicit CPU/bf16 choice, logging every step."""
    cpu = device_kind() == "cpu"
    if cpu:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, ctx.world_size)))
    evaluate = cfg.eval_every > 0 and eval_rows > 0
    return config_cls(
        output_dir=str(ctx.run_dir / "hf"),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        use_cpu=cpu,
        bf16=not cpu and _bf16_ok(),
        eval_strategy="steps" if evaluate else "no",
        eval_steps=cfg.eval_every if evaluate else None,
        train_sampling_strategy="group_by_length" if cfg.bucket_by_length else "random",
        disable_tqdm=True,
        gradient_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0,
        ddp_backend="gloo" if cpu and ctx.world_size > 1 else None,
        **extra,
    )


def _bf16_ok() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def progress_callback(
    ctx: RunContext,
    metric: str | None,
    patience: int,
    greater_is_better: bool = True,
    stop_at: float | None = None,
):
    """Writes metrics.jsonl/status.json and stops early when `metric` stops improving."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.best: float | None = None
            self.best_step = 0
            self.bad = 0
            self.history: list[tuple[int, float]] = []
            self.last_eval: tuple[int, dict[str, Any]] | None = None

        def on_step_end(self, args, state, control, **kwargs):
            ctx.status("running", step=state.global_step, max_steps=state.max_steps)

        def on_train_end(self, args, state, control, **kwargs):
            self.done = True  # evaluations after training (the final report) do not stop anything

        def on_log(self, args, state, control, logs=None, **kwargs):
            ctx.log_metrics({"step": state.global_step, **(logs or {})})

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and not getattr(self, "done", False):
                # the stage reuses this as its final report when it was taken at the last step
                self.last_eval = (state.global_step, dict(metrics))
            if not metric or not metrics or metric not in metrics or getattr(self, "done", False):
                return
            value = float(metrics[metric])
            self.history.append((state.global_step, value))
            if stop_at is not None and value >= stop_at:
                ctx.log_metrics(
                    {"step": state.global_step, "reached_target": stop_at, metric: value}
                )
                control.should_training_stop = True
                return
            better = self.best is None or (
                value > self.best if greater_is_better else value < self.best
            )
            if better:
                self.best, self.best_step, self.bad = value, state.global_step, 0
            else:
                self.bad += 1
                if patience and self.bad >= patience:
                    ctx.log_metrics({"step": state.global_step, "early_stop": True, metric: value})
                    control.should_training_stop = True

    return Progress()


def final_evaluation(trainer: Any, progress: Any) -> tuple[dict[str, Any], bool]:
    """Held-out metrics of the final weights: the last periodic evaluation when it was taken
    at the last step (same weights, same rows), else a new evaluation. Returns (metrics, reused)."""
    last = progress.last_eval
    if last is not None and last[0] == trainer.state.global_step:
        return last[1], True
    return trainer.evaluate(), False


def gate(ctx: RunContext, heldout_accuracy: float | None) -> tuple[bool, dict[str, Any]]:
    """Promote unless an incremental run's held-out accuracy dropped below its parent's."""
    parent = (ctx.config.get("parent_metrics") or {}).get("heldout_accuracy")
    if not ctx.config.get("warm_start") or parent is None or heldout_accuracy is None:
        return True, {
            "parent_heldout_accuracy": parent,
            "heldout_accuracy": heldout_accuracy,
            "rule": "not incremental or nothing to compare: promote",
        }
    promote = heldout_accuracy >= parent
    return promote, {
        "parent_heldout_accuracy": parent,
        "heldout_accuracy": heldout_accuracy,
        "rule": "promote if heldout_accuracy >= parent_heldout_accuracy",
        "promoted": promote,
    }


def load_causal_lm(policy: str, warm_start: str | None, cfg: StageConfig, trainable: bool = True):
    """Base model, with the warm-start adapter (trainable) or a fresh LoRA when `use_lora`."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if _bf16_ok() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=dtype)
    if warm_start:
        from peft import PeftModel

        if not (Path(warm_start) / "adapter_config.json").exists():
            raise TrainingError(
                f"warm start {warm_start} is a full model, not a LoRA adapter; run "
                "without --incremental, or pass it as --policy to fine-tune it further"
            )
        return PeftModel.from_pretrained(model, warm_start, is_trainable=trainable), None
    return model, (lora_config(cfg, "CAUSAL_LM") if cfg.use_lora else None)


def policy_hash(policy: str) -> str:
    return model_hash(policy)


def param_change(before: dict[str, Any], model: Any) -> float:
    """Largest absolute change of any trainable parameter since `before` (a state snapshot)."""

    change = 0.0
    for name, param in model.named_parameters():
        if name in before:
            change = max(change, float((param.detach().float().cpu() - before[name]).abs().max()))
    return change


def trainable_snapshot(model: Any) -> dict[str, Any]:
    return {
        n: p.detach().float().cpu().clone() for n, p in model.named_parameters() if p.requires_grad
    }


def dump(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, default=str), encoding="utf-8")
