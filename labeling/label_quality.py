"""How good the current export is likely to be, and where the human budget went.

`export_quality` estimates the share of right labels among the pairs the export would
write. Human-decided pairs count as right (their own reliability is the human-human
agreement that `prefloop stats` reports); pairs decided by an automatic label (judge,
model) are right at the judges' accuracy on the random calibration slice: the pairs
routed at random to humans that the judge had also labelled, the only sample nobody
chose for its risk. The interval is the Wilson 95% interval of that accuracy, carried
through the mix. Where labels were imported with `--labels as-reference`, the export is
also checked against them directly (`vs_reference`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from data.export import AggregationPolicy, active_labels, aggregate_verdicts
from data.reference import reference_verdicts
from labeling.signals import human_checked, latest_judge_labels

if TYPE_CHECKING:
    from data.reference import reference_verdicts
from data.intervals import wilson
from data.store import PreferenceStore


def export_quality(store: PreferenceStore) -> dict[str, Any]:
    labels = active_labels(store)
    decided = aggregate_verdicts(labels, AggregationPolicy())
    by_source: dict[str, int] = {}
    for _, source, _ in decided.values():
        by_source[source] = by_source.get(source, 0) + 1
    trusted = by_source.get("human", 0) + by_source.get("import", 0)
    automatic = len(decided) - trusted
    _, wrong, on_slice = human_checked(store)
    checked = int(on_slice.sum())
    right = int((~wrong[on_slice]).sum())
    total_pairs = int(store.scalar("SELECT count(*) FROM pairs") or 0)
    out: dict[str, Any] = {
        "pairs": total_pairs,
        "exported": len(decided),
        "by_source": by_source,
        "calibration_checked": checked,
        "judge_accuracy": None,
        "estimated_right_share": None,
        "interval": None,
    }
    reference = _reference_check(store, decided)
    if reference:
        out["vs_reference"] = reference
    if not decided:
        return out
    if automatic == 0:
        out["estimated_right_share"] = 1.0
        return out
    if checked == 0:
        return out
    low, high = wilson(right, checked)
    mix = lambda acc: (trusted + automatic * acc) / len(decided)  # noqa: E731
    out["judge_accuracy"] = round(right / checked, 4)
    out["estimated_right_share"] = round(mix(right / checked), 4)
    out["interval"] = [round(mix(low), 4), round(mix(high), 4)]
    return out


def _reference_check(
    store: PreferenceStore, decided: dict[str, tuple[str, str, int]]
) -> dict[str, Any] | None:
    """The export checked against the labels imported with `--labels as-reference`."""
    single = reference_verdicts(store)
    if not single:
        return None
    both = [pid for pid in single if pid in decided]
    right = sum(decided[pid][0] == single[pid] for pid in both)
    low, high = wilson(right, len(both)) if both else (None, None)
    return {
        "reference_pairs": len(single),
        "exported_with_reference": len(both),
        "right": right,
        "accuracy": round(right / len(both), 4) if both else None,
        "interval": [round(low, 4), round(high, 4)] if both else None,
        # unlabelled pairs count as not right, as in bench/hybrid.py
        "right_share_of_reference_pairs": round(right / len(single), 4),
    }


def human_budget_by_reason(store: PreferenceStore) -> list[tuple[str, int, int]]:
    """(route reason, pairs sent to humans, of which labelled) for the human queue."""
    return [
        (reason or "unknown", int(n), int(done))
        for reason, n, done in store.query(
            """
            SELECT p.route_reason, count(*),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM active_labels l
                       WHERE l.pair_id = p.pair_id AND l.source = 'human'))
            FROM pairs p WHERE p.queue = 'human'
            GROUP BY 1 ORDER BY 2 DESC, 1
            """
        )
    ]


# (signal, bucket name, test) for the judge report's error table
_BUCKETS: tuple[tuple[str, str, Any], ...] = (
    ("margin", "none (no logprobs)", lambda v: math.isnan(v)),
    ("margin", "< 0.2", lambda v: v < 0.2),
    ("margin", "0.2-0.6", lambda v: 0.2 <= v < 0.6),
    ("margin", ">= 0.6", lambda v: v >= 0.6),
    ("panel_disagreement", "panel agreed", lambda v: v == 0),
    ("panel_disagreement", "some dissent", lambda v: v > 0),
    ("position", "picked its favoured position", lambda v: v > 0),
    ("position", "picked the other position", lambda v: v < 0),
    ("position", "both orders or unbiased", lambda v: v == 0),
    ("length", "picked the longer", lambda v: v > 0),
    ("length", "picked the shorter or equal", lambda v: v <= 0),
    ("ens_against", "ensemble agrees (< 0.5 against)", lambda v: v < 0.5),
    ("ens_against", "ensemble disagrees", lambda v: v >= 0.5),
    ("ens_against", "no ensemble score", lambda v: math.isnan(v)),
)


def judge_error_by_signal(store: PreferenceStore) -> list[dict[str, Any]]:
    """Per judge (label `who`): its error rate against humans, by signal bucket.

    Pairs outside the calibration slice were sent to humans for their risk, so their
    rates are conditional on that choice; the calibration-slice rate is unbiased.
    """
    signals, wrong, on_slice = human_checked(store)
    who = {pid: label[0] for pid, label in latest_judge_labels(store).items()}
    judges: dict[str, list[int]] = {}
    for i, pid in enumerate(signals.pair_ids):
        if pid in who:
            judges.setdefault(who[pid], []).append(i)
    out = []
    for name, rows in sorted(judges.items()):
        cal = [i for i in rows if on_slice[i]]
        entry: dict[str, Any] = {
            "who": name,
            "checked_pairs": len(rows),
            "error_rate": round(float(wrong[rows].mean()), 4),
            "calibration_pairs": len(cal),
            "calibration_error_rate": round(float(wrong[cal].mean()), 4) if cal else None,
            "buckets": [],
        }
        for signal, bucket, test in _BUCKETS:
            values = getattr(signals, signal)
            hit = [i for i in rows if test(float(values[i]))]
            if hit:
                entry["buckets"].append(
                    {
                        "signal": signal,
                        "bucket": bucket,
                        "pairs": len(hit),
                        "error_rate": round(float(wrong[hit].mean()), 4),
                    }
                )
        out.append(entry)
    return out
