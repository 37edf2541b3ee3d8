"""Start, watch, cancel and ingest training runs from the process that owns the store.

The CLI and the Gradio app import this module; it never imports torch & co. A run is
`python -m training <stage> --run-dir DIR` in its own process group. The owner

1. records the run in the store's `runs` table (queued -> running -> succeeded/failed/
   cancelled) and exports a Parquet snapshot of the labelled pairs into the run folder,
2. launches the subprocess (through `accelerate launch` for `num_processes > 1`),
3. follows `status.json`, `metrics.jsonl` and `train.log` in the run folder,
4. after the process ends, ingests `result.json` (metrics, artifact, promotion gate) and
   the new reference log-probs; a process that crashed or was killed leaves its run
   `failed` with the log tail, and nothing else in the store changes.

One run at a time: a request that arrives while a run is going is queued, and further
requests for the same stage merge into that one queued run.

Non-blocking use (the app): `submit()` -> run_id, then `status()`/`metrics()`/`cancel()`
(call `tick()` or construct with `background=True` so finished runs are picked up).
Blocking use (the CLI): `run()` = submit + wait.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data.errors import ConfigError, TrainingError
from data.store import PreferenceStore
from training import runfiles, runs
from training.generation_io import GENERATIONS, ingest_generations
from training.launch import (
    adopted_poll,
    available_cores,
    spawn_trainer,
    terminate_group,
    trainer_command,
    trainer_env,
)
from training.planning import (  # noqa: F401 - these names are part of this API
    DEFAULT_POLICY,
    POLICY_STAGES,
    TINY,
    plan_evaluate,
    plan_generate,
    plan_reference,
    plan_rollouts,
    plan_training,
    reference_todo,
)
from training.snapshot import ingest_ref_logprobs
from training.stages import (  # noqa: F401 - these names are part of this API
    DISTRIBUTED,
    EVAL_MODEL_KINDS,
    TrainRequest,
    get_stage,
    kind_names,
    policy_stages,
    reward_stages,
    side_lane_kinds,
    stage_config,
    stage_names,
)
from training.tracking import tracker_env_prefixes
from training.warm import ForkServer

log = logging.getLogger(__name__)

SIDE_KINDS = side_lane_kinds()  # generate, rollouts, reference: may go next to a training run

_SHARED: dict[str, JobManager] = {}  # store path -> its manager in this process (`shared`)
_SHARED_LOCK = threading.Lock()

STAGES = stage_names()  # the names `prefloop train` takes; the table is training.stages.STAGES
KINDS = kind_names()  # run kinds: the training stages and sampling from a policy


def new_run_id(stage: str) -> str:
    """An unused run id: the stage, the time (UTC) and a random suffix."""
    return f"{stage}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class JobManager:
    """Runs training jobs one at a time for one store."""

    def __init__(
        self,
        store: PreferenceStore,
        runs_root: str | os.PathLike[str] | None = None,
        *,
        python: str = sys.executable,
        background: bool = False,
        poll_interval: float = 0.5,
        inline: bool = False,
        side_lane: bool = False,
    ):
        self.store = store
        default_root = Path(store.path).resolve().parent / "runs"
        self.runs_root = Path(runs_root) if runs_root else default_root
        self.python = python
        self.inline = inline  # run trainers in this process (benchmarks: no start-up cost)
        # `prefloop loop`: a generation or reference-pass run may go next to a training run
        # (one of each lane at a time; `Stage.side_lane`)
        self.side_lane = side_lane
        # torch threads of a run while a run of the other lane goes too (None: every run
        # gets all cores); a training run gets all of them back when it is alone
        self.cpu_threads: int | None = None
        self._shares: dict[str, int] = {}  # run id -> the CPU share last written for it
        self._forks: ForkServer | None = None  # forks runs with the imports done: keep_warm
        self._procs: dict[str, Any] = {}  # run id -> Popen or ForkedRun; None: adopted
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._recover()
        self._thread: threading.Thread | None = None
        self._users = 0  # `shared` callers still holding this manager
        if background:
            self._start_watching(poll_interval)

    def _start_watching(self, interval: float) -> None:
        self._thread = threading.Thread(
            target=self._watch, args=(interval,), daemon=True, name="prefloop-jobs"
        )
        self._thread.start()

    # -- public API ---------------------------------------------------------------------

    @classmethod
    def shared(
        cls,
        store: PreferenceStore,
        runs_root: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> JobManager:
        """The one manager of `store` in this process, made on first use. The app, a loop
        and CLI commands the app runs for others (`app.control`) all start runs: with one
        manager each queued run is started once and each ended one ingested once. Every
        `shared` call needs its own `close()`; the last one closes it. `runs_root` and
        `options` apply when it is made (`submit(runs_root=...)` places a run elsewhere)."""
        key = str(Path(store.path).resolve())
        with _SHARED_LOCK:
            manager = _SHARED.get(key)
            if manager is None:
                manager = cls(store, runs_root, **options)
                _SHARED[key] = manager
            elif options.get("background") and manager._thread is None:
                manager._start_watching(options.get("poll_interval", 0.5))
            manager._users += 1
            return manager

    def submit(
        self,
        request: TrainRequest,
        runs_root: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Start the run now, or queue it (merging into a queued run of the same stage);
        its folder goes under `runs_root` (default: the manager's). `run_id`: the id to give
        it (`new_run_id`), which a caller recorded before submitting; the id returned
        differs only when the request merged into a queued run."""
        stage_config(
            request.stage, request.overrides
        )  # bad settings fail here, not in the subprocess
        with self._lock:
            self.tick()
            queued = runs.oldest_queued(self.store, request.stage)
            if queued and self._running_id(request.stage) is not None:
                run_id, config = queued
                config["request"] = asdict(request)
                config["merged_requests"] = int(config.get("merged_requests", 1)) + 1
                runs.set_config(self.store, run_id, config)
                return run_id
            if run_id is None:
                run_id = new_run_id(request.stage)
            elif self.exists(run_id):
                raise TrainingError(f"run id {run_id!r} is taken; submit with new_run_id()")
            runs.insert_queued(
                self.store,
                run_id,
                request.stage,
                {"request": asdict(request), "merged_requests": 1},
                str(Path(runs_root or self.runs_root) / run_id),
            )
            self.tick()
            return run_id

    def run(
        self,
        request: TrainRequest,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Blocking: submit and wait for the run to end; returns its final status."""
        return self.wait(self.submit(request), timeout=timeout, on_progress=on_progress)

    def wait(
        self,
        run_id: str,
        *,
        timeout: float | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.25,
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(run_id)
            if on_progress is not None:
                on_progress(status)
            if status["status"] in ("succeeded", "failed", "cancelled"):
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TrainingError(
                    f"run {run_id} still {status['status']} after {timeout:.0f}s; "
                    f"cancel it with JobManager.cancel({run_id!r}) or wait longer"
                )
            time.sleep(interval)

    def exists(self, run_id: str) -> bool:
        """Whether the store has a run with this id (in any status)."""
        return runs.get_run(self.store, run_id) is not None

    def status(self, run_id: str) -> dict[str, Any]:
        """The run's row plus live progress from its folder (step, last metrics)."""
        self.tick()
        row = runs.get_run(self.store, run_id)
        if row is None:
            raise TrainingError(f"no run {run_id!r}; list runs with `prefloop runs`")
        run_dir = Path(row["run_dir"])
        live = runfiles.read_json(run_dir / runfiles.STATUS, {}) or {}
        metrics = runfiles.read_metrics(run_dir)
        row["progress"] = {
            k: live.get(k)
            for k in ("state", "step", "max_steps", "message", "started", "first_step_at")
        }
        row["last_metrics"] = metrics[-1] if metrics else None
        return row

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        return runfiles.read_metrics(Path(self.status(run_id)["run_dir"]))

    def log_tail(self, run_id: str, lines: int = 30) -> str:
        return runfiles.log_tail(Path(self.status(run_id)["run_dir"]), lines)

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        self.tick()
        return runs.list_runs(self.store, limit)

    def cancel(self, run_id: str, grace: float = 5.0) -> bool:
        """Stop a queued or running run (its whole process group); False if it had ended."""
        with self._lock:
            row = runs.status_and_pid(self.store, run_id)
            if row is None or row[0] not in runs.ACTIVE:
                return False
            if row[0] == "running":
                proc = self._procs.get(run_id)
                terminate_group(row[1], proc, grace)
                self._procs.pop(run_id, None)
            runs.mark_ended(
                self.store, run_id, "cancelled", log_tail=runfiles.log_tail(self._run_dir(run_id))
            )
        self.tick()
        return True

    def tick(self) -> None:
        """Pick up ended processes and start the next queued run when none is going."""
        with self._lock:
            for run_id, proc in list(self._procs.items()):
                if proc is not None:
                    code = proc.poll()
                    if code is not None:
                        self._procs.pop(run_id)
                        self._ingest(run_id, code)
                    elif getattr(proc, "orphaned", False):  # its fork server ended first
                        self._procs[run_id] = None  # followed by pid from now on
                elif adopted_poll(self._pid(run_id)) is not None:
                    self._procs.pop(run_id)
                    self._ingest(run_id, None)  # exit status of an adopted process is unknown
            if self._forks is not None and self._forks.importing():
                return  # a queued run starts forked once the imports are done
            lanes_started: set[bool] = set()
            for run_id, kind in runs.queued_runs(self.store):
                lane = self.side_lane and kind in SIDE_KINDS
                if lane in lanes_started or self._running_id(kind) is not None:
                    continue
                lanes_started.add(lane)
                self._start(run_id)
                if not self.side_lane:
                    break
            if self.cpu_threads:
                self._share_cpu()

    def _share_cpu(self) -> None:
        """Give each running run half the cores while a run of the other lane goes, else all
        (`runfiles.CPU_SHARE`, which a training run reads between steps, and a generation or
        reference pass before its model's forward passes)."""
        going = runs.running_kinds(self.store)
        both = len({kind in SIDE_KINDS for _, kind, _ in going}) > 1
        share = self.cpu_threads if both else available_cores()
        for run_id, _, run_dir in going:
            if self._shares.get(run_id) != share:
                runfiles.write_json(Path(run_dir) / runfiles.CPU_SHARE, share)
                self._shares[run_id] = share

    def keep_warm(self, on: bool) -> None:
        """With `on`, runs are forked from a process that has done the imports
        (`training.warm`), so they skip their start-up; off ends that process (runs it
        forked go on)."""
        with self._lock:
            if self._forks is not None:
                self._forks.close()
                self._forks = None
            if on and not self.inline and hasattr(os, "fork"):  # no fork on Windows: cold
                self._forks = ForkServer(self.python, trainer_env(), self.runs_root)

    @property
    def warm(self) -> dict[str, Any] | None:
        """The fork server's pid and whether its imports are done (None when off)."""
        with self._lock:
            if self._forks is None:
                return None
            self._forks.refresh()
            return {"pid": self._forks.proc.pid, "ready": self._forks.ready}

    def close(self) -> None:
        with _SHARED_LOCK:
            key = str(Path(self.store.path).resolve())
            if _SHARED.get(key) is self:
                self._users -= 1
                if self._users > 0:
                    return  # another user of the shared manager still needs it
                del _SHARED[key]
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.keep_warm(False)

    # -- internals ----------------------------------------------------------------------

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception:  # keep watching; the app shows the run's own status
                log.exception("prefloop-jobs: checking the runs failed")

    def _running_id(self, kind: str | None = None) -> str | None:
        """The running run a run of `kind` waits for: any run, or with `side_lane` one of
        the same lane (generation and reference passes, or training)."""
        if not self.side_lane or kind is None:
            return runs.running_id(self.store)
        return runs.running_id(self.store, SIDE_KINDS, side=kind in SIDE_KINDS)

    def _run_dir(self, run_id: str) -> Path:
        return Path(runs.run_dir_of(self.store, run_id))

    def _pid(self, run_id: str) -> int | None:
        return runs.pid_of(self.store, run_id)

    def _recover(self) -> None:
        """Runs left `running` by an owner that went away: adopt a live process, else fail it."""
        for run_id, pid in runs.running_runs(self.store):
            if pid and adopted_poll(pid) is None:
                self._procs[run_id] = None
            else:
                self._ingest(run_id, None)

    def _start(self, run_id: str) -> None:
        config = runs.run_config(self.store, run_id)
        request = TrainRequest(**config["request"])
        run_dir = self._run_dir(run_id)
        if self._adopt_unrecorded(run_id, run_dir):
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if request.stage == "generate":
                plan = plan_generate(self.store, request, run_dir)
            elif request.stage == "reference":
                plan = plan_reference(self.store, request, run_dir)
            elif request.stage == "rollouts":
                plan = plan_rollouts(self.store, request, run_dir)
            elif request.stage == "evaluate":
                plan = plan_evaluate(self.store, request, run_dir)
            else:
                plan = plan_training(self.store, request, run_dir)
        except Exception as exc:
            runs.mark_ended(self.store, run_id, "failed", log_tail=f"could not start: {exc}")
            if isinstance(exc, TrainingError | ConfigError):
                return
            raise
        config.update(plan)
        runfiles.write_json(run_dir / runfiles.CONFIG, {"run_id": run_id, **config})
        runfiles.write_status(run_dir, "queued", step=0, max_steps=request.max_steps)
        if self.inline:
            self._run_inline(run_id, request, run_dir, config)
            return
        cmd = trainer_command(
            self.python, request.stage, run_dir, request.num_processes, request.distributed
        )
        trackers = tracker_env_prefixes(str(request.overrides.get("report_to", "auto")))
        share = None  # all cores, unless a run of the other lane is going (_share_cpu)
        if self.cpu_threads and runs.running_id(
            self.store, SIDE_KINDS, side=request.stage not in SIDE_KINDS
        ):
            share = self.cpu_threads
        proc: Any = None
        if self._forks is not None and not trackers and cmd[1:3] == ["-m", "training"]:
            proc = self._forks.start(request.stage, run_dir, share)
        if proc is None:
            proc = spawn_trainer(cmd, run_dir, trackers, share)
        self._procs[run_id] = proc
        runs.mark_running(
            self.store, run_id, config=config, parent_run_id=plan.get("parent_run_id"), pid=proc.pid
        )

    def _adopt_unrecorded(self, run_id: str, run_dir: Path) -> bool:
        """A queued run whose process has started: its owner was killed after starting the
        process and before recording it (`mark_running`). Follow that process, as
        `_recover` follows a recorded one, instead of starting a second into the same
        folder; if it has ended, `tick` ingests what it left. (Its process writes its pid
        within milliseconds of the fork, well before a new owner gets here.)"""
        pid = runfiles.started_pid(run_dir)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            pid = os.getpgid(pid)  # its group's leader (a launcher's), which cancel stops
        config = runfiles.read_json(run_dir / runfiles.CONFIG) or {}
        config.pop("run_id", None)
        runs.mark_running(
            self.store, run_id, config=config, parent_run_id=config.get("parent_run_id"), pid=pid
        )
        self._procs[run_id] = None
        log.warning("run %s had started unrecorded (pid %s); following it", run_id, pid)
        return True

    def _run_inline(
        self, run_id: str, request: TrainRequest, run_dir: Path, config: dict[str, Any]
    ) -> None:
        from training.__main__ import main as trainer_main

        runs.mark_running(
            self.store, run_id, config=config, parent_run_id=config.get("parent_run_id")
        )
        code = trainer_main([request.stage, "--run-dir", str(run_dir)])
        self._ingest(run_id, code)

    def _ingest(self, run_id: str, exit_code: int | None) -> None:
        run_dir = self._run_dir(run_id)
        result = runfiles.read_json(run_dir / runfiles.RESULT)
        tail = runfiles.log_tail(run_dir)
        if exit_code in (0, None) and result is not None:
            metrics = dict(result.get("metrics", {}))
            if (run_dir / GENERATIONS).exists():
                metrics.update(ingest_generations(self.store, run_dir / GENERATIONS, who=run_id))
            else:
                metrics["ref_logprobs_added"] = ingest_ref_logprobs(
                    self.store, run_dir / runfiles.REF_LOGPROBS
                )
            artifact = result.get("artifact")
            runs.mark_ended(
                self.store,
                run_id,
                "succeeded",
                metrics=metrics,
                log_tail=tail,
                artifact=str(run_dir / artifact) if artifact else None,
                promoted=bool(result.get("promote", False)),
            )
        else:
            why = (
                "the trainer process is gone (owner restarted or it was killed)"
                if exit_code is None
                else f"the trainer exited with code {exit_code}"
            )
            if exit_code is not None and exit_code < 0:
                why = f"the trainer was killed by signal {-exit_code}"
            # The reason goes last: the stored tail keeps the end, so a long log never cuts it.
            runs.mark_ended(
                self.store,
                run_id,
                "failed",
                log_tail=f"{tail}\n{why}",
                metrics={"exit_code": exit_code},
            )
