"""A judge batch against an endpoint where 20% of calls fault: it completes and loses nothing.

Transient faults (429 with Retry-After, 500, dropped connections, answers slower than
the timeout) hit 20% of calls at random and must be absorbed by retries. One pair in
ten always gets a malformed answer (truncated JSON or text with no verdict): those
must end up listed as failed, never as labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from data.ingest import ingest
from data.shapes import PairRecord
from data.store import PreferenceStore
from tests.fakes.openai_server import FakeOpenAIServer, Reply

REPO = Path(__file__).resolve().parents[2]
SECRET = "sk-prefloop-test-SECRET-4242"


def pair_text(i: int) -> PairRecord:
    return PairRecord(
        [{"role": "user", "content": f"Question number {i}?"}],
        f"Answer one {i}.",
        f"Answer two {i}.",
    )


def is_poisoned(body: dict) -> bool:
    """One question in ten, recognised in any message (the judge's repair request included)."""
    found = re.search(r"Question number (\d+)\?", json.dumps(body.get("messages")))
    assert found, "the judge prompt must contain the question"
    return hashlib.sha256(found.group(1).encode()).digest()[0] % 10 == 0


class FaultyJudge:
    def __init__(self, seed: int, fault_rate: float = 0.2):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.fault_rate = fault_rate
        self.faults = 0

    def __call__(self, body: dict) -> Reply:
        with self.lock:
            roll = self.rng.random()
            kind = self.rng.choice(["429", "500", "drop", "slow"])
        if is_poisoned(body):
            return (
                Reply.truncated("A") if roll < 0.5 else Reply(text="I cannot decide between them.")
            )
        if roll < self.fault_rate:
            with self.lock:
                self.faults += 1
            return {
                "429": Reply.rate_limited(0.05),
                "500": Reply.server_error(),
                "drop": Reply.dropped(),
                "slow": Reply.slow(3.0),
            }[kind]
        return Reply(text="[[A]]" if roll < 0.6 else "[[B]]", logprobs=False)


def run_judge(db: Path, url: str, *extra: str) -> dict:
    env = dict(os.environ, OPENAI_API_KEY=SECRET)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "judge",
            "--db",
            str(db),
            "--base-url",
            url,
            "--model",
            "fake-judge",
            "--all-unlabelled",
            "--concurrency",
            "8",
            "--timeout",
            "1",
            "--max-retries",
            "8",
            "--no-logprobs",
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_batch(tmp_path: Path, pairs: int, seed: int) -> None:
    db = tmp_path / "judge.duckdb"
    with PreferenceStore(db) as store:
        ids = ingest(store, [pair_text(i) for i in range(pairs)], origin="faults").pair_ids
    judge = FaultyJudge(seed)
    with FakeOpenAIServer(responder=judge) as server:
        report = run_judge(db, server.url)
    assert judge.faults > pairs * 0.1  # faults really happened
    with PreferenceStore(db) as store:
        judged = dict(store.query("SELECT pair_id, status FROM judgements"))
        labels = store.labels("AND source = 'judge'")
        texts = {p.pair_id: p for p in store.pairs()}
        assert set(judged) == set(ids), "every pair is judged or listed as failed"
        assert report["judged"] + report["failed"] >= pairs
        poisoned = {
            pid
            for pid in ids
            if is_poisoned({"messages": [{"role": "user", "content": texts[pid].prompt_text}]})
        }
        assert poisoned, "the scenario needs malformed answers"
        labelled = {label["pair_id"] for label in labels}
        assert not labelled & poisoned, "no label may come from a malformed answer"
        assert {pid for pid, status in judged.items() if status == "failed"} == poisoned
        assert labelled == set(ids) - poisoned, "transient faults are retried until answered"
        assert len(labels) == len(labelled)  # one judge label per pair
    raw = db.read_bytes() + (
        db.with_suffix(".duckdb.wal").read_bytes()
        if db.with_suffix(".duckdb.wal").exists()
        else b""
    )
    assert SECRET.encode() not in raw


def test_judge_batch_survives_twenty_percent_faults(tmp_path: Path) -> None:
    check_batch(tmp_path, pairs=60, seed=3)


@pytest.mark.slow
def test_judge_batch_survives_faults_at_scale(tmp_path: Path) -> None:
    check_batch(tmp_path, pairs=600, seed=4)
