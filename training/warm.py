"""Trainer processes started ahead of their run: Python, torch, transformers, PEFT and TRL
already imported, waiting on stdin for a run folder.

A cold trainer process spends its first seconds importing (5-7 s on 2 CPU cores, a third
of a small DPO run) before it reads its run. In a pipelined loop runs follow each other
(generate, train, generate, ...), so `WarmTrainers` keeps up to `size` processes ready:
`take()` gives one to the run that starts now and starts a fresh one, so the next run's
start-up happens while this one works instead of in front of it (the same reason OpenRLHF
and veRL keep their Ray workers up between steps). `JobManager` uses one only for
a single-process run with the default environment; any other run starts cold.

The worker (`python -m training.warm`) reads one JSON line, `{"stage", "run_dir",
"cpu_threads"}`, points its stdout and stderr at the run's log, moves into the run folder
and runs the stage as `python -m training STAGE --run-dir DIR` would. End of input (the
pool was closed, or its owner went away) ends it without running anything.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# what a stage imports first; the stage modules themselves import these lazily
PRELOAD = (
    "torch",
    "transformers",
    "peft",
    "datasets",
    "trl.trainer.dpo_trainer",
    "trl.trainer.reward_trainer",
    "training.dpo",
    "training.generate",
    "training.reward",
)


class WarmTrainers:
    """Up to `size` idle trainer processes, started with `env` (the trainer environment).

    One process imports at a time (`fill`, called on every `take` and by the owner's ticks):
    several importing together on a small machine each take several times longer, and the
    first run would wait behind them."""

    def __init__(self, python: str, size: int, env: dict[str, str], cwd: Path):
        self.python = python
        self.size = size
        self.env = env
        self.cwd = cwd
        self._idle: list[subprocess.Popen[bytes]] = []  # oldest first
        self._ready: set[int] = set()  # pids that said their imports are done
        self._lock = threading.Lock()
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.fill()

    def take(
        self, stage: str, run_dir: Path, cpu_threads: int | None
    ) -> subprocess.Popen[bytes] | None:
        """Hand the run to an idle process, a ready one first, else the one importing (it
        started before a cold process would); None if there is none. Then refill."""
        order = json.dumps(
            {"stage": stage, "run_dir": str(run_dir), "cpu_threads": cpu_threads}
        ).encode()
        with self._lock:
            self._check_locked()
            while self._idle:
                ready = [p for p in self._idle if p.pid in self._ready]
                proc = (ready or self._idle)[0]
                self._idle.remove(proc)
                self._ready.discard(proc.pid)
                try:  # (its stdout pipe stays open: an importing one still writes "ready")
                    assert proc.stdin is not None
                    proc.stdin.write(order + b"\n")
                    proc.stdin.close()
                except OSError:  # it died meanwhile: try the next one
                    continue
                self._fill_locked()
                return proc
            self._fill_locked()
        return None

    def idle(self) -> list[dict[str, Any]]:
        """The idle processes, oldest first: pid and whether its imports are done."""
        with self._lock:
            self._check_locked()
            return [{"pid": p.pid, "ready": p.pid in self._ready} for p in self._idle]

    def fill(self) -> None:
        """Start a process if fewer than `size` are idle and none is importing."""
        with self._lock:
            self._check_locked()
            self._fill_locked()

    def close(self) -> None:
        """End the idle processes: they hold no run, so they are killed without waiting for
        their imports to finish."""
        with self._lock:
            idle, self._idle, self.size = self._idle, [], 0
        for proc in idle:
            proc.kill()
        for proc in idle:
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    def _check_locked(self) -> None:
        """Note the processes that finished importing; drop those that died."""
        for proc in list(self._idle):
            if proc.pid in self._ready:
                continue
            assert proc.stdout is not None
            if select.select([proc.stdout], [], [], 0)[0]:
                if proc.stdout.readline().strip() == b"ready":
                    self._ready.add(proc.pid)
                    continue
                proc.wait()  # end of output without "ready": its imports failed
                self._idle.remove(proc)
                log.warning("a warm trainer process exited with code %s", proc.returncode)
                proc.stdout.close()
                if proc.stdin is not None:
                    proc.stdin.close()

    def _fill_locked(self) -> None:
        importing = any(p.pid not in self._ready for p in self._idle)
        if importing or len(self._idle) >= self.size:
            return
        self._idle.append(
            subprocess.Popen(
                [self.python, "-m", "training.warm"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,  # one line, "ready", when the imports are done
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # cancel stops its whole group, as for a cold run
                env=self.env,
                cwd=self.cwd,
            )
        )


def main() -> int:
    for name in PRELOAD:
        importlib.import_module(name)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    order = json.loads(line)
    run_dir = Path(order["run_dir"])
    from training import runfiles

    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(run_dir / runfiles.LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(run_dir)
    if order.get("cpu_threads"):
        os.environ[runfiles.CPU_THREADS_ENV] = str(order["cpu_threads"])
    from training.__main__ import main as trainer_main

    return trainer_main([order["stage"], "--run-dir", str(run_dir)])


if __name__ == "__main__":
    sys.exit(main())
