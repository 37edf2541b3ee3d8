"""The Loop tab's work: run `app.loop` on a thread of the app's process, stop it, show it.

The loop runs here, inside the process that owns the store, so annotators keep labelling
in the Annotate tab while it goes: their labels are in the store when a round's training
run takes its snapshot, and a label that arrives later goes into the next round.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from app.loop.config import LoopConfig
from app.ui.render import plain
from data.errors import ConfigError

log = logging.getLogger("prefloop.app")

ROUND_COLUMNS = [
    "round",
    "human labels",
    "judge labels",
    "import labels",
    "judge agreement (calibration)",
    "held-out",
    "promoted",
    "staleness",
    "round time (s)",
]
STAGE_COLORS = {
    "generate": "#4c78a8",
    "reference": "#72b7b2",
    "rollouts": "#eeca3b",
    "score": "#f58518",
    "judge": "#54a24b",
    "route": "#b279a2",
    "cutoff": "#9d755d",
    "rescore": "#bab0ac",
}


@dataclass
class LoopController:
    """The one loop an app runs at a time: its thread, stop flag and how it ended."""

    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    loop_id: str | None = None
    error: str | None = None
    started_by: str | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def controller(ctx: Any) -> LoopController:
    if ctx.loop is None:
        ctx.loop = LoopController()
    return ctx.loop


def start_loop(ctx: Any, config: LoopConfig | None, *, who: str, resume: bool = False) -> str:
    """Start (or resume) a loop on a background thread; refuse a second one."""
    from app.loop.runner import run_loop

    ctl = controller(ctx)
    if ctl.running:
        raise ConfigError(f"loop {ctl.loop_id} is running: stop it first")
    ctl.stop, ctl.error, ctl.loop_id, ctl.started_by = threading.Event(), None, None, who
    started = threading.Event()

    def on_loop(loop_id: str) -> None:
        ctl.loop_id = loop_id
        started.set()

    def work() -> None:
        # The loop re-scores after its own runs; the Train tab's watcher would re-score and
        # route another human budget after each of them, so it rests while the loop runs.
        watcher, ctx.watcher = ctx.watcher, None
        if watcher is not None:
            watcher.close()
        try:
            run_loop(
                ctx.store,
                config,
                resume=resume,
                stop=ctl.stop,
                on_loop=on_loop,
                jobs=ctx.job_manager(),
            )
        except Exception as exc:  # noqa: BLE001 - shown in the tab, not lost in a thread
            log.exception("loop failed")
            ctl.error = f"{type(exc).__name__}: {exc}"
        finally:
            started.set()
            if watcher is not None:
                ctx.start_background()  # a new watcher: the loop's ended runs count as seen

    ctl.thread = threading.Thread(target=work, name="prefloop-loop", daemon=True)
    ctl.thread.start()
    started.wait(timeout=30)
    if ctl.error:
        raise ConfigError(ctl.error)
    log.info("%s started loop %s", who, ctl.loop_id)
    return f"Loop `{ctl.loop_id}` started by {plain(who)}."


def stop_loop(ctx: Any) -> str:
    """Ask the running loop to stop: nothing new starts and its running run is cancelled."""
    ctl = controller(ctx)
    if not ctl.running:
        return "No loop is running."
    ctl.stop.set()
    return f"Stopping loop `{ctl.loop_id}`: nothing new starts; its running run is cancelled."


def loop_view(ctx: Any) -> tuple[str, list[list[Any]], Any]:
    """(status markdown, per-round rows, timeline figure) of the running or newest loop."""
    from app.loop.runner import loop_summary

    ctl = controller(ctx)
    summary = loop_summary(ctx.store, ctl.loop_id)
    if summary["loop_id"] is None:
        return "No loop yet: set the options and press **Start loop**.", [], timeline({})
    state = "running" if ctl.running else summary["status"]
    lines = [f"**Loop** `{summary['loop_id']}`: **{state}**, {summary['wall_s']:g} s"]
    if summary.get("running"):
        lines.append("running now: " + ", ".join(summary["running"]))
    if ctl.running and ctl.stop.is_set():
        lines.append("stopping: waiting for the running stages to end")
    if summary.get("stop_reason"):
        lines.append(f"why it stopped: {plain(summary['stop_reason'])}")
    if ctl.error:
        lines.append(f"error: {plain(ctl.error)}")
    return "  \n".join(lines), round_rows(summary), timeline(summary)


def round_rows(summary: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for r in summary["rounds"]:
        labels = r["labels"]  # the counts at the round's cut-off, once it has one
        shown = [labels.get(s, 0) if labels else "-" for s in ("human", "judge", "import")]
        metric = r["heldout_accuracy"] if r["heldout_accuracy"] is not None else r["heldout_reward"]
        rows.append(
            [
                r["round"],
                *shown,
                _agreement(r.get("judge_calibration")),
                None if metric is None else round(float(metric), 3),
                {True: "yes", False: "no (kept parent)"}.get(r["promoted"], "-"),
                ", ".join(f"{k}: {v} pairs" for k, v in sorted(r["staleness"].items())) or "-",
                r["round_s"],
            ]
        )
    return rows


def _agreement(calibration: dict[str, Any] | None) -> str:
    """Each judge's agreement with humans on the calibration slice at the round's end."""
    if not calibration:
        return "-"
    return "; ".join(f"{v['agreement']:.2f} on {v['pairs']}" for v in calibration.values())


def timeline(summary: dict[str, Any]):  # noqa: ANN201 - a matplotlib Figure
    """A Gantt chart of the stages of the last rounds: one bar per stage and round."""
    from app.ui.dashboard import empty_note, new_figure

    fig, ax = new_figure("Stages over time (what overlapped)")
    stages = [s for s in summary.get("stages", []) if s["start_s"] is not None]
    if not stages:
        empty_note(ax, "no stages yet")
        return fig
    last_rounds = sorted({s["round"] for s in stages})[-4:]
    stages = [s for s in stages if s["round"] in last_rounds]
    now = summary.get("now_s") or max((s["end_s"] or s["start_s"]) for s in stages)
    names = list(dict.fromkeys(s["stage"] for s in sorted(stages, key=lambda s: s["start_s"])))
    for s in stages:
        end = s["end_s"] if s["end_s"] is not None else now
        color = STAGE_COLORS.get(s["stage"], "#e45756")
        y = names.index(s["stage"])
        ax.barh(y, max(end - s["start_s"], 0.05), left=s["start_s"], color=color, alpha=0.85)
        ax.text(s["start_s"], y, f"r{s['round']}", va="center", fontsize=7, color="white")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the loop started")
    return fig
