"""The `feedback` table: unpaired thumbs up or down on one response to a prompt (KTO's data).

Rows come from `prefloop import` of prompt / completion / label files (`data.ingest`); a
KTO run reads them with the pairs (`training/snapshot.py`). Re-importing never doubles:
(prompt, response, who) is the key, and the latest label given by that file wins.
"""

from __future__ import annotations

import contextlib
from typing import Any

import duckdb

from data.store import PreferenceStore


def insert_feedback(
    cur: duckdb.DuckDBPyConnection,
    rows: dict[tuple[str, str], bool],
    *,
    who: str,
    source: str,
) -> int:
    """Store (prompt id, response id) -> desirable for `who`; returns the rows new or changed."""
    import pyarrow as pa

    if not rows:
        return 0
    table = pa.table(
        {
            "prompt_id": [k[0] for k in rows],
            "response_id": [k[1] for k in rows],
            "desirable": pa.array(list(rows.values()), type=pa.bool_()),
        }
    )
    cur.register("_new_feedback", table)
    try:
        # a row whose label changed replaces the old one; an identical row is a duplicate
        cur.execute(
            """
            DELETE FROM feedback f USING _new_feedback n
            WHERE f.prompt_id = n.prompt_id AND f.response_id = n.response_id
              AND f.who = $who AND f.desirable <> n.desirable
            """,
            {"who": who},
        ).fetchall()
        changed = cur.execute(
            """
            INSERT INTO feedback (prompt_id, response_id, desirable, who, source)
            SELECT n.prompt_id, n.response_id, n.desirable, $who, $source FROM _new_feedback n
            ANTI JOIN feedback f ON f.prompt_id = n.prompt_id AND f.response_id = n.response_id
              AND f.who = $who
            RETURNING prompt_id
            """,
            {"who": who, "source": source},
        ).fetchall()
    finally:
        with contextlib.suppress(duckdb.Error):  # an aborted transaction keeps its own error
            cur.unregister("_new_feedback")
    return len(changed)


def feedback_rows(store: PreferenceStore) -> list[dict[str, Any]]:
    """Every feedback row with its prompt's messages and the response text."""
    return store.query_dicts(
        """
        SELECT f.prompt_id, p.messages, f.response_id, r.text AS completion, f.desirable,
               f.who, f.source
        FROM feedback f JOIN prompts p USING (prompt_id) JOIN responses r USING (response_id)
        ORDER BY f.prompt_id, f.response_id, f.who
        """
    )
