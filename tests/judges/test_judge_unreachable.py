"""An endpoint nobody answers on stops the batch with one error, after a bounded number of
connection attempts, and writes no failed judgement per pair.

Connection attempts are counted with an audit hook on `socket.connect` (CPython raises the
event for every connect, the asyncio ones included), so nothing in the client is wrapped.
"""

from __future__ import annotations

import dataclasses
import itertools
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from app.cli import cli
from app.cli_common import run_cli
from data.errors import JudgeError
from data.store import PreferenceStore
from judges.batch import run_batch
from judges.config import JudgeConfig
from tests.fakes.judging import make_pairs, prefers_good
from tests.fakes.openai_server import FakeOpenAIServer, Reply

REPO = Path(__file__).resolve().parents[2]
_connects: list[tuple[Any, ...]] = []
_hooked = False


def _count_connects(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and isinstance(args[1], tuple):
        _connects.append(args[1])


def connects_to(port: int) -> int:
    return sum(1 for address in _connects if len(address) >= 2 and address[1] == port)


@pytest.fixture
def connect_counter() -> None:
    global _hooked
    if not _hooked:  # an audit hook cannot be removed: install one for the whole session
        sys.addaudithook(_count_connects)
        _hooked = True
    _connects.clear()


def closed_port() -> int:
    """A port that was just free on 127.0.0.1 and has nothing listening: connects are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rows(store_path: Path, table: str) -> int:
    with PreferenceStore(store_path, read_only=True) as store:
        return int(store.scalar(f"SELECT count(*) FROM {table}"))


def test_closed_port_gives_one_error_after_bounded_attempts(
    store_path: Path, connect_counter: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with PreferenceStore(store_path) as store:
        make_pairs(store, 20)
    port = closed_port()
    url = f"http://127.0.0.1:{port}/v1"
    args = ["judge", "--db", str(store_path), "--base-url", url, "--model", "m"]
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(cli, [*args, "--max-retries", "2", "--concurrency", "8", "--swap"])
    elapsed = time.monotonic() - started
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()  # one line, no progress bar, no row per pair
    assert line.startswith(f"Error: cannot reach {url} (connection refused; 3 attempts)")
    assert "vllm serve" in line and "llama-server" in line and "ollama serve" in line
    assert "--backend hf" in line
    # 40 units with concurrency 8, but only the first request was sent, with its 2 retries
    assert connects_to(port) == 3
    assert elapsed < 10  # two backoffs of at most 0.5 s and 1 s, not 40 units x 3 tries
    assert rows(store_path, "judgements") == 0 and rows(store_path, "judge_calls") == 0


def test_closed_port_from_the_command_line(store_path: Path) -> None:
    with PreferenceStore(store_path) as store:
        make_pairs(store, 5)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = subprocess.run(
        [sys.executable, "-m", "app", "judge", "--db", str(store_path), "--base-url", url]
        + ["--model", "m", "--max-retries", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: cannot reach {url} (connection refused; 1 attempt)"), line
    assert rows(store_path, "judgements") == 0


def test_unresolvable_host_is_one_error(store: PreferenceStore) -> None:
    make_pairs(store, 3)
    config = JudgeConfig(
        models=("m",), base_url="http://prefloop-no-such-host.invalid/v1", max_retries=0
    )
    with pytest.raises(JudgeError, match=r"cannot reach .*\.invalid/v1 \(host name not resolved"):
        run_batch(store, config)
    assert store.count("judgements") == 0


def test_server_gone_mid_batch_keeps_finished_work_and_resumes(store: PreferenceStore) -> None:
    make_pairs(store, 12)
    answered = 4
    replies = itertools.count()
    server = FakeOpenAIServer().start()

    def go_away_after_four(body: dict[str, Any]) -> Reply:
        if next(replies) < answered:
            return prefers_good(body)
        threading.Thread(target=server.stop, daemon=True).start()  # the listener closes
        return Reply.dropped()  # the keep-alive connection goes too: the retry must reconnect

    server.responder = go_away_after_four
    config = JudgeConfig(
        models=("judge-m",), base_url=server.url, concurrency=1, max_retries=2, progress=False
    )
    with pytest.raises(JudgeError, match="stopped accepting connections .* run the same command"):
        run_batch(store, config)
    statuses = dict(store.query("SELECT status, count(*) FROM judgements GROUP BY status"))
    assert statuses == {"ok": answered}  # committed before stopping; no failed rows
    with FakeOpenAIServer(prefers_good) as again:
        report = run_batch(store, dataclasses.replace(config, base_url=again.url))
        assert report.calls == 12 - answered == again.request_count  # only the rest
    assert len(store.labels("AND source = 'judge'")) == 12
