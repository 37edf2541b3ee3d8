"""The judge-error estimate: the documented prior rule and the fitted model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data.errors import ConfigError
from labeling.label_risk import (
    RiskConfig,
    calibration,
    estimate_risk,
    fit_judge_error,
    prior_risk,
)
from labeling.signals import PairSignals


def signals(n: int, **columns: np.ndarray) -> PairSignals:
    base = dict(
        margin=np.full(n, np.nan),
        panel_disagreement=np.zeros(n),
        position=np.zeros(n),
        length=np.zeros(n),
        ens_against=np.full(n, np.nan),
        ens_std=np.full(n, np.nan),
    )
    base.update(columns)
    return PairSignals([f"p{i}" for i in range(n)], [None] * n, ["a"] * n, **base)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_prior_rule_by_hand() -> None:
    s = signals(
        3,
        margin=np.array([0.9, np.nan, 0.5]),
        panel_disagreement=np.array([0.0, 1 / 3, 0.0]),
        position=np.array([math.log(4), 0.0, -math.log(4)]),
        length=np.array([1.0, 0.0, -2.0]),
        ens_against=np.array([0.9, np.nan, 0.5]),
        ens_std=np.array([0.1, 0.0, np.nan]),
    )
    s.reason[2] = "judge_tie"
    s.auto_verdict[2] = "tie"
    risk = prior_risk(s, RiskConfig(), base_error=0.2)
    base = math.log(0.2 / 0.8)
    first = base - 3 * (0.9 - 0.5) + math.log(4) + 0.3 * 1.0 + 3 * (0.9 - 0.5) + 5 * 0.1
    second = base + 4 / 3
    assert risk[0] == pytest.approx(sigmoid(first))
    assert risk[1] == pytest.approx(sigmoid(second))
    assert risk[2] == 1.0  # no usable automatic label


def test_fitted_model_recovers_known_error_rates() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    margin = rng.uniform(0, 1, n)
    position = rng.choice([-1.0, 1.0], n)
    truth = 1 / (1 + np.exp(-(-0.5 - 3.0 * margin + 0.8 * position)))  # P(judge wrong)
    wrong = rng.random(n) < truth
    s = signals(n, margin=margin, position=position)
    model = fit_judge_error(s, wrong, RiskConfig(regularisation=10.0), base_error=0.25)
    predicted = model.predict(s)
    for low, high in ((0.0, 0.2), (0.2, 0.4), (0.4, 1.0)):
        mask = (truth >= low) & (truth < high)
        assert abs(predicted[mask].mean() - truth[mask].mean()) < 0.03
    report = calibration(predicted, wrong)
    assert report["ece"] < 0.03 and report["pairs"] == n


def test_estimate_uses_the_prior_until_enough_pairs_then_fits() -> None:
    rng = np.random.default_rng(1)
    margin = rng.uniform(0, 1, 300)
    wrong = rng.random(300) < 0.6 - 0.5 * margin
    few = estimate_risk(
        signals(5), signals(10, margin=margin[:10]), wrong[:10], np.ones(10, bool), RiskConfig()
    )
    assert few.kind == "prior" and few.fit_pairs == 10
    # the base rate is the prior shrunk towards the calibration slice's error rate
    assert few.base_error == pytest.approx((0.25 * 20 + wrong[:10].sum()) / 30)
    many = estimate_risk(
        signals(5, margin=np.linspace(0, 1, 5)),
        signals(300, margin=margin),
        wrong,
        np.arange(300) < 60,
        RiskConfig(),
    )
    assert many.kind == "fitted" and many.calibration["pairs"] == 60
    assert np.all(np.diff(many.risk) < 0)  # a more confident judge is less often wrong
    with pytest.raises(ConfigError, match="fitted needs"):
        estimate_risk(
            signals(1), signals(3), np.zeros(3, bool), np.zeros(3, bool), RiskConfig(model="fitted")
        )
