"""Reading the reference labels (`import --labels as-reference`): labels kept only to measure.

`data.ingest` writes the `reference_labels` table; every reader goes through here.
"""

from __future__ import annotations

from collections import Counter

from data.store import PreferenceStore


def reference_verdicts(store: PreferenceStore) -> dict[str, str]:
    """The majority reference verdict per pair (relative to the stored A/B); pairs whose
    reference labels split evenly are left out."""
    votes: dict[str, Counter[str]] = {}
    for pair_id, verdict, count in store.query(
        "SELECT pair_id, verdict, count(*) FROM reference_labels GROUP BY pair_id, verdict"
    ):
        votes.setdefault(pair_id, Counter())[verdict] = int(count)
    return majority(votes)


def majority(votes: dict[str, Counter[str]]) -> dict[str, str]:
    """Each pair's most common verdict, where one verdict has more votes than any other."""
    out = {}
    for pair_id, counter in votes.items():
        ranked = counter.most_common(2)
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            out[pair_id] = ranked[0][0]
    return out
