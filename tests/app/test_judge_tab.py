"""The Judge tab drives real judge batches: against a loopback OpenAI-compatible server, a
closed port, and the in-process hf backend."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.served_app import Served, serve_store, stop, wait_for_batch

SECRET = "sk-tab-only-SECRET-41c7e2"


@pytest.fixture
def judged(tmp_path: Path) -> Iterator[Served]:
    (tmp_path / "app").mkdir()
    running = serve_store(tmp_path / "app", n=6)
    with running.store.transaction() as cur:
        cur.execute("UPDATE pairs SET queue = 'judge'").fetchall()
    yield running
    stop(running)


def test_judge_batch_with_the_tabs_api_key(
    judged: Served,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.fakes.openai_server import FakeOpenAIServer, always

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the key comes from the tab only
    client = judged.client("boss")
    with caplog.at_level(logging.DEBUG), FakeOpenAIServer(responder=always("A")) as server:
        first = client.predict(
            server.url,
            "fake-judge",
            "",
            4,
            0,
            False,
            2.5,
            10.0,
            "openai",
            SECRET,
            api_name="/judge_start",
        )
        assert "Judge queue" in first
        status = wait_for_batch(client)
        headers = [r["headers"]["authorization"] for r in server.requests]
    assert "**Batch**: finished" in status, status
    assert headers == [f"Bearer {SECRET}"] * 6  # used for the batch...
    store = judged.store
    assert store.scalar("SELECT count(*) FROM labels WHERE source = 'judge'") == 6
    prompt, completion = store.query(
        "SELECT sum(prompt_tokens), sum(completion_tokens) FROM judge_calls"
    )[0]
    assert prompt > 0 and completion > 0
    cost = (prompt * 2.5 + completion * 10.0) / 1e6
    assert f"**cost** ${cost:.4f}" in status  # live, from this batch's calls and the prices
    # the result in words, as the CLI prints it; ids and hashes stay in the JSON
    assert "**Result**: judged 6 pairs: 6 labels, 0 failed judgements" in status, status
    assert f"${round(cost, 6):.6f}" in status
    assert "batch_id" not in status and "template_hash" not in status
    # ...and kept nowhere: not in any row of any table, the store's files or the logs
    for (table,) in store.query("SELECT table_name FROM information_schema.tables"):
        for row in store.query(f'SELECT * FROM "{table}"'):
            assert SECRET not in repr(row), table
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in caplog.text


def test_unreachable_endpoint_is_one_message_in_the_tab(judged: Served) -> None:
    with socket.socket() as sock:  # a port with nothing listening: connects are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    client = judged.client("boss")
    # the first eight inputs alone, as scripts written before backend and key were added
    client.predict(url, "m", "", 8, 0, True, 0, 0, api_name="/judge_start")
    status = wait_for_batch(client)
    assert "**Batch**: failed" in status
    (error,) = [line for line in status.splitlines() if line.startswith("**Error**")]
    assert f"cannot reach {url} (connection refused" in error and "vllm serve" in error
    _status, failures = client.predict(api_name="/judge_status")
    assert failures["data"] == []  # no failed judgement per pair
    assert judged.store.count("judgements") == 0


def test_in_process_hf_backend_from_the_tab(judged: Served, tmp_path: Path) -> None:
    from tests.fakes.tiny_lm import build_tiny_lm

    folder = build_tiny_lm(tmp_path / "tiny-lm")
    client = judged.client("boss")
    client.predict(
        "", str(folder), "", 2, 0, True, 0, 0, "hf", "", api_name="/judge_start"
    )  # no endpoint: the hf backend needs none
    status = wait_for_batch(client)
    assert "**Batch**: finished" in status, status
    assert "judged 6 pairs" in status and "12 calls" in status
    endpoints = {row[0] for row in judged.store.query("SELECT endpoint FROM judge_calls")}
    assert endpoints == {"hf://local"}  # the same backend as `prefloop judge --backend hf`
