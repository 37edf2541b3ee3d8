"""Plain pairs in a store (unrouted), for the queue and click-batch tests."""

from __future__ import annotations

from data.ingest import ingest
from data.shapes import PairRecord
from data.store import PreferenceStore


def make_pairs(store: PreferenceStore, n: int) -> list[str]:
    records = [
        PairRecord([{"role": "user", "content": f"q{i}"}], f"good {i}", f"bad {i}")
        for i in range(n)
    ]
    return ingest(store, records, origin="t").pair_ids
