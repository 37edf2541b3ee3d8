"""Run (or resume) a loop: build the plan, run it under the scheduler, stop early, report.

    result = run_loop(store, LoopConfig(rounds=3, judge_models=("m",), judge_base_url=url))

The CLI (`prefloop loop`) calls this in its own process; the Loop tab calls it on a
thread of the app's process, so annotators keep labelling the same store meanwhile.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.loop.config import LoopConfig
from app.loop.early_stop import RoundOutcome, early_stop_reason
from app.loop.plan import CAPACITIES, parse_key, plan_steps, train_stages
from app.loop.scheduler import Scheduler, Task
from app.loop.stages import LoopStopped, LoopWork
from data import loop_rounds as state
from data.errors import ConfigError
from data.store import PreferenceStore
from training.jobs import JobManager, available_cores

log = logging.getLogger(__name__)


class EarlyStop:
    """Decides after each round's training whether later rounds run (thread-safe)."""

    def __init__(self, config: LoopConfig):
        self.config = config
        self.last_train = train_stages(config.stages)[-1]
        self.outcomes: dict[int, RoundOutcome] = {}
        self.reason: str | None = None
        self.after_round: int | None = None
        self._lock = threading.Lock()

    def record(self, round_: int, counts: dict[str, Any]) -> None:
        metrics = counts.get("metrics") or {}
        metric = metrics.get("heldout_accuracy", metrics.get("heldout_reward"))
        with self._lock:
            self.outcomes[round_] = RoundOutcome(round_, bool(counts.get("promoted")), metric)
            done = [self.outcomes[k] for k in sorted(self.outcomes)]
            if self.reason is None and sorted(self.outcomes) == list(range(1, len(done) + 1)):
                reason = early_stop_reason(done, self.config.min_gain)
                if reason is not None and round_ < self.config.rounds:
                    self.reason, self.after_round = reason, round_

    def skips(self, task: Task) -> bool:
        return self.after_round is not None and parse_key(task.key)[0] > self.after_round


