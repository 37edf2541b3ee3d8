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

import json
import logging
import os
import secrets
import subprocess
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
from training import runfiles
from training.generation_io import GENERATIONS, ingest_generations
from training.launch import adopted_poll, spawn_trainer, terminate_group, trainer_command
from training.planning import (  # noqa: F401 - these names are part of this API
    DEFAULT_POLICY,
    POLICY_STAGES,
    TINY,
    decode_run,
    plan_generate,
    plan_training,
)
from training.snapshot import ingest_ref_logprobs
from training.stages import (  # noqa: F401 - these names are part of this API
    TrainRequest,
    get_stage,
    kind_names,
    policy_stages,
    reward_stages,
    stage_names,
)

log = logging.getLogger(__name__)

STAGES = stage_names()  # the names `prefloop train` takes; the table is training.stages.STAGES
KINDS = kind_names()  # run kinds: the training stages and sampling from a policy


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
        generate_lane: bool = False,
    ):
        self.store = store
        default_root = Path(store.path).resolve().parent / "runs"
        self.runs_root = Path(runs_root) if runs_root else default_root
        self.python = python
        self.inline = inline  # run trainers in this process (benchmarks: no start-up cost)
        # `prefloop loop`: a generation run may go next to a training run (one of each at a time)
        self.generate_lane = generate_lane
        self._procs: dict[str, subprocess.Popen[bytes] | None] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._recover()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._watch, args=(poll_interval,), daemon=True, name="prefloop-jobs"
            )
            self._thread.start()

    # -- public API ---------------------------------------------------------------------

    def submit(self, request: TrainRequest) -> str:
        """Start the run now, or queue it (merging into a queued run of the same stage)."""
        stage_config(
            request.stage, request.overrides
        )  # bad settings fail here, not in the subprocess
        with self._lock:
            self.tick()
            queued = self.store.query(
                "SELECT run_id, config FROM runs WHERE status = 'queued' AND kind = ? "
                "ORDER BY created_at LIMIT 1",
                [request.stage],
            )
            if queued and self._running_id(request.stage) is not None:
                run_id, config = queued[0][0], json.loads(queued[0][1])
                config["request"] = asdict(request)
                config["merged_requests"] = int(config.get("merged_requests", 1)) + 1
                with self.store.transaction() as cur:
                    cur.execute(
                        "UPDATE runs SET config = ? WHERE run_id = ?", [json.dumps(config), run_id]
                    ).fetchall()
                return run_id
            run_id = f"{request.stage}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
            with self.store.transaction() as cur:
                cur.execute(
                    "INSERT INTO runs (run_id, kind, status, config, run_dir) VALUES (?, ?, 'queued', ?, ?)",
                    [
                        run_id,
                        request.stage,
                        json.dumps({"request": asdict(request), "merged_requests": 1}),
                        str(self.runs_root / run_id),
                    ],
                ).fetchall()
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

    def status(self, run_id: str) -> dict[str, Any]:
        """The run's row plus live progress from its folder (step, last metrics)."""
        self.tick()
        rows = self.store.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise TrainingError(f"no run {run_id!r}; list runs with `prefloop runs`")
        row = decode_run(rows[0])
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
        return [
            decode_run(r)
            for r in self.store.query_dicts(
                "SELECT run_id, kind, status, promoted, artifact_path, metrics, parent_run_id, "
                "created_at, started_at, finished_at, run_dir FROM runs ORDER BY created_at DESC LIMIT ?",
                [limit],
            )
        ]

    def cancel(self, run_id: str, grace: float = 5.0) -> bool:
        """Stop a queued or running run (its whole process group); False if it had ended."""
        with self._lock:
            row = self.store.query("SELECT status, pid FROM runs WHERE run_id = ?", [run_id])
            if not row or row[0][0] not in ("queued", "running"):
                return False
            if row[0][0] == "running":
                proc = self._procs.get(run_id)
                terminate_group(row[0][1], proc, grace)
                self._procs.pop(run_id, None)
            self._finish(run_id, "cancelled", log_tail=runfiles.log_tail(self._run_dir(run_id)))
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
                elif adopted_poll(self._pid(run_id)) is not None:
                    self._procs.pop(run_id)
                    self._ingest(run_id, None)  # exit status of an adopted process is unknown
            lanes_started: set[bool] = set()
            for run_id, kind in self.store.query(
                "SELECT run_id, kind FROM runs WHERE status = 'queued' ORDER BY created_at"
            ):
                lane = self.generate_lane and kind == "generate"
                if lane in lanes_started or self._running_id(kind) is not None:
                    continue
                lanes_started.add(lane)
                self._start(run_id)
                if not self.generate_lane:
                    break

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- internals ----------------------------------------------------------------------

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception:  # keep watching; the app shows the run's own status
                log.exception("prefloop-jobs: checking the runs failed")

    def _running_id(self, kind: str | None = None) -> str | None:
        """The running run a run of `kind` waits for: any run, or with `generate_lane` one of
        the same lane (generation, or training)."""
        if not self.generate_lane or kind is None:
            return self.store.scalar("SELECT run_id FROM runs WHERE status = 'running' LIMIT 1")
        return self.store.scalar(
            "SELECT run_id FROM runs WHERE status = 'running' AND (kind = 'generate') = ? LIMIT 1",
            [kind == "generate"],
        )

    def _run_dir(self, run_id: str) -> Path:
        return Path(self.store.scalar("SELECT run_dir FROM runs WHERE run_id = ?", [run_id]))

    def _pid(self, run_id: str) -> int | None:
        return self.store.scalar("SELECT pid FROM runs WHERE run_id = ?", [run_id])

    def _recover(self) -> None:
        """Runs left `running` by an owner that went away: adopt a live process, else fail it."""
        for run_id, pid in self.store.query(
            "SELECT run_id, pid FROM runs WHERE status = 'running'"
        ):
            if pid and adopted_poll(pid) is None:
                self._procs[run_id] = None
            else:
                self._ingest(run_id, None)

    def _start(self, run_id: str) -> None:
        config = json.loads(self.store.scalar("SELECT config FROM runs WHERE run_id = ?", [run_id]))
        request = TrainRequest(**config["request"])
        run_dir = self._run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if request.stage == "generate":
                plan = plan_generate(self.store, request, run_dir)
            else:
                plan = plan_training(self.store, request, run_dir)
        except Exception as exc:
            self._finish(run_id, "failed", log_tail=f"could not start: {exc}")
            if isinstance(exc, TrainingError | ConfigError):
                return
            raise
        config.update(plan)
        runfiles.write_json(run_dir / runfiles.CONFIG, {"run_id": run_id, **config})
        runfiles.write_status(run_dir, "queued", step=0, max_steps=request.max_steps)
        if self.inline:
            self._run_inline(run_id, request, run_dir, config)
            return
        cmd = trainer_command(self.python, request.stage, run_dir, request.num_processes)
        proc = spawn_trainer(cmd, run_dir)
        self._procs[run_id] = proc
        with self.store.transaction() as cur:
            cur.execute(
                "UPDATE runs SET status = 'running', pid = ?, config = ?, parent_run_id = ?, "
                "started_at = current_timestamp WHERE run_id = ?",
                [proc.pid, json.dumps(config), plan.get("parent_run_id"), run_id],
            ).fetchall()

    def _run_inline(
        self, run_id: str, request: TrainRequest, run_dir: Path, config: dict[str, Any]
    ) -> None:
        from training.__main__ import main as trainer_main

        with self.store.transaction() as cur:
            cur.execute(
                "UPDATE runs SET status = 'running', started_at = current_timestamp, config = ?, "
                "parent_run_id = ? WHERE run_id = ?",
                [json.dumps(config), config.get("parent_run_id"), run_id],
            ).fetchall()
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
            self._finish(
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
            self._finish(
                run_id, "failed", log_tail=f"{tail}\n{why}", metrics={"exit_code": exit_code}
            )

    def _finish(
        self,
        run_id: str,
        status: str,
        *,
        log_tail: str = "",
        metrics: dict[str, Any] | None = None,
        artifact: str | None = None,
        promoted: bool = False,
    ) -> None:
        with self.store.transaction() as cur:
            cur.execute(
                "UPDATE runs SET status = ?, log_tail = ?, metrics = ?, artifact_path = ?, promoted = ?, "
                "finished_at = current_timestamp WHERE run_id = ?",
                [
                    status,
                    log_tail[-4000:],
                    json.dumps(metrics or {}, default=str),
                    artifact,
                    promoted,
                    run_id,
                ],
            ).fetchall()


def stage_config(stage: str, overrides: dict[str, Any] | None = None) -> Any:
    """The stage's frozen config with `overrides` applied (stage modules import torch lazily)."""
    import importlib

    from training.stage_config import config_from_dict

    info = get_stage(stage)
    config_class = getattr(importlib.import_module(info.module), info.config)
    return config_from_dict(config_class, dict(overrides or {}))
