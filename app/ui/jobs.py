"""Judge and Train tabs: background work started from the app, and what the tabs show.

The app imports `training` only through `training.jobs` (runs are subprocesses; the UI
process never imports torch for training) and imports `judges`/`labeling` lazily inside
functions, so a missing piece disables one tab with a clear message, not the app.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.errors import ConfigError, PrefloopError
from data.queue import queue_counts
from data.store import PreferenceStore

TRAIN_KINDS = ("dpo", "rm+ppo", "rm+grpo", "rm+rloo", "rm")  # stages joined by "+"
CURVE_KEYS = ("loss", "reward", "kl")


class MissingPiece(PrefloopError):
    """A package the tab needs (judges, training.jobs, labeling) is not installed here."""


@dataclass
class Background:
    """One background task (a judge batch or a rescore) and how it ended."""

    name: str
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.time)
    result: dict[str, Any] | None = None
    error: str | None = None
    # judge batches: USD per 1M (prompt, completion) tokens, and the token counts per
    # model before the batch, so the tab can show this batch's cost while it runs
    price_per_million: tuple[float, float] = (0.0, 0.0)
    tokens_before: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def run_in_background(name: str, work: Any) -> Background:
    task = Background(name)

    def target() -> None:
        try:
            task.result = work()
        except PrefloopError as exc:
            task.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown in the tab, not lost in a thread
            task.error = f"{type(exc).__name__}: {exc}"

    task.thread = threading.Thread(target=target, name=f"prefloop-{name}", daemon=True)
    task.thread.start()
    return task


# -- judge --------------------------------------------------------------------------


def judge_status_markdown(store: PreferenceStore, task: Background | None) -> str:
    counts = dict(store.query("SELECT status, count(*) FROM judgements GROUP BY status"))
    tokens = store.query(
        "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
        "FROM judge_calls"
    )[0]
    queues = queue_counts(store)
    judged = store.scalar(
        "SELECT count(DISTINCT pair_id) FROM labels WHERE source = 'judge' AND retracted_at IS NULL"
    )
    lines = [
        f"**Judge queue**: {queues.judge:,} pairs ({queues.judge_unlabelled:,} without a judge "
        f"label) · **pairs with a judge label**: {judged:,}",
        f"**Judgements**: {counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed",
        f"**Calls cached**: {tokens[0]} · **tokens**: {tokens[1]} prompt + {tokens[2]} completion",
    ]
    if task is not None:
        state = "running" if task.running else ("failed" if task.error else "finished")
        lines.append(
            f"**Batch**: {state} (started {time.strftime('%H:%M:%S', time.localtime(task.started))})"
        )
        if task.name == "judge":
            prompt, completion, cost = _batch_cost(store, task)
            price_prompt, price_completion = task.price_per_million
            lines.append(
                f"**This batch**: {prompt} prompt + {completion} completion tokens · "
                f"**cost** ${cost:.4f} (at ${price_prompt:g} / ${price_completion:g} per 1M tokens)"
            )
        if task.error:
            lines.append(f"**Error**: {task.error}")
        if task.result:
            if task.name == "judge":  # in words, as the CLI prints it; the ids stay out
                shown = " · ".join(_judge_glue().summary(task.result))
            else:
                shown = ", ".join(
                    f"{k} {v}" for k, v in task.result.items() if not isinstance(v, (list, dict))
                )
            lines.append(f"**Result**: {shown}")
    try:
        from data.stats import human_judge_agreement

        labels = store.query_dicts(
            "SELECT pair_id, source, who, verdict, confidence FROM labels WHERE retracted_at IS NULL"
        )
        agreement = human_judge_agreement(labels)
        if agreement.get("pairs"):
            kappa = agreement.get("cohen_kappa")
            lines.append(
                f"**Judge vs human**: accuracy {agreement['accuracy']:.3f} on {agreement['pairs']} pairs"
                + (f", Cohen's kappa {kappa:.3f}" if kappa is not None else "")
            )
    except ImportError:
        pass
    return "  \n".join(lines)


def judge_failures(store: PreferenceStore, limit: int = 50) -> list[list[Any]]:
    rows = store.query(
        "SELECT pair_id, model, order_shown, coalesce(error, ''), left(coalesce(raw_text, ''), 200) "
        "FROM judgements WHERE status = 'failed' ORDER BY created_at DESC LIMIT ?",
        [limit],
    )
    return [list(r) for r in rows]


def start_judge_batch(
    store: PreferenceStore,
    *,
    base_url: str,
    model: str,
    template: str | None,
    concurrency: int,
    limit: int | None,
    swap: bool,
    price_per_million: tuple[float, float] = (0.0, 0.0),
    backend: str = "openai",
    api_key: str | None = None,
) -> Background:
    """Check the options here (a bad one is an error in the tab at once), then judge on a
    background thread. `api_key` is handed to this batch's client and kept nowhere."""
    if not model.strip():
        raise ConfigError(
            "choose a judge model name (e.g. gpt-4o-mini, or the model your server serves; "
            "with in-process hf, a model folder or smollm2-135m-instruct)"
        )
    if any(p < 0 for p in price_per_million):
        raise ConfigError("prices per 1M tokens cannot be negative; use 0 for a free endpoint")
    glue = _judge_glue()
    config = glue.judge_config(
        backend=backend,
        base_url=base_url.strip() or None,
        model=model.strip(),
        template=(template or "").strip() or None,
        concurrency=int(concurrency),
        limit=limit,
        swap=swap,
        price_per_million=price_per_million,
    )
    key = (api_key or "").strip() or None
    tokens_before = _tokens_by_model(store)
    task = run_in_background("judge", lambda: glue.run_batch(store, config, api_key=key))
    task.price_per_million = price_per_million
    task.tokens_before = tokens_before
    return task


