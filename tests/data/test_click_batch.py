"""Group commit of annotator clicks: one transaction for many clicks, same rules as one."""

from __future__ import annotations

import threading
import time

import pytest

from data import queue
from data.click_batch import Click, ClickResult, GroupCommitter, label_and_claim_batch
from data.errors import StoreError
from data.store import PreferenceStore
from tests.fakes.pairs import make_pairs


def human_queue(store: PreferenceStore, n: int, needed: int = 1) -> list[str]:
    ids = make_pairs(store, n)
    queue.assign(
        store,
        [
            queue.Assignment(p, "human", priority=n - i, needed_labels=needed)
            for i, p in enumerate(ids)
        ],
    )
    return ids  # in priority order


def test_one_batch_labels_every_click_and_leases_distinct_pairs(store: PreferenceStore) -> None:
    ids = human_queue(store, 10)
    held = {who: queue.claim_next(store, who) for who in ("ann", "bob", "cy")}
    assert sorted(held.values()) == sorted(ids[:3])
    results = label_and_claim_batch(
        store,
        [Click(held[w], w, "a", swapped=(w == "bob")) for w in ("ann", "bob", "cy")],
    )
    assert all(isinstance(r, ClickResult) for r in results)
    nexts = [r.next_pair_id for r in results]
    assert nexts == ids[3:6]  # in click order, best first, never the same pair twice
    stored = store.query("SELECT who, pair_id, verdict FROM labels ORDER BY who")
    assert stored == [("ann", held["ann"], "a"), ("bob", held["bob"], "b"), ("cy", held["cy"], "a")]
    assert sorted(store.query("SELECT annotator, pair_id FROM leases")) == sorted(
        zip(("ann", "bob", "cy"), nexts, strict=True)
    )
    assert (
        store.scalar("SELECT count(*) FROM human_queue") == 7
    )  # the three labelled pairs left the queue


def test_a_bad_click_fails_alone(store: PreferenceStore) -> None:
    ids = human_queue(store, 6)
    ann = queue.claim_next(store, "ann")
    bob = queue.claim_next(store, "bob")
    judged = make_pairs(store, 7)[-1]
    queue.assign(store, [queue.Assignment(judged, "judge")])
    results = label_and_claim_batch(
        store,
        [
            Click(ann, "ann", "a", swapped=False),
            Click(ann, "ann", "b", swapped=False),  # the same annotator again: refused
            Click(bob, "cy", "a", swapped=False),  # leased to bob: refused
            Click("nope", "dee", "a", swapped=False),
            Click(judged, "eve", "a", swapped=False),
            Click(bob, "bob", "maybe", swapped=False),
        ],
    )
    assert isinstance(results[0], ClickResult)
    messages = [str(r) for r in results[1:]]
    assert "already labelled" in messages[0]
    assert "leased to another annotator" in messages[1]
    assert "unknown pair" in messages[2]
    assert "not in the human queue" in messages[3]
    assert "verdict 'maybe'" in messages[4]
    assert store.query("SELECT who, pair_id FROM labels") == [("ann", ann)]
    assert results[0].next_pair_id not in (ann, bob)
    assert results[0].next_pair_id in ids  # the next pair comes from the human queue


def test_two_clicks_of_one_annotator_in_a_batch_get_one_next_pair(
    store: PreferenceStore,
) -> None:
    ids = human_queue(store, 5)
    results = label_and_claim_batch(
        store, [Click(ids[0], "ann", "a", swapped=False), Click(ids[1], "ann", "b", swapped=False)]
    )
    assert all(isinstance(r, ClickResult) for r in results)
    assert results[0].next_pair_id == results[1].next_pair_id == ids[2]
    assert store.query("SELECT annotator, pair_id FROM leases") == [("ann", ids[2])]


