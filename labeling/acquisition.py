"""How much a human label on a pair is worth, from the members' P(A > B).

Every function takes ``member_p`` with shape [K, N] (member k's P(A > B) for pair n)
and returns [N] scores, higher = more worth labelling. Entropies are in nats.

* variance: spread of the members' probabilities (population variance).
* entropy: binary entropy of the mean probability (total predictive uncertainty).
* bald: entropy of the mean minus the mean of the members' entropies, i.e. the mutual
  information between the label and the member: high where members disagree, not where
  they agree on a coin flip.
* random: uniform noise (the baseline every other strategy must beat).

`select_batch` turns scores into a batch; with diversity it runs k-center greedy over
the pairs' feature vectors among the best candidates, so a batch is not near-duplicates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data.errors import ConfigError

STRATEGIES = ("variance", "bald", "entropy", "random")
_EPS = 1e-12


def binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def variance(member_p: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    return np.asarray(member_p, dtype=np.float64).var(axis=0)


def entropy(member_p: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    return binary_entropy(np.asarray(member_p, dtype=np.float64).mean(axis=0))


def bald(member_p: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    p = np.asarray(member_p, dtype=np.float64)
    return np.maximum(binary_entropy(p.mean(axis=0)) - binary_entropy(p).mean(axis=0), 0.0)


def random(member_p: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    rng = rng or np.random.default_rng()
    return rng.random(np.asarray(member_p).shape[-1])


ACQUISITIONS: dict[str, Callable[..., np.ndarray]] = {
    "variance": variance,
    "bald": bald,
    "entropy": entropy,
    "random": random,
}


def acquisition_scores(
    strategy: str, member_p: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    if strategy not in ACQUISITIONS:
        raise ConfigError(f"--strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    return ACQUISITIONS[strategy](member_p, rng)


def k_center_greedy(vectors: np.ndarray, k: int, first: int = 0) -> list[int]:
    """Indices of k rows: start at `first`, then repeatedly the row farthest from those chosen."""
    n = len(vectors)
    k = min(k, n)
    if k <= 0:
        return []
    x = np.asarray(vectors, dtype=np.float32)
    chosen = [first]
    dist = ((x - x[first]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((x - x[nxt]) ** 2).sum(axis=1))
    return chosen


def select_batch(
    scores: np.ndarray,
    size: int,
    *,
    vectors: np.ndarray | None = None,
    candidate_factor: float = 4,
) -> list[int]:
    """Indices of `size` pairs, best first.

    Without `vectors`: the top `size` scores. With `vectors`: k-center greedy over the
    best `candidate_factor * size` pairs, starting from the best one, then ordered by
    score, so the batch stays high-value and spreads over the feature space.
    """
    scores = np.asarray(scores, dtype=np.float64)
    size = min(size, len(scores))
    if size <= 0:
        return []
    order = np.argsort(-scores, kind="stable")
    if vectors is None or size == 1:
        return [int(i) for i in order[:size]]
    pool = order[: max(size, int(round(candidate_factor * size)))]
    picked = pool[k_center_greedy(np.asarray(vectors)[pool], size, first=0)]
    return [int(i) for i in sorted(picked, key=lambda i: -scores[i])]
