"""`prefloop route`: decide which pairs humans label and which the judge labels.

The aim is the share of right labels in the export: a human label is spent where the
label the pair would otherwise end up with is most likely wrong, or missing.

Candidates are the pairs without an active human or import label, wherever they are
(unrouted, the judge queue, labelled by the judge or not), plus the human-queue pairs
that nobody has started: no human label, no live lease, not in the calibration slice.
Those are re-chosen together with the new budget, so routing before a judge batch and
again after it (`--human-budget 0`) ends where judging first would, and the human queue
grows by exactly the new budget N. Given N, in this order:

1. promoted: candidates with no usable automatic label (a split panel that its mean
   P(A) could not resolve, orders that disagree and cannot be debiased, failed
   judgements, a tie: see `labeling.signals`), by risk; a split that did get a label
   competes by its risk, which the panel's disagreement raises;
2. calibration: a random slice, round(fraction * N), so the judge's and the ensemble's
   error rates can be measured without the bias of the other picks;
3. active: the rest by the strategy's score, by default ``risk``, the estimated
   probability that the pair's automatic label is wrong (`labeling.label_risk`: a
   documented prior rule, then a judge-error model fitted on the human labels), with a
   diverse batch among the top candidates (k-center greedy);
4. every other candidate goes to the judge queue.

Each pair gets exactly one queue (one `Assignment`). Pairs an annotator holds or has
labelled are never moved. All decisions are written in one transaction through
`data.queue.assign`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from data.errors import ConfigError
from data.queue import Assignment, assign, queue_counts
from labeling.acquisition import STRATEGIES, acquisition_scores, select_batch
from labeling.label_risk import RiskConfig, RiskEstimate, estimate_risk
from labeling.scoring import ensemble_config, latest_version, load_ensemble, stored_scores
from labeling.signals import NO_LABEL_REASONS, PairSignals, human_checked, read_signals

if TYPE_CHECKING:
    from data.store import PreferenceStore

ROUTE_STRATEGIES = ("risk", *STRATEGIES)

# Every pair without an active human or import label, with where it is now. Gold pairs
# (`data.gold`) are never routed: they reach annotators blind, mixed into their queue.
_POOL_SQL = """
SELECT p.pair_id, p.queue, p.route_reason,
       EXISTS (SELECT 1 FROM leases l WHERE l.pair_id = p.pair_id
               AND l.expires_at > now()::TIMESTAMP) AS leased
FROM pairs p
WHERE NOT EXISTS (SELECT 1 FROM active_labels l WHERE l.pair_id = p.pair_id
                  AND l.source IN ('human', 'import'))
  AND p.pair_id NOT IN (SELECT pair_id FROM gold_answers)
