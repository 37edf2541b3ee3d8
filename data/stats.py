"""`prefloop stats`: what is in the store and how much labellers agree.

Human-human agreement is Krippendorff's alpha (nominal; `krippendorff` package)
over pairs with two or more human labels. Human-vs-judge agreement compares the
human majority with the judge majority on pairs that have both: accuracy and
Cohen's kappa (`sklearn.metrics.cohen_kappa_score`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from data.export import AggregationPolicy, aggregate_verdicts
from data.queue import queue_counts
from data.store import PreferenceStore

VERDICT_CODES = {"a": 0, "b": 1, "tie": 2, "both_bad": 3}


def store_stats(store: PreferenceStore) -> dict[str, Any]:
    labels = store.query_dicts(
        "SELECT pair_id, source, who, verdict, confidence FROM active_labels"
    )
    labelled = {label["pair_id"] for label in labels}
    pairs = store.count("pairs")
    return {
        "pairs": pairs,
        "prompts": store.count("prompts"),
        "responses": store.count("responses"),
        "labels": len(labels),
        "labels_by_source": dict(Counter(label["source"] for label in labels)),
        "labelled_pairs": len(labelled),
        "reference_labels": store.count("reference_labels"),
        "unlabelled_pairs": pairs - len(labelled),
        "queues": queue_counts(store).as_dict(),
        "human_human": human_human_agreement(labels),
        "human_judge": human_judge_agreement(labels),
        "judge_position_consistency": position_consistency(store),
    }


def human_human_agreement(labels: list[dict[str, Any]]) -> dict[str, Any]:
    by_pair: dict[str, dict[str, str]] = defaultdict(dict)
    for label in labels:
        if label["source"] == "human":
            by_pair[label["pair_id"]][label["who"]] = label["verdict"]
    overlapped = {p: v for p, v in by_pair.items() if len(v) >= 2}
    result: dict[str, Any] = {
        "pairs_with_overlap": len(overlapped),
        "krippendorff_alpha": None,
        "percent_agreement": None,
    }
    if not overlapped:
        return result
    annotators = sorted({who for votes in overlapped.values() for who in votes})
    matrix = [
        [
            VERDICT_CODES[overlapped[p][a]] if a in overlapped[p] else float("nan")
            for p in sorted(overlapped)
        ]
        for a in annotators
    ]
    agree = sum(len(set(v.values())) == 1 for v in overlapped.values())
    result["percent_agreement"] = agree / len(overlapped)
    if len({v for votes in overlapped.values() for v in votes.values()}) > 1:
        import krippendorff

        result["krippendorff_alpha"] = float(
            krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
        )
    else:
        result["krippendorff_alpha"] = 1.0  # one category used by everyone: perfect agreement
    return result


def human_judge_agreement(labels: list[dict[str, Any]]) -> dict[str, Any]:
    keep_all = AggregationPolicy(include_ties=True)
    human = aggregate_verdicts([x for x in labels if x["source"] == "human"], keep_all)
    judge = aggregate_verdicts([x for x in labels if x["source"] == "judge"], keep_all)
    both = sorted(set(human) & set(judge))
    result: dict[str, Any] = {"pairs": len(both), "accuracy": None, "cohen_kappa": None}
    if not both:
        return result
    h = [human[p][0] for p in both]
    j = [judge[p][0] for p in both]
    result["accuracy"] = sum(x == y for x, y in zip(h, j, strict=True)) / len(both)
    if len(set(h) | set(j)) > 1:
        from sklearn.metrics import cohen_kappa_score

        result["cohen_kappa"] = float(cohen_kappa_score(h, j))
    return result


def position_consistency(store: PreferenceStore) -> dict[str, Any]:
    """Share of pairs judged in both orders where the two verdicts agree (after un-swapping)."""
    rows = store.query(
        """
        SELECT ab.verdict = ba.verdict FROM judgements ab JOIN judgements ba
          ON ab.pair_id = ba.pair_id AND ab.model = ba.model AND ab.template_hash = ba.template_hash
        WHERE ab.order_shown = 'ab' AND ba.order_shown = 'ba' AND ab.status = 'ok' AND ba.status = 'ok'
        """
    )
    if not rows:
        return {"pairs": 0, "rate": None}
    return {"pairs": len(rows), "rate": sum(bool(r[0]) for r in rows) / len(rows)}


def labels_by_hour(store: PreferenceStore) -> list[tuple[str, Any, int]]:
    """(source, hour, active labels created in it), oldest hour first."""
    return store.query(
        "SELECT source, date_trunc('hour', created_at) AS t, count(*) FROM active_labels "
        "GROUP BY ALL ORDER BY t"
    )
