"""How far to trust the judge: agreement with people, position consistency, length bias.

`agreement_report(store)` reads only the store and returns plain numbers:

* per judge (`labels.who` of `source='judge'` labels): accuracy and Cohen's kappa
  against the reference labels (human by default; `import` too when the imported data
  is the ground truth) on pairs that have both, and how often the judge picks the
  longer response (next to the same rate for the reference, for scale);
* per judge model and template (from `judgements`): failure rate, position
  consistency (pairs judged in both orders that got the same verdict both times) and
  the first-position rate (how often the response shown first wins; 0.5 is unbiased).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from data.reference import majority, reference_verdicts
from data.store import PreferenceStore


def cohen_kappa(left: list[str], right: list[str]) -> float | None:
    """Cohen's kappa of two equally long label lists; None when chance agreement is total."""
    n = len(left)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(left, right, strict=True)) / n
    count_left, count_right = Counter(left), Counter(right)
    expected = sum(count_left[k] * count_right[k] for k in count_left) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _reference(store: PreferenceStore, sources: tuple[str, ...]) -> dict[str, str]:
    """Majority verdict per pair over active labels from `sources` ("reference": the labels
    imported with `--labels as-reference`); split votes are left out."""
    rows = store.query(
        "SELECT pair_id, verdict, count(*) FROM active_labels "
        "WHERE source IN (SELECT unnest(?::VARCHAR[])) GROUP BY pair_id, verdict",
        [list(sources)],
    )
    votes: dict[str, Counter[str]] = {}
    for pair_id, verdict, count in rows:
        votes.setdefault(pair_id, Counter())[verdict] = count
    if "reference" in sources:
        for pair_id, verdict in reference_verdicts(store).items():
            votes.setdefault(pair_id, Counter())[verdict] += 1
    return majority(votes)


def _lengths(store: PreferenceStore) -> dict[str, tuple[int, int]]:
    rows = store.query(
        "SELECT p.pair_id, length(ra.text), length(rb.text) FROM pairs p "
        "JOIN responses ra ON ra.response_id = p.response_a_id "
        "JOIN responses rb ON rb.response_id = p.response_b_id"
    )
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def _prefers_longer(
    verdicts: dict[str, str], lengths: dict[str, tuple[int, int]]
) -> tuple[float | None, int]:
    decided = [
        (v, lengths[p])
        for p, v in verdicts.items()
        if v in ("a", "b") and p in lengths and lengths[p][0] != lengths[p][1]
    ]
    if not decided:
        return None, 0
    longer = sum((v == "a") == (la > lb) for v, (la, lb) in decided)
    return longer / len(decided), len(decided)


def agreement_report(
    store: PreferenceStore,
    *,
    reference_sources: tuple[str, ...] = ("human",),
    judge: str | None = None,
) -> dict[str, Any]:
    """Judge-vs-reference agreement, position consistency and length bias, from the store."""
    reference = _reference(store, reference_sources)
    lengths = _lengths(store)
    ref_longer, ref_decided = _prefers_longer(reference, lengths)
    rows = store.query(
        "SELECT who, pair_id, verdict FROM active_labels WHERE source = 'judge' "
        + ("AND who = ? " if judge else "")
        + "ORDER BY label_id",
        [judge] if judge else [],
    )
    by_judge: dict[str, dict[str, str]] = {}
    for who, pair_id, verdict in rows:
        by_judge.setdefault(who, {})[pair_id] = verdict  # the latest label per pair wins
    judges = []
    for who, verdicts in sorted(by_judge.items()):
        shared = sorted(set(verdicts) & set(reference))
        judged = [verdicts[p] for p in shared]
        truth = [reference[p] for p in shared]
        longer, decided = _prefers_longer(verdicts, lengths)
        judges.append(
            {
                "who": who,
                "labels": len(verdicts),
                "vs_reference": {
                    "pairs": len(shared),
                    "accuracy": (
                        sum(a == b for a, b in zip(judged, truth, strict=True)) / len(shared)
                    )
                    if shared
                    else None,
                    "kappa": cohen_kappa(judged, truth),
                },
                "prefers_longer": longer,
                "prefers_longer_pairs": decided,
            }
        )
    return {
        "reference": {
            "sources": list(reference_sources),
            "pairs": len(reference),
            "prefers_longer": ref_longer,
            "prefers_longer_pairs": ref_decided,
        },
        "judges": judges,
        "models": _model_stats(store, judge),
    }


def _model_stats(store: PreferenceStore, judge: str | None) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT model, template_hash, pair_id, order_shown, status, verdict FROM judgements"
        + (" WHERE model = ?" if judge else ""),
        [judge] if judge else [],
    )
    groups: dict[tuple[str, str], list[tuple[str, str, str, str | None]]] = {}
    for model, template, pair_id, order, status, verdict in rows:
        groups.setdefault((model, template), []).append((pair_id, order, status, verdict))
    out = []
    for (model, template), items in sorted(groups.items()):
        ok = [i for i in items if i[2] == "ok"]
        by_pair: dict[str, dict[str, str | None]] = {}
        for pair_id, order, _status, verdict in ok:
            by_pair.setdefault(pair_id, {})[order] = verdict
        both = [v for v in by_pair.values() if "ab" in v and "ba" in v]
        decided = [(order, verdict) for _p, order, _s, verdict in ok if verdict in ("a", "b")]
        # the shown-first response is stored A in order "ab" and stored B in order "ba"
        first_wins = sum((order == "ab") == (verdict == "a") for order, verdict in decided)
        out.append(
            {
                "model": model,
                "template_hash": template,
                "judgements": len(items),
                "failed": len(items) - len(ok),
                "failure_rate": (len(items) - len(ok)) / len(items) if items else None,
                "swapped_pairs": len(both),
                "position_consistency": (sum(v["ab"] == v["ba"] for v in both) / len(both))
                if both
                else None,
                "first_position_rate": first_wins / len(decided) if decided else None,
            }
        )
    return out