ORDER BY p.pair_id
"""


@dataclass(frozen=True)
class RouterConfig:
    """How `prefloop route` spends the human budget."""

    human_budget: int  # pairs added to the human queue by this call
    strategy: str = "risk"  # risk (expected label error), variance, bald, entropy or random
    calibration_fraction: float = 0.05  # share of the budget picked at random
    diversity: bool = True  # k-center greedy among the top candidates
    candidate_factor: float = (
        4.0  # uncertainty strategies: diversity picks from the top factor * budget
    )
    risk_candidate_factor: float = 1.25  # risk: a narrower pool, so diversity only breaks near-ties
    promote: bool = True  # pairs without a usable automatic label go to humans first
    promote_reasons: tuple[str, ...] = NO_LABEL_REASONS  # which of them
    reroute: bool = True  # re-choose human-queue pairs nobody has started
    needed_labels: int = 1  # human labels wanted per pair (overlap)
    risk: RiskConfig = field(default_factory=RiskConfig)
    seed: int | None = None  # calibration slice, random strategy and tie-breaks

    @property
    def pool_factor(self) -> float:
        """How many times the batch size the diversity step picks from."""
        return self.risk_candidate_factor if self.strategy == "risk" else self.candidate_factor

    def check(self) -> RouterConfig:
        if self.human_budget < 0:
            raise ConfigError(f"--human-budget {self.human_budget} must be >= 0")
        if self.strategy not in ROUTE_STRATEGIES:
            raise ConfigError(
                f"--strategy {self.strategy!r} is not one of {', '.join(ROUTE_STRATEGIES)}"
            )
        if not 0.0 <= self.calibration_fraction <= 1.0:
            raise ConfigError(f"calibration fraction {self.calibration_fraction} must be in [0, 1]")
        unknown = set(self.promote_reasons) - set(NO_LABEL_REASONS)
        if unknown:
            raise ConfigError(
                f"unknown promote reason(s) {sorted(unknown)}; known: {NO_LABEL_REASONS}"
            )
        self.risk.check()
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
    by_reason: dict[str, int] = field(default_factory=dict)  # human picks per route reason
    kept: int = 0  # human-queue pairs left alone: started, leased or calibration
    swapped_out: int = 0  # unstarted human-queue pairs sent back to the judge queue
    human_queue_total: int = 0  # open human-queue pairs after this call
    unlabelled_left: int = 0  # candidates with no usable label that humans do not get
    expected_wrong_left: float = 0.0  # summed risk of the candidates humans do not get
    risk: dict[str, Any] | None = None  # how risk was estimated (prior or fitted, calibration)

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
    slots: int | None = None,
    promote_reasons: dict[str, str] | None = None,
) -> list[Assignment]:
    """Pure routing decision: one Assignment per pair in candidates + promoted.

    `scores[i]` is the value of a human label on `candidates[i]`; `vectors` (optional,
    same order) enable the diverse batch. `slots` human picks are made (default: the
    budget); the calibration slice is sized on the budget alone.
    """
    rng = rng or np.random.default_rng(config.seed)
    budget = config.human_budget
    slots = budget if slots is None else slots
    promoted = list(dict.fromkeys(promoted))[:slots]
    promoted_set = set(promoted)
    keep = [i for i, pid in enumerate(candidates) if pid not in promoted_set]
    left = slots - len(promoted)
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
        candidate_factor=config.pool_factor,
    )
    active = [rest[i] for i in picked]

    # Human order: promoted first, then the calibration pairs spread among the active ones.
    why = promote_reasons or {}
    ordered: list[tuple[str, str]] = [
        (pid, "promoted:" + why[pid] if pid in why else "promoted") for pid in promoted
    ]
    slots_ = [(candidates[i], "active:" + config.strategy) for i in active]
    for j, i in enumerate(calibration):
        slots_.insert(
            min(len(slots_), round((j + 1) * len(active) / (n_cal + 1)) + j),
            (candidates[i], "calibration"),
        )
    ordered += slots_
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
    """Route the store's pairs within the human budget; see the module docstring."""
    config.check()
    pool = store.query(_POOL_SQL)
    candidates: list[str] = []
    swappable: set[str] = set()
    report = RouteReport(strategy=config.strategy, version=latest_version(store))
    for pid, queue, reason, leased in pool:
        if queue == "human":
            if leased or reason == "calibration" or not config.reroute:
                report.kept += 1
                continue
            swappable.add(pid)
        candidates.append(pid)
    if not candidates:
        report.note = _why_nothing(store, report.kept)
    rng = np.random.default_rng(config.seed)
    signals = read_signals(store, candidates)
    strategy = config.strategy
    estimate: RiskEstimate | None = None
    if strategy == "risk":
        checked, wrong, on_slice = human_checked(store)
        estimate = estimate_risk(signals, checked, wrong, on_slice, config.risk)
        report.risk = estimate.as_dict()
        if candidates and report.version is None and all(r == "unjudged" for r in signals.reason):
            report.note = "no judge labels and no ensemble scores yet: picked at random"
        # ties (e.g. nothing judged, no ensemble) are broken at random, not by pair id
        scores = estimate.risk + 1e-9 * rng.random(len(candidates))
    else:
        scores, note = _acquisition(store, report, candidates, strategy, rng)
        if note:
            report.note = note
        if report.version is None:
            strategy = "random"
    vectors = None
    if (
        config.diversity
        and report.version is not None
        and strategy != "random"
        and config.human_budget + len(swappable) > 1
    ):
        vectors = _diff_vectors(
            store, report.version, candidates, scores, config, config.human_budget + len(swappable)
        )

    promoted: list[str] = []
    why: dict[str, str] = {}
    if config.promote:
        risk = estimate.risk if estimate is not None else np.zeros(len(candidates))
        order = sorted(
            (
                (-risk[i], pid)
                for i, pid in enumerate(candidates)
                if signals.reason[i] in config.promote_reasons
                and signals.auto_verdict[i] not in ("a", "b")
            )
        )
        promoted = [pid for _, pid in order]
        reason_of = dict(zip(candidates, signals.reason, strict=True))
        why = {pid: reason_of[pid] or "" for pid in promoted}
    plan = plan_routes(
        candidates,
        promoted,
        scores,
        replace(config, strategy=strategy),
        vectors=vectors,
        rng=rng,
        slots=config.human_budget + len(swappable),
        promote_reasons=why,
    )
    if plan:
        assign(store, plan)
    _summarise(store, report, plan, signals, estimate)
    report.swapped_out = sum(a.queue == "judge" and a.pair_id in swappable for a in plan)
    return report


