"""The Train tab's work: submit runs to `training.jobs`, follow them, re-score after them."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from app.ui.background import run_in_background
from app.ui.render import code_block, plain
from data.errors import ConfigError
from data.loop_rounds import loop_runs
from data.store import PreferenceStore
from training import jobs as run_queue
from training import runs
from training.jobs import reward_stages

# what the tab trains: stages joined by "+", run in order (rm+ppo: PPO on the new reward model)
TRAIN_KINDS = ("dpo", *(f"rm+{stage}" for stage in reward_stages()), "rm")
TRAIN_STAGES = tuple(dict.fromkeys(s for kind in TRAIN_KINDS for s in kind.split("+")))
CURVE_KEYS = ("loss", "reward", "kl")
GENERATE_PROMPTS = ("unlabelled", "all")

log = logging.getLogger("prefloop.app")


HISTORY_COLUMNS = [
    "run",
    "kind",
    "status",
    "promoted",
    "steps",
    "held-out accuracy",
    "train loss",
    "wall time",
    "created",
]
# the metrics a person reads first, in this order; the rest follow by name
HEADLINE_METRICS = (
    "steps",
    "heldout_accuracy",
    "parent_heldout_accuracy",
    "train_loss",
    "final_reward",
    "generated",
    "new_pairs",
    "new_labels",
    "replay_labels",
    "ref_forward_pairs",
    "ref_cached_pairs",
    "wall_s",
)


def runs_table(store: PreferenceStore, limit: int = 30) -> list[list[Any]]:
    table = []
    for row in runs.list_runs(store, limit):
        metrics = row["metrics"]
        table.append(
            [
                row["run_id"],
                row["kind"],
                row["status"],
                "yes" if row["promoted"] else "",
                _shown(metrics.get("steps")),
                _shown(metrics.get("heldout_accuracy")),
                _shown(metrics.get("train_loss")),
                _duration(metrics["wall_s"])
                if isinstance(metrics.get("wall_s"), int | float)
                else "",
                str(row["created_at"])[:19],
            ]
        )
    return table


def metrics_table(metrics: dict[str, Any]) -> list[list[str]]:
    """A run's metrics as (metric, value) rows: the headline ones first, then the rest."""
    keys = [k for k in HEADLINE_METRICS if k in metrics]
    keys += sorted(k for k in metrics if k not in keys)
    return [[key.replace("_", " "), _shown(metrics[key])] for key in keys]


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)[:120]
    return str(value)


