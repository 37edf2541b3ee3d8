"""Data and judge behaviours shared by the judge tests and benchmark."""

from __future__ import annotations

from typing import Any

from tests.fakes.openai_server import Reply, last_user_text


def shown_responses(body: dict[str, Any]) -> tuple[str, str]:
    """(Response A, Response B) as shown in the default template's user message."""
    text = last_user_text(body)
    if "[Response A]" not in text:  # a repair request: look at the original question
        text = next(m["content"] for m in body["messages"] if m["role"] == "user")
    first = text.split("[Response A]", 1)[1].split("[Response B]", 1)[0]
    second = text.split("[Response B]", 1)[1]
    return first, second


def prefers_good(body: dict[str, Any]) -> Reply:
    first, _second = shown_responses(body)
    return Reply(text="A" if "GOOD" in first else "B", p_a=0.9 if "GOOD" in first else 0.1)


def make_pairs(store: Any, n: int, *, queue: str = "judge") -> list[str]:
    """n pairs in `queue`, each with one response containing GOOD; returns pair ids."""
    from data.ingest import ingest
    from data.shapes import PairRecord

    records = [
        PairRecord(
            [{"role": "user", "content": f"question {i}?"}],
            f"GOOD answer number {i}, with detail",
            f"meh {i}",
        )
        for i in range(n)
    ]
    result = ingest(store, records, origin="test")
    with store.transaction() as cur:
        cur.execute("UPDATE pairs SET queue = ?", [queue]).fetchall()
    return result.pair_ids


def good_side(store: Any, pair_id: str) -> str:
    """'a' or 'b': which stored response contains GOOD."""
    pair = store.get_pair(pair_id)
    return "a" if "GOOD" in pair.response_a else "b"
