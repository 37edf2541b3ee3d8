"""The probability that a pair ends up with a wrong label (or none) unless a human labels it.

Two ways to turn `labeling.signals.PairSignals` into that probability:

* **The prior rule**, used until humans have labelled enough judge-labelled pairs:

      logit(risk) = logit(base_error) + sum_f  w_f * (x_f - ref_f)

  with a missing signal contributing nothing. `base_error` is the judge's error rate:
  `RiskConfig.prior_error` shrunk towards the error rate humans measured on the random
  calibration slice (a beta prior worth `prior_strength` pairs). The default weights (`PRIOR_WEIGHTS`)
  say: a confident judge is rarely wrong; a panel that disagrees, a verdict for the
  position the judge favours, a verdict for the longer answer, an ensemble that prefers
  the other side, and an ensemble whose members disagree all make an error likelier.
* **The fitted judge-error model**: once at least `min_fit_pairs` pairs of the random
  calibration slice carry both an automatic and a human a/b verdict, with at least
  `min_fit_errors` disagreements, a logistic regression of "the automatic label is
  wrong" on the standardised signals (missing values imputed with the training means,
  plus a missing indicator for the judge margin), with the prior rule's logit as its
  offset and an L2 penalty, so it learns corrections to the rule: few labels move it
  little, many move it far. Only the random slice is fitted on: the other human-checked
  pairs were picked for their risk, and inside such a picked set the signals trade off
  against each other, so a fit on them learns relations that do not hold for the pairs
  still to route (measured: the margin's association with errors vanished inside the
  picked set). Its calibration is reported out of fold on the slice.

Pairs with no usable automatic label (`NO_LABEL_REASONS`) have risk 1: without a human
they end up unlabelled or labelled by a coin.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data.errors import ConfigError
from labeling.signals import FEATURES, NO_LABEL_REASONS, PairSignals, logit

# (weight, reference value) per signal, on the logit scale.
PRIOR_WEIGHTS: dict[str, tuple[float, float]] = {
    "margin": (-3.0, 0.5),  # 2P-1: P(verdict) 0.75 is neutral; 0.95 lowers the odds ~3.8x
    "panel_disagreement": (4.0, 0.0),  # 1 of 3 judges dissenting: odds x3.8
    "position": (1.0, 0.0),  # log-odds of the judge's first-position rate, signed
    "length": (0.3, 0.0),  # per unit of log length ratio towards the longer answer
    "ens_against": (3.0, 0.5),  # ensemble at 0.9 for the other side: odds x3.3
    "ens_std": (5.0, 0.0),  # member spread 0.1: odds x1.6
}


@dataclass(frozen=True)
class RiskConfig:
    """How the router estimates each pair's chance of ending with a wrong label."""

    model: str = "auto"  # auto (fitted once there is enough data), prior, or fitted
    prior_error: float = 0.25  # judge error rate assumed before humans measure it
    prior_strength: float = 20.0  # pairs' worth of belief in prior_error
    weights: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(PRIOR_WEIGHTS))
    min_fit_pairs: int = 40  # calibration-slice pairs with a human and an automatic verdict
    min_fit_errors: int = 8  # of which judge errors
    regularisation: float = 0.1  # inverse L2 strength of the corrections to the prior rule

    def check(self) -> RiskConfig:
        if self.model not in ("auto", "prior", "fitted"):
            raise ConfigError(f"--risk-model {self.model!r} is not one of auto, prior, fitted")
        if not 0.0 < self.prior_error < 1.0:
            raise ConfigError(f"--prior-judge-error {self.prior_error} must be in (0, 1)")
        unknown = set(self.weights) - set(FEATURES)
        if unknown:
            raise ConfigError(f"unknown risk signal(s) {sorted(unknown)}; known: {FEATURES}")
        return self


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def prior_risk(
    signals: PairSignals, config: RiskConfig, base_error: float, *, no_label: bool = True
) -> np.ndarray:
    """[N] risk under the documented prior rule (module docstring)."""
    x = signals.matrix()
    z = np.full(len(signals), logit(base_error))
    for j, name in enumerate(FEATURES):
        weight, ref = config.weights.get(name, (0.0, 0.0))
        term = weight * (x[:, j] - ref)
        z += np.where(np.isnan(term), 0.0, term)
    return _with_no_label(signals, _sigmoid(z)) if no_label else _sigmoid(z)


