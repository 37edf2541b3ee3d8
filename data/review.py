"""Reviewing labels: find labelled pairs, open one with its audit trail, correct a label.

A correction is one transaction: the old label is retracted (`PreferenceStore.retract_label`),
a new `human` label by the admin is added (`PreferenceStore.add_label`, whose `meta` names the
label it corrects), and a `label_corrections` row records who, why and when. The store's own
paths keep the human-queue counts right. This module owns `label_corrections`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from data.errors import ConfigError, StoreError
from data.schema import SOURCES, VERDICTS
from data.store import PairView, PreferenceStore

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 200
SNIPPET_CHARS = 100


@dataclass(frozen=True)
class ReviewFilter:
    """Which labelled pairs to list. Source, who, verdict and round hold for one active label
    of the pair; `disagree` keeps pairs whose active human and judge labels differ."""

    source: str | None = None  # human | judge | import | model
    who: str | None = None  # annotator, judge model or file name
    verdict: str | None = None  # a | b | tie | both_bad, relative to the stored A/B
    round: int | None = None
    disagree: bool = False  # an active human label and an active judge label differ
    limit: int = DEFAULT_LIMIT  # most rows returned; the total is counted in full

    def __post_init__(self) -> None:
        if self.source is not None and self.source not in SOURCES:
            raise ConfigError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise ConfigError(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")
        if self.round is not None and self.round < 0:
            raise ConfigError(f"round {self.round} must be 0 or more (or empty for any round)")
        if self.limit < 1:
            raise ConfigError(f"limit {self.limit} must be at least 1")


@dataclass(frozen=True)
class ReviewRow:
    pair_id: str
    prompt: str  # the last user turn, shortened
    labels: str  # the active labels, "source:who=verdict, ..."


@dataclass(frozen=True)
class ReviewPage:
    rows: list[ReviewRow]
    total: int  # every matching pair, not just the rows returned


@dataclass(frozen=True)
class LabelEntry:
    """One label of a pair, active or retracted, with its part in any correction."""

    label_id: int
    source: str
    who: str
    verdict: str
    confidence: float | None
    rationale: str | None
    swapped: bool
    round: int
    created_at: datetime
    retracted_at: datetime | None
    corrected_by: str | None  # the admin whose correction retracted this label
    reason: str | None  # why, as the admin gave it
    replaced_by: int | None  # the label that correction added
    corrects: int | None  # the label this one replaced, when it is a correction

    @property
    def active(self) -> bool:
        return self.retracted_at is None


@dataclass(frozen=True)
class PairDetail:
    pair: PairView
    labels: list[LabelEntry]  # every label, retracted ones included, oldest first

    @property
    def active_labels(self) -> list[LabelEntry]:
        return [label for label in self.labels if label.active]


@dataclass(frozen=True)
class Correction:
    pair_id: str
    old_label_id: int
    new_label_id: int
    old_verdict: str
    verdict: str
    admin: str
    reason: str | None


def find_pairs(store: PreferenceStore, wanted: ReviewFilter) -> ReviewPage:
    """Labelled pairs that match, the most recently labelled first, at most `wanted.limit`."""
    conditions = ["TRUE"]
    params: dict[str, Any] = {"limit": wanted.limit}
    for column in ("source", "who", "verdict", "round"):
        value = getattr(wanted, column)
        if value is not None:
            conditions.append(f"{column} = ${column}")
            params[column] = value
    disagree = ""
    if wanted.disagree:
        disagree = """
          AND pair_id IN (SELECT h.pair_id FROM active h JOIN active j USING (pair_id)
                          WHERE h.source = 'human' AND j.source = 'judge'
                            AND h.verdict <> j.verdict)"""
    rows = store.query(
        f"""
        WITH active AS (SELECT * FROM active_labels),
        matched AS (
            SELECT DISTINCT pair_id FROM active WHERE {" AND ".join(conditions)} {disagree}
        ),
        summary AS (
            SELECT pair_id, max(created_at) AS latest,
                   string_agg(source || ':' || who || '=' || verdict, ', ' ORDER BY label_id)
                       AS labels
            FROM active WHERE pair_id IN (SELECT pair_id FROM matched) GROUP BY pair_id
        )
        SELECT s.pair_id, pr.messages, s.labels, count(*) OVER () AS total
        FROM summary s JOIN pairs p USING (pair_id) JOIN prompts pr USING (prompt_id)
        ORDER BY s.latest DESC, s.pair_id
        LIMIT $limit
        """,
        params,
    )
    total = int(rows[0][3]) if rows else 0
    return ReviewPage([ReviewRow(r[0], _snippet(json.loads(r[1])), r[2]) for r in rows], total)


def pair_detail(store: PreferenceStore, pair_id: str) -> PairDetail:
    """The pair (as stored: A has the smaller response id) and all its labels with their audit."""
    pair = store.get_pair(pair_id)
    rows = store.query(
        """
        SELECT l.label_id, l.source, l.who, l.verdict, l.confidence, l.rationale, l.swapped,
               l.round, l.created_at, l.retracted_at, c.admin, c.reason, c.new_label_id,
               back.old_label_id
        FROM labels l
        LEFT JOIN label_corrections c ON c.old_label_id = l.label_id
        LEFT JOIN label_corrections back ON back.new_label_id = l.label_id
        WHERE l.pair_id = ?
        ORDER BY l.label_id
        """,
        [pair_id],
    )
    return PairDetail(pair, [LabelEntry(*row) for row in rows])


def correct_label(
    store: PreferenceStore,
    label_id: int,
    *,
    verdict: str,
    admin: str,
    reason: str | None = None,
    pair_id: str | None = None,
) -> Correction:
    """Retract `label_id` and add the admin's `verdict` in its place, in one transaction.

    `pair_id`, when given, must be the label's pair (the pair the admin has open).
    """
    if verdict not in VERDICTS:
        raise ConfigError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    if not admin:
        raise ConfigError("a correction needs the admin's name")
    reason = (reason or "").strip() or None
    with store.transaction() as cur:
        found = cur.execute(
            """
            SELECT l.pair_id, l.verdict, l.retracted_at, c.new_label_id
            FROM labels l LEFT JOIN label_corrections c ON c.old_label_id = l.label_id
            WHERE l.label_id = ?
            """,
            [label_id],
        ).fetchall()
        if not found:
            raise StoreError(f"no label #{label_id}; open the pair again to see its labels")
        label_pair, old_verdict, retracted_at, replaced_by = found[0]
        if pair_id is not None and label_pair != pair_id:
            raise StoreError(
                f"label #{label_id} belongs to pair {label_pair}, not {pair_id}; "
                "pick one of the open pair's labels"
            )
        if retracted_at is not None:
            instead = (
                f"correct #{replaced_by}, which replaced it"
                if replaced_by
                else "pick an active label"
            )
            raise StoreError(
                f"label #{label_id} was already retracted at {retracted_at:%Y-%m-%d %H:%M:%S}; "
                f"{instead}"
            )
        if old_verdict == verdict:
            raise StoreError(
                f"label #{label_id} already says {verdict!r}; choose a different verdict"
            )
        store.retract_label(label_id, cursor=cur)
        new_label_id = store.add_label(
            label_pair,
            source="human",
            who=admin,
            verdict=verdict,
            rationale=reason,
            meta={"corrects": label_id, "reason": reason},
            cursor=cur,
        )
        cur.execute(
            """
            INSERT INTO label_corrections (old_label_id, new_label_id, pair_id, admin, reason)
            VALUES (?, ?, ?, ?, ?)
            """,
            [label_id, new_label_id, label_pair, admin, reason],
        ).fetchall()
    logger.info(
        "%s corrected label #%d on %s: %s -> %s (#%d)",
        admin,
        label_id,
        label_pair,
        old_verdict,
        verdict,
        new_label_id,
    )
    return Correction(label_pair, label_id, new_label_id, old_verdict, verdict, admin, reason)


def _snippet(messages: list[dict[str, str]]) -> str:
    users = [m["content"] for m in messages if m.get("role") == "user"]
    text = " ".join((users[-1] if users else messages[-1]["content"]).split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"