def _tokens_by_model(store: PreferenceStore) -> dict[str, tuple[int, int]]:
    rows = store.query(
        "SELECT model, coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
        "FROM judge_calls GROUP BY model"
    )
    return {model: (int(p), int(c)) for model, p, c in rows}


def _batch_cost(store: PreferenceStore, task: Background) -> tuple[int, int, float]:
    """Tokens this batch has used so far (calls answered from the cache cost nothing)."""
    from judges.config import Price  # a judge task exists only when judges/ is installed

    prompt = completion = 0
    for model, (p, c) in _tokens_by_model(store).items():
        p0, c0 = task.tokens_before.get(model, (0, 0))
        prompt, completion = prompt + p - p0, completion + c - c0
    return prompt, completion, Price(*task.price_per_million).cost(prompt, completion)


def _judge_glue() -> Any:
    try:
        from app.ui import judge_glue
    except ImportError as exc:
        raise MissingPiece(f"the judge engine is not available here ({exc})") from None
    return judge_glue


# -- train --------------------------------------------------------------------------


def training_jobs() -> Any:
    try:
        from training import jobs
    except ImportError as exc:
        raise MissingPiece(
            f"training.jobs is not available in this install ({exc}); the Train tab needs it"
        ) from None
    return jobs


def runs_table(store: PreferenceStore, limit: int = 30) -> list[list[Any]]:
    rows = store.query(
        "SELECT run_id, kind, status, created_at, finished_at, left(coalesce(CAST(metrics AS VARCHAR), ''), 160) "
        "FROM runs ORDER BY created_at DESC LIMIT ?",
        [limit],
    )
    return [[str(c) if c is not None else "" for c in r] for r in rows]


def latest_run(store: PreferenceStore) -> dict[str, Any] | None:
    rows = store.query_dicts("SELECT * FROM runs ORDER BY created_at DESC LIMIT 1")
    return rows[0] if rows else None


