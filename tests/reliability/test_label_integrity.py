"""A label is accepted only for the pair leased to the annotator (issue 14, class 6).

Through the real served app (gradio_client, by api_name): a pair another annotator
skipped, a pair never shown, an unknown id, a pair leased to someone else and one
labelled by someone else are all refused with one message that names no pair and no
annotator, and nothing is stored. Wrong argument types for every annotate endpoint get a
clean message, not an `AttributeError` or a DuckDB conversion error (which quoted a pair
id from the table). Undo still works, and so does a lease that ran out while nobody else
took the pair.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.ui.annotate import AnnotateConfig, AnnotationService
from data.click_batch import Click, label_and_claim_batch
from data.errors import StoreError
from data.queue import NOT_YOUR_PAIR
from data.store import PreferenceStore
from tests.fakes.served_app import PASSWORDS, Served, make_store, serve_store, stop

LABEL_ENDPOINTS = (
    "/label_a",
    "/label_b",
    "/label_tie",
    "/label_both_bad",
    "/label_a_much",
    "/label_b_much",
)
WRONG_TYPES: tuple[Any, ...] = (0, 12345, 1.5, True, [], ["x"], {}, {"pair_id": "x"}, [None])
# what a raw exception's text looks like; none of it may reach the caller
RAW_TEXTS = ("AttributeError", "TypeError", "Traceback", "Conversion Error", "object has no")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve_store(tmp_path_factory.mktemp("integrity"), n=12)
    yield running
    stop(running)


def refusal(client: Any, *args: Any, api_name: str) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as refused:
        client.predict(*args, api_name=api_name)
    return str(refused.value)


def assert_tells_nothing(message: str, served: Served) -> None:
    for pair_id in served.pair_ids:
        assert pair_id not in message, message
    for user in PASSWORDS:
        assert user not in message, message
    for raw in RAW_TEXTS:
        assert raw not in message, message


def human_labels(served: Served) -> int:
    return int(served.store.scalar("SELECT count(*) FROM labels WHERE source = 'human'"))


def test_only_the_pair_shown_to_you_can_be_labelled(served: Served) -> None:
    ann1, ann2 = served.client("ann1"), served.client("ann2")
    skipped = ann1.predict(api_name="/next_pair")[3]
    theirs = ann2.predict(api_name="/next_pair")[3]  # ann2 holds another pair
    ann1.predict(skipped, api_name="/skip")  # ann1 now holds a third
    held_by_ann1 = ann1.predict(api_name="/next_pair")[3]
    labelled_by_ann1 = held_by_ann1
    ann1.predict(labelled_by_ann1, "", api_name="/label_a")
    held_by_ann1 = ann1.predict(api_name="/next_pair")[3]
    never_shown = next(
        p for p in reversed(served.pair_ids) if p not in (skipped, theirs, labelled_by_ann1)
    )
    before = human_labels(served)
    cases = {
        "skipped by another annotator": skipped,
        "never shown to anyone": never_shown,
        "leased to another annotator": held_by_ann1,
        "labelled by another annotator": labelled_by_ann1,
        "unknown id": "no-such-pair",
        "someone's id, altered": theirs.upper() + "x",
    }
    messages = {}
    for case, pair_id in cases.items():
        for api_name in LABEL_ENDPOINTS:
            messages[(case, api_name)] = refusal(ann2, pair_id, "why", api_name=api_name)
    assert human_labels(served) == before  # nothing stored
    assert (
        served.store.scalar(
            "SELECT count(*) FROM labels WHERE who = 'ann2' AND pair_id <> ?", [theirs]
        )
        == 0
    )
    # one message whatever the reason, and it says nothing about other pairs
    assert set(messages.values()) == {NOT_YOUR_PAIR}, set(messages.values())
    for message in messages.values():
        assert_tells_nothing(message, served)
    # ann2's own pair is still theirs to label
    out = ann2.predict(theirs, "mine", api_name="/label_b")
    assert out[3] != theirs and human_labels(served) == before + 1


def test_wrong_argument_types_get_a_clean_message(served: Served) -> None:
    client = served.client("ann2")
    shown = client.predict(api_name="/next_pair")[3]
    before = human_labels(served)
    tried = 0
    for api_name in LABEL_ENDPOINTS:
        for wrong in WRONG_TYPES:
            message = refusal(client, wrong, "why", api_name=api_name)
            assert "pair id must be text" in message, message
            assert_tells_nothing(message, served)
            message = refusal(client, shown, wrong, api_name=api_name)
            assert "rationale must be text" in message, message
            assert_tells_nothing(message, served)
            tried += 2
        assert "no pair is shown" in refusal(client, None, "", api_name=api_name)
        tried += 1
    for wrong in WRONG_TYPES:
        message = refusal(client, wrong, api_name="/skip")
        assert "pair id must be text" in message, message
        assert_tells_nothing(message, served)
        tried += 1
    assert tried == len(LABEL_ENDPOINTS) * (2 * len(WRONG_TYPES) + 1) + len(WRONG_TYPES)
    assert human_labels(served) == before
    assert client.predict(api_name="/next_pair")[3] == shown  # the lease is still theirs
    client.predict(shown, None, api_name="/label_tie")  # a missing rationale is fine
    assert human_labels(served) == before + 1


def test_undo_leases_the_pair_back_so_it_can_be_labelled_again(served: Served) -> None:
    client = served.client("ann1")
    shown = client.predict(api_name="/next_pair")[3]
    client.predict(shown, "first", api_name="/label_a")
    out = client.predict(api_name="/undo")
    assert out[3] == shown and "Undone" in out[5]
    client.predict(shown, "second", api_name="/label_b")
    rows = served.store.labels("AND who = 'ann1' AND pair_id = ?", [shown])
    assert [r["rationale"] for r in rows if r["retracted_at"] is None] == ["second"]


# -- leases that ran out, and batches (below the app, on a store) ------------------------


def open_annotator(tmp_path: Path, lease: float) -> tuple[PreferenceStore, AnnotationService]:
    make_store(tmp_path / "s.duckdb", 3)
    store = PreferenceStore(tmp_path / "s.duckdb")
    return store, AnnotationService(store, AnnotateConfig(lease_seconds=lease))


def test_a_lease_that_ran_out_counts_until_someone_else_gets_the_pair(tmp_path: Path) -> None:
    store, annotator = open_annotator(tmp_path, lease=0.3)
    try:
        slow = annotator.next("slow")
        time.sleep(0.5)  # nobody took it: still the pair shown to slow
        annotator.click("slow", slow.pair_id, "a", None)
        again = annotator.next("slow")
        time.sleep(0.5)
        assert annotator.next("fast").pair_id == again.pair_id  # now it went to fast
        with pytest.raises(StoreError) as refused:
            annotator.click("slow", again.pair_id, "a", None)
        assert str(refused.value) == NOT_YOUR_PAIR
        with pytest.raises(StoreError, match="not the one shown to you"):
            annotator.label("slow", again.pair_id, "a", None)  # the one-label path too
        assert store.scalar("SELECT count(*) FROM labels WHERE who = 'slow'") == 1
    finally:
        store.close()


def test_a_bad_click_in_a_batch_fails_alone(tmp_path: Path) -> None:
    from data.queue import claim_next

    make_store(tmp_path / "s.duckdb", 6)
    with PreferenceStore(tmp_path / "s.duckdb") as store:
        mine = claim_next(store, "ann")
        bobs = claim_next(store, "bob")
        results = label_and_claim_batch(
            store,
            [
                Click(123, "cy", "a", False, leased_only=True),  # type: ignore[arg-type]
                Click(mine, "ann", "a", False, rationale=["x"], leased_only=True),  # type: ignore[arg-type]
                Click(bobs, "cy", "a", False, leased_only=True),  # leased to bob
                Click(mine, "ann", "b", False, rationale="ok", leased_only=True),
            ],
        )
        messages = [str(r) for r in results[:3]]
        assert messages == [
            "pair id must be text, not int",
            "rationale must be text, not list",
            NOT_YOUR_PAIR,
        ]
        assert not isinstance(results[3], StoreError)
        assert store.labels("AND who = 'ann'")[0]["rationale"] == "ok"
        assert store.scalar("SELECT count(*) FROM labels") == 1
