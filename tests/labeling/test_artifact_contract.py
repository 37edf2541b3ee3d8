"""The ensemble artifact written by labeling gives the same rewards when training reads it."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.encoder import EncoderConfig
from labeling.ensemble import EnsembleConfig, fit_ensemble, standardisation
from labeling.features import FEATURE_BLOCKS, response_features

PROMPTS = [f"How do I cook dish number {i}?" for i in range(8)]
RESPONSES = [("Boil it. " * (i % 4 + 1)) + f"Step {i}." for i in range(8)]
CONFIG = EncoderConfig(max_length=32, progress=False)


@pytest.mark.parametrize("block", FEATURE_BLOCKS)
def test_training_reads_the_same_rewards(store, tmp_path, block):
    from training import ensemble_reward  # first-party: a broken import fails, not skips

    features = [block, "length"] if block != "length" else ["length"]
    x, _ = response_features(store, PROMPTS, RESPONSES, features, config=CONFIG)
    mu, sigma = standardisation(x)
    y = np.array([1, 0, 1, 0], dtype=np.float32)
    ens, _ = fit_ensemble(x[:4], x[4:], y, EnsembleConfig(members=3, steps=10), mu=mu, sigma=sigma)
    folder = ens.save(
        tmp_path / "ensemble-v1",
        encoder=CONFIG.name,
        features=features,
        max_length=CONFIG.max_length,
        normalize=True,
        version=1,
    )
    reward = ensemble_reward.EnsembleReward(folder, conservative_lambda=0.5)
    theirs = np.asarray(reward(PROMPTS, RESPONSES))
    np.testing.assert_allclose(theirs, ens.conservative_reward(x, lam=0.5), rtol=1e-3, atol=1e-4)
