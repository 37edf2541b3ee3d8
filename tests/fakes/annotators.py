"""Annotators as HTTP clients of a served app (what the browser does), and the check that
no acknowledged label is lost or doubled; the server helpers come from bench/app.py."""

from __future__ import annotations

import importlib.util
import random
import threading
import time
from pathlib import Path

import httpx

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
