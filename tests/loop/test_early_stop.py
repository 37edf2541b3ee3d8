"""When the loop stops early, and the reason it gives."""

from __future__ import annotations

from app.loop.early_stop import RoundOutcome, early_stop_reason


def outcomes(*rounds: tuple[bool, float | None]) -> list[RoundOutcome]:
    return [RoundOutcome(i + 1, p, m) for i, (p, m) in enumerate(rounds)]


def test_the_gate_failing_twice_in_a_row_stops_the_loop() -> None:
    assert early_stop_reason(outcomes((True, 0.6), (False, 0.5)), 0.0) is None
    reason = early_stop_reason(outcomes((True, 0.6), (False, 0.5), (False, 0.55)), 0.0)
    assert reason is not None and "gate failed twice" in reason and "rounds 2 and 3" in reason
    assert early_stop_reason(outcomes((False, 0.6), (True, 0.5), (False, 0.7)), 0.0) is None


def test_a_held_out_gain_below_the_threshold_over_two_rounds_stops_the_loop() -> None:
    assert early_stop_reason(outcomes((True, 0.60), (True, 0.62)), 0.05) is None  # too early
    rising = outcomes((True, 0.60), (True, 0.62), (True, 0.70))
    assert early_stop_reason(rising, 0.05) is None
    flat = outcomes((True, 0.60), (True, 0.62), (True, 0.61))
    reason = early_stop_reason(flat, 0.05)
    assert reason is not None and "+0.0100" in reason and "--min-gain 0.05" in reason


def test_rounds_without_a_held_out_metric_never_stop_on_gain() -> None:
    assert early_stop_reason(outcomes((True, None), (True, None), (True, None)), 1.0) is None
