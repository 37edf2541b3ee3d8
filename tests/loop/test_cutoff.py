"""A round's cut-off: no wait by default; `--wait-for-humans` waits for new human labels,
bounded by `--human-deadline` (a real store, labels written from another thread)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from app.loop.config import LoopConfig
from app.loop.stages import LoopWork
from data import loop_rounds
from data.ingest import ingest
from data.shapes import PairRecord
from data.store import PreferenceStore
from training.jobs import JobManager


def work(store: PreferenceStore, tmp_path: Path, **config) -> LoopWork:
    loop_rounds.create_loop(store, "L", {})
    jobs = JobManager(store, tmp_path / "runs")
    return LoopWork(store, LoopConfig(**config), "L", jobs, tmp_path, threading.Event())


def pairs(store: PreferenceStore, n: int) -> list[str]:
    records = [
        PairRecord([{"role": "user", "content": f"q{i}"}], f"a{i}", f"b{i}") for i in range(n)
    ]
    return list(ingest(store, records, origin="test").pair_ids)


def test_the_cut_off_does_not_wait_for_humans_by_default(store, tmp_path) -> None:
    started = time.monotonic()
    counts = work(store, tmp_path).cutoff(1)
    assert time.monotonic() - started < 0.5 and counts["waited_until"] is None


def test_wait_for_humans_returns_when_enough_labels_arrive(store, tmp_path) -> None:
    ids = pairs(store, 3)
    loop = work(store, tmp_path, wait_for_humans=2, human_deadline=30)

    def annotate() -> None:
        for pid in ids[:2]:
            time.sleep(0.3)
            store.add_label(pid, source="human", who="ann1", verdict="a")

    thread = threading.Thread(target=annotate)
    thread.start()
    counts = loop.cutoff(1)
    thread.join()
    assert counts["waited_until"] == "labels" and counts["new_human_labels"] == 2
    assert counts["waited_s"] < 10 and counts["labels"]["human"] == 2


def test_the_human_deadline_bounds_the_wait(store, tmp_path) -> None:
    pairs(store, 1)
    counts = work(store, tmp_path, wait_for_humans=5, human_deadline=1.0).cutoff(1)
    assert counts["waited_until"] == "deadline" and 1.0 <= counts["waited_s"] < 3