def run_loop(
    store: PreferenceStore,
    config: LoopConfig | None = None,
    *,
    resume: bool = False,
    stop: threading.Event | None = None,
    on_loop: Any = None,
    jobs: JobManager | None = None,
) -> dict[str, Any]:
    """Run a new loop (`config`) or resume the newest unfinished one; returns `loop_summary`.

    `on_loop(loop_id)` is called once the loop is recorded (the Loop tab shows it live).
    `jobs`: the process's JobManager (the app's), else the loop makes its own; either way
    generation runs may go next to a training run while the loop runs."""
    stop = stop or threading.Event()
    if resume:
        row = state.get_loop(store)
        if row is None or row["status"] == "finished":
            raise ConfigError(
                "nothing to resume: no loop, or the last one finished; start one with "
                "`prefloop loop --rounds N`"
            )
        loop_id = row["loop_id"]
        config = LoopConfig.from_dict(row["config"])
        state.reopen_loop(store, loop_id)
    else:
        if config is None:
            raise ConfigError("run_loop needs a LoopConfig unless resume=True")
        loop_id = f"loop-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        state.create_loop(store, loop_id, config.as_dict())
    if on_loop is not None:
        on_loop(loop_id)
    folder = Path(store.path).resolve().parent / "loops" / loop_id
    folder.mkdir(parents=True, exist_ok=True)
    own_jobs = jobs is None
    if jobs is None:  # the store's one manager in this process (the app's, when it serves)
        jobs = JobManager.shared(store, config.runs_root)
    before = (jobs.side_lane, jobs.cpu_threads)
    jobs.side_lane = True
    if config.overlap:  # a generation runs next to a training run: each gets half the cores
        jobs.cpu_threads = max(1, available_cores() // 2)
    if config.warm_trainers:  # runs forked from a process that has done the imports
        jobs.keep_warm(True)
    server = judge_reward_server(store, config)
    work = LoopWork(store, config, loop_id, jobs, folder, stop, judge_reward=server)
    early = EarlyStop(config)
    done: set[str] = set()
    for row in state.stage_rows(store, loop_id):
        if row["status"] in ("done", "skipped"):
            done.add(f"r{row['round']}.{row['stage']}")
            if row["stage"] == early.last_train:
                early.record(row["round"], row["counts"])

    def task_fn(key: str):
        def fn() -> dict[str, Any]:
            counts = work.run(key)
            if key.endswith("." + early.last_train):
                early.record(parse_key(key)[0], counts)
            return counts

        return fn

    tasks = [
        Task(s.key, task_fn(s.key), s.deps, s.resource)
        for s in plan_steps(config.rounds, config.stages)
    ]
    status, reason = "finished", None
    try:
        Scheduler(CAPACITIES, overlap=config.overlap, stop=stop).run(tasks, done, early.skips)
        if early.reason is not None:
            status, reason = (
                "stopped",
                f"early stop after round {early.after_round}: {early.reason}",
            )
        elif stop.is_set():
            status, reason = "stopped", "stopped by request"
    except LoopStopped:
        status, reason = "stopped", "stopped by request"
    except KeyboardInterrupt:
        state.finish_loop(
            store, loop_id, "stopped", "interrupted (Ctrl-C); its runs were cancelled"
        )
        raise
    except BaseException as exc:
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
        state.finish_loop(store, loop_id, status, reason)
        raise
    finally:
        if server is not None:
            server.stop()
        jobs.side_lane, jobs.cpu_threads = before
        jobs.keep_warm(False)
        if own_jobs:
            jobs.close()
    state.finish_loop(store, loop_id, status, reason)
    return loop_summary(store, loop_id)


def judge_reward_server(store: PreferenceStore, config: LoopConfig) -> Any:
    """With `--reward judge`: the loopback endpoint the RL runs get their rewards from."""
    if config.reward != "judge":
        return None
    from judges.config import JudgeConfig
    from judges.pairwise_reward import PairwiseJudgeReward
    from judges.reward_server import RewardServer

    judge = JudgeConfig(
        models=config.judge_models,
        base_url=config.judge_base_url,
        concurrency=config.judge_concurrency,
        progress=False,
    )
    return RewardServer(PairwiseJudgeReward(store, judge)).start()


def loop_summary(store: PreferenceStore, loop_id: str | None = None) -> dict[str, Any]:
    """A loop's status, per-round table and stage intervals (the CLI's JSON, the Loop tab)."""
    row = state.get_loop(store, loop_id)
    if row is None:
        return {"loop_id": None, "status": "none", "rounds": [], "stages": []}
    config = LoopConfig.from_dict(row["config"])
    stages = state.stage_rows(store, row["loop_id"])
    t0 = min((s["started_at"] for s in stages if s["started_at"]), default=0.0)
    # a stage still running ends now (a loop killed mid-stage: at the last recorded moment)
    ends = [s["finished_at"] or s["started_at"] or t0 for s in stages]
    now = time.time() if row["status"] == "running" else max(ends, default=t0)
    staleness = state.pair_staleness(store, row["loop_id"])
    last_train = train_stages(config.stages)[-1]
    rounds: list[dict[str, Any]] = []
    for k in sorted({s["round"] for s in stages}):
        mine = [s for s in stages if s["round"] == k]
        by_stage = {s["stage"]: s for s in mine}
        train = by_stage.get(last_train, {})
        counts = train.get("counts") or {}
        metrics = counts.get("metrics") or {}
        starts = [s["started_at"] for s in mine if s["started_at"]]
        ends = [s["finished_at"] for s in mine if s["finished_at"]]
        judge = (by_stage.get("judge") or {}).get("counts") or {}
        rounds.append(
            {
                "round": k,
                # labels when the round's run took its snapshot (before: at its cut-off)
                "labels": counts.get("labels_at_cutoff")
                or ((by_stage.get("cutoff") or {}).get("counts") or {}).get("labels"),
                "judge_labels": judge.get("labels"),
                "judge_calibration": ((by_stage.get("rescore") or {}).get("counts") or {}).get(
                    "judge_calibration"
                ),
                "heldout_accuracy": metrics.get("heldout_accuracy"),
                "heldout_reward": metrics.get("heldout_reward"),
                "heldout_rows": metrics.get("heldout_rows"),
                "promoted": counts.get("promoted"),
                "run_id": counts.get("run_id"),
                "staleness": staleness.get(k, {}),
                "round_s": round(max(ends) - min(starts), 3) if starts and ends else None,
                "done": all(s["status"] in ("done", "skipped") for s in mine),
            }
        )
    return {
        "loop_id": row["loop_id"],
        "status": row["status"],
        "stop_reason": row["stop_reason"],
        "config": row["config"],
        "rounds": rounds,
        "stages": [
            {
                "round": s["round"],
                "stage": s["stage"],
                "status": s["status"],
                "start_s": round(s["started_at"] - t0, 3) if s["started_at"] else None,
                "end_s": round(s["finished_at"] - t0, 3) if s["finished_at"] else None,
                "run_id": s["run_id"],
                "error": s["error"],
                "counts": s["counts"],
            }
            for s in stages
        ],
        "wall_s": round(max(s["finished_at"] or now for s in stages) - t0, 3) if stages else 0.0,
        "now_s": round(now - t0, 3) if stages else 0.0,
        "running": [
            f"{s['stage']} (round {s['round']})" for s in stages if s["status"] == "running"
        ],
    }
