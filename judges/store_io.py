"""What a judge batch reads from the store, and the units it passes around.

* `select_work`: which (pair, model, order) units a batch still has to do;
* `cache_key` / `prefetch_cache`: the call cache in `judge_calls`;
* the one writer lives in `judges/writer.py`.

Verdicts in `judgements` and `labels` are relative to the STORED A/B: a unit shown
in order "ba" has its verdict flipped before it gets here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from data.ids import stable_json_hash
from data.store import PairView, PreferenceStore
from judges.client import Completion

ORDERS_SWAP = ("ab", "ba")


@dataclass(frozen=True)
class Unit:
    """One judgement to make: a pair shown to a model in one order."""

    pair_id: str
    model: str
    order: str  # "ab": stored A shown first; "ba": stored B shown first


@dataclass
class Outcome:
    """A finished unit, with the calls it made (to cache) and its verdict about the stored A/B."""

    unit: Unit
    status: str  # ok / failed
    verdict: str | None = None
    p_a: float | None = None
    raw_text: str | None = None
    error: str | None = None
    calls: list[tuple[str, str, dict[str, Any], Completion]] = field(default_factory=list)
    # (cache_key, model, request, completion) of every fresh call this unit made
    cache_hits: int = 0


def cache_key(
    endpoint: str, model: str, params: dict[str, Any], messages: list[dict[str, str]]
) -> str:
    """Hash of what determines a reply; the API key is not part of it (nor stored anywhere)."""
    return stable_json_hash(
        {"endpoint": endpoint, "model": model, "params": params, "messages": messages}
    )


def select_work(
    store: PreferenceStore,
    *,
    models: tuple[str, ...],
    orders: tuple[str, ...],
    template_hash: str,
    all_unlabelled: bool,
    retry_failed: bool,
    limit: int | None,
) -> tuple[list[Unit], dict[str, PairView]]:
    """Units still to do, by pair priority; `limit` counts pairs, not units."""
    if retry_failed:
        scope = "TRUE"
        missing = "j.status = 'failed'"
    else:
        scope = (
            "NOT EXISTS (SELECT 1 FROM active_labels l WHERE l.pair_id = p.pair_id)"
            if all_unlabelled
            else "p.queue = 'judge'"
        )
        missing = "j.pair_id IS NULL"
    rows = store.query(
        f"""
        WITH wanted AS (
            SELECT p.pair_id, p.priority, m.model, o.order_shown
            FROM pairs p
            CROSS JOIN (SELECT unnest(?::VARCHAR[]) AS model) m
            CROSS JOIN (SELECT unnest(?::VARCHAR[]) AS order_shown) o
            WHERE {scope}
       ),
        todo AS (
            SELECT w.* FROM wanted w
            LEFT JOIN judgements j ON j.pair_id = w.pair_id AND j.model = w.model
                AND j.order_shown = w.order_shown AND j.template_hash = ?
            WHERE {missing}
       ),
        chosen AS (
            SELECT pair_id, max(priority) AS priority FROM todo GROUP BY pair_id
            ORDER BY priority DESC, pair_id {"LIMIT " + str(int(limit)) if limit is not None else ""}
       )
        SELECT t.pair_id, t.model, t.order_shown FROM todo t JOIN chosen c USING (pair_id)
        ORDER BY c.priority DESC, t.pair_id, t.model, t.order_shown
        """,
        [list(models), list(orders), template_hash],
    )
    units = [Unit(r[0], r[1], r[2]) for r in rows]
    ids = sorted({u.pair_id for u in units})
    views = (
        {
            v.pair_id: v
            for v in store.pairs("WHERE p.pair_id IN (SELECT unnest(?::VARCHAR[]))", [ids])
        }
        if ids
        else {}
    )
    return units, views


def prefetch_cache(store: PreferenceStore, keys: list[str]) -> dict[str, Completion]:
    """Cached replies for `keys`, read once before the calls start."""
    if not keys:
        return {}
    cur = store.cursor()
    cur.register("_judge_keys", pa.table({"cache_key": list(dict.fromkeys(keys))}))
    try:
        rows = cur.execute(
            "SELECT c.cache_key, c.request, c.response_text, c.logprobs FROM judge_calls c "
            "JOIN _judge_keys k USING (cache_key) WHERE c.response_text IS NOT NULL"
        ).fetchall()
    finally:
        cur.unregister("_judge_keys")
    cache = {}
    for key, request, text, logprobs in rows:
        params = json.loads(request).get("params", {}) if request else {}
        cache[key] = Completion(
            text=text,
            logprobs=json.loads(logprobs) if logprobs else None,
            params=params,
            cached=True,
        )
    return cache