def _with_no_label(signals: PairSignals, risk: np.ndarray) -> np.ndarray:
    no_label = np.array(
        [
            r in NO_LABEL_REASONS and v not in ("a", "b")
            for r, v in zip(signals.reason, signals.auto_verdict, strict=True)
        ],
        dtype=bool,
    )
    return np.where(no_label, 1.0, risk)


@dataclass
class JudgeErrorModel:
    """Logistic regression of 'the automatic label is wrong' on the signals, fitted as a
    correction to the prior rule: logit = prior logit + standardised signals @ coef +
    intercept. With few labels the L2 penalty keeps it near the prior rule; with many,
    the data decide."""

    coef: np.ndarray  # over the standardised design (features + margin-missing indicator)
    intercept: float
    mean: np.ndarray  # imputation and standardisation
    scale: np.ndarray
    config: RiskConfig
    base_error: float

    def design(self, signals: PairSignals) -> np.ndarray:
        return (_imputed(signals, self.mean[: len(FEATURES)]) - self.mean) / self.scale

    def offset(self, signals: PairSignals) -> np.ndarray:
        risk = np.clip(
            prior_risk(signals, self.config, self.base_error, no_label=False), 1e-6, 1 - 1e-6
        )
        return np.log(risk / (1 - risk))

    def predict(self, signals: PairSignals) -> np.ndarray:
        z = self.offset(signals) + self.design(signals) @ self.coef + self.intercept
        return _with_no_label(signals, _sigmoid(z))

    def as_dict(self) -> dict[str, float]:
        names = [*FEATURES, "margin_missing"]
        return {"intercept": round(self.intercept, 4)} | {
            n: round(float(c), 4) for n, c in zip(names, self.coef, strict=True)
        }


def _imputed(signals: PairSignals, feature_means: np.ndarray) -> np.ndarray:
    """The signals with missing values set to `feature_means`, plus a margin-missing column."""
    x = signals.matrix()
    missing = np.isnan(x[:, FEATURES.index("margin")]).astype(np.float64)
    return np.concatenate([np.where(np.isnan(x), feature_means, x), missing[:, None]], axis=1)


def fit_judge_error(
    signals: PairSignals, wrong: np.ndarray, config: RiskConfig, base_error: float
) -> JudgeErrorModel:
    """Fit the judge-error model on pairs with both an automatic and a human verdict."""
    from scipy.optimize import minimize

    with warnings.catch_warnings():  # an all-missing signal has no mean: impute 0
        warnings.simplefilter("ignore", RuntimeWarning)
        feature_means = np.nan_to_num(np.nanmean(signals.matrix(), axis=0), nan=0.0)
    x = _imputed(signals, feature_means)
    mean = x.mean(axis=0)  # the feature means again, and the share of missing margins
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    model = JudgeErrorModel(np.zeros(x.shape[1]), 0.0, mean, scale, config, base_error)
    design = model.design(signals)
    offset = model.offset(signals)
    y = np.asarray(wrong, dtype=np.float64)
    penalty = 1.0 / config.regularisation

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = offset + design @ theta[:-1] + theta[-1]
        p = _sigmoid(z)
        nll = float(np.sum(np.logaddexp(0.0, z) - y * z))
        grad = np.append(design.T @ (p - y), np.sum(p - y))
        return nll + 0.5 * penalty * float(theta @ theta), grad + penalty * theta

    theta = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B").x
    model.coef, model.intercept = theta[:-1], float(theta[-1])
    return model


