"""From a pair's judgements to at most one label: position swap and panel majority.

Pure functions over plain rows, so the rules are easy to read and to test:

* a model votes only when every order it was asked in succeeded;
* orders that agree give that verdict (with `--swap`, "ab" and "ba" must give the same
  stored-A/B verdict);
* orders that disagree are *debiased* when every order has a logprob P(stored A): the
  mean over both orders cancels a pure position bias, and a mean at least
  `debias_margin` away from 0.5 votes for its side. Otherwise (a small margin, or no
  logprobs) the pair is *inconsistent* for that model and the model casts no vote;
* the label is the verdict of a strict majority of the votes cast; agreement = majority
  votes / panel size. A split panel is flagged; it still gets a label when the mean
  P(stored A) of its votes is at least `debias_margin` from 0.5 (`resolved_by`), and
  none otherwise;
* confidence is P(verdict) from the mean P(stored A) of the votes that had logprobs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class JudgementRow:
    model: str
    order: str
    status: str
    verdict: str | None
    p_a: float | None


@dataclass
class Decision:
    verdict: str | None = None  # None: no label
    confidence: float | None = None
    p_a: float | None = None
    votes: dict[str, str] = field(default_factory=dict)
    agreement: float | None = None
    inconsistent: dict[str, dict[str, str | None]] = field(
        default_factory=dict
    )  # model -> order -> verdict
    split: bool = False
    debiased: dict[str, float] = field(default_factory=dict)  # model -> mean P(A) over orders
    failed: bool = False  # no model could vote: every one failed or was not asked
    resolved_by: str | None = None  # "panel_mean_p_a": a split panel labelled by its mean P(A)


DEFAULT_DEBIAS_MARGIN = 0.1


def decide(
    rows: list[JudgementRow],
    models: tuple[str, ...],
    orders: tuple[str, ...],
    *,
    debias_margin: float = DEFAULT_DEBIAS_MARGIN,
) -> Decision:
    found = {(r.model, r.order): r for r in rows}
    decision = Decision()
    p_as: list[float] = []
    for model in models:
        got = [found.get((model, order)) for order in orders]
        if any(r is None or r.status != "ok" for r in got):
            continue  # failed or missing: no vote
        if len({r.verdict for r in got}) > 1:
            mean = _mean([r.p_a for r in got])
            if mean is None or abs(mean - 0.5) < debias_margin:
                decision.inconsistent[model] = {r.order: r.verdict for r in got}
                continue
            decision.debiased[model] = mean
            decision.votes[model] = "a" if mean > 0.5 else "b"
            p_as.append(mean)
            continue
        decision.votes[model] = got[0].verdict
        p_as += [r.p_a for r in got if r.p_a is not None]
    if not decision.votes:
        decision.failed = not decision.inconsistent
        return decision
    (winner, count), *_ = Counter(decision.votes.values()).most_common()
    if p_as:
        decision.p_a = sum(p_as) / len(p_as)
    if count * 2 <= len(decision.votes) and len(decision.votes) > 1:
        decision.split = True
        if decision.p_a is None or abs(decision.p_a - 0.5) < debias_margin:
            return decision
        winner = "a" if decision.p_a > 0.5 else "b"
        count = sum(v == winner for v in decision.votes.values())
        decision.resolved_by = "panel_mean_p_a"
    decision.verdict = winner
    decision.agreement = count / len(models)
    if decision.p_a is not None and winner in ("a", "b"):
        decision.confidence = decision.p_a if winner == "a" else 1.0 - decision.p_a
    return decision


def _mean(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None) / len(values)


def disagrees_with_ensemble(
    verdict: str | None, p_mean: float | None, threshold: float = 0.9
) -> bool:
    """True when the ensemble is confident (P(A) > 0.9 or < 0.1) and the judge picked the other side."""
    if verdict not in ("a", "b") or p_mean is None:
        return False
    return (p_mean > threshold and verdict == "b") or (p_mean < 1.0 - threshold and verdict == "a")