def test_overlap_in_one_batch_never_gives_an_annotator_a_pair_twice(
    store: PreferenceStore,
) -> None:
    ids = human_queue(store, 2, needed=2)
    first = queue.claim_next(store, "ann")
    results = label_and_claim_batch(store, [Click(first, "ann", "a", swapped=False)])
    assert results[0].next_pair_id == ids[1]  # ann labelled ids[0]; its second label is for others
    bob = queue.claim_next(store, "bob")
    assert bob == ids[0]
    (done,) = label_and_claim_batch(store, [Click(bob, "bob", "b", swapped=False)])
    assert done.next_pair_id is None  # ids[1] is leased to ann, ids[0] is done
    assert store.scalar("SELECT count(*) FROM human_queue") == 1


def test_avoided_pairs_come_last_even_past_the_cached_head(store: PreferenceStore) -> None:
    ids = human_queue(store, 150)
    first = queue.claim_next(store, "ann")
    avoid = tuple(ids[1:140])  # deeper than the cached head of the queue
    (done,) = label_and_claim_batch(store, [Click(first, "ann", "a", swapped=False, avoid=avoid)])
    assert done.next_pair_id == ids[140]


def test_concurrent_clicks_share_commits_and_lose_nothing(store: PreferenceStore) -> None:
    human_queue(store, 400)
    committer = GroupCommitter(store)
    annotators = [f"ann{i}" for i in range(8)]
    acknowledged: dict[str, list[int]] = {who: [] for who in annotators}
    last: dict[str, ClickResult] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(annotators))

    def annotate(who: str) -> None:
        try:
            pair_id = queue.claim_next(store, who)
            barrier.wait()
            for _ in range(25):
                done = committer.submit(Click(pair_id, who, "a", swapped=False))
                acknowledged[who].append(done.label_id)
                assert done.next_pair is not None and done.next_pair.pair_id == done.next_pair_id
                last[who] = done
                pair_id = done.next_pair_id
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(w,)) for w in annotators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    stored = store.query("SELECT label_id, who, pair_id FROM labels")
    assert sorted(r[0] for r in stored) == sorted(x for ids in acknowledged.values() for x in ids)
    assert len({r[2] for r in stored}) == len(stored) == 200  # one label per pair (needed 1)
    assert committer.clicks == 200
    assert {done.mine_today for done in last.values()} == {25}  # read after each commit
    assert min(done.queue_left for done in last.values()) == 200


def test_clicks_that_arrive_during_a_write_share_the_next_commit(store: PreferenceStore) -> None:
    human_queue(store, 20)
    annotators = [f"ann{i}" for i in range(6)]
    held = {who: queue.claim_next(store, who) for who in annotators}
    committer = GroupCommitter(store)
    results: dict[str, ClickResult] = {}

    def click(who: str) -> None:
        results[who] = committer.submit(Click(held[who], who, "a", swapped=False))

    threads = {who: threading.Thread(target=click, args=(who,)) for who in annotators}
    with store.transaction():  # a write in flight: the first click's batch waits on it
        threads["ann0"].start()
        wait_until(lambda: committer.batches == 1)
        for who in annotators[1:]:
            threads[who].start()
        wait_until(lambda: committer.waiting == len(annotators) - 1)
    for thread in threads.values():
        thread.join(timeout=30)
    assert sorted(results) == annotators
    assert committer.batches == 2 and committer.clicks == len(annotators)  # 1, then 5 together


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def test_a_failing_batch_raises_for_its_clicks_and_the_committer_goes_on(
    store: PreferenceStore,
) -> None:
    human_queue(store, 3)
    committer = GroupCommitter(store)
    pair_id = queue.claim_next(store, "ann")
    with pytest.raises(StoreError, match="unknown pair"):
        committer.submit(Click("missing", "ann", "a", swapped=False))
    done = committer.submit(Click(pair_id, "ann", "tie", swapped=False))
    assert store.labels("AND label_id = ?", [done.label_id])[0]["verdict"] == "tie"
