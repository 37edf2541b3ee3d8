"""The `feedback` table: unpaired thumbs up or down on one response to a prompt (KTO's data).

Rows come from `prefloop import` of prompt / completion / label files (`data.ingest`); a
KTO run reads them with the pairs (`training/snapshot.py`). Re-importing never doubles:
(prompt, response, who) is the key, and the latest label given by that file wins.
"""

from __future__ import annotations

from typing import Any

import duckdb

from data.row_source import row_source
from data.store import PreferenceStore


def insert_feedback(
    cur: duckdb.DuckDBPyConnection,
    rows: dict[tuple[str, str], bool],
    *,
    who: str,
    source: str,
) -> int:
    """Store (prompt id, response id) -> desirable for `who`; returns the rows new or changed."""
    if not rows:
        return 0
    columns = {
        "prompt_id": ("VARCHAR", [k[0] for k in rows]),
        "response_id": ("VARCHAR", [k[1] for k in rows]),
        "desirable": ("BOOLEAN", list(rows.values())),
    }
    with row_source(cur, "n", columns) as (new, params):
        # a row whose label changed replaces the old one; an identical row is a duplicate
        cur.execute(
            f"""
            DELETE FROM feedback f USING {new}
            WHERE f.prompt_id = n.prompt_id AND f.response_id = n.response_id
              AND f.who = ? AND f.desirable <> n.desirable
            """,
            [*params, who],
        ).fetchall()
        changed = cur.execute(
            f"""
            INSERT INTO feedback (prompt_id, response_id, desirable, who, source)
            SELECT n.prompt_id, n.response_id, n.desirable, ?, ? FROM {new}
            ANTI JOIN feedback f ON f.prompt_id = n.prompt_id AND f.response_id = n.response_id
              AND f.who = ?
            """
            "RETURNING prompt_id",
            [who, source, *params, who],
        ).fetchall()
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
