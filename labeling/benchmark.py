"""Label-efficiency benchmark: simulated annotation rounds on a labelled dataset.

The labels are hidden; a pair's label is revealed only when a strategy sends it to the
"human". Each seed draws its own held-out test split (by prompt) and its own starting
set (shared by all strategies of that seed); each round fits the K-member ensemble on
the revealed labels, measures held-out accuracy and log-likelihood, and acquires the
next batch from the pool. Baselines in the same run: "prefer the longer response" and
the ensemble fitted on every pool label. Hybrid mode: the human labels of a strategy at
a given budget plus a simulated judge (right with probability `judge_agreement`,
independently per pair) on the rest of the pool.

`bench/active_learning.py` and `prefloop bench active-learning` are thin wrappers.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labeling.acquisition import acquisition_scores, select_batch
from labeling.ensemble import EnsembleConfig, fit_ensemble, standardisation
from labeling.features import DEFAULT_EMBEDDING_PENALTY, DEFAULT_FEATURES, penalty_scale
from labeling.simdata import DEFAULT_DATA, SimData, load_simdata, simdata_features, split_by_prompt

REPO = Path(__file__).resolve().parents[1]
FEATURE_SETS: tuple[tuple[str, ...], ...] = (
    ("length",),
    ("joint",),
    ("joint", "length"),
    ("joint_tail", "length"),
    ("response", "length"),
    ("joint_tail", "response", "length"),
    ("joint_tail", "response", "prompt_x_response", "length"),
)


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run; the defaults are the published run."""

    data: str = str(DEFAULT_DATA)  # any labelled file the importer reads
    cache: str = str(REPO / "bench" / "out" / "al-cache.duckdb")  # embedding cache (DuckDB)
    features: tuple[str, ...] = DEFAULT_FEATURES  # features of the curves
    seeds: int = 5
    test_pairs: int = 1000  # held-out pairs (whole prompts)
    schedule: tuple[int, ...] = (25, 50, 75, 100, 150, 200, 300, 400, 600, 800)  # labels per round
    strategies: tuple[str, ...] = ("random", "variance", "bald", "bald+diversity")
    members: int = 8
    l2: float = 1.0
    embedding_penalty: float = DEFAULT_EMBEDDING_PENALTY  # see labeling.features.penalty_scale
    judge_agreement: float = 0.70  # simulated judge: P(judge label == human label)
    hybrid_budget: int = 200  # human labels in hybrid mode
    compare_features: tuple[tuple[str, ...], ...] = FEATURE_SETS  # () skips the comparison
    compare_penalty: tuple[float, ...] = (
        1.0,
        100.0,
        1000.0,
        10000.0,
    )  # swept on the default features
    # extra curves as (feature blocks, embedding penalty): the baseline (plain joint
    # embeddings) and the best-measured prompt-aware set
    curve_features: tuple[tuple[tuple[str, ...], float], ...] = (
        (("joint",), 1.0),
        (("joint_tail", "response", "length"), DEFAULT_EMBEDDING_PENALTY),
    )
    limit: int | None = None  # use only the first N pairs (tests)


