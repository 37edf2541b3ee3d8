"""The fake OpenAI server itself: scripted order, faults, counters, standalone mode."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fakes.fixtures import fake_openai_server  # noqa: F401 - the fixture other suites import
from tests.fakes.openai_server import FakeOpenAIServer, Reply, always

REPO = Path(__file__).resolve().parents[2]
BODY = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi"}],
    "logprobs": True,
    "top_logprobs": 2,
}


def post(url: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_script_then_responder_with_logprobs() -> None:
    with FakeOpenAIServer(always("B", p_a=0.25)) as server:
        server.push(Reply.rate_limited(1.5), Reply.logprobs_unsupported())
        status, headers, body = post(server.url, BODY)
        assert status == 429 and headers["Retry-After"] == "1.5"
        status, _, body = post(server.url, BODY)
        assert status == 400 and body["error"]["param"] == "logprobs"
        status, _, body = post(server.url, BODY)
        assert status == 200 and body["choices"][0]["message"]["content"] == "B"
        top = body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        assert [t["token"] for t in top] == ["B", "A"]
        assert server.request_count == 3 and server.requests[0]["body"] == BODY


def test_in_flight_counter_and_faults() -> None:
    # the barrier fires all five together and the latency outlasts any scheduling delay on a
    # busy machine, so the five requests really overlap
    with FakeOpenAIServer(always("A"), latency=1.0) as server:
        barrier = threading.Barrier(5)

        def post_together() -> None:
            barrier.wait()
            post(server.url, BODY)

        threads = [threading.Thread(target=post_together) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert server.wait_idle()
        assert server.max_in_flight == 5 and server.in_flight == 0 and server.completed == 5
        server.push(Reply.truncated(), Reply.dropped())
        with pytest.raises(json.JSONDecodeError):
            post(server.url, BODY)
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            post(server.url, BODY)


def test_standalone_process_reports_counts() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--answer", "tie"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        assert post(url, BODY)[2]["choices"][0]["message"]["content"] == "tie"
        process.stdin.write("stats\n")
        process.stdin.flush()
        assert json.loads(process.stdout.readline()) == {"requests": 1, "max_in_flight": 1}
    finally:
        process.stdin.close()
        process.wait(timeout=10)


def test_shared_fixture_answers_a(fake_openai_server: FakeOpenAIServer) -> None:  # noqa: F811
    fake_openai_server.push(Reply(text="B"))
    assert post(fake_openai_server.url, BODY)[2]["choices"][0]["message"]["content"] == "B"
    assert post(fake_openai_server.url, BODY)[2]["choices"][0]["message"]["content"] == "A"
