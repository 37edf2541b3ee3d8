"""Trainer processes forked from one that has done the imports: a fork server.

A cold trainer process spends its first seconds importing torch, transformers, PEFT and TRL
(5-7 s on 2 CPU cores, as long as a whole small DPO run) before it reads its run. In a
pipelined loop runs follow each other (generate, train, generate, ...), so `ForkServer`
starts one process that imports them once and then forks a child per run. The child has
every module already (copy-on-write pages), so a run starts in milliseconds and no run pays
for the imports again: the idea of multiprocessing's forkserver and of gunicorn's
`--preload`. Each child is a run's process like a cold one: its own session (cancel stops
its group), its output in the run's log, its pid in `runs`, adopted by a new owner after a
restart. `JobManager` forks only single-process runs with the default environment; any
other run starts cold, as before.

The server (`python -m training.warm`) talks over its stdin and stdout, a line each:

    -> {"stage": ..., "run_dir": ..., "cpu_threads": ...}    one run
    <- ready                                                 once, imports done
    <- started PID                                           the reply to each run
    <- exited PID CODE                                       a child ended (CODE < 0: signal)

End of input (the owner closed it, or went away) ends the server; running children go on.
It runs one thread (a fork copies only the forking thread, so no lock is left held) and
touches no torch operation, so a child starts its own thread pools.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import select
import subprocess
import sys
import time
import traceback
from pathlib import Path

from data.processes import alive

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
REPLY_TIMEOUT = 10.0  # seconds a fork may take to be reported before the run starts cold
IMPORT_TIMEOUT = 120.0  # seconds the server may import before runs start cold instead


class ForkServer:
    """The owner's side: starts the server, hands it runs, collects its children's exits."""

    def __init__(self, python: str, env: dict[str, str], cwd: Path):
        cwd.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [python, "-m", "training.warm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
        self.ready = False
        self.started_at = time.monotonic()
        self._pending = b""
        self._started: list[int] = []
        self._exits: dict[int, int] = {}

    def start(self, stage: str, run_dir: Path, cpu_threads: int | None) -> ForkedRun | None:
        """Fork a child for the run; None (start it cold) while the server is importing,
        or if it is gone."""
        self._read(0)
        if not self.ready or not self.running:
            return None
        order = {"stage": stage, "run_dir": str(run_dir), "cpu_threads": cpu_threads}
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(order).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        deadline = time.monotonic() + REPLY_TIMEOUT
        while not self._started and self.running and time.monotonic() < deadline:
            self._read(0.05)
        if not self._started:
            log.warning("the trainer fork server did not answer; stopping it")
            self.close()
            return None
        return ForkedRun(self, self._started.pop(0))

    def refresh(self) -> None:
        """Read what the server reported so far (ready, exits)."""
        self._read(0)

    def importing(self) -> bool:
        """Still importing, within `IMPORT_TIMEOUT`: a run waits for it rather than start a
        cold process next to it (two imports at once on a small machine take twice as long)."""
        self._read(0)
        if self.ready or not self.running:
            return False
        if time.monotonic() - self.started_at < IMPORT_TIMEOUT:
            return True
        log.warning("the trainer fork server is still importing after %.0f s", IMPORT_TIMEOUT)
        self.close()
        return False

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def exit_code(self, pid: int) -> int | None:
        self._read(0)
        return self._exits.get(pid)

    def close(self) -> None:
        """End the server (its children go on); a last read keeps the exits it reported."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):  # a pipe it closed first
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # still importing: nothing of a run is lost
            self.proc.kill()
            self.proc.wait()
        self._read(0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def _read(self, timeout: float) -> None:
        out = self.proc.stdout
        if out is None or out.closed:
            return
        while select.select([out], [], [], timeout)[0]:
            chunk = os.read(out.fileno(), 65536)
            if not chunk:
                break
            self._pending += chunk
            timeout = 0
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            word, *rest = line.decode().split() or [""]
            if word == "ready":
                self.ready = True
            elif word == "started":
                self._started.append(int(rest[0]))
            elif word == "exited":
                self._exits[int(rest[0])] = int(rest[1])


class ForkedRun:
    """A forked run as `JobManager` keeps it: `pid`, `poll()` and `wait()` like a Popen.

    Its exit status comes from the server. If the server ended first, the run is
    `orphaned`: its owner follows it by pid, as a run adopted after a restart."""

    def __init__(self, server: ForkServer, pid: int):
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid)
        return self.returncode

    @property
    def orphaned(self) -> bool:
        return self.poll() is None and not self.server.running

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if self.orphaned and not alive(self.pid):
                return None  # gone, exit status unknown
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.05)
        return self.returncode


def serve() -> int:
    for name in PRELOAD:
        importlib.import_module(name)
    out, inp = sys.stdout.fileno(), sys.stdin.fileno()
    os.write(out, b"ready\n")
    pending = b""
    while True:
        readable = select.select([inp], [], [], 0.2)[0]
        _report_exits(out)
        if not readable:
            continue
        chunk = os.read(inp, 65536)
        if not chunk:
            return 0
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                pid = _fork_run(json.loads(line), out, inp)
                os.write(out, f"started {pid}\n".encode())


def _report_exits(out: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        os.write(out, f"exited {pid} {os.waitstatus_to_exitcode(status)}\n".encode())


def _fork_run(order: dict, out: int, inp: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the child: becomes the run's process, as `python -m training STAGE` would be
        os.setsid()
        run_dir = Path(order["run_dir"])
        from training import runfiles

        devnull = os.open(os.devnull, os.O_RDONLY)
        log_fd = os.open(run_dir / runfiles.LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(devnull, inp)
        os.dup2(log_fd, out)
        os.dup2(log_fd, sys.stderr.fileno())
        os.close(devnull)
        os.close(log_fd)
        os.chdir(run_dir)
        if order.get("cpu_threads"):
            os.environ[runfiles.CPU_THREADS_ENV] = str(order["cpu_threads"])
        from training.__main__ import main as trainer_main

        code = trainer_main([order["stage"], "--run-dir", str(run_dir)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child must end here, never return to serve()
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    sys.exit(serve())
