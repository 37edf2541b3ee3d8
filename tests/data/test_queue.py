from __future__ import annotations

import pytest

from data import queue
from data.click_batch import Click, label_and_claim_batch, submit_human_label
from data.errors import StoreError
from data.store import PreferenceStore
from tests.fakes.leases import run_out_leases
from tests.fakes.pairs import make_pairs


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
    label = submit_human_label(store, pid, "ann", verdict_shown="a", swapped=True)
    row = store.labels("AND label_id = ?", [label])[0]
    assert row["verdict"] == "b" and row["swapped"] is True
    with pytest.raises(StoreError, match="already labelled"):
        submit_human_label(store, pid, "ann", verdict_shown="a", swapped=False)
    assert queue.claim_next(store, "ann") is None  # never the same annotator twice
    assert queue.claim_next(store, "bob") == pid  # overlap: a second annotator gets it
    submit_human_label(store, pid, "bob", verdict_shown="b", swapped=False)
    assert queue.claim_next(store, "cy") is None  # two labels reached


def test_expired_lease_returns_the_pair(store: PreferenceStore) -> None:
    (pid,) = make_pairs(store, 1)
    queue.assign(store, [queue.Assignment(pid, "human")])
    assert queue.claim_next(store, "ann") == pid
    assert queue.claim_next(store, "bob") is None
    with pytest.raises(StoreError, match="leased to another"):
        submit_human_label(store, pid, "bob", verdict_shown="a", swapped=False)
    run_out_leases(store)
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


def test_a_click_labels_and_claims_the_next_pair_in_one_transaction(
    store: PreferenceStore,
) -> None:
    ids = make_pairs(store, 3)
    queue.assign(store, [queue.Assignment(p, "human", priority=i) for i, p in enumerate(ids)])
    first = queue.claim_next(store, "ann")
    (done,) = label_and_claim_batch(store, [Click(first, "ann", "b", swapped=True)])
    assert not isinstance(done, StoreError)
    assert store.labels("AND label_id = ?", [done.label_id])[0]["verdict"] == "a"
    assert done.next_pair_id == ids[1]
    following = done.next_pair_id
    assert store.query("SELECT pair_id FROM leases WHERE annotator = 'ann'") == [(following,)]
    (again,) = label_and_claim_batch(store, [Click(first, "ann", "a", swapped=False)])
    assert isinstance(again, StoreError) and "already labelled" in str(again)
    assert store.query("SELECT pair_id FROM leases WHERE annotator = 'ann'") == [(following,)]


def test_a_label_without_a_claim_ends_the_lease_and_leases_nothing(
    store: PreferenceStore,
) -> None:
    ids = make_pairs(store, 2)
    queue.assign(store, [queue.Assignment(p, "human", priority=i) for i, p in enumerate(ids)])
    first = queue.claim_next(store, "ann")
    submit_human_label(store, first, "ann", verdict_shown="a", swapped=False)
    assert store.query("SELECT count(*) FROM leases") == [(0,)]


def test_a_label_outside_the_human_queue_is_refused(store: PreferenceStore) -> None:
    ids = make_pairs(store, 2)
    queue.assign(store, [queue.Assignment(ids[0], "judge")])
    for pid in ids:  # routed to the judge, and not routed at all
        with pytest.raises(StoreError, match="not in the human queue"):
            submit_human_label(store, pid, "ann", verdict_shown="a", swapped=False)
    with pytest.raises(StoreError, match="unknown pair"):
        submit_human_label(store, "nope", "ann", verdict_shown="a", swapped=False)
    assert store.count("labels") == 0
