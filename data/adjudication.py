"""Adjudication: an adjudicator's final verdict on a pair whose human votes split.

A pair waits for adjudication when it has two or more active human labels and no verdict
has more of them than every other (the export's majority rule gives it no label), and it
has no adjudication yet. The adjudicator sees the earlier votes, who gave them and their
rationales, unblinded, and gives the final verdict; `data.export` ranks an adjudication
above every human vote. This module owns the `adjudications` table.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from data.errors import StoreError
from data.schema import VERDICTS
from data.store import PairView, PreferenceStore, check_rationale

log = logging.getLogger(__name__)

# Active human votes per pair, for pairs without an adjudication.
_VOTES_SQL = """
SELECT pair_id, verdict, count(*) AS n, min(created_at) AS first
FROM active_labels
WHERE source = 'human' AND pair_id NOT IN (SELECT pair_id FROM adjudications)
GROUP BY pair_id, verdict
"""
_LABELS_SQL = """
SELECT label_id, who, verdict, confidence, rationale, swapped, created_at
FROM active_labels WHERE source = 'human' AND pair_id = ? ORDER BY label_id
"""


@dataclass(frozen=True)
class Vote:
    """One earlier human label on a pair, as the adjudicator sees it (stored A/B)."""

    label_id: int
    who: str
    verdict: str
    confidence: float | None
    rationale: str | None
    swapped: bool  # the annotator saw A and B the other way round
    created_at: datetime


@dataclass(frozen=True)
class Case:
    """A pair waiting for adjudication, with its votes and how many wait in all."""

    pair: PairView
    votes: list[Vote]
    waiting: int  # pairs in the adjudication queue, this one included


def _split(votes: Counter[str]) -> bool:
    ranked = votes.most_common(2)
    return sum(votes.values()) >= 2 and len(ranked) == 2 and ranked[0][1] == ranked[1][1]


def split_pairs(store: PreferenceStore) -> list[str]:
    """The adjudication queue: pairs whose human votes split and that have no adjudication,
    the longest-waiting first (by their first human vote)."""
    votes: dict[str, Counter[str]] = {}
    first: dict[str, datetime] = {}
    for pair_id, verdict, n, at in store.query(_VOTES_SQL):
        votes.setdefault(pair_id, Counter())[verdict] = int(n)
        first[pair_id] = min(first.get(pair_id, at), at)
    waiting = [pair_id for pair_id, counter in votes.items() if _split(counter)]
    return sorted(waiting, key=lambda pair_id: (first[pair_id], pair_id))


def votes_on(store: PreferenceStore, pair_id: str) -> list[Vote]:
    """The active human labels on a pair, oldest first."""
    return [Vote(int(r[0]), *r[1:]) for r in store.query(_LABELS_SQL, [pair_id])]


def next_case(store: PreferenceStore, *, after: str | None = None) -> Case | None:
    """The pair to adjudicate now (the one after `after` in the queue, to pass one over),
    or None when nothing waits."""
    waiting = split_pairs(store)
    if not waiting:
        return None
    index = waiting.index(after) + 1 if after in waiting else 0
    pair_id = waiting[index % len(waiting)]
    return Case(store.get_pair(pair_id), votes_on(store, pair_id), len(waiting))


def adjudicate(
    store: PreferenceStore,
    pair_id: str,
    adjudicator: str,
    verdict: str,
    rationale: str | None = None,
) -> int:
    """Store the final verdict (relative to the stored A/B) on a pair that waits for one;
    returns the adjudication id."""
    if verdict not in VERDICTS:
        raise StoreError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    check_rationale(rationale)
    with store.transaction() as cur:
        votes = Counter(
            dict(
                cur.execute(
                    "SELECT verdict, count(*) FROM active_labels WHERE source = 'human' "
                    "AND pair_id = ? GROUP BY verdict",
                    [pair_id],
                ).fetchall()
            )
        )
        done = cur.execute(
            "SELECT count(*) FROM adjudications WHERE pair_id = ?", [pair_id]
        ).fetchall()[0][0]
        if done or not _split(votes):
            raise StoreError(
                f"pair {pair_id!r} is not waiting for adjudication (its human votes do not split, "
                "or it was adjudicated already); ask for the next pair"
            )
        (adjudication_id,) = cur.execute(
            "INSERT INTO adjudications (pair_id, adjudicator, verdict, rationale) "
            "VALUES (?, ?, ?, ?) RETURNING adjudication_id",
            [pair_id, adjudicator, verdict, rationale],
        ).fetchall()[0]
    log.info("pair %s adjudicated %s by %s", pair_id, verdict, adjudicator)
    return int(adjudication_id)


def adjudicated_verdicts(store: PreferenceStore) -> dict[str, str]:
    """pair_id -> the latest adjudicated verdict (relative to the stored A/B)."""
    return dict(
        store.query(
            "SELECT pair_id, arg_max(verdict, adjudication_id) FROM adjudications GROUP BY pair_id"
        )
    )


def adjudication_count(store: PreferenceStore) -> int:
    return int(store.scalar("SELECT count(*) FROM adjudications"))
