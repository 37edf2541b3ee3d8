from __future__ import annotations

import time

import pytest

from data import queue
from data.click_batch import label_and_claim_next
from data.errors import StoreError
from data.ingest import ingest
from data.shapes import PairRecord
from data.store import PreferenceStore


def make_pairs(store: PreferenceStore, n: int) -> list[str]:
    records = [
        PairRecord([{"role": "user", "content": f"q{i}"}], f"good {i}", f"bad {i}")
        for i in range(n)
    ]
    return ingest(store, records, origin="t").pair_ids


def test_claims_follow_priority_and_never_overlap(store: PreferenceStore) -> None:
    ids = make_pairs(store, 5)
    queue.assign(store, [queue.Assignment(p, "human", priority=i) for i, p in enumerate(ids)])
    first = queue.claim_next(store, "ann")
    second = queue.claim_next(store, "bob")
    assert first == ids[4] and second == ids[3]
    assert queue.claim_next(store, "ann") == first  # one lease per annotator
    assert set(queue.next_pair_ids(store, "cy", 5)) == set(ids[:3])


def test_swapped_display_is_undone_when_stored(store: PreferenceStore) -> None:
    (pid,) = make_pairs(store, 1)
    queue.assign(store, [queue.Assignment(pid, "human", needed_labels=2)])
    assert queue.claim_next(store, "ann") == pid
    label = queue.submit_human_label(store, pid, "ann", verdict_shown="a", swapped=True)
    row = store.labels("AND label_id = ?", [label])[0]
    assert row["verdict"] == "b" and row["swapped"] is True
    with pytest.raises(StoreError, match="already labelled"):
        queue.submit_human_label(store, pid, "ann", verdict_shown="a", swapped=False)
    assert queue.claim_next(store, "ann") is None  # never the same annotator twice
    assert queue.claim_next(store, "bob") == pid  # overlap: a second annotator gets it
    queue.submit_human_label(store, pid, "bob", verdict_shown="b", swapped=False)
    assert queue.claim_next(store, "cy") is None  # two labels reached


def test_expired_lease_returns_the_pair(store: PreferenceStore) -> None:
    (pid,) = make_pairs(store, 1)
    queue.assign(store, [queue.Assignment(pid, "human")])
    assert queue.claim_next(store, "ann", lease_seconds=0.2) == pid
    assert queue.claim_next(store, "bob") is None
    with pytest.raises(StoreError, match="leased to another"):
        queue.submit_human_label(store, pid, "bob", verdict_shown="a", swapped=False)
    time.sleep(0.3)
    assert queue.claim_next(store, "bob") == pid


def test_release_and_unknown_queue(store: PreferenceStore) -> None:
    (pid,) = make_pairs(store, 1)
    with pytest.raises(StoreError, match="queue"):
        queue.assign(store, [queue.Assignment(pid, "elsewhere")])
    queue.assign(store, [queue.Assignment(pid, "human")])
    queue.claim_next(store, "ann")
    queue.release(store, "ann")
    assert queue.claim_next(store, "bob") == pid


def test_avoided_pairs_come_back_only_when_nothing_else_is_left(store: PreferenceStore) -> None:
    ids = make_pairs(store, 2)
    queue.assign(store, [queue.Assignment(p, "human", priority=i) for i, p in enumerate(ids)])
    assert queue.claim_next(store, "ann", avoid={ids[1]}) == ids[0]
    queue.release(store, "ann")
    assert queue.claim_next(store, "ann", avoid=set(ids)) == ids[1]  # all avoided: best again


def test_label_and_claim_next_is_one_transaction(store: PreferenceStore) -> None:
    ids = make_pairs(store, 3)
    queue.assign(store, [queue.Assignment(p, "human", priority=i) for i, p in enumerate(ids)])
    first = queue.claim_next(store, "ann")
    label_id, following = label_and_claim_next(store, first, "ann", verdict_shown="b", swapped=True)
    assert store.labels("AND label_id = ?", [label_id])[0]["verdict"] == "a"
    assert following == ids[1]
    assert store.query("SELECT pair_id FROM leases WHERE annotator = 'ann'") == [(following,)]
    with pytest.raises(StoreError, match="already labelled"):  # rolled back whole: no new lease
        label_and_claim_next(store, first, "ann", verdict_shown="a", swapped=False)
    assert store.query("SELECT pair_id FROM leases WHERE annotator = 'ann'") == [(following,)]
