"""The Review tab: its endpoints through gradio_client on the real app, and what it renders."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from app.ui import review_view
from data.errors import ConfigError
from data.review import LabelEntry
from tests.fakes.served_app import Served, serve_store, stop

REVIEW_ENDPOINTS = {
    "/review_search": ("any", "", "any", "", False),
    "/review_open": ("x",),
    "/review_correct": ("x", "1", "a", "no"),
}


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = serve_store(tmp_path_factory.mktemp("review-tab"), n=6, xss_every=3)
    store, p = running.store, running.pair_ids
    store.add_label(p[0], source="judge", who="gpt", verdict="a", rationale="<b>longer</b>")
    store.add_label(p[0], source="human", who="ann1", verdict="b", round=1)
    store.add_label(p[1], source="judge", who="gpt", verdict="b")
    store.add_label(p[1], source="human", who="ann2", verdict="b", round=1)
    store.add_label(p[2], source="import", who="file.jsonl", verdict="tie")
    yield running
    stop(running)


def test_the_review_endpoints_are_named(reviewed: Served) -> None:
    api = reviewed.client("boss").view_api(print_info=False, return_format="dict")
    names = set(api["named_endpoints"])
    assert names >= set(REVIEW_ENDPOINTS)
    assert "/review_select" not in names  # the row click is the browser's; review_open is the API's


def judge_label(served: Served, pair_id: str) -> int:
    return served.store.labels("AND pair_id = ? AND source = 'judge'", [pair_id])[0]["label_id"]


def test_admin_filters_opens_and_corrects(reviewed: Served) -> None:
    client, store, p = reviewed.client("boss"), reviewed.store, reviewed.pair_ids
    count, table = client.predict("any", "", "any", None, False, api_name="/review_search")
    assert "**3** labelled pair(s) match" in count
    assert {row[0] for row in table["data"]} == set(p[:3])
    count, table = client.predict("any", "", "any", None, True, api_name="/review_search")
    assert [row[0] for row in table["data"]] == [p[0]]
    assert table["data"][0][2] == "judge:gpt=a, human:ann1=b"
    _, table = client.predict("human", "ann2", "b", "1", False, api_name="/review_search")
    assert [row[0] for row in table["data"]] == [p[1]]
    count, _ = client.predict("model", "", "any", None, False, api_name="/review_search")
    assert "No labelled pair" in count

    old = judge_label(reviewed, p[0])
    pair_id, prompt, left, right, labels, choices, _ = client.predict(p[0], api_name="/review_open")
    assert pair_id == p[0] and "&lt;script&gt;" in prompt  # stored texts come escaped
    assert "&lt;b&gt;longer&lt;/b&gt;" in labels and "2 active" in labels
    assert [value for _, value in choices["choices"]] == [str(old), str(old + 1)]

    out = client.predict(p[0], str(old), "b", "A ignores the question", api_name="/review_correct")
    labels, choices, status = out[4], out[5], out[6]
    new = store.labels("AND pair_id = ? AND who = 'boss'", [p[0]])[0]
    assert new["verdict"] == "b" and new["source"] == "human"
    assert f"Corrected label #{old}" in status and f"new label #{new['label_id']}" in status
    assert f"<s>#{old} · judge" in labels  # struck through, rendered on the server
    assert f"by boss: A ignores the question; replaced by #{new['label_id']}" in labels
    assert str(old) not in [value for _, value in choices["choices"]]
    assert store.count("label_corrections") == 1
    # the human and the judge no longer disagree on that pair
    _, table = client.predict("any", "", "any", None, True, api_name="/review_search")
    assert table["data"] == [] or p[0] not in {row[0] for row in table["data"]}


def test_correcting_a_retracted_label_says_what_to_do(reviewed: Served) -> None:
    from gradio_client.exceptions import AppError

    client, p = reviewed.client("boss"), reviewed.pair_ids
    old = judge_label(reviewed, p[1])
    client.predict(p[1], str(old), "a", "", api_name="/review_correct")
    with pytest.raises(AppError, match=f"#{old} was already retracted.*correct #"):
        client.predict(p[1], str(old), "tie", "", api_name="/review_correct")
    with pytest.raises(AppError, match="belongs to pair"):
        client.predict(p[2], str(old + 1), "tie", "", api_name="/review_correct")
    with pytest.raises(AppError, match="choose the new verdict"):
        client.predict(p[1], str(old), None, "", api_name="/review_correct")
    with pytest.raises(AppError, match="enter a pair id"):
        client.predict("", api_name="/review_open")


def test_an_annotator_calling_the_review_api_is_refused(reviewed: Served) -> None:
    from gradio_client.exceptions import AppError

    client, store = reviewed.client("ann1"), reviewed.store
    label_id = store.labels("AND pair_id = ?", [reviewed.pair_ids[2]])[0]["label_id"]
    before = (store.count("labels"), store.count("label_corrections"))
    for api_name, args in REVIEW_ENDPOINTS.items():
        if api_name == "/review_correct":
            args = (reviewed.pair_ids[2], str(label_id), "a", "mine now")
        with pytest.raises(AppError, match="needs an admin"):
            client.predict(*args, api_name=api_name)
    assert (store.count("labels"), store.count("label_corrections")) == before
    assert store.labels("AND label_id = ?", [label_id])  # still active


def entry(**changes: object) -> LabelEntry:
    fields = dict(
        label_id=7,
        source="human",
        who="ann1",
        verdict="a",
        confidence=None,
        rationale=None,
        swapped=False,
        round=2,
        created_at=datetime(2026, 12, 1, 10, 0),
        retracted_at=None,
        corrected_by=None,
        reason=None,
        replaced_by=None,
        corrects=None,
    )
    fields.update(changes)
    return LabelEntry(**fields)  # type: ignore[arg-type]


def test_label_lines_mark_retractions_with_who_and_why() -> None:
    active = review_view.label_line(entry(rationale="line one\nline <two>", confidence=0.9))
    assert active.startswith("#7 · human · ann1 · **A better** · round 2 · confidence 0.90")
    assert active.endswith("— *line one line &#60;two&#62;*")  # plain: inert
    undone = review_view.label_line(entry(retracted_at=datetime(2026, 12, 1, 11, 0)))
    assert undone.startswith("~~#7") and "(undone by its annotator)" in undone
    corrected = review_view.label_line(
        entry(
            source="judge",
            retracted_at=datetime(2026, 12, 1, 11, 0),
            corrected_by="boss",
            reason="<i>wrong</i>",
            replaced_by=9,
        )
    )
    assert (
        "**retracted** 2026-12-01 11:00 by boss: &#60;i&#62;wrong&#60;/i&#62;; replaced by #9"
        in corrected
    )
    assert "corrects #3" in review_view.label_line(entry(corrects=3))


def test_inputs_become_a_filter_and_a_label_id() -> None:
    wanted = review_view.review_filter("any", "  ", "any", "", False)
    assert (wanted.source, wanted.who, wanted.verdict, wanted.round) == (None, None, None, None)
    assert review_view.review_filter("any", "", "any", " ", False).round is None
    assert review_view.review_filter("any", "", "any", 2.0, False).round == 2  # from a script
    with pytest.raises(ConfigError, match="whole number"):
        review_view.review_filter("any", "", "any", "1.5", False)
    with pytest.raises(ConfigError, match="whole number"):
        review_view.review_filter("any", "", "any", "two", False)
    wanted = review_view.review_filter("judge", " gpt ", "tie", "3", True)
    assert (wanted.source, wanted.who, wanted.verdict, wanted.round, wanted.disagree) == (
        "judge",
        "gpt",
        "tie",
        3,
        True,
    )
    with pytest.raises(ConfigError, match="any, human"):
        review_view.review_filter("robot", "", "any", "", False)
    assert review_view.parse_label_id("12") == 12
    assert review_view.parse_label_id("#12 judge gpt: A better") == 12
    assert review_view.parse_label_id(12) == 12
    with pytest.raises(ConfigError, match="pick the label"):
        review_view.parse_label_id(None)