def _why_nothing(store: PreferenceStore, kept: int) -> str:
    """Why there was nothing to route, in the store's own numbers."""
    total, imported, human = store.query(
        """
        SELECT count(*),
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM active_labels l WHERE l.pair_id = p.pair_id
                   AND l.source = 'import')),
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM active_labels l WHERE l.pair_id = p.pair_id
                   AND l.source = 'human'))
        FROM pairs p
        """
    )[0]
    if not total:
        return "the store has no pairs: run `prefloop import` first"
    parts = []
    if imported:
        parts.append(
            f"{imported:,} carry an import label (imports count as ground truth; import with "
            "`--labels as-reference` to keep the labels only to measure and route the pairs)"
        )
    if human:
        parts.append(f"{human:,} have a human label")
    if kept:
        parts.append(f"{kept:,} are held in the human queue (leased or calibration)")
    return f"nothing to route: of {total:,} pairs, " + "; ".join(parts)


def _acquisition(
    store: PreferenceStore,
    report: RouteReport,
    candidates: list[str],
    strategy: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, str | None]:
    """Ensemble-uncertainty (or random) scores of the candidates."""
    version = report.version
    if version is None:
        note = (
            None
            if strategy == "random"
            else "no ensemble scores yet (run `prefloop score`): picked at random"
        )
        return rng.random(len(candidates)), note
    if strategy == "random":
        return rng.random(len(candidates)), None
    scores = np.zeros(len(candidates))
    note = None
    by_pair = stored_scores(store, version, candidates)
    have = [i for i, pid in enumerate(candidates) if pid in by_pair]
    report.unscored = len(candidates) - len(have)
    if have:
        member_p = np.stack([by_pair[candidates[i]] for i in have], axis=1)
        scores[have] = acquisition_scores(strategy, member_p, rng)
        if report.unscored:
            note = (
                f"{report.unscored} pair(s) added after ensemble v{version} rank last; "
                "run `prefloop score` to score them"
            )
    return scores, note


def _summarise(
    store: PreferenceStore,
    report: RouteReport,
    plan: list[Assignment],
    signals: PairSignals,
    estimate: RiskEstimate | None,
) -> None:
    position = {pid: i for i, pid in enumerate(signals.pair_ids)}
    reasons: Counter[str] = Counter()
    for a in plan:
        i = position[a.pair_id]
        if a.queue == "human":
            report.human += 1
            kind = a.reason.split(":")[0] if a.reason else "active"
            setattr(report, kind, getattr(report, kind) + 1)
            reasons[a.reason or "active"] += 1
            report.human_pairs.append(
                {"pair_id": a.pair_id, "reason": a.reason, "priority": a.priority}
            )
        else:
            report.judge += 1
            if signals.reason[i] in NO_LABEL_REASONS and signals.auto_verdict[i] not in ("a", "b"):
                report.unlabelled_left += 1
            if estimate is not None:
                report.expected_wrong_left += float(estimate.risk[i])
    report.by_reason = dict(reasons)
    report.expected_wrong_left = round(report.expected_wrong_left, 2)
    report.human_queue_total = queue_counts(store).human_open


def _diff_vectors(
    store: PreferenceStore,
    version: int,
    candidates: list[str],
    scores: np.ndarray,
    config: RouterConfig,
    slots: int,
) -> np.ndarray:
    """Standardised A-B feature differences of the top candidates (zeros elsewhere)."""
    from labeling.encoder import EncoderConfig
    from labeling.features import pair_features

    spec = ensemble_config(store, version)
    ensemble = load_ensemble(store, version)
    top = np.argsort(-scores, kind="stable")[: int(math.ceil((config.pool_factor + 1) * slots))]
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
