"""The real app under load and under kill -9: no acknowledged label is lost or doubled.

Annotators are HTTP clients doing what the browser does: log in, then one POST per
click to `label_a` with the pair on screen; a 200 reply is the acknowledgement. The
server is a real `prefloop serve --auth` subprocess (helpers from bench/app.py).
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from data.store import PreferenceStore

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_app", REPO / "bench" / "app.py")
bench_app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_app)


class SimulatedAnnotator(threading.Thread):
    def __init__(self, url: str, name: str, quota: int | None, stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.name, self.quota, self.stop = url, name, quota, stop
        self.acked: list[str] = []
        self.latencies: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=60) as http:
                http.post(
                    "login", data={"username": self.name, "password": "pw"}
                ).raise_for_status()
                session = {"session_hash": f"rel-{self.name}-{random.random()}"}

                def call(api: str, *data: object) -> list[object]:
                    reply = http.post(f"gradio_api/run/{api}", json={"data": list(data), **session})
                    reply.raise_for_status()
                    return reply.json()["data"]

                pair_id = call("next_pair")[3]
                while (
                    pair_id
                    and not self.stop.is_set()
                    and (self.quota is None or len(self.acked) < self.quota)
                ):
                    started = time.perf_counter()
                    shown = call("label_a", pair_id, "")
                    self.latencies.append(time.perf_counter() - started)
                    self.acked.append(pair_id)  # 200 OK: the label is acknowledged
                    pair_id = shown[3]
        except (httpx.HTTPError, OSError) as exc:
            self.error = exc


def make_users(path: Path, count: int) -> Path:
    from app.ui.auth import add_user

    for i in range(count):
        add_user(path, f"ann{i}", "pw", "annotator")
    return path


def check_store(db: Path, acked: dict[str, list[str]]) -> dict[str, int]:
    with PreferenceStore(db) as store:
        rows = store.query(
            "SELECT who, pair_id FROM labels WHERE source = 'human' AND retracted_at IS NULL"
        )
        doubled = store.query(
            "SELECT pair_id FROM labels WHERE source = 'human' AND retracted_at IS NULL "
            "GROUP BY pair_id HAVING count(*) > 1"
        )
    stored = {(who, pid) for who, pid in rows}
    lost = [(who, pid) for who, pids in acked.items() for pid in pids if (who, pid) not in stored]
    assert lost == [], f"acknowledged labels lost: {lost[:5]}"
    assert len(rows) == len(stored), "an annotator labelled a pair twice"
    assert doubled == [], "a pair (needing one label) was labelled by two annotators"
    return {"acknowledged": sum(map(len, acked.values())), "stored": len(rows)}


def load(tmp: Path, pairs: int, annotators: int, per_annotator: int) -> dict[str, object]:
    db = tmp / "load.duckdb"
    bench_app.build_store(db, pairs)
    users = make_users(tmp / "users.json", annotators)
    port = bench_app.free_port()
    proc = bench_app.serve(db, users, port)
    stop = threading.Event()
    try:
        workers = [
            SimulatedAnnotator(f"http://127.0.0.1:{port}/", f"ann{i}", per_annotator, stop)
            for i in range(annotators)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert [w.error for w in workers if w.error] == []
    counts = check_store(db, {w.name: w.acked for w in workers})
    assert counts["acknowledged"] == annotators * per_annotator == counts["stored"]
    latencies = sorted(x * 1000 for w in workers for x in w.latencies)
    return {
        **counts,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
    }


def crash(tmp: Path, rounds: int, annotators: int = 4, seed: int = 0) -> int:
    rng = random.Random(seed)
    db = tmp / "crash.duckdb"
    bench_app.build_store(db, 3000)
    users = make_users(tmp / "users.json", annotators)
    acked: dict[str, list[str]] = {f"ann{i}": [] for i in range(annotators)}
    for _ in range(rounds):
        port = bench_app.free_port()
        proc = bench_app.serve(db, users, port)
        stop = threading.Event()
        workers = [
            SimulatedAnnotator(f"http://127.0.0.1:{port}/", f"ann{i}", None, stop)
            for i in range(annotators)
        ]
        for w in workers:
            w.start()
        time.sleep(rng.uniform(0.3, 1.5))
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of label writes
        proc.wait(timeout=30)
        stop.set()
        for w in workers:
            w.join(timeout=60)
            acked[w.name] += w.acked
        check_store(db, acked)  # opens cleanly, nothing acknowledged is missing
    total = sum(map(len, acked.values()))
    assert total > rounds, "annotators must have written between kills"
    return total


def test_concurrent_annotators_lose_and_double_nothing(tmp_path: Path) -> None:
    result = load(tmp_path, pairs=3000, annotators=32, per_annotator=8)
    assert result["stored"] == 256


def test_kill_minus_nine_the_app_during_label_writes(tmp_path: Path) -> None:
    crash(tmp_path, rounds=3)


@pytest.mark.slow
def test_load_ten_thousand_labels_on_100k_pairs(tmp_path: Path) -> None:
    result = load(tmp_path, pairs=100_000, annotators=32, per_annotator=313)
    print("load", result)


@pytest.mark.slow
def test_kill_minus_nine_the_app_twenty_times(tmp_path: Path) -> None:
    print("acknowledged", crash(tmp_path, rounds=20, seed=1))
