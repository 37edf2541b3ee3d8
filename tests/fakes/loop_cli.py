"""Running `prefloop loop` as a subprocess for tests: its arguments on the demo store with
the tiny policy and the fake judge, a plain run, and a run sent a signal at a log line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fakes.hh import TINY

REPO = Path(__file__).resolve().parents[2]
SETTINGS = [x for k, v in {**TINY, "eval_every": 0}.items() for x in ("--set", f"{k}={v}")]


def loop_args(db: Path, policy: Path, url: str, *extra: str, rounds: int = 2) -> list[str]:
    return [
        "loop",
        "--db",
        str(db),
        "--rounds",
        str(rounds),
        "--policy",
        str(policy),
        "--judge-base-url",
        url,
        "--judge-model",
        "fake-judge",
        "--prompts-per-round",
        "4",
        "--max-new-tokens",
        "8",
        "--human-budget-per-round",
        "4",
        "--max-steps",
        "2",
        *SETTINGS,
        *extra,
    ]


def loop_env() -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": "sk-test", "PYTHONPATH": str(REPO)}


def run_cli(args: list[str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO,
        env=loop_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_when(args: list[str], marker: str, timeout: float = 300) -> str:
    """Start `prefloop loop` and SIGKILL it as soon as its log prints `marker`; its log."""
    log, code = signal_when(args, marker, signal.SIGKILL, timeout)
    assert code == -signal.SIGKILL
    return log


def signal_when(args: list[str], marker: str, sig: int, timeout: float = 300) -> tuple[str, int]:
    """Start `prefloop loop`, send it `sig` as soon as its log prints `marker`, and wait for
    it to exit: (its log, its exit status)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=REPO,
        env=loop_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if marker in line:
                proc.send_signal(sig)
                break
            assert time.monotonic() < deadline, "".join(lines[-20:])
        else:
            raise AssertionError(f"the loop ended before {marker!r}:\n{''.join(lines[-30:])}")
        lines += proc.stderr.readlines()  # what it says on its way out
    finally:
        proc.wait(timeout=60)
    return "".join(lines), proc.returncode
