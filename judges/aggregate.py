"""From a pair's judgements to at most one label: position swap and panel majority.

Pure functions over plain rows, so the rules are easy to read and to test:

* a model votes only when every order it was asked in succeeded and agreed
  (with `--swap`, "ab" and "ba" must give the same stored-A/B verdict);
  disagreeing orders make the pair *inconsistent* for that model;
* the label is the verdict of a strict majority of the votes cast; a split panel
  gives no label; agreement = majority votes / panel size;
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


def decide(rows: list[JudgementRow], models: tuple[str, ...], orders: tuple[str, ...]) -> Decision:
    found = {(r.model, r.order): r for r in rows}
    decision = Decision()
    p_as: list[float] = []
    for model in models:
        got = [found.get((model, order)) for order in orders]
        if any(r is None or r.status != "ok" for r in got):
            continue  # failed or missing: no vote
        if len({r.verdict for r in got}) > 1:
            decision.inconsistent[model] = {r.order: r.verdict for r in got}
            continue
        decision.votes[model] = got[0].verdict
        p_as += [r.p_a for r in got if r.p_a is not None]
    if not decision.votes:
        return decision
    (winner, count), *_ = Counter(decision.votes.values()).most_common()
    if count * 2 <= len(decision.votes) and len(decision.votes) > 1:
        decision.split = True
        return decision
    decision.verdict = winner
    decision.agreement = count / len(models)
    if p_as:
        decision.p_a = sum(p_as) / len(p_as)
        if winner in ("a", "b"):
            decision.confidence = decision.p_a if winner == "a" else 1.0 - decision.p_a
    return decision


def disagrees_with_ensemble(
    verdict: str | None, p_mean: float | None, threshold: float = 0.9
) -> bool:
    """True when the ensemble is confident (P(A) > 0.9 or < 0.1) and the judge picked the other side."""
    if verdict not in ("a", "b") or p_mean is None:
        return False
    return (p_mean > threshold and verdict == "b") or (p_mean < 1.0 - threshold and verdict == "a")