def read_curves(run_dir: str | None) -> dict[str, list[tuple[float, float]]]:
    """step -> value series for loss / reward / KL-like keys of a run's metrics.jsonl."""
    curves: dict[str, list[tuple[float, float]]] = {}
    if not run_dir:
        return curves
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return curves
    for index, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if not isinstance(row, dict):
            continue
        step = row.get("step", row.get("global_step", index))
        for key, value in row.items():
            if isinstance(value, (int, float)) and any(k in key.lower() for k in CURVE_KEYS):
                curves.setdefault(key, []).append((float(step), float(value)))
    return curves


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
    module = training_jobs()
    manager = ctx.job_manager()
    stages = kind.split("+")
    run_ids = [
        manager.submit(module.TrainRequest(stage=stage, **ctx.train_overrides.get(stage, {})))
        for stage in stages
    ]
    return (
        f"Submitted {', '.join(f'`{r}`' for r in run_ids)} (by {who}); progress below updates live."
    )


def cancel_training(ctx: Any, run_id: str) -> str:
    manager = ctx.job_manager()
    run_id = run_id.strip() or ctx.store.scalar(
        "SELECT run_id FROM runs WHERE status IN ('running', 'queued') ORDER BY created_at DESC LIMIT 1"
    )
    if not run_id:
        return "No run is queued or running."
    return f"Cancelled `{run_id}`." if manager.cancel(run_id) else f"`{run_id}` had already ended."


def training_view(ctx: Any) -> tuple[Any, ...]:
    """(status markdown, curves figure, history rows) for the Train tab."""
    if ctx.jobs is not None:
        ctx.jobs.tick()
    run = latest_run(ctx.store)
    if run is None:
        md = "No runs yet: choose what to train and press **Retrain now**."
        return md, curves_figure({}, "Loss / reward / KL"), runs_table(ctx.store)
    live: dict[str, Any] = {}
    if ctx.jobs is not None:  # live step counter from the run folder, through training.jobs
        live = ctx.jobs.status(run["run_id"]).get("progress") or {}
    lines = [f"**Latest run** `{run['run_id']}` ({run['kind']}): **{run['status']}**"]
    if live.get("step") is not None:
        lines.append(progress_line(live, running=run["status"] == "running"))
    if run["status"] == "failed" and run.get("log_tail"):
        tail = str(run["log_tail"]).strip().splitlines()[-6:]
        lines.append("```\n" + "\n".join(tail).replace("```", "'''") + "\n```")
    task = ctx.rescore_task
    if task is not None:
        state = "running" if task.running else ("failed: " + task.error if task.error else "done")
        lines.append(
            f"**Re-score after the run**: {state}"
            + (f" ({_brief(task.result)})" if task.result and not task.running else "")
        )
    curves = read_curves(run.get("run_dir"))
    return (
        "  \n".join(lines),
        curves_figure(curves, f"{run['kind']} run {run['run_id']}"),
        runs_table(ctx.store),
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


def _brief(result: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, (int, float, str)))


def rescore_and_route(store: PreferenceStore, human_budget: int) -> dict[str, Any]:
    """Fit a new ensemble on the current labels, score every pair, and add `human_budget`
    pairs to the human queue where the labels are most likely wrong (unstarted human
    pairs are re-chosen with the new ensemble; see `labeling.router`)."""
    try:
        from labeling.router import RouterConfig, route_store
        from labeling.scoring import score_store
    except ImportError as exc:
        raise MissingPiece(f"labeling is not available here ({exc}); cannot re-score") from None
    scored = score_store(store)
    routed = route_store(store, RouterConfig(human_budget=human_budget))
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
        return {
            r[0]
            for r in self.ctx.store.query(
                "SELECT run_id FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled')"
            )
        }

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - keep watching
                print(f"prefloop-app: run watcher: {exc}")

    def check(self) -> None:
        ended = self._ended()
        new = ended - self._seen
        self._seen = ended
        if not new or (self.ctx.rescore_task is not None and self.ctx.rescore_task.running):
            return
        succeeded = self.ctx.store.scalar(
            f"SELECT count(*) FROM runs WHERE status = 'succeeded' AND run_id IN ({', '.join('?' for _ in new)})",
            sorted(new),
        )
        if succeeded:
            budget = self.ctx.rescore_budget
            self.ctx.rescore_task = run_in_background(
                "rescore", lambda: rescore_and_route(self.ctx.store, budget)
            )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
