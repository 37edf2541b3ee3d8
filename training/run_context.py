"""The run folder as a trainer sees it, the rows a run trains and evaluates on, and the
promotion gate of the preference-accuracy stages.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from data.errors import TrainingError
from training import runfiles
from training.stage_config import C, StageConfig, profile_defaults


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
        torch = sys.modules.get("torch")  # loaded already when runs share a process (inline)
        if torch is not None and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def stage_config(self, cls: type[C]) -> C:
        """The stage's config: the policy profile's defaults, then the request's settings."""
        values = {
            **profile_defaults(cls, self.config.get("profile")),
            **(self.request.get("overrides") or {}),
        }
        if self.request.get("max_steps"):
            values["max_steps"] = self.request["max_steps"]
        return cls.from_dict(values)  # type: ignore[attr-defined]

    def status(self, state: str, **fields: Any) -> None:
        if self.is_main:
            runfiles.write_status(self.run_dir, state, pid=os.getpid(), **fields)

    def log_metrics(self, row: dict[str, Any]) -> None:
        if self.is_main:
            runfiles.append_metrics(self.run_dir, row)

    def follow_cpu_share(self) -> None:
        """Take the CPU cores the owner last gave the run (`runfiles.CPU_SHARE`), if changed:
        all of them once the run next to it has ended, half while one runs."""
        cores = runfiles.read_json(self.run_dir / runfiles.CPU_SHARE)
        if not isinstance(cores, int) or cores < 1:
            return
        import torch

        threads = max(1, cores // max(1, self.world_size))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            runfiles.write_status(self.run_dir, "running", torch_threads=threads)

    def follow_cpu_share_in(self, model: Any, every_s: float = 0.25) -> None:
        """Follow the share before `model`'s forward passes as well (at most every `every_s`):
        a generation or a reference pass has no trainer steps, and a run that keeps a share
        the other run has taken back makes both wait on each other's threads."""
        last = [0.0]

        def before_forward(module: Any, args: Any) -> None:
            now = time.monotonic()
            if now - last[0] >= every_s:
                last[0] = now
                self.follow_cpu_share()

        # on the input embeddings: every forward calls them as a module, also when a PEFT
        # wrapper calls the base model's `forward` directly (which skips the model's hooks)
        model.get_input_embeddings().register_forward_pre_hook(before_forward)

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
        torch = sys.modules.get("torch")
        if torch is not None:  # the share of the cores it ran with (`cpu_threads`)
            metrics["torch_threads"] = torch.get_num_threads()
        if torch is not None and torch.cuda.is_available():
            metrics["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
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
