"""Dawid–Skene against majority vote on simulated annotators of known quality."""

from __future__ import annotations

import random
from collections import Counter

from data.dawid_skene import aggregate_votes

QUALITY = {"expert1": 0.92, "expert2": 0.88, "casual": 0.65, "noisy1": 0.45, "noisy2": 0.4}


def simulate(seed: int, items: int = 300, per_item: int = 3) -> tuple[dict[str, str], list]:
    rng = random.Random(seed)
    truth = {f"p{i}": rng.choice("ab") for i in range(items)}
    votes = []
    for item, true in truth.items():
        for person in rng.sample(sorted(QUALITY), per_item):
            right = rng.random() < QUALITY[person]
            votes.append((item, person, true if right else {"a": "b", "b": "a"}[true]))
    return truth, votes


def majority(votes: list) -> dict[str, str | None]:
    by_item: dict[str, Counter] = {}
    for item, _, verdict in votes:
        by_item.setdefault(item, Counter())[verdict] += 1
    out = {}
    for item, counter in by_item.items():
        top = counter.most_common(2)
        out[item] = None if len(top) == 2 and top[0][1] == top[1][1] else top[0][0]
    return out


def test_dawid_skene_beats_majority_and_ranks_annotators() -> None:
    wins = 0
    for seed in range(3):
        truth, votes = simulate(seed)
        fitted = aggregate_votes(votes)
        ds = sum(fitted.verdicts[i] == t for i, t in truth.items()) / len(truth)
        mv = sum(majority(votes)[i] == t for i, t in truth.items()) / len(truth)  # split: wrong
        wins += ds > mv
        assert ds >= mv - 0.01, (seed, ds, mv)
        ranked = sorted(fitted.accuracy, key=fitted.accuracy.get, reverse=True)
        assert set(ranked[:2]) == {"expert1", "expert2"} and set(ranked[-2:]) == {
            "noisy1",
            "noisy2",
        }
        for person, quality in QUALITY.items():
            assert abs(fitted.accuracy[person] - quality) < 0.12, (person, fitted.accuracy[person])
    assert wins >= 2


def test_empty_and_unanimous() -> None:
    assert aggregate_votes([]).verdicts == {}
    fitted = aggregate_votes([("p", "x", "a"), ("p", "y", "a"), ("q", "x", "b"), ("q", "y", "b")])
    assert fitted.verdicts == {"p": "a", "q": "b"}
    assert fitted.posteriors["p"]["a"] > 0.8
