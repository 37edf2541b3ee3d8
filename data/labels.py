"""The one INSERT into `labels`: every label, whatever its source, is written here.

Callers own their checks and their side effects (the click batch checks leases and
updates `human_queue`; the judge writer retracts superseded judge labels; imports skip
duplicates); this module owns the row: its columns, their types, and the round filled in
from `meta` when a caller gives none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import duckdb

from data.row_source import row_source


class Scalars(Protocol):
    """What `newest_label_id` reads through: a `data.store.PreferenceStore` (which imports
    this module, so it is not imported here)."""

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any: ...


_INSERT_SQL = """
INSERT INTO labels (pair_id, source, who, verdict, confidence, rationale, swapped, round, meta)
SELECT n.pair_id, n.source, n.who, n.verdict, n.confidence, n.rationale, n.swapped,
       coalesce(n.round, (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'round'), 0),
       CAST(n.meta AS JSON)
FROM {rows}
RETURNING label_id, pair_id, who
"""


def insert_labels(
    cur: duckdb.DuckDBPyConnection,
    *,
    pair_ids: Sequence[str],
    source: str | Sequence[str],
    who: str | Sequence[str],
    verdicts: Sequence[str],
    confidences: Sequence[float | None] | None = None,
    rationales: Sequence[str | None] | None = None,
    swapped: Sequence[bool] | None = None,
    round: int | Sequence[int | None] | None = None,
    metas: Sequence[dict[str, Any] | None] | dict[str, Any] | None = None,
) -> list[tuple[int, str, str]]:
    """Insert one label per pair id in one statement; returns (label id, pair id, who) each.

    A scalar `source`, `who`, `round` or `metas` applies to every row. The verdicts are
    relative to the stored A/B. Runs inside the caller's transaction (`cur`).
    """
    n = len(pair_ids)
    if n == 0:
        return []

    def column(value: Any, default: Any = None) -> list[Any]:
        if value is None:
            return [default] * n
        if isinstance(value, str | int | dict):
            return [value] * n
        return list(value)

    columns = {
        "pair_id": ("VARCHAR", list(pair_ids)),
        "source": ("VARCHAR", column(source)),
        "who": ("VARCHAR", column(who)),
        "verdict": ("VARCHAR", list(verdicts)),
        "confidence": ("DOUBLE", column(confidences)),
        "rationale": ("VARCHAR", column(rationales)),
        "swapped": ("BOOLEAN", column(swapped, False)),
        "round": ("INTEGER", column(round)),
        "meta": ("VARCHAR", [None if m is None else json.dumps(m) for m in column(metas)]),
    }
    with row_source(cur, "n", columns) as (rows_sql, params):
        rows = cur.execute(_INSERT_SQL.format(rows=rows_sql), params).fetchall()
    return [(int(label_id), pair_id, who) for label_id, pair_id, who in rows]


def newest_label_id(store: Scalars) -> int:
    """The newest label id (0 for none): label ids grow with time, so a round's cut-off is
    this id, and a snapshot capped at it holds exactly the labels written before it."""
    return int(store.scalar("SELECT coalesce(max(label_id), 0) FROM labels") or 0)
