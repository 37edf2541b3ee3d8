"""The run folder: the only channel between the owner process and a trainer subprocess.

A run folder holds

* ``config.json``     what to train (stage, policy, stage config), written by the owner
* ``snapshot.parquet`` the labelled pairs, exported by the owner (trainers never open the store)
* ``status.json``     the trainer's state (running/succeeded/failed), step and message
* ``metrics.jsonl``   one JSON object per logged step
* ``train.log``       the subprocess's stdout and stderr
* ``result.json``     written last by a successful trainer: summary metrics, artifact, gate
* ``ref_logprobs.parquet`` reference log-probs the run computed (the owner caches them)
* ``ref_pairs.parquet`` a reference pass's pairs: those whose log-probs the cache lacks
* ``artifact/``       the trained model or adapter
* ``cpu_threads``     the CPU cores the owner lets the run use now (a pipelined loop moves
                      them between a training run and the generation next to it)

This module has no heavy imports: the app reads these files to show progress.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

CONFIG = "config.json"
SNAPSHOT = "snapshot.parquet"
FEEDBACK = "feedback.parquet"  # KTO runs: unpaired thumbs up/down rows
EVAL_PAIRS = "eval_pairs.parquet"  # evaluation runs: the labelled file's decided pairs
STATUS = "status.json"
METRICS = "metrics.jsonl"
LOG = "train.log"
RESULT = "result.json"
REF_LOGPROBS = "ref_logprobs.parquet"
REF_PAIRS = "ref_pairs.parquet"  # reference passes: the pairs to compute, snapshot columns
ARTIFACT = "artifact"
# besides the folder, one environment variable: the CPU cores the trainer may use, set by the
# owner when two runs share the machine (a pipelined loop's generation next to its training)
CPU_THREADS_ENV = "PREFLOOP_CPU_THREADS"
CPU_SHARE = "cpu_threads"  # its current value, which a training run follows between steps


def write_json(path: Path, value: Any) -> None:
    """Write atomically (rename), so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def write_status(run_dir: Path, state: str, **fields: Any) -> None:
    status = read_json(run_dir / STATUS, {}) or {}
    status.update(fields, state=state, updated_at=time.time())
    write_json(run_dir / STATUS, status)


def started_pid(run_dir: Path) -> int | None:
    """The pid the run's process wrote when it started (`RunContext.status`); None while
    the folder says it is still queued (its owner writes that before starting one)."""
    status = read_json(run_dir / STATUS, {}) or {}
    pid = status.get("pid")
    if status.get("state") in (None, "queued") or not isinstance(pid, int):
        return None
    return pid


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    with (run_dir / METRICS).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"time": round(time.time(), 3), **row}, default=float) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return rows


def log_tail(run_dir: Path, lines: int = 30, max_chars: int = 4000) -> str:
    path = run_dir / LOG
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])[-max_chars:]
