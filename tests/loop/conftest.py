"""Fixtures for loop tests: the demo store (scored once: its embeddings are cached in it),
a tiny GPT-2 policy folder, the fake OpenAI judge, and `loop_args` for `prefloop loop`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.hh import TINY
from tests.fakes.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]
SETTINGS = [x for k, v in {**TINY, "eval_every": 0}.items() for x in ("--set", f"{k}={v}")]


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """The demo store, scored and routed once per session (the folder is copied per test)."""
    from app.demo_data import build_demo_store
    from data.store import PreferenceStore

    folder = tmp_path_factory.mktemp("demo-template")
    with PreferenceStore(folder / "demo.duckdb") as store:
        build_demo_store(store)
    return folder


@pytest.fixture
def loop_db(demo_template: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    shutil.copytree(demo_template, folder)
    return folder / "demo.duckdb"


@pytest.fixture
def judge_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


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
