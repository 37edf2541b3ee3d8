"""An ensemble of K pointwise reward heads fitted with the Bradley-Terry loss.

Member k scores one (prompt, response) feature vector x as ``r_k(x)``; its probability
that A beats B is ``sigmoid(r_k(x_A) - r_k(x_B))``. Members differ by a bootstrap
resample of the labelled pairs (as per-pair weights) and by their random init. All K
members are trained and evaluated together: the parameters carry a leading K axis and
every pass is one batched matmul/einsum, so K = 8 costs about what one member costs.

The fitted ensemble is saved in the `prefloop-ensemble/1` format of
`docs/ENSEMBLE_ARTIFACT.md`, which `training/` reads without importing this package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import ConfigError

ARTIFACT_FORMAT = "prefloop-ensemble/1"
HEADS = ("linear", "mlp")
_CHUNK = 4096  # rows per step when scoring: A-B and the matmul stay in cache


@dataclass(frozen=True)
class EnsembleConfig:
    """How the reward ensemble is built and fitted."""

    members: int = 8  # K reward heads
    head: str = "linear"  # "linear" or "mlp" (one hidden ReLU layer)
    hidden: int = 32  # hidden units of an mlp head
    bootstrap: bool = True  # each member sees a bootstrap resample of the labelled pairs
    l2: float = 1.0  # weight decay, as sum(w^2)/2 per member, relative to the summed loss
    steps: int = 100  # LBFGS iterations (linear) or Adam steps (mlp)
    lr: float = 0.01  # Adam learning rate (mlp)
    seed: int = 0  # bootstrap resamples and initialisation
    threads: int | None = (
        1  # torch threads while fitting (small problems run fastest on one); None: leave
    )

    def check(self) -> EnsembleConfig:
        if self.head not in HEADS:
            raise ConfigError(f"head {self.head!r} must be one of {', '.join(HEADS)}")
        if self.members < 1:
            raise ConfigError(f"members={self.members}: an ensemble needs at least one member")
        if self.l2 < 0 or self.steps < 1:
            raise ConfigError("l2 must be >= 0 and steps >= 1")
        return self


@dataclass
class RewardEnsemble:
    """Fitted heads as numpy arrays with a leading member axis; see the module docstring."""

    head: str
    params: dict[str, np.ndarray]  # linear: W [K, D], b [K]; mlp: W1, b1, W2, b2
    mu: np.ndarray  # [D] feature means (standardisation)
    sigma: np.ndarray  # [D] feature scales
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def members(self) -> int:
        return int(self.params["b" if self.head == "linear" else "b2"].shape[0])

    def rewards(self, x: np.ndarray) -> np.ndarray:
        """[K, N] reward of every member for every row of x [N, D]."""
        z = (np.asarray(x, dtype=np.float32) - self.mu) / self.sigma
        p = self.params
        if self.head == "linear":
            return (z @ p["W"].T).T + p["b"][:, None]
        k, d, h = p["W1"].shape
        w1 = p["W1"].transpose(1, 0, 2).reshape(d, k * h)  # all members' first layers: one matmul
        hidden = np.maximum(z @ w1 + p["b1"].reshape(k * h), 0.0).reshape(len(z), k, h)
        return np.einsum("nkh,kh->kn", hidden, p["W2"]) + p["b2"][:, None]

    def member_logits(self, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """[K, N] r_k(A) - r_k(B). Linear heads need one matmul on the difference."""
        if self.head == "linear":
            w = (self.params["W"] / self.sigma).astype(np.float32).T  # fold the scaling in: [D, K]
            xa = np.asarray(xa, dtype=np.float32)
            xb = np.asarray(xb, dtype=np.float32)
            out = np.empty((len(xa), w.shape[1]), dtype=np.float32)
            for i in range(0, len(xa), _CHUNK):  # fused A-B and matmul, chunk stays in cache
                np.matmul(xa[i : i + _CHUNK] - xb[i : i + _CHUNK], w, out=out[i : i + _CHUNK])
            return out.T
        return self.rewards(xa) - self.rewards(xb)

    def member_p_a(self, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """[K, N] each member's P(A > B)."""
        return _sigmoid(self.member_logits(xa, xb))

    def conservative_reward(self, x: np.ndarray, lam: float = 1.0) -> np.ndarray:
        """[N] mean_k r_k - lam * std_k r_k: a reward that distrusts what the members dispute."""
        r = self.rewards(x)
        return r.mean(axis=0) - lam * r.std(axis=0)

    # -- artifact ---------------------------------------------------------------------

    def save(
        self,
        folder: str | Path,
        *,
        encoder: str,
        features: list[str],
        max_length: int,
        normalize: bool,
        version: int,
    ) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        spec = {
            "format": ARTIFACT_FORMAT,
            "encoder": encoder,
            "max_length": max_length,
            "normalize": normalize,
            "features": list(features),
            "members": self.members,
            "head": self.head,
            "version": version,
        }
        (folder / "ensemble.json").write_text(json.dumps(spec, indent=2) + "\n")
        np.savez(
            folder / "ensemble.npz",
            mu=self.mu,
            sigma=self.sigma,
            **{k: v.astype(np.float32) for k, v in self.params.items()},
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RewardEnsemble:
        folder = Path(folder)
        try:
            spec = json.loads((folder / "ensemble.json").read_text())
            arrays = dict(np.load(folder / "ensemble.npz"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{folder} is not a readable ensemble artifact ({exc}); re-run `prefloop score`"
            ) from None
        if spec.get("format") != ARTIFACT_FORMAT:
            raise ConfigError(
                f"{folder}: format {spec.get('format')!r}, expected {ARTIFACT_FORMAT}"
            )
        dim = (arrays["W"] if spec["head"] == "linear" else arrays["W1"]).shape[1]
        mu = arrays.pop("mu", np.zeros(dim, np.float32))
        sigma = arrays.pop("sigma", np.ones(dim, np.float32))
        return cls(spec["head"], arrays, mu, sigma, meta=spec)


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and scale (scale 1 where a feature is constant)."""
    mu = x.mean(axis=0).astype(np.float32)
    sigma = x.std(axis=0).astype(np.float32)
    sigma[sigma < 1e-6] = 1.0
    return mu, sigma


def fit_ensemble(
    xa: np.ndarray,
    xb: np.ndarray,
    y: np.ndarray,
    config: EnsembleConfig = EnsembleConfig(),
    *,
    mu: np.ndarray | None = None,
    sigma: np.ndarray | None = None,
) -> tuple[RewardEnsemble, dict[str, float]]:
    """Fit K heads on labelled pairs; y[n] = P(A beats B) (1 or 0, or a soft label).

    `mu`/`sigma` standardise the features (default: from these pairs' A and B rows).
    Returns the ensemble and metrics, including the out-of-bag accuracy of the members
    on the pairs their bootstrap left out (an honest estimate without a test split).
    """
    import torch

    config.check()
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _fit(xa, xb, y, config, mu, sigma)
    finally:
        torch.set_num_threads(threads)


def _fit(
    xa: np.ndarray,
    xb: np.ndarray,
    y: np.ndarray,
    config: EnsembleConfig,
    mu: np.ndarray | None,
    sigma: np.ndarray | None,
) -> tuple[RewardEnsemble, dict[str, float]]:
    import torch

    n, dim = xa.shape
    if n == 0:
        raise ConfigError("no labelled pairs to fit the ensemble on; label some pairs first")
    if mu is None or sigma is None:
        mu, sigma = standardisation(np.concatenate([xa, xb]))
    k = config.members
    rng = np.random.default_rng(config.seed)
    if config.bootstrap and k > 1:
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(k)])
    else:
        counts = np.ones((k, n), dtype=np.int64)
    gen = torch.Generator().manual_seed(config.seed)
    za = torch.from_numpy(((xa - mu) / sigma).astype(np.float32))
    zb = torch.from_numpy(((xb - mu) / sigma).astype(np.float32))
    target = torch.from_numpy(np.broadcast_to(np.asarray(y, np.float32), (k, n)).copy())
    weight = torch.from_numpy(counts.astype(np.float32))

    if config.head == "linear":
        params = {"W": (torch.randn(k, dim, generator=gen) * 0.01).requires_grad_()}
        diff = za - zb

        def logits() -> torch.Tensor:
            return params["W"] @ diff.T  # [K, N]; the bias cancels in r(A) - r(B)

        def penalty() -> torch.Tensor:
            return 0.5 * config.l2 * (params["W"] ** 2).sum()
    else:
        h = config.hidden
        params = {
            "W1": (torch.randn(k, dim, h, generator=gen) / dim**0.5).requires_grad_(),
            "b1": torch.zeros(k, h).requires_grad_(),
            "W2": (torch.randn(k, h, generator=gen) / h**0.5).requires_grad_(),
        }

        def reward(z: torch.Tensor) -> torch.Tensor:
            hidden = torch.relu(
                torch.einsum("nd,kdh->knh", z, params["W1"]) + params["b1"][:, None]
            )
            return torch.einsum("knh,kh->kn", hidden, params["W2"])

        def logits() -> torch.Tensor:
            return reward(za) - reward(zb)

        def penalty() -> torch.Tensor:
            return 0.5 * config.l2 * ((params["W1"] ** 2).sum() + (params["W2"] ** 2).sum())

    def loss() -> torch.Tensor:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            logits(), target, reduction="none"
        )
        return (weight * bce).sum() + penalty()

    if config.head == "linear":  # convex: LBFGS converges in a few dozen iterations
        opt = torch.optim.LBFGS(
            list(params.values()),
            max_iter=config.steps,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-6,
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            value = loss()
            value.backward()
            return value

        opt.step(closure)
    else:
        opt = torch.optim.Adam(list(params.values()), lr=config.lr)
        for _ in range(config.steps):
            opt.zero_grad()
            value = loss()
            value.backward()
            opt.step()

    with torch.no_grad():
        member_logits = logits().numpy()
    arrays = {name: t.detach().numpy().astype(np.float32) for name, t in params.items()}
    if config.head == "linear":
        arrays["b"] = np.zeros(k, np.float32)
    else:
        arrays["b2"] = np.zeros(k, np.float32)
    ensemble = RewardEnsemble(config.head, arrays, mu.astype(np.float32), sigma.astype(np.float32))
    return ensemble, _fit_metrics(member_logits, np.asarray(y, np.float32), counts)


def _fit_metrics(logits: np.ndarray, y: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    p_mean = _sigmoid(logits).mean(axis=0)
    hard = y != 0.5
    metrics = {
        "labelled_pairs": float(len(y)),
        "train_accuracy": float(((p_mean > 0.5) == (y > 0.5))[hard].mean())
        if hard.any()
        else float("nan"),
    }
    out = counts == 0  # [K, N] member k never saw pair n
    seen_oob = out.any(axis=0) & hard
    if seen_oob.any():
        p_oob = (np.where(out, _sigmoid(logits), 0).sum(0) / np.maximum(out.sum(0), 1))[seen_oob]
        metrics["oob_accuracy"] = float(((p_oob > 0.5) == (y[seen_oob] > 0.5)).mean())
        metrics["oob_pairs"] = float(seen_oob.sum())
    return metrics


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
