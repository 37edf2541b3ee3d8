"""kill -9 a process in the middle of label writes: every acknowledged label survives."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data import queue
from data.ingest import ingest
from data.shapes import PairRecord
from data.store import PreferenceStore

REPO = Path(__file__).resolve().parents[2]

WRITER = """
import sys
from data import click_batch, queue
from data.store import PreferenceStore
store = PreferenceStore(sys.argv[1])
who = sys.argv[2]
print("ready", flush=True)
while True:
    pair = queue.claim_next(store, who)
    if pair is None:
        break
    label = click_batch.submit_human_label(store, pair, who, verdict_shown="a", swapped=False)
    print(f"ack {label} {pair}", flush=True)  # acknowledged only after the commit returned
"""


def kill_writers(db: Path, rounds: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with PreferenceStore(db) as store:
        records = [
            PairRecord([{"role": "user", "content": f"q{i}"}], f"a{i}", f"b{i}")
            for i in range(3000)
        ]
        ids = ingest(store, records, origin="crash").pair_ids
        queue.assign(store, [queue.Assignment(p, "human", priority=i) for i, p in enumerate(ids)])
    acknowledged: set[int] = set()
    for round_number in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), f"w{round_number}"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + rng.uniform(0.05, 0.6)
        lines = []
        while time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
        for line in lines + rest.splitlines():
            if line.startswith("ack "):
                acknowledged.add(int(line.split()[1]))
        # the store opens cleanly after every kill and holds every acknowledged label
        with PreferenceStore(db) as store:
            stored = {
                row[0]
                for row in store.query("SELECT label_id FROM labels WHERE retracted_at IS NULL")
            }
            assert acknowledged <= stored, (
                f"round {round_number}: lost {sorted(acknowledged - stored)[:5]}"
            )
            duplicates = store.query(
                "SELECT pair_id, who FROM labels GROUP BY ALL HAVING count(*) > 1"
            )
            assert duplicates == []
    assert len(acknowledged) > rounds  # the writers really wrote between kills


def test_kill_minus_nine_during_label_writes_loses_nothing(tmp_path: Path) -> None:
    kill_writers(tmp_path / "crash.duckdb", rounds=6)


@pytest.mark.slow
def test_kill_minus_nine_twenty_times(tmp_path: Path) -> None:
    kill_writers(tmp_path / "crash.duckdb", rounds=20, seed=1)
