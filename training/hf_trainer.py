"""The Hugging Face / TRL trainer plumbing the stages share: config arguments, the
progress callback (metrics, status, early stopping) and the final evaluation.
"""

from __future__ import annotations

import os
import time
from typing import Any

from data.errors import TrainingError
from training.models import cpu_threads, device_kind, param_change, trainable_snapshot, use_bf16
from training.run_context import RunContext
from training.stage_config import StageConfig
from training.tracking import TENSORBOARD_FOLDER, resolve_report_to


def trainer_args(ctx: RunContext, cfg: StageConfig, config_cls: Any, eval_rows: int, **extra: Any):
    """TRL config with prefloop's defaults: explicit CPU/bf16 choice, logging every step."""
    cpu = device_kind() == "cpu"
    distributed = ctx.request.get("distributed", "ddp")
    if cpu and distributed != "ddp":
        # accelerate selects FSDP (and DeepSpeed needs CUDA) only on accelerators: on CPU the
        # processes would silently run plain DDP instead
        raise TrainingError(
            f"--distributed {distributed} needs GPUs (accelerate runs FSDP and DeepSpeed only "
            "on accelerators; on CPU it would fall back to DDP): use --distributed ddp here"
        )
    if cpu:
        import torch

        torch.set_num_threads(cpu_threads(ctx.world_size))
    evaluate = cfg.eval_every > 0 and eval_rows > 0
    trackers = resolve_report_to(cfg.report_to)
    if "tensorboard" in trackers:  # event files go with the run unless the user points them away
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(ctx.run_dir / TENSORBOARD_FOLDER))
    settings: dict[str, Any] = dict(
        output_dir=str(ctx.run_dir / "hf"),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=trackers or "none",
        run_name=ctx.run_dir.name,
        seed=cfg.seed,
        use_cpu=cpu,
        bf16=use_bf16(cfg),
        eval_strategy="steps" if evaluate else "no",
        eval_steps=cfg.eval_every if evaluate else None,
        train_sampling_strategy="group_by_length" if cfg.bucket_by_length else "random",
        disable_tqdm=True,
        gradient_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0,
        ddp_backend="gloo" if cpu and ctx.world_size > 1 else None,
    )
    settings.update(extra)  # a stage's own settings win (KTO needs sequential sampling)
    return config_cls(**settings)


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
            ctx.follow_cpu_share()  # the owner may have moved cores to or from this run
            timing = {"first_step_at": time.time()} if state.global_step == 1 else {}
            ctx.status(
                "running",
                step=state.global_step,
                max_steps=state.max_steps,
                message="training",
                **timing,
            )

        def on_train_end(self, args, state, control, **kwargs):
            self.done = True  # evaluations after training (the final report) do not stop anything
            ctx.status("running", message="final evaluation and saving")

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


def train_measured(trainer: Any) -> dict[str, Any]:
    """Train; the run's loss, steps and how far its trainable parameters moved."""
    before = trainable_snapshot(trainer.model)
    output = trainer.train()
    return {
        "train_loss": output.training_loss,
        "steps": trainer.state.global_step,
        "param_change": param_change(before, trainer.model),
    }
