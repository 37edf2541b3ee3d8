"""`prefloop route`: decide which pairs humans label and which the judge labels.

Candidates are the unrouted pairs that no human and no import has labelled yet. Given
a human budget N, in this order:

1. promoted: pairs flagged by the judge (`pair_flags`: ``judge_inconsistent``,
   ``judge_ensemble_disagree``) without a human label go to the human queue first,
   wherever they are now (unrouted or judge);
2. calibration: a random slice, round(fraction * N), of the candidates, so the
   ensemble's accuracy and the judge's agreement with humans can be measured without
   the bias of uncertainty sampling;
3. active: the rest of the budget goes to the candidates with the highest acquisition
   score under the latest ensemble version (diverse batch: k-center greedy);
4. every other candidate goes to the judge queue.

Each pair gets exactly one queue (one `Assignment`), and the human queue gets at most N
pairs. All decisions are written in one transaction through `data.queue.assign`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from data.errors import ConfigError
from data.queue import Assignment, assign
from labeling.acquisition import STRATEGIES, acquisition_scores, select_batch
from labeling.scoring import ensemble_config, latest_version, load_ensemble, stored_scores

if TYPE_CHECKING:
    from data.store import PreferenceStore

PROMOTING_FLAGS = ("judge_inconsistent", "judge_ensemble_disagree")

_CANDIDATES_SQL = """
SELECT p.pair_id FROM pairs p
WHERE p.queue = 'unrouted'
  AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.pair_id = p.pair_id
                  AND l.source IN ('human', 'import') AND l.retracted_at IS NULL)
ORDER BY p.pair_id
"""

_PROMOTED_SQL = """
SELECT p.pair_id, min(f.created_at) AS first_flag FROM pairs p JOIN pair_flags f USING (pair_id)
WHERE f.flag IN ({flags}) AND p.queue <> 'human'
  AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.pair_id = p.pair_id
                  AND l.source = 'human' AND l.retracted_at IS NULL)