def calibration(predicted: np.ndarray, wrong: np.ndarray, bins: int = 5) -> dict[str, Any]:
    """Brier score, expected calibration error and reliability bins of risk predictions."""
    predicted = np.asarray(predicted, dtype=np.float64)
    wrong = np.asarray(wrong, dtype=np.float64)
    if not len(predicted):
        return {"pairs": 0}
    edges = np.quantile(predicted, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        table.append(
            {
                "pairs": int(mask.sum()),
                "predicted": round(float(predicted[mask].mean()), 4),
                "observed": round(float(wrong[mask].mean()), 4),
            }
        )
        ece += mask.mean() * abs(predicted[mask].mean() - wrong[mask].mean())
    return {
        "pairs": len(predicted),
        "observed_error": round(float(wrong.mean()), 4),
        "predicted_error": round(float(predicted.mean()), 4),
        "brier": round(float(np.mean((predicted - wrong) ** 2)), 4),
        "ece": round(float(ece), 4),
        "bins": table,
    }


@dataclass
class RiskEstimate:
    """Risk of every candidate pair and how it was obtained."""

    risk: np.ndarray
    kind: str  # "prior" or "fitted"
    base_error: float
    fit_pairs: int
    fit_errors: int
    model: dict[str, float] | None = None
    calibration: dict[str, Any] | None = None  # on the random calibration slice

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base_error": round(self.base_error, 4),
            "fit_pairs": self.fit_pairs,
            "fit_errors": self.fit_errors,
            "model": self.model,
            "calibration": self.calibration,
        }


def estimate_risk(
    candidates: PairSignals,
    labelled: PairSignals,
    wrong: np.ndarray,
    on_calibration_slice: np.ndarray,
    config: RiskConfig,
) -> RiskEstimate:
    """Risk of `candidates`, learning from `labelled` pairs whose automatic label `wrong`
    was checked by humans (`on_calibration_slice` marks the random slice among them)."""
    config.check()
    wrong = np.asarray(wrong, dtype=bool)
    cal_mask = np.asarray(on_calibration_slice, dtype=bool)
    slice_signals = labelled.subset(np.flatnonzero(cal_mask))
    slice_wrong = wrong[cal_mask]
    n, errors = len(slice_wrong), int(slice_wrong.sum())
    # Only the random slice is used: the other checked pairs were chosen for their risk,
    # and within such a chosen set the signals trade off against each other (a low
    # margin got a pair in, so among those the margin says little), which a fit on them
    # learns as if it were true of every pair. Their error rate overstates the judge's.
    base = (config.prior_error * config.prior_strength + errors) / (config.prior_strength + n)
    enough = n >= config.min_fit_pairs and errors >= config.min_fit_errors and errors < n
    if config.model == "fitted" and not enough:
        raise ConfigError(
            f"--risk-model fitted needs {config.min_fit_pairs} calibration-slice pairs with a "
            f"human and a judge verdict, {config.min_fit_errors} of them judge errors; the store "
            f"has {n} and {errors}: label more of the calibration slice (raise "
            "--calibration-fraction), or use --risk-model auto"
        )
    if config.model == "prior" or not enough:
        estimate = RiskEstimate(prior_risk(candidates, config, base), "prior", base, n, errors)
        if n:
            estimate.calibration = calibration(prior_risk(slice_signals, config, base), slice_wrong)
        return estimate
    model = fit_judge_error(slice_signals, slice_wrong, config, base)
    estimate = RiskEstimate(model.predict(candidates), "fitted", base, n, errors, model.as_dict())
    oof = out_of_fold_risk(slice_signals, slice_wrong, config, base)
    estimate.calibration = calibration(oof, slice_wrong)
    return estimate


def out_of_fold_risk(
    signals: PairSignals, wrong: np.ndarray, config: RiskConfig, base_error: float, folds: int = 5
) -> np.ndarray:
    """Each pair's risk from a model fitted without it (k-fold), for honest calibration."""
    n = len(wrong)
    fold = np.random.default_rng(0).permutation(n) % folds
    out = np.full(n, float(np.mean(wrong)))
    for k in range(folds):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        if len(test) and 0 < wrong[train].sum() < len(train):
            model = fit_judge_error(signals.subset(train), wrong[train], config, base_error)
            out[test] = model.predict(signals.subset(test))
    return out
