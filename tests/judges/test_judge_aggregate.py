"""The pure rules that turn judgements into a label."""

from __future__ import annotations

import pytest

from judges.aggregate import JudgementRow, decide, disagrees_with_ensemble

SWAP = ("ab", "ba")


def row(
    model: str, order: str, verdict: str | None, p_a: float | None = None, status: str = "ok"
) -> JudgementRow:
    return JudgementRow(model, order, status if verdict else "failed", verdict, p_a)


def test_consistent_orders_vote_and_average_confidence() -> None:
    d = decide([row("m", "ab", "b", 0.2), row("m", "ba", "b", 0.4)], ("m",), SWAP)
    assert (d.verdict, d.agreement, d.inconsistent) == ("b", 1.0, {})
    assert d.p_a == pytest.approx(0.3) and d.confidence == pytest.approx(0.7)


def test_inconsistent_or_failed_orders_give_no_vote() -> None:
    d = decide([row("m", "ab", "a"), row("m", "ba", "b")], ("m",), SWAP)
    assert d.verdict is None and d.inconsistent == {"m": {"ab": "a", "ba": "b"}}
    assert decide([row("m", "ab", "a"), row("m", "ba", None)], ("m",), SWAP).verdict is None
    assert decide([row("m", "ab", "a")], ("m",), SWAP).verdict is None  # an order is missing


def test_panel_majority_split_and_ties() -> None:
    panel = ("x", "y", "z")
    d = decide([row("x", "ab", "a"), row("y", "ab", "a"), row("z", "ab", "b")], panel, ("ab",))
    assert (d.verdict, d.agreement, d.votes) == (
        "a",
        pytest.approx(2 / 3),
        {"x": "a", "y": "a", "z": "b"},
    )
    split = decide([row("x", "ab", "a"), row("y", "ab", "b")], ("x", "y"), ("ab",))
    assert split.verdict is None and split.split
    tie = decide([row("x", "ab", "tie")], ("x",), ("ab",))
    assert tie.verdict == "tie" and tie.confidence is None


def test_ensemble_disagreement_needs_a_confident_ensemble() -> None:
    assert disagrees_with_ensemble("b", 0.95) and disagrees_with_ensemble("a", 0.05)
    assert not disagrees_with_ensemble("a", 0.95) and not disagrees_with_ensemble("b", 0.6)
    assert not disagrees_with_ensemble("tie", 0.99) and not disagrees_with_ensemble("a", None)


def test_disagreeing_orders_are_debiased_by_the_mean_p_a() -> None:
    # position-biased: "first" both times, but P(stored A) is 0.9 shown first and 0.4 shown
    # second: the mean 0.65 clears the 0.1 margin, so the vote is a, confidence 0.65
    d = decide([row("m", "ab", "a", 0.9), row("m", "ba", "b", 0.4)], ("m",), SWAP)
    assert (d.verdict, d.inconsistent) == ("a", {})
    assert d.debiased == {"m": pytest.approx(0.65)} and d.confidence == pytest.approx(0.65)
    # pure position bias (0.8 first, 0.2 second) averages to 0.5: no vote, flagged
    pure = decide([row("m", "ab", "a", 0.8), row("m", "ba", "b", 0.2)], ("m",), SWAP)
    assert pure.verdict is None and pure.inconsistent == {"m": {"ab": "a", "ba": "b"}}
    # a wider margin turns the first case into an inconsistency too
    strict = decide(
        [row("m", "ab", "a", 0.9), row("m", "ba", "b", 0.4)], ("m",), SWAP, debias_margin=0.2
    )
    assert strict.verdict is None and strict.inconsistent


def test_split_panel_is_resolved_only_by_a_clear_mean_p_a() -> None:
    panel = ("x", "y")
    clear = decide([row("x", "ab", "a", 0.95), row("y", "ab", "b", 0.45)], panel, ("ab",))
    assert clear.split and clear.resolved_by == "panel_mean_p_a"
    assert clear.verdict == "a" and clear.p_a == pytest.approx(0.7)
    assert clear.agreement == pytest.approx(0.5)
    close = decide([row("x", "ab", "a", 0.6), row("y", "ab", "b", 0.3)], panel, ("ab",))
    assert close.split and close.verdict is None and close.resolved_by is None
    failed = decide([row("x", "ab", None), row("y", "ab", None)], panel, ("ab",))
    assert failed.failed and failed.verdict is None