GROUP BY p.pair_id ORDER BY first_flag, p.pair_id
"""


@dataclass(frozen=True)
class RouterConfig:
    """How `prefloop route` spends the human budget."""

    human_budget: int  # most pairs sent to the human queue by this call
    strategy: str = "variance"  # variance, bald, entropy or random
    calibration_fraction: float = 0.05  # share of the budget picked at random
    diversity: bool = True  # k-center greedy among the top candidates
    candidate_factor: int = 4  # diversity picks from the top factor * budget pairs
    promote_flags: tuple[str, ...] = PROMOTING_FLAGS  # judge flags that send a pair to humans
    needed_labels: int = 1  # human labels wanted per pair (overlap)
    seed: int | None = None  # calibration slice and random strategy

    def check(self) -> RouterConfig:
        if self.human_budget < 0:
            raise ConfigError(f"--human-budget {self.human_budget} must be >= 0")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        if not 0.0 <= self.calibration_fraction <= 1.0:
            raise ConfigError(f"calibration fraction {self.calibration_fraction} must be in [0, 1]")
        return self


@dataclass
class RouteReport:
    strategy: str
    version: int | None
    human: int = 0
    judge: int = 0
    promoted: int = 0
    calibration: int = 0
    active: int = 0
    unscored: int = 0
    note: str | None = None
    human_pairs: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_size(budget: int, fraction: float) -> int:
    return min(budget, int(math.floor(fraction * budget + 0.5)))


def plan_routes(
    candidates: list[str],
    promoted: list[str],
    scores: np.ndarray,
    config: RouterConfig,
    *,
    vectors: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> list[Assignment]:
    """Pure routing decision: one Assignment per pair in candidates + promoted.

    `scores[i]` is the acquisition value of `candidates[i]`; `vectors` (optional, same
    order) enable the diverse batch.
    """
    rng = rng or np.random.default_rng(config.seed)
    budget = config.human_budget
    promoted = list(dict.fromkeys(promoted))[:budget]
    promoted_set = set(promoted)
    keep = [i for i, pid in enumerate(candidates) if pid not in promoted_set]
    left = budget - len(promoted)
    n_cal = min(calibration_size(budget, config.calibration_fraction), left, len(keep))
    cal_pos = sorted(rng.choice(len(keep), size=n_cal, replace=False).tolist()) if n_cal else []
    calibration = [keep[i] for i in cal_pos]
    calibration_set = set(calibration)
    rest = [i for i in keep if i not in calibration_set]
    n_active = min(left - n_cal, len(rest))
    sub_vectors = None if vectors is None or not config.diversity else vectors[rest]
    picked = select_batch(
        np.asarray(scores)[rest],
        n_active,
        vectors=sub_vectors,
        candidate_factor=config.candidate_factor,
    )
    active = [rest[i] for i in picked]

    # Human order: promoted first, then the calibration pairs spread among the active ones.
    ordered: list[tuple[str, str]] = [(pid, "promoted") for pid in promoted]
    slots = [(candidates[i], "active:" + config.strategy) for i in active]
    for j, i in enumerate(calibration):
        slots.insert(
            min(len(slots), round((j + 1) * len(active) / (n_cal + 1)) + j),
            (candidates[i], "calibration"),
        )
    ordered += slots
    out = [
        Assignment(
            pid,
            "human",
            priority=float(len(ordered) - rank),
            reason=reason,
            needed_labels=config.needed_labels,
        )
        for rank, (pid, reason) in enumerate(ordered)
    ]
    human = {a.pair_id for a in out}
    out += [
        Assignment(pid, "judge", priority=float(scores[i]), reason="judge")
        for i, pid in enumerate(candidates)
        if pid not in human
    ]
    return out


def route_store(store: PreferenceStore, config: RouterConfig) -> RouteReport:
    """Route the store's unrouted pairs (and promoted flagged pairs); see the module docstring."""
    config.check()
    candidates = [r[0] for r in store.query(_CANDIDATES_SQL)]
    promoted: list[str] = []
    if config.promote_flags:
        flags = ", ".join("?" for _ in config.promote_flags)
        promoted = [
            r[0] for r in store.query(_PROMOTED_SQL.format(flags=flags), list(config.promote_flags))
        ]
    version = latest_version(store)
    report = RouteReport(strategy=config.strategy, version=version)
    rng = np.random.default_rng(config.seed)
    strategy = config.strategy
    if version is None and strategy != "random":
        strategy = "random"
        report.note = "no ensemble scores yet (run `prefloop score`): picked at random"
    scores = np.zeros(len(candidates))
    vectors = None
    if version is not None and candidates:
        by_pair = stored_scores(store, version, candidates)
        have = [i for i, pid in enumerate(candidates) if pid in by_pair]
        report.unscored = len(candidates) - len(have)
        if have:
            member_p = np.stack([by_pair[candidates[i]] for i in have], axis=1)
            scores[have] = acquisition_scores(strategy, member_p, rng)
            if report.unscored:
                report.note = (
                    f"{report.unscored} pair(s) added after ensemble v{version} rank last; "
                    "run `prefloop score` to score them"
                )
        if config.diversity and strategy != "random" and config.human_budget > 1:
            vectors = _diff_vectors(store, version, candidates, scores, config)
    elif strategy == "random":
        scores = rng.random(len(candidates))
    plan = plan_routes(
        candidates, promoted, scores, replace(config, strategy=strategy), vectors=vectors, rng=rng
    )
    if plan:
        assign(store, plan)
    for a in plan:
        if a.queue == "human":
            report.human += 1
            kind = a.reason.split(":")[0] if a.reason else "active"
            setattr(report, kind, getattr(report, kind) + 1)
            report.human_pairs.append(
                {"pair_id": a.pair_id, "reason": a.reason, "priority": a.priority}
            )
        else:
            report.judge += 1
    return report


def _diff_vectors(
    store: PreferenceStore,
    version: int,
    candidates: list[str],
    scores: np.ndarray,
    config: RouterConfig,
) -> np.ndarray:
    """Standardised A-B feature differences of the top candidates (zeros elsewhere)."""
    from labeling.encoder import EncoderConfig
    from labeling.features import pair_features

    spec = ensemble_config(store, version)
    ensemble = load_ensemble(store, version)
    top = np.argsort(-scores, kind="stable")[: (config.candidate_factor + 1) * config.human_budget]
    wanted = [candidates[i] for i in top]
    views = {
        v.pair_id: v
        for v in store.pairs("WHERE p.pair_id IN (SELECT unnest(?::VARCHAR[]))", [wanted])
    }
    enc = EncoderConfig(**{**spec["encoder"], "progress": False})
    xa, xb, _ = pair_features(store, [views[p] for p in wanted], spec["features"], config=enc)
    vectors = np.zeros((len(candidates), xa.shape[1]), dtype=np.float32)
    vectors[top] = (xa - xb) / ensemble.sigma
    return vectors
