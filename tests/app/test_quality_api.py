"""Quality control through the served app (gradio_client, by api_name): the adjudicator role
is enforced on the server, an adjudication is stored and wins the export, the annotators
table is for admins, and a gold pair's answer looks like any other pair's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from data.click_batch import submit_human_label
from data.export import aggregated_pairs
from data.gold import GoldConfig, gold_answers, write_gold_config
from data.importer import ImportOptions, import_sources
from data.queue import claim_next, release
from tests.fakes.served_app import Served, serve_store, stop

ADJUDICATOR = ("judy", "pw-judy")


@pytest.fixture(scope="module")
def served_qc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from app.ui.auth import add_user

    tmp = tmp_path_factory.mktemp("quality")
    running = serve_store(tmp, n=8, needed_labels=2)
    add_user(tmp / "users.json", *ADJUDICATOR, "adjudicator")  # re-read on the next request
    yield running
    stop(running)


def client(served: Served, user: str) -> Any:
    from gradio_client import Client

    if user == ADJUDICATOR[0]:
        return Client(served.url, auth=ADJUDICATOR, verbose=False)
    return served.client(user)


def split(served: Served) -> str:
    """Two annotators disagree on one pair (through the real label path)."""
    store = served.store
    pair_id = claim_next(store, "ann1")
    assert pair_id is not None
    submit_human_label(store, pair_id, "ann1", verdict_shown="a", swapped=False, leased_only=True)
    assert claim_next(store, "ann2") == pair_id
    submit_human_label(store, pair_id, "ann2", verdict_shown="a", swapped=True, leased_only=True)
    return pair_id


def test_annotators_cannot_adjudicate_or_read_the_table(served_qc: Served) -> None:
    from gradio_client.exceptions import AppError

    pair_id = split(served_qc)
    ann = client(served_qc, "ann1")
    for api_name, args in {
        "/adjudicate_next": ("",),
        "/adjudicate_a": (pair_id, ""),
        "/adjudicate_both_bad": (pair_id, "why"),
        "/annotators": (),
    }.items():
        needs = "admin" if api_name == "/annotators" else "adjudicator"
        with pytest.raises(AppError, match=f"needs an {needs}"):
            ann.predict(*args, api_name=api_name)
    assert served_qc.store.scalar("SELECT count(*) FROM adjudications") == 0
    judy = client(served_qc, "judy")
    with pytest.raises(AppError, match="judy is an adjudicator; this action needs an admin"):
        judy.predict(api_name="/annotators")
    with pytest.raises(AppError, match="needs an admin"):
        judy.predict("trl", 0.0, api_name="/export")
    assert judy.predict(api_name="/whoami")[0] == {"user": "judy", "role": "adjudicator"}


def test_an_adjudicator_settles_a_split(served_qc: Served) -> None:
    from gradio_client.exceptions import AppError

    judy = client(served_qc, "judy")
    status, prompt, left, right, votes, pair_id, rationale = judy.predict(
        "", api_name="/adjudicate_next"
    )
    assert "wait for a final verdict" in status and pair_id
    assert "ann1" in votes and "ann2" in votes and "saw A and B swapped" in votes
    shown = judy.predict(pair_id, "  B is right  ", api_name="/adjudicate_b")
    assert "Final verdict saved: B better" in shown[0]
    row = served_qc.store.query(
        "SELECT adjudicator, verdict, rationale FROM adjudications WHERE pair_id = ?", [pair_id]
    )
    assert row == [("judy", "b", "B is right")]
    exported = {p.pair_id: (p.verdict, p.source) for p in aggregated_pairs(served_qc.store)}
    assert exported[pair_id] == ("b", "adjudication")
    with pytest.raises(AppError, match="not waiting for adjudication"):
        judy.predict(pair_id, "", api_name="/adjudicate_a")  # settled once
    with pytest.raises(AppError, match="pair is shown"):
        judy.predict("", "", api_name="/adjudicate_a")


def test_an_admin_gets_the_table_and_its_csv(served_qc: Served) -> None:
    table, _, _, csv_path = client(served_qc, "boss").predict(api_name="/annotators")
    assert "| annotator |" in table and "ann1" in table
    assert Path(csv_path).read_text().startswith("annotator,labels,")


def test_a_gold_pair_looks_like_any_other(served_qc: Served, tmp_path: Path) -> None:
    store = served_qc.store
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        "\n".join(
            json.dumps(
                {
                    "prompt": f"Question {i}: how do I sort a list?",
                    "chosen": "x",
                    "rejected": f"y{i}",
                }
            )
            for i in range(3)
        )
        + "\n"
    )
    import_sources(store, [str(gold)], ImportOptions(gold=True))
    answers = gold_answers(store)
    ann = client(served_qc, "ann2")
    release(store, "ann2")
    write_gold_config(store, GoldConfig(rate=0.0))
    plain = ann.predict(api_name="/next_pair")
    release(store, "ann2")
    write_gold_config(store, GoldConfig(rate=1.0))
    golden = ann.predict(api_name="/next_pair")
    write_gold_config(store, GoldConfig())
    assert plain[3] not in answers and golden[3] in answers
    # the same fields, of the same kinds; the progress line counts the same queue
    assert len(plain) == len(golden) == 7
    assert [type(v) for v in plain] == [type(v) for v in golden]
    assert plain[4] == golden[4] and plain[5] == golden[5] == "" and golden[6] == ""
    assert len(golden[3]) == len(plain[3])  # an id like any other
    assert "gold" not in json.dumps(golden).lower()
    # and its label goes through the same click
    after = ann.predict(golden[3], "", api_name="/label_a")
    assert after[3] != golden[3]
    assert store.scalar(
        "SELECT count(*) FROM active_labels WHERE who = 'ann2' AND pair_id = ?", [golden[3]]
    )
    # undo brings it back like any other pair, and a reload keeps it
    undone = ann.predict(api_name="/undo")
    assert undone[3] == golden[3] and "Undone" in undone[5]
    assert ann.predict(api_name="/next_pair")[3] == golden[3]


def test_who_may_act_as_which_role(tmp_path: Path) -> None:
    from app.ui.auth import Access, AccessDenied, add_user

    users = tmp_path / "users.json"
    for name, role in (("ann", "annotator"), ("judy", "adjudicator"), ("boss", "admin")):
        add_user(users, name, "pw", role)
    access = Access.from_file(users)
    allowed = {
        (name, role)
        for name in ("ann", "judy", "boss")
        for role in ("annotator", "adjudicator", "admin")
        if _allowed(access, name, role, AccessDenied)
    }
    assert allowed == {
        ("ann", "annotator"),
        ("judy", "annotator"),
        ("judy", "adjudicator"),
        ("boss", "annotator"),
        ("boss", "adjudicator"),
        ("boss", "admin"),
    }


def _allowed(access: Any, name: str, role: str, denied: type[Exception]) -> bool:
    try:
        return access.require(name, role) == name
    except denied:
        return False
