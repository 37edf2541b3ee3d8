"""The Annotate tab's logic on a real store: leases, overlap, swap, skip, undo."""

from __future__ import annotations

from pathlib import Path

from app.ui.annotate import AnnotateConfig, AnnotationService
from data.store import PreferenceStore
from tests.fakes.leases import run_out_leases
from tests.fakes.served_app import make_store


def open_annotator(
    tmp_path: Path, n: int = 6, *, needed: int = 1, lease: float = 600.0
) -> tuple[PreferenceStore, AnnotationService]:
    make_store(tmp_path / "s.duckdb", n, needed_labels=needed)
    store = PreferenceStore(tmp_path / "s.duckdb")
    return store, AnnotationService(store, AnnotateConfig(lease_seconds=lease))


def test_swap_is_shown_and_undone_when_stored(tmp_path: Path) -> None:
    store, annotator = open_annotator(tmp_path, n=12)
    swaps = set()
    while (shown := annotator.next("ann")) is not None:
        pair = store.get_pair(shown.pair_id)
        assert annotator.next("ann").pair_id == shown.pair_id  # held lease, same order again
        if shown.swapped:
            assert (shown.left, shown.right) == (pair.response_b, pair.response_a)
        else:
            assert (shown.left, shown.right) == (pair.response_a, pair.response_b)
        label_id = annotator.label("ann", shown.pair_id, "a", "left looked better")
        stored = store.labels("AND label_id = ?", [label_id])[0]
        # the annotator preferred what was shown on the left
        assert stored["verdict"] == ("b" if shown.swapped else "a")
        assert stored["swapped"] == shown.swapped
        assert stored["rationale"] == "left looked better"
        swaps.add(shown.swapped)
    assert swaps == {True, False}  # 12 pairs: both orders occur
    store.close()


def test_overlap_needs_distinct_annotators(tmp_path: Path) -> None:
    store, annotator = open_annotator(tmp_path, n=3, needed=2)
    first = annotator.next("x")
    # while x holds it, y gets another pair
    other = annotator.next("y")
    assert other.pair_id != first.pair_id
    annotator.label("x", first.pair_id, "tie", None)
    seen_by_x = {first.pair_id}
    while (shown := annotator.next("x")) is not None:
        assert shown.pair_id not in seen_by_x  # never the same annotator twice
        seen_by_x.add(shown.pair_id)
        annotator.label("x", shown.pair_id, "b", None)
    assert len(seen_by_x) == 2 and other.pair_id not in seen_by_x  # y's lease is respected
    annotator.label("y", other.pair_id, "a", None)
    last = annotator.next("x")
    assert last.pair_id == other.pair_id  # free now, and x has not labelled it
    annotator.label("x", last.pair_id, "a", None)
    seen_by_x.add(last.pair_id)
    labelled_by_y = {other.pair_id}
    while (shown := annotator.next("y")) is not None:
        labelled_by_y.add(shown.pair_id)
        annotator.label("y", shown.pair_id, "a", None)
    assert labelled_by_y == seen_by_x
    assert annotator.next("z") is None  # two labels each: the queue is done
    counts = store.query(
        "SELECT pair_id, count(DISTINCT who) FROM labels WHERE source = 'human' GROUP BY 1"
    )
    assert sorted(c for _, c in counts) == [2, 2, 2]
    store.close()


def test_lease_expiry_returns_the_pair(tmp_path: Path) -> None:
    store, annotator = open_annotator(tmp_path, n=1)
    held = annotator.next("slow")
    assert annotator.next("fast") is None  # leased to slow
    run_out_leases(store)
    assert annotator.next("fast").pair_id == held.pair_id
    store.close()


def test_skip_passes_over_until_nothing_else(tmp_path: Path) -> None:
    store, annotator = open_annotator(tmp_path, n=2)
    first = annotator.next("ann")
    annotator.skip("ann", first.pair_id)
    second = annotator.next("ann")
    assert second.pair_id != first.pair_id
    annotator.label("ann", second.pair_id, "a", None)
    assert annotator.next("ann").pair_id == first.pair_id  # only the skipped one is left
    store.close()


def test_undo_retracts_and_shows_the_pair_again(tmp_path: Path) -> None:
    store, annotator = open_annotator(tmp_path, n=3)
    assert annotator.undo("ann") is None
    shown = annotator.next("ann")
    annotator.label("ann", shown.pair_id, "both_bad", None)
    assert annotator.progress("ann").mine_today == 1
    assert annotator.undo("ann") == shown.pair_id
    assert store.labels("AND who = 'ann'") == []
    assert (
        store.scalar("SELECT count(*) FROM labels WHERE retracted_at IS NOT NULL") == 1
    )  # kept for audit
    again = annotator.next("ann")
    assert again.pair_id == shown.pair_id and again.swapped == shown.swapped
    assert annotator.progress("ann").mine_today == 0
    annotator.label("ann", again.pair_id, "a", None)
    store.close()


