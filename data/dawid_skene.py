"""Dawid–Skene: each annotator's confusion matrix and each pair's verdict, estimated together.

Majority vote counts every annotator alike. Dawid and Skene (1979) model annotator j as a
confusion matrix pi_j[true, given] and fit, by EM, the class priors, every pi_j and each
item's posterior over the true verdict: a careful annotator's vote then outweighs two
careless ones. Here the classes are the verdicts (a, b, tie, both_bad) and the items the
pairs; a small Dirichlet smoothing keeps rarely seen cells off zero. Pure numpy, no store:
`aggregate_votes` takes (item, annotator, verdict) triples.

`tests/data/test_dawid_skene.py` compares it with majority vote against the truth on
simulated annotators of known quality.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from data.schema import VERDICTS


@dataclass(frozen=True)
class DawidSkeneConfig:
    """How the EM runs."""

    iterations: int = 50  # EM steps at most
    tolerance: float = 1e-6  # stop when no posterior moves more than this
    smoothing: float = 0.5  # Dirichlet pseudo-count added to every confusion cell and prior


@dataclass(frozen=True)
class DawidSkeneResult:
    verdicts: dict[str, str]  # item -> most likely true verdict
    posteriors: dict[str, dict[str, float]]  # item -> verdict -> probability
    accuracy: dict[str, float]  # annotator -> estimated P(their verdict is the true one)
    iterations: int


def aggregate_votes(
    votes: Iterable[tuple[str, str, str]], config: DawidSkeneConfig | None = None
) -> DawidSkeneResult:
    """Fit Dawid–Skene on (item, annotator, verdict) votes (verdicts among VERDICTS)."""
    config = config or DawidSkeneConfig()
    triples = list(votes)
    items = sorted({t[0] for t in triples})
    people = sorted({t[1] for t in triples})
    if not triples:
        return DawidSkeneResult({}, {}, {}, 0)
    item_index = {x: i for i, x in enumerate(items)}
    person_index = {x: j for j, x in enumerate(people)}
    k = len(VERDICTS)
    counts = np.zeros((len(items), len(people), k))  # counts[i, j, given]
    for item, person, verdict in triples:
        counts[item_index[item], person_index[person], VERDICTS.index(verdict)] += 1
    # start from the soft majority vote
    post = counts.sum(axis=1) + 1e-9
    post /= post.sum(axis=1, keepdims=True)
    steps = 0
    while steps < config.iterations:
        steps += 1
        prior = post.sum(axis=0) + config.smoothing
        prior /= prior.sum()
        # confusion[j, true, given]
        confusion = np.einsum("it,ijg->jtg", post, counts) + config.smoothing / k
        confusion /= confusion.sum(axis=2, keepdims=True)
        log_like = np.log(prior)[None, :] + np.einsum("ijg,jtg->it", counts, np.log(confusion))
        log_like -= log_like.max(axis=1, keepdims=True)
        new = np.exp(log_like)
        new /= new.sum(axis=1, keepdims=True)
        moved = float(np.abs(new - post).max())
        post = new
        if moved < config.tolerance:
            break
    given = counts.sum(axis=0)  # [j, given]: how often each annotator gave each verdict
    # P(right) for annotator j: sum over true t of P(t | j voted) * confusion[j, t, t],
    # with the true class weighted by the posteriors of the items they labelled
    labelled = np.einsum("it,ijg->jt", post, counts)
    accuracy = {
        person: float(
            (labelled[j] * np.diagonal(confusion[j])).sum() / max(labelled[j].sum(), 1e-9)
        )
        for j, person in enumerate(people)
        if given[j].sum()
    }
    return DawidSkeneResult(
        verdicts={x: VERDICTS[int(np.argmax(post[i]))] for x, i in item_index.items()},
        posteriors={
            x: {v: round(float(post[i, c]), 6) for c, v in enumerate(VERDICTS)}
            for x, i in item_index.items()
        },
        accuracy=accuracy,
        iterations=steps,
    )
