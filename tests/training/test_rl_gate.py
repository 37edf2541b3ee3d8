"""The RL promotion gate's rule, on hand-made numbers."""

from __future__ import annotations

from training.rl_gate import rl_gate


def test_promotes_when_the_heldout_reward_holds_and_kl_is_in_bounds() -> None:
    promote, numbers = rl_gate(0.40, 0.40, 3.0, 20.0)
    assert promote and numbers["heldout_reward_before"] == 0.40


def test_refuses_a_drop_in_heldout_reward() -> None:
    promote, numbers = rl_gate(0.40, 0.39, 3.0, 20.0)
    assert not promote and numbers["heldout_reward_after"] == 0.39


def test_refuses_a_policy_that_drifted_past_the_kl_bound() -> None:
    promote, _ = rl_gate(0.40, 0.90, 25.0, 20.0)
    assert not promote


def test_promotes_when_there_is_nothing_to_compare() -> None:
    promote, numbers = rl_gate(None, None, None, 20.0)
    assert promote and "no held-out" in numbers["rule"]
