"""The Judge tab drives a real judge batch against a loopback OpenAI-compatible server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.conftest import Served, serve_store, stop


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve_store(tmp_path_factory.mktemp("judge-tab"), n=6)
    with running.store.transaction() as cur:
        cur.execute("UPDATE pairs SET queue = 'judge'").fetchall()
    yield running
    stop(running)


def test_judge_batch_from_the_tab(
    judged: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("judges.batch")
    from tests.fakes.openai_server import FakeOpenAIServer, always

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-stored")
    client = judged.client("boss")
    with FakeOpenAIServer(responder=always("A")) as server:
        first = client.predict(
            server.url, "fake-judge", "", 4, 0, False, 2.5, 10.0, api_name="/judge_start"
        )
        assert "Judge queue" in first
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, failures = client.predict(api_name="/judge_status")
            if "**Batch**: finished" in status or "**Batch**: failed" in status:
                break
            time.sleep(0.3)
    assert "**Batch**: finished" in status, status
    assert judged.store.scalar("SELECT count(*) FROM labels WHERE source = 'judge'") == 6
    assert "tokens" in status
    prompt, completion = judged.store.query(
        "SELECT sum(prompt_tokens), sum(completion_tokens) FROM judge_calls"
    )[0]
    assert prompt > 0 and completion > 0
    cost = (prompt * 2.5 + completion * 10.0) / 1e6
    assert f"**cost** ${cost:.4f}" in status  # live, from this batch's calls and the prices
    assert f"cost_usd {round(cost, 6)}" in status or f"cost_usd {cost}" in status, status
