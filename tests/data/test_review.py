"""data.review on a real store: filters, a pair's audit trail, corrections and the human queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from data.errors import ConfigError, StoreError
from data.ingest import ingest
from data.queue import Assignment, assign
from data.review import ReviewFilter, ReviewPage, correct_label, find_pairs, pair_detail
from data.shapes import PairRecord
from data.store import PreferenceStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PreferenceStore]:
    with PreferenceStore(tmp_path / "review.duckdb") as opened:
        yield opened


def make_pairs(store: PreferenceStore, n: int) -> list[str]:
    records = [
        PairRecord([{"role": "user", "content": f"Question {i}:   how   do I sort?"}], "x", f"y{i}")
        for i in range(n)
    ]
    return list(ingest(store, records, origin="test").pair_ids)


def ids(page: ReviewPage) -> set[str]:
    return {row.pair_id for row in page.rows}


def test_filters_by_source_who_verdict_round_and_disagreement(store: PreferenceStore) -> None:
    p = make_pairs(store, 4)
    store.add_label(p[0], source="human", who="ann1", verdict="a", round=1)
    store.add_label(p[0], source="judge", who="gpt", verdict="b", round=1)  # disagrees
    store.add_label(p[1], source="human", who="ann2", verdict="b", round=2)
    store.add_label(p[1], source="judge", who="gpt", verdict="b", round=2)  # agrees
    store.add_label(p[2], source="import", who="file.jsonl", verdict="tie", round=0)
    undone = store.add_label(p[3], source="human", who="ann1", verdict="a", round=2)
    store.retract_label(undone)  # only active labels count

    assert ids(find_pairs(store, ReviewFilter())) == {p[0], p[1], p[2]}
    assert ids(find_pairs(store, ReviewFilter(source="judge"))) == {p[0], p[1]}
    assert ids(find_pairs(store, ReviewFilter(who="ann1"))) == {p[0]}
    assert ids(find_pairs(store, ReviewFilter(verdict="b"))) == {p[0], p[1]}
    assert ids(find_pairs(store, ReviewFilter(round=2))) == {p[1]}
    assert ids(find_pairs(store, ReviewFilter(disagree=True))) == {p[0]}
    # the conditions hold for one label: ann1 never said b
    assert ids(find_pairs(store, ReviewFilter(who="ann1", verdict="b"))) == set()
    assert ids(find_pairs(store, ReviewFilter(source="human", verdict="b"))) == {p[1]}
    row = find_pairs(store, ReviewFilter(who="ann1")).rows[0]
    assert row.prompt == "Question 0: how do I sort?"
    assert row.labels == "human:ann1=a, judge:gpt=b"


def test_the_count_is_of_every_match_and_the_rows_are_limited(store: PreferenceStore) -> None:
    pair_ids = make_pairs(store, 7)
    for pid in pair_ids:
        store.add_label(pid, source="judge", who="gpt", verdict="a")
    page = find_pairs(store, ReviewFilter(limit=3))
    assert page.total == 7 and len(page.rows) == 3
    empty = find_pairs(store, ReviewFilter(source="model"))
    assert empty.total == 0 and empty.rows == []


def test_bad_filters_name_the_choices() -> None:
    with pytest.raises(ConfigError, match="human, judge"):
        ReviewFilter(source="robot")
    with pytest.raises(ConfigError, match="both_bad"):
        ReviewFilter(verdict="c")
    with pytest.raises(ConfigError, match="round"):
        ReviewFilter(round=-1)


def test_a_correction_retracts_adds_and_records_the_audit(store: PreferenceStore) -> None:
    (pid,) = make_pairs(store, 1)
    judge = store.add_label(pid, source="judge", who="gpt", verdict="a", rationale="A is longer")
    fixed = correct_label(store, judge, verdict="b", admin="boss", reason="A is wrong", pair_id=pid)
    assert (fixed.old_verdict, fixed.verdict, fixed.admin) == ("a", "b", "boss")
    active = store.labels("AND pair_id = ?", [pid])
    assert [(x["source"], x["who"], x["verdict"]) for x in active] == [("human", "boss", "b")]
    assert json.loads(active[0]["meta"])["corrects"] == judge
    assert active[0]["rationale"] == "A is wrong"

    detail = pair_detail(store, pid)
    old, new = detail.labels
    assert not old.active and old.corrected_by == "boss" and old.reason == "A is wrong"
    assert old.replaced_by == new.label_id == fixed.new_label_id and old.rationale == "A is longer"
    assert new.active and new.corrects == judge
    assert [x.label_id for x in detail.active_labels] == [new.label_id]
    assert store.count("label_corrections") == 1
    # the corrected pair now shows up under the admin and the new verdict
    assert ids(find_pairs(store, ReviewFilter(who="boss", verdict="b"))) == {pid}


def test_correcting_a_retracted_label_is_refused(store: PreferenceStore) -> None:
    (pid,) = make_pairs(store, 1)
    first = store.add_label(pid, source="judge", who="gpt", verdict="a")
    fixed = correct_label(store, first, verdict="b", admin="boss")
    with pytest.raises(StoreError, match=f"already retracted.*correct #{fixed.new_label_id}"):
        correct_label(store, first, verdict="tie", admin="boss")
    undone = store.add_label(pid, source="human", who="ann1", verdict="a")
    store.retract_label(undone)
    with pytest.raises(StoreError, match="already retracted.*pick an active label"):
        correct_label(store, undone, verdict="b", admin="boss")
    with pytest.raises(StoreError, match="no label #999"):
        correct_label(store, 999, verdict="b", admin="boss")
    with pytest.raises(StoreError, match="already says 'b'"):
        correct_label(store, fixed.new_label_id, verdict="b", admin="boss")
    with pytest.raises(StoreError, match="belongs to pair"):
        correct_label(store, fixed.new_label_id, verdict="a", admin="boss", pair_id="other")
    with pytest.raises(ConfigError, match="verdict"):
        correct_label(store, fixed.new_label_id, verdict="c", admin="boss")
    # nothing was written by the refused corrections
    assert store.count("label_corrections") == 1 and len(store.labels()) == 1


def test_human_queue_counts_stay_right(store: PreferenceStore) -> None:
    p = make_pairs(store, 2)
    assign(store, [Assignment(pid, "human", priority=1.0, needed_labels=2) for pid in p])

    def wanted(pid: str) -> int | None:
        return store.scalar(
            "SELECT needed_labels - human_labels FROM human_queue WHERE pair_id = ?", [pid]
        )

    human = store.add_label(p[0], source="human", who="ann1", verdict="a")
    assert wanted(p[0]) == 1
    correct_label(store, human, verdict="b", admin="boss")  # one human label replaced by one
    assert wanted(p[0]) == 1
    judge = store.add_label(p[1], source="judge", who="gpt", verdict="a")
    assert wanted(p[1]) == 2
    correct_label(store, judge, verdict="b", admin="boss")  # a new human label
    assert wanted(p[1]) == 1
    store.add_label(p[1], source="human", who="ann2", verdict="b")
    assert wanted(p[1]) is None  # complete: out of the queue
