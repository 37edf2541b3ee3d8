"""PPO arithmetic against values worked out by hand."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from training.ppo_core import (  # noqa: E402
    AdaptiveKLController,
    PlateauStopper,
    gae,
    kl_penalized_rewards,
    policy_loss,
    value_loss,
)


def test_gae_matches_hand_computation() -> None:
    # T = 3, gamma = 0.9, lam = 0.8, rewards [1, 0, 2], values [0.5, 0.4, 0.3]
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    d2 = 2.0 + 0.9 * 0.0 - 0.3  # 1.7
    d1 = 0.0 + 0.9 * 0.3 - 0.4  # -0.13
    d0 = 1.0 + 0.9 * 0.4 - 0.5  # 0.86
    a2 = d2
    a1 = d1 + 0.72 * a2  # 1.094
    a0 = d0 + 0.72 * a1  # 1.64768
    assert adv[0].tolist() == pytest.approx([a0, a1, a2], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.3], abs=1e-6)


def test_gae_ignores_padding_after_the_last_token() -> None:
    rewards = torch.tensor([[1.0, 2.0, 99.0]])
    values = torch.tensor([[0.5, 0.5, 99.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # A1 = 2 - 0.5 = 1.5 (no value after the last real token); A0 = 1 + 0.5 - 0.5 + 1.5 = 2.5
    assert adv[0].tolist() == pytest.approx([2.5, 1.5, 0.0])
    assert ret[0].tolist() == pytest.approx([3.0, 2.0, 0.0])


def test_kl_penalty_per_token_and_score_on_last_real_token() -> None:
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    rewards, kl = kl_penalized_rewards(torch.tensor([4.0]), logp, ref, mask, kl_coef=0.1)
    assert kl[0].tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert rewards[0].tolist() == pytest.approx([-0.05, 4.0, 0.0])


def test_clipped_policy_loss() -> None:
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, -1.0]])
    loss, clip_frac = policy_loss(new, old, adv, torch.ones(1, 2), clip=0.2)
    # token 0: max(-1*1.5, -1*1.2) = -1.2 (clipped); token 1: max(1*0.5, 1*0.8) = 0.8 (clipped)
    assert float(loss) == pytest.approx((-1.2 + 0.8) / 2)
    assert float(clip_frac) == pytest.approx(1.0)
    loss, clip_frac = policy_loss(torch.log(torch.tensor([[1.1, 1.0]])), old, adv, torch.ones(1, 2))
    assert float(loss) == pytest.approx((-1.1 + 1.0) / 2)
    assert float(clip_frac) == 0.0


def test_clipped_value_loss() -> None:
    old = torch.tensor([[1.0, 1.0]])
    new = torch.tensor([[2.0, 1.1]])
    returns = torch.tensor([[3.0, 0.0]])
    loss = value_loss(new, old, returns, torch.ones(1, 2), clip=0.2)
    # token 0: unclipped (2-3)^2 = 1, clipped (1.2-3)^2 = 3.24 -> 3.24
    # token 1: unclipped 1.21, clipped (1.1-0)^2 = 1.21 -> 1.21
    assert float(loss) == pytest.approx(0.5 * (3.24 + 1.21) / 2)


def test_adaptive_kl_controller() -> None:
    ctl = AdaptiveKLController(value=0.1, target=6.0, horizon=100)
    # KL 9 -> error clip(0.5) = 0.2 -> 0.1 * (1 + 0.2 * 10 / 100) = 0.102
    assert ctl.update(9.0, 10) == pytest.approx(0.102)
    # KL 5.4 -> error -0.1 -> 0.102 * (1 - 0.1 * 50 / 100) = 0.0969
    assert ctl.update(5.4, 50) == pytest.approx(0.102 * 0.95)
    assert math.isclose(ctl.value, 0.0969)


def test_plateau_stopper() -> None:
    stopper = PlateauStopper(patience=2, min_delta=0.1, kl_bound=5.0)
    assert not stopper.should_stop(1.0, 0.1)
    assert not stopper.should_stop(1.5, 0.1)
    assert not stopper.should_stop(1.55, 0.1)
    assert stopper.should_stop(1.52, 0.1)  # last 2 never beat 1.5 + 0.1
    assert "did not improve" in stopper.reason
    assert PlateauStopper(kl_bound=1.0).should_stop(0.0, 2.0)
