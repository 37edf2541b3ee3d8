from __future__ import annotations

import json

import numpy as np
import pytest

from data.errors import ConfigError
from labeling.ensemble import EnsembleConfig, RewardEnsemble, fit_ensemble


def synthetic_pairs(
    n: int, dim: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs whose labels come from a known linear reward through Bradley-Terry."""
    rng = np.random.default_rng(seed)
    w_true = rng.normal(size=dim)
    xa = rng.normal(size=(n, dim)).astype(np.float32)
    xb = rng.normal(size=(n, dim)).astype(np.float32)
    p = 1 / (1 + np.exp(-(xa - xb) @ w_true))
    y = (rng.random(n) < p).astype(np.float32)
    return xa, xb, y, w_true


def test_bradley_terry_recovers_known_linear_reward():
    xa, xb, y, w_true = synthetic_pairs(4000, 6)
    ens, metrics = fit_ensemble(
        xa,
        xb,
        y,
        EnsembleConfig(members=4, l2=0.1),
        mu=np.zeros(6, np.float32),
        sigma=np.ones(6, np.float32),
    )
    for w in ens.params["W"]:
        cosine = w @ w_true / np.linalg.norm(w) / np.linalg.norm(w_true)
        assert cosine > 0.99
        # BT is identifiable in scale too: the fitted weights match the true ones
        np.testing.assert_allclose(w, w_true, atol=0.25 * np.abs(w_true).max())
    # the ensemble's probabilities match the true Bradley-Terry probabilities
    p_model = ens.member_p_a(xa, xb).mean(axis=0)
    p_true = 1 / (1 + np.exp(-(xa - xb) @ w_true))
    assert np.abs(p_model - p_true).mean() < 0.03
    # out-of-bag accuracy is as good as the true reward's own accuracy on the noisy labels
    bayes = ((p_true > 0.5) == (y > 0.5)).mean()
    assert metrics["oob_accuracy"] > bayes - 0.03


def test_members_differ_and_all_score_in_one_pass():
    xa, xb, y, _ = synthetic_pairs(200, 5, seed=3)
    ens, _ = fit_ensemble(xa, xb, y, EnsembleConfig(members=8))
    assert ens.members == 8
    w = ens.params["W"]
    assert not np.allclose(w[0], w[1])  # bootstrap + independent init
    member_p = ens.member_p_a(xa, xb)
    # the vectorised pass equals scoring each member by itself
    for k in range(8):
        z_a = (xa - ens.mu) / ens.sigma
        z_b = (xb - ens.mu) / ens.sigma
        p_k = 1 / (1 + np.exp(-((z_a - z_b) @ w[k])))
        np.testing.assert_allclose(member_p[k], p_k, atol=1e-5)
    np.testing.assert_allclose(
        ens.rewards(xa) - ens.rewards(xb), ens.member_logits(xa, xb), atol=1e-4
    )


def test_mlp_head_fits_a_nonlinear_reward():
    rng = np.random.default_rng(0)
    xa = rng.normal(size=(600, 3)).astype(np.float32)
    xb = rng.normal(size=(600, 3)).astype(np.float32)
    reward = lambda x: -np.abs(x[:, 0]) * 3  # noqa: E731 - closest to zero wins
    y = (reward(xa) > reward(xb)).astype(np.float32)
    mlp, m_mlp = fit_ensemble(
        xa, xb, y, EnsembleConfig(members=4, head="mlp", hidden=16, steps=400, lr=0.03, l2=0.01)
    )
    lin, m_lin = fit_ensemble(xa, xb, y, EnsembleConfig(members=4))
    assert m_mlp["train_accuracy"] > 0.9
    assert m_mlp["train_accuracy"] > m_lin["train_accuracy"] + 0.2
    np.testing.assert_allclose(
        mlp.rewards(xa) - mlp.rewards(xb), mlp.member_logits(xa, xb), atol=1e-5
    )


def test_conservative_reward_is_mean_minus_lambda_std():
    xa, xb, y, _ = synthetic_pairs(100, 4, seed=5)
    ens, _ = fit_ensemble(xa, xb, y, EnsembleConfig(members=5))
    r = ens.rewards(xa)
    np.testing.assert_allclose(
        ens.conservative_reward(xa, lam=2.0), r.mean(0) - 2.0 * r.std(0), rtol=1e-5
    )
    assert (ens.conservative_reward(xa, lam=1.0) <= r.mean(0) + 1e-6).all()


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_artifact_round_trip(tmp_path, head):
    xa, xb, y, _ = synthetic_pairs(80, 4, seed=7)
    ens, _ = fit_ensemble(xa, xb, y, EnsembleConfig(members=3, head=head, hidden=4, steps=20))
    folder = ens.save(
        tmp_path / "ensemble-v1",
        encoder="enc",
        features=["length"],
        max_length=64,
        normalize=True,
        version=1,
    )
    spec = json.loads((folder / "ensemble.json").read_text())
    assert spec["format"] == "prefloop-ensemble/1" and spec["members"] == 3 and spec["head"] == head
    keys = set(np.load(folder / "ensemble.npz"))
    assert keys == (
        {"W", "b", "mu", "sigma"} if head == "linear" else {"W1", "b1", "W2", "b2", "mu", "sigma"}
    )
    loaded = RewardEnsemble.load(folder)
    np.testing.assert_allclose(loaded.rewards(xa), ens.rewards(xa), rtol=1e-5, atol=1e-6)


def test_bad_config_names_the_fix():
    with pytest.raises(ConfigError, match="head"):
        EnsembleConfig(head="transformer").check()
    with pytest.raises(ConfigError, match="label some pairs"):
        fit_ensemble(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
