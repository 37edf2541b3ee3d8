"""`prefloop eval`: how the loop's labels and reward ensemble agree with the reference labels.

Reference labels (`import --labels as-reference`) never train anything and are never
routed around, so they are an honest yardstick:

* the latest reward ensemble: P(A > B) > 0.5 against each reference a/b verdict, split into
  pairs the ensemble was fitted on (they carry an active a/b label) and the rest;
* each label source (human, judge, import, model): its latest a/b label per pair;
* the export (`labeling.label_quality`): the labels TRL would train on.

Accuracies come with 95% Wilson intervals.
"""

from __future__ import annotations

from typing import Any

from data.export import active_labels
from data.intervals import accuracy_with_interval
from data.reference import reference_verdicts
from data.store import PreferenceStore
from labeling.label_quality import export_quality
from labeling.scoring import latest_version


def ensemble_vs_reference(
    store: PreferenceStore, reference: dict[str, str], fitted_on: set[str]
) -> dict[str, Any] | None:
    version = latest_version(store)
    if version is None:
        return None
    decided = {pid: v for pid, v in reference.items() if v in ("a", "b")}
    rows = store.query("SELECT pair_id, p_mean FROM scores WHERE version = ?", [version])
    seen = {"fitted": [0, 0], "not_fitted": [0, 0]}
    for pid, p_mean in rows:
        if pid not in decided:
            continue
        bucket = seen["fitted" if pid in fitted_on else "not_fitted"]
        bucket[0] += int((p_mean > 0.5) == (decided[pid] == "a"))
        bucket[1] += 1
    right, n = (
        seen["fitted"][0] + seen["not_fitted"][0],
        seen["fitted"][1] + seen["not_fitted"][1],
    )
    return {
        "version": version,
        **accuracy_with_interval(right, n),
        "fitted_pairs": accuracy_with_interval(*seen["fitted"]),
        "other_pairs": accuracy_with_interval(*seen["not_fitted"]),
    }


def sources_vs_reference(
    labels: list[dict[str, Any]], reference: dict[str, str]
) -> dict[str, dict[str, Any]]:
    latest: dict[tuple[str, str], str] = {}
    for label in labels:  # in label order: the latest label per (source, pair) wins
        latest[(label["source"], label["pair_id"])] = label["verdict"]
    counts: dict[str, list[int]] = {}
    for (source, pid), verdict in latest.items():
        if pid in reference:
            tally = counts.setdefault(source, [0, 0])
            tally[0] += int(verdict == reference[pid])
            tally[1] += 1
    return {source: accuracy_with_interval(*tally) for source, tally in sorted(counts.items())}


def evaluate_against_reference(store: PreferenceStore) -> dict[str, Any]:
    reference = reference_verdicts(store)
    if not reference:
        return {
            "reference_pairs": 0,
            "note": "no reference labels: import labelled data with `prefloop import FILE "
            "--labels as-reference` to measure the loop against it",
        }
    labels = active_labels(store)
    fitted_on = {label["pair_id"] for label in labels if label["verdict"] in ("a", "b")}
    return {
        "reference_pairs": len(reference),
        "ensemble": ensemble_vs_reference(store, reference, fitted_on),
        "labels_by_source": sources_vs_reference(labels, reference),
        "export": export_quality(store).get("vs_reference"),
    }
