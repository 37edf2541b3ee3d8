"""A real store, a real users file and the real app served on 127.0.0.1, for any suite."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from data.ingest import ingest
from data.queue import Assignment, assign
from data.shapes import PairRecord
from data.store import PreferenceStore

PASSWORDS = {"ann1": "pw-ann1", "ann2": "pw-ann2", "boss": "pw-boss"}
XSS_RESPONSE = (
    "XSS check <script>window.__xss = 1</script> "
    '<img src=x onerror="window.__xss = 2; alert(2)"> '
    '[click me](javascript:window.__xss=3) <a href="javascript:window.__xss=4">raw link</a> '
    '<svg onload="window.__xss = 5"></svg>'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def synthetic_records(n: int, *, xss_every: int = 0) -> list[PairRecord]:
    records = []
    for i in range(n):
        messages = [{"role": "user", "content": f"Question {i}: how do I sort a list?"}]
        if i % 3 == 0:
            messages = [
                {"role": "user", "content": f"Hi, question {i}."},
                {"role": "assistant", "content": "Hello! What would you like to know?"},
                {"role": "user", "content": f"How do I reverse a string in **Python** (case {i})?"},
            ]
        if xss_every and i % xss_every == 0:
            messages[-1] = {"role": "user", "content": messages[-1]["content"] + " " + XSS_RESPONSE}
        good = f"Use `sorted()` (answer {i}):\n\n```python\nprint(sorted([3, 1, 2]))\n```"
        bad = XSS_RESPONSE if xss_every and i % xss_every == 0 else f"I don't know ({i})."
        records.append(PairRecord(messages, good, bad))
    return records


def make_store(path: Path, n: int, *, needed_labels: int = 1, xss_every: int = 0) -> list[str]:
    with PreferenceStore(path) as store:
        result = ingest(store, synthetic_records(n, xss_every=xss_every), origin="test")
        assign(
            store,
            [
                Assignment(pid, "human", priority=float(n - i), needed_labels=needed_labels)
                for i, pid in enumerate(result.pair_ids)
            ],
        )
        return list(result.pair_ids)


def make_users(path: Path) -> Path:
    from app.ui.auth import add_user

    add_user(path, "ann1", PASSWORDS["ann1"], "annotator")
    add_user(path, "ann2", PASSWORDS["ann2"], "annotator")
    add_user(path, "boss", PASSWORDS["boss"], "admin")
    return path


@dataclass
class Served:
    url: str
    store: PreferenceStore
    ctx: Any
    blocks: Any
    pair_ids: list[str]

    def client(self, user: str) -> Any:
        from gradio_client import Client

        return Client(self.url, auth=(user, PASSWORDS[user]), verbose=False)


def serve_store(
    tmp: Path,
    n: int = 30,
    *,
    needed_labels: int = 1,
    xss_every: int = 0,
    lease_seconds: float = 600.0,
) -> Served:
    from app.ui.server import ServeConfig, launch, make_app

    pair_ids = make_store(tmp / "store.duckdb", n, needed_labels=needed_labels, xss_every=xss_every)
    users = make_users(tmp / "users.json")
    config = ServeConfig(port=free_port(), auth=str(users), lease_seconds=lease_seconds)
    store = PreferenceStore(tmp / "store.duckdb")
    ctx, blocks = make_app(store, config)
    ctx.runs_root = str(tmp / "runs")
    launch(ctx, blocks, config, block=False)
    return Served(f"http://127.0.0.1:{config.port}/", store, ctx, blocks, pair_ids)


def stop(served: Served) -> None:
    served.blocks.close()
    served.ctx.close()
    served.store.close()


def wait_for_batch(client: Any) -> str:
    """Wait until the Judge tab's batch has ended; its status text."""
    deadline = time.monotonic() + 120
    status = ""
    while time.monotonic() < deadline:
        status, _failures = client.predict(api_name="/judge_status")
        if "**Batch**: finished" in status or "**Batch**: failed" in status:
            return status
        time.sleep(0.3)
    raise AssertionError(f"the batch did not end: {status}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve_store(tmp_path_factory.mktemp("app"), n=30, needed_labels=2)
    yield running
    stop(running)