def test_label_rejects_bad_input(tmp_path: Path) -> None:
    import pytest

    from data.errors import StoreError

    store, annotator = open_annotator(tmp_path, n=2)
    shown = annotator.next("ann")
    with pytest.raises(StoreError, match="verdict"):
        annotator.label("ann", shown.pair_id, "c", None)
    with pytest.raises(StoreError, match="no pair is shown"):
        annotator.label("ann", "", "a", None)
    other = annotator.next("bob")
    # leased to someone else, or labelled already: one message, naming no pair
    with pytest.raises(StoreError, match="not the one shown to you") as refused:
        annotator.label("ann", other.pair_id, "a", None)
    assert other.pair_id not in str(refused.value) and "bob" not in str(refused.value)
    annotator.label("ann", shown.pair_id, "a", None)
    with pytest.raises(StoreError, match="not the one shown to you"):
        annotator.label("ann", shown.pair_id, "a", None)
    store.close()


def test_skips_survive_a_restart_of_the_app(tmp_path: Path) -> None:
    store, annotator = open_annotator(tmp_path, n=3)
    first = annotator.next("ann")
    annotator.skip("ann", first.pair_id)
    store.close()

    store = PreferenceStore(tmp_path / "s.duckdb")  # a new process: nothing in memory
    annotator = AnnotationService(store)
    second = annotator.next("ann")
    assert second.pair_id != first.pair_id
    third, _ = annotator.click("ann", second.pair_id, "a", None)
    assert third.pair_id not in (first.pair_id, second.pair_id)
    last, _ = annotator.click("ann", third.pair_id, "b", None)
    assert last.pair_id == first.pair_id  # only the skipped one is left: offered again
    assert store.query("SELECT count(*) FROM skips WHERE annotator = 'ann'") == [(0,)]
    store.close()


def test_strength_is_stored_as_confidence(tmp_path: Path) -> None:
    import pytest

    from data.errors import PrefloopError

    store, annotator = open_annotator(tmp_path, n=4)
    first = annotator.next("ann")
    second, _ = annotator.click("ann", first.pair_id, "a", None, "much")
    third, _ = annotator.click("ann", second.pair_id, "b", "close call", "slightly")
    with pytest.raises(PrefloopError, match="goes with A or B better"):
        annotator.click("ann", third.pair_id, "tie", None, "much")
    with pytest.raises(PrefloopError, match="not one of much, slightly"):
        annotator.click("ann", third.pair_id, "a", None, "hugely")
    fourth, _ = annotator.click("ann", third.pair_id, "tie", None)
    annotator.label("ann", fourth.pair_id, "b", None, "much")  # the one-label path too
    rows = {x["pair_id"]: x for x in store.labels("AND who = 'ann'")}
    shown = (first, second, third, fourth)
    assert [rows[x.pair_id]["confidence"] for x in shown] == [0.9, 0.7, None, 0.9]
    # the verdict still follows the shown order; the strength does not depend on it
    assert rows[first.pair_id]["verdict"] == ("b" if first.swapped else "a")
    store.close()


def test_the_lease_can_change_while_serving(tmp_path: Path) -> None:
    import pytest

    from data.errors import ConfigError

    store, annotator = open_annotator(tmp_path, n=2)
    annotator.set_lease_seconds(30)
    shown = annotator.next("ann")
    left = store.scalar(
        "SELECT epoch(expires_at - now()::TIMESTAMP) FROM leases WHERE pair_id = ?",
        [shown.pair_id],
    )
    assert 20 < left <= 30
    with pytest.raises(ConfigError, match="lease seconds 1 must be between 10"):
        annotator.set_lease_seconds(1)
    assert annotator.config.lease_seconds == 30
    store.close()


def test_an_empty_queue_through_the_api(tmp_path: Path) -> None:
    """next_pair on an empty queue says so; the buttons' states are not in the API tuple."""
    from tests.fakes.served_app import serve_store, stop

    served = serve_store(tmp_path, n=1)
    try:
        one, two = served.client("ann1"), served.client("ann2")
        held = one.predict(api_name="/next_pair")
        assert held[3] == served.pair_ids[0]
        empty = two.predict(api_name="/next_pair")  # the only pair is leased to ann1
        assert len(empty) == 7 and empty[3] == "" and "Nothing to label" in empty[1]
        assert "human queue: **1** pairs still want a label" in empty[4]
        after = one.predict(held[3], "", api_name="/label_a")
        assert after[3] == "" and "Nothing to label" in after[1] and after[5] == "Saved: A better."
        assert "Nothing to undo" in two.predict(api_name="/undo")[5]
    finally:
        stop(served)
