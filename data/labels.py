"""The one INSERT into `labels`: every label, whatever its source, is written here.

Callers own their checks and their side effects (the click batch checks leases and
updates `human_queue`; the judge writer retracts superseded judge labels; imports skip
duplicates); this module owns the row: its columns, their types, and the round filled in
from `meta` when a caller gives none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb

_INSERT_SQL = """
INSERT INTO labels (pair_id, source, who, verdict, confidence, rationale, swapped, round, meta)
SELECT n.pair_id, n.source, n.who, n.verdict, n.confidence, n.rationale, n.swapped,
       coalesce(n.round, (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'round'), 0),
       CAST(n.meta AS JSON)
FROM _label_rows n
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
    import pyarrow as pa

    n = len(pair_ids)
    if n == 0:
        return []

    def column(value: Any, default: Any = None) -> list[Any]:
        if value is None:
            return [default] * n
        if isinstance(value, str | int | dict):
            return [value] * n
        return list(value)

    meta_rows = column(metas)
    table = pa.table(
        {
            "pair_id": pa.array(list(pair_ids), type=pa.string()),
            "source": pa.array(column(source), type=pa.string()),
            "who": pa.array(column(who), type=pa.string()),
            "verdict": pa.array(list(verdicts), type=pa.string()),
            "confidence": pa.array(column(confidences), type=pa.float64()),
            "rationale": pa.array(column(rationales), type=pa.string()),
            "swapped": pa.array(column(swapped, False), type=pa.bool_()),
            "round": pa.array(column(round), type=pa.int32()),
            "meta": pa.array(
                [None if m is None else json.dumps(m) for m in meta_rows], type=pa.string()
            ),
        }
    )
    cur.register("_label_rows", table)
    try:
        rows = cur.execute(_INSERT_SQL).fetchall()
    finally:
        cur.unregister("_label_rows")
    return [(int(label_id), pair_id, who) for label_id, pair_id, who in rows]