def metric_curves(metrics: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """step -> value series for the loss / reward / KL-like keys of a run's metric rows."""
    series: dict[str, list[tuple[float, float]]] = {}
    for index, row in enumerate(metrics):
        if not isinstance(row, dict):
            continue
        step = row.get("step", row.get("global_step", index))
        for key, value in row.items():
            if isinstance(value, (int, float)) and any(k in key.lower() for k in CURVE_KEYS):
                series.setdefault(key, []).append((float(step), float(value)))
    return series


def curves_figure(curves: dict[str, list[tuple[float, float]]], title: str):  # noqa: ANN201
    from app.ui.dashboard import empty_note, new_figure

    fig, ax = new_figure(title)
    if not curves:
        empty_note(ax, "no metrics yet")
        return fig
    for key, points in sorted(curves.items())[:8]:
        ax.plot([p[0] for p in points], [p[1] for p in points], label=key)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    return fig


def start_training(ctx: Any, kind: str, *, who: str) -> str:
    """Submit the runs for `kind` (rm+ppo: an RM run, then PPO on the promoted RM; the
    trainer queue runs them in order)."""
    if kind not in TRAIN_KINDS:
        raise ConfigError(f"choose one of {', '.join(TRAIN_KINDS)}, not {kind!r}")
    module = run_queue
    manager = ctx.job_manager()
    stages = kind.split("+")
    run_ids = [
        manager.submit(module.TrainRequest(stage=stage, **ctx.train_overrides.get(stage, {})))
        for stage in stages
    ]
    return (
        f"Submitted {', '.join(f'`{r}`' for r in run_ids)} (by {who}); progress below updates live."
    )


def start_generation(
    ctx: Any,
    policy: str,
    prompts: str,
    max_prompts: int,
    n: int,
    max_new_tokens: int,
    *,
    who: str,
) -> str:
    """Submit a generation run: new responses from a policy, paired per prompt; the
    re-score after it scores and routes the new pairs like any others."""
    if prompts not in GENERATE_PROMPTS:
        raise ConfigError(f"prompts: choose one of {', '.join(GENERATE_PROMPTS)}, not {prompts!r}")
    module = run_queue
    request = module.TrainRequest(
        "generate",
        policy=policy.strip() or "latest",
        prompts=prompts,
        max_prompts=max_prompts or None,
        overrides={"n": int(n), "max_new_tokens": int(max_new_tokens)},
    )
    run_id = ctx.job_manager().submit(request)
    return f"Submitted generation `{run_id}` (by {who}) from `{request.policy}`; progress below."


def cancel_training(ctx: Any, run_id: str) -> str:
    manager = ctx.job_manager()
    run_id = run_id.strip() or runs.newest_active_id(ctx.store)
    if not run_id:
        return "No run is queued or running."
    return f"Cancelled `{run_id}`." if manager.cancel(run_id) else f"`{run_id}` had already ended."


def training_view(ctx: Any) -> tuple[Any, ...]:
    """(status markdown, curves figure, latest run's metrics rows, history rows)."""
    if ctx.jobs is not None:
        ctx.jobs.tick()
    run = runs.latest_run(ctx.store)
    if run is None:
        md = "No runs yet: choose what to train and press **Retrain now**."
        return md, curves_figure({}, "Loss / reward / KL"), [], runs_table(ctx.store)
    live: dict[str, Any] = {}
    if ctx.jobs is not None:  # live step counter from the run folder, through training.jobs
        live = ctx.jobs.status(run["run_id"]).get("progress") or {}
    lines = [f"**Latest run** `{run['run_id']}` ({run['kind']}): **{run['status']}**"]
    if live.get("step") is not None:
        lines.append(progress_line(live, running=run["status"] == "running"))
    if run["status"] == "failed" and run.get("log_tail"):
        tail = str(run["log_tail"]).strip().splitlines()[-6:]
        lines.append(code_block("\n".join(tail)))  # a log is shown as typed, contained
    if ctx.rescore_task is not None:
        lines.append(rescore_line(ctx.rescore_task, ctx.rescore_budget))
    # the run folder's metrics.jsonl, read by training.jobs (the app reads no run files)
    metric_rows = ctx.jobs.metrics(run["run_id"]) if ctx.jobs is not None else []
    return (
        "  \n".join(lines),
        curves_figure(metric_curves(metric_rows), f"{run['kind']} run {run['run_id']}"),
        metrics_table(run["metrics"]),
        runs_table(ctx.store),
    )


def rescore_line(task: Any, budget: int) -> str:
    """What the re-score after a run does, and what it did, in words."""
    what = (
        "after every successful run the app fits a new reward ensemble on all current labels, "
        f"scores every pair with it, and adds {budget} pairs to the human queue where the "
        "automatic label is most likely wrong (unstarted human pairs are re-chosen; the rest "
        "go to the judge queue)"
    )
    if task.running:
        return f"**Re-score after the run**: running ({what})."
    if task.error:
        return f"**Re-score after the run**: failed: {plain(task.error)}"
    r = task.result or {}
    if not r:
        return f"**Re-score after the run**: done ({what})."
    return (
        f"**Re-score after the run**: done: ensemble v{r.get('ensemble_version')} scored "
        f"{r.get('scored_pairs', 0):,} pairs; {r.get('to_human', 0):,} went to the human queue "
        f"and {r.get('to_judge', 0):,} to the judge queue; {r.get('human_queue_open', 0):,} "
        f"human-queue pairs now want a label. (Why: {what}.)"
    )


def progress_line(live: dict[str, Any], *, running: bool, now: float | None = None) -> str:
    """ "step 6 / 16 training · 2m10s elapsed · about 1m30s of steps left", from status.json.

    The estimate is the run's own pace since its first step (the reference pass and the
    model load before it are not steps); the final evaluation comes after it.
    """
    step, total = live.get("step") or 0, live.get("max_steps")
    parts = [f"step {step} / {total or '?'} {live.get('message') or ''}".rstrip()]
    now = time.time() if now is None else now
    started, first = live.get("started"), live.get("first_step_at")
    if running and isinstance(started, (int, float)):
        parts.append(f"{_duration(now - started)} elapsed")
        if isinstance(first, (int, float)) and total and 1 < step < total:
            per_step = (now - first) / (step - 1)
            parts.append(f"about {_duration(per_step * (total - step))} of steps left")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def rescore_and_route(store: PreferenceStore, human_budget: int) -> dict[str, Any]:
    """Fit a new ensemble on the current labels, score every pair, and add `human_budget`
    pairs to the human queue where the labels are most likely wrong (unstarted human
    pairs are re-chosen with the new ensemble; see `labeling.router`)."""
    from data.project import read_project
    from labeling.router import RouterConfig, route_store  # numpy and sklearn: load on use
    from labeling.scoring import score_store

    scored = score_store(store)
    overlap = read_project(store).overlap  # as `prefloop route` does without --overlap
    routed = route_store(store, RouterConfig(human_budget=human_budget, needed_labels=overlap))
    return {
        "ensemble_version": scored.version,
        "scored_pairs": scored.scored_pairs,
        "to_human": routed.human,
        "to_judge": routed.judge,
        "human_queue_open": routed.human_queue_total,
    }


class RunWatcher:
    """Notices runs that end and then re-scores the ensemble and updates the queues."""

    def __init__(self, ctx: Any, interval: float = 2.0):
        self.ctx = ctx
        self.interval = interval
        self._seen = self._ended()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="prefloop-run-watcher")
        self._thread.start()

    def _ended(self) -> set[str]:
        return runs.ended_ids(self.ctx.store)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - keep watching
                log.exception("run watcher: checking for ended runs failed")

    def check(self) -> None:
        ended = self._ended()
        new = ended - self._seen
        self._seen = ended
        # a loop's runs are re-scored by the loop itself (the Loop tab, or `prefloop loop`
        # that this app runs for the CLI): another re-score would route a second budget
        new -= loop_runs(self.ctx.store, new)
        if not new or (self.ctx.rescore_task is not None and self.ctx.rescore_task.running):
            return
        succeeded = runs.succeeded_among(self.ctx.store, new)
        if succeeded:
            budget = self.ctx.rescore_budget
            self.ctx.rescore_task = run_in_background(
                "rescore", lambda: rescore_and_route(self.ctx.store, budget)
            )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