def ci95(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval over seeds."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def evaluate(p_a: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean log-likelihood) of P(A > B) against labels; p = 0.5 counts half."""
    correct = np.where(np.isclose(p_a, 0.5), 0.5, (p_a > 0.5) == (y > 0.5))
    p = np.clip(np.where(y > 0.5, p_a, 1 - p_a), 1e-6, 1.0)
    return float(correct.mean()), float(np.log(p).mean())


class Simulator:
    """Features, labels and splits of one dataset; fits and evaluates ensembles on them."""

    def __init__(
        self,
        xa: np.ndarray,
        xb: np.ndarray,
        y: np.ndarray,
        config: BenchConfig,
        features: tuple[str, ...] = ("length",),
        embedding_penalty: float | None = None,
    ):
        self.xa, self.xb, self.y, self.config = xa, xb, y, config
        self.mu, self.sigma = standardisation(np.concatenate([xa, xb]))
        penalty = config.embedding_penalty if embedding_penalty is None else embedding_penalty
        self.sigma = self.sigma * penalty_scale(features, xa.shape[1], penalty)
        self.diff = (xa - xb) / self.sigma  # diversity space

    def fit_eval(
        self,
        train: np.ndarray,
        test: np.ndarray,
        seed: int,
        labels: np.ndarray | None = None,
        l2: float | None = None,
    ) -> tuple[Any, float, float, dict[str, float]]:
        y = self.y[train] if labels is None else labels
        cfg = EnsembleConfig(
            members=self.config.members, l2=self.config.l2 if l2 is None else l2, seed=seed
        )
        ens, metrics = fit_ensemble(
            self.xa[train], self.xb[train], y, cfg, mu=self.mu, sigma=self.sigma
        )
        acc, ll = evaluate(ens.member_p_a(self.xa[test], self.xb[test]).mean(axis=0), self.y[test])
        return ens, acc, ll, metrics

    def curve(self, strategy: str, pool: np.ndarray, test: np.ndarray, seed: int) -> dict[str, Any]:
        schedule = [n for n in self.config.schedule if n <= len(pool)]
        start_rng = np.random.default_rng(10_000 + seed)  # same start set for every strategy
        labelled = list(start_rng.choice(pool, size=schedule[0], replace=False))
        rng = np.random.default_rng(20_000 + seed)
        base, diverse = strategy.split("+")[0], strategy.endswith("+diversity")
        acc, ll, sizes = [], [], []
        for step, n in enumerate(schedule):
            ens, step_acc, step_ll, _ = self.fit_eval(np.array(labelled), test, seed * 1000 + step)
            acc.append(step_acc)
            ll.append(step_ll)
            sizes.append(n)
            if step + 1 == len(schedule):
                break
            taken = set(labelled)
            rest = np.array([i for i in pool if i not in taken])
            member_p = ens.member_p_a(self.xa[rest], self.xb[rest])
            scores = acquisition_scores(base, member_p, rng)
            picked = select_batch(
                scores, schedule[step + 1] - n, vectors=self.diff[rest] if diverse else None
            )
            labelled.extend(int(rest[i]) for i in picked)
        return {"labels": sizes, "accuracy": acc, "log_likelihood": ll, "order": labelled}

    def hybrid(
        self,
        order: list[int],
        pool: np.ndarray,
        test: np.ndarray,
        seed: int,
        budget: int | None = None,
    ) -> dict[str, float]:
        """Humans label order[:budget]; the simulated judge labels the rest of the pool."""
        budget = min(self.config.hybrid_budget if budget is None else budget, len(order))
        human = set(order[:budget])
        rng = np.random.default_rng(30_000 + seed)
        labels = self.y[pool].copy()
        judged = np.array([i not in human for i in pool])
        wrong = judged & (rng.random(len(pool)) > self.config.judge_agreement)
        labels[wrong] = 1.0 - labels[wrong]
        _, acc, ll, _ = self.fit_eval(pool, test, seed, labels=labels)
        return {
            "label_accuracy": float((labels == self.y[pool]).mean()),
            "test_accuracy": acc,
            "test_log_likelihood": ll,
            "human_labels": budget,
            "judge_labels": int(judged.sum()),
        }


def load_blocks(
    data: SimData, blocks: set[str], cache: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for block in sorted(blocks):
        xa, xb, _ = simdata_features(data, [block], cache)
        out[block] = (xa, xb)
    return out


def assemble(
    blocks: dict[str, tuple[np.ndarray, np.ndarray]], names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.concatenate([blocks[n][0] for n in names], axis=1),
        np.concatenate([blocks[n][1] for n in names], axis=1),
    )


def run_benchmark(config: BenchConfig = BenchConfig(), *, log: Any = print) -> dict[str, Any]:
    started = time.perf_counter()
    data = load_simdata(config.data, limit=config.limit)
    needed = (
        set(config.features)
        | {b for fs in config.compare_features for b in fs}
        | {b for fs, _ in config.curve_features for b in fs}
    )
    blocks = load_blocks(data, needed, config.cache)
    log(
        f"{len(data)} pairs, feature blocks {sorted(needed)} ready in {time.perf_counter() - started:.1f}s"
    )
    splits = [split_by_prompt(data, config.test_pairs, seed) for seed in range(config.seeds)]
    lengths = np.array(
        [[len(a), len(b)] for a, b in zip(data.a, data.b, strict=True)], dtype=np.float64
    )
    longer = [
        evaluate(
            np.where(
                lengths[t, 0] > lengths[t, 1],
                1.0,
                np.where(lengths[t, 0] < lengths[t, 1], 0.0, 0.5),
            ),
            data.y[t],
        )[0]
        for _, t in splits
    ]
    result: dict[str, Any] = {
        "config": {
            **asdict(config),
            "data": Path(config.data).name,
            "cache": Path(config.cache).name,
        },
        "pairs": len(data),
        "skipped_rows": data.skipped,
        "pool_pairs": int(len(splits[0][0])),
        "test_pairs": int(len(splits[0][1])),
        "baselines": {"longer_response": dict(zip(("mean", "ci95"), ci95(longer), strict=True))},
    }

    if config.compare_features:
        result["feature_sets"] = {}
        for names in config.compare_features:
            for penalty in sorted({1.0, config.embedding_penalty}):
                sim = Simulator(*assemble(blocks, names), data.y, config, names, penalty)
                row: dict[str, Any] = {"dim": int(sim.xa.shape[1]), "embedding_penalty": penalty}
                for budget in (100, "all"):
                    row.update(_eval_budget(sim, splits, budget))
                result["feature_sets"][f"{'+'.join(names)} @penalty {penalty:g}"] = row
                log(f"features {'+'.join(names)} @penalty {penalty:g}: {row}")
                if names == ("length",):
                    break  # no embedding block: the penalty changes nothing
        result["penalty_sweep"] = {}
        for penalty in config.compare_penalty:
            sim = Simulator(
                *assemble(blocks, config.features), data.y, config, config.features, penalty
            )
            row = {**_eval_budget(sim, splits, 100), **_eval_budget(sim, splits, "all")}
            result["penalty_sweep"][f"{penalty:g}"] = row
        log(f"embedding penalty sweep: {result['penalty_sweep']}")

    result["curves"] = {}
    for index, (names, penalty) in enumerate(
        ((tuple(config.features), config.embedding_penalty), *config.curve_features)
    ):
        default = index == 0
        key = "+".join(names) + ("" if default else f" @penalty {penalty:g}")
        sim = Simulator(*assemble(blocks, names), data.y, config, names, penalty)
        everything = _eval_budget(sim, splits, "all")
        entry: dict[str, Any] = {
            "embedding_penalty": penalty,
            "all_labels": everything["accuracy_all"],
            "all_labels_log_likelihood": everything["log_likelihood_all"],
            "strategies": {},
            "hybrid": {},
        }
        for strategy in config.strategies:
            runs = [
                sim.curve(strategy, pool, test, seed) for seed, (pool, test) in enumerate(splits)
            ]
            entry["strategies"][strategy] = _summarise_curve(runs, entry["all_labels"]["mean"])
            if default:
                hyb = [
                    sim.hybrid(run["order"], pool, test, seed)
                    for seed, (run, (pool, test)) in enumerate(zip(runs, splits, strict=True))
                ]
                entry["hybrid"][strategy] = {k: ci95([h[k] for h in hyb])[0] for k in hyb[0]}
            log(f"[{key}] {strategy}: {entry['strategies'][strategy]['accuracy_mean']}")
        if default:
            judge_only = []
            for seed, (pool, test) in enumerate(splits):
                judge_only.append(sim.hybrid([], pool, test, seed, budget=0))
            entry["hybrid"]["judge_only"] = {
                k: ci95([h[k] for h in judge_only])[0] for k in judge_only[0]
            }
        result["curves"][key] = entry
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _eval_budget(
    sim: Simulator, splits: list[tuple[np.ndarray, np.ndarray]], budget: int | str
) -> dict[str, Any]:
    """Accuracy and log-likelihood (mean, ci95) with `budget` random pool labels, or all of them."""
    accs, lls = [], []
    for seed, (pool, test) in enumerate(splits):
        train = (
            pool
            if budget == "all"
            else np.random.default_rng(seed).choice(pool, budget, replace=False)
        )
        _, acc, ll, _ = sim.fit_eval(train, test, seed)
        accs.append(acc)
        lls.append(ll)
    return {
        f"accuracy_{budget}": dict(zip(("mean", "ci95"), ci95(accs), strict=True)),
        f"log_likelihood_{budget}": dict(zip(("mean", "ci95"), ci95(lls), strict=True)),
    }


def _summarise_curve(runs: list[dict[str, Any]], all_acc: float) -> dict[str, Any]:
    acc = np.array([r["accuracy"] for r in runs])
    ll = np.array([r["log_likelihood"] for r in runs])
    summary = {
        "labels": runs[0]["labels"],
        "accuracy_mean": [round(ci95(c)[0], 4) for c in acc.T],
        "accuracy_ci95": [round(ci95(c)[1], 4) for c in acc.T],
        "log_likelihood_mean": [round(ci95(c)[0], 4) for c in ll.T],
        "log_likelihood_ci95": [round(ci95(c)[1], 4) for c in ll.T],
    }
    for pct in (95, 98, 99):
        reach = [
            n
            for n, a in zip(summary["labels"], summary["accuracy_mean"], strict=True)
            if a >= pct / 100 * all_acc
        ]
        summary[f"labels_to_{pct}pct_of_all"] = reach[0] if reach else None
    return summary
