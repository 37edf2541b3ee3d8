"""Everything the judge reads from and writes to the store.

* `select_work`: which (pair, model, order) units a batch still has to do;
* `cache_key` / `prefetch_cache`: the call cache in `judge_calls`;
* `Writer`: the one writer. Workers hand it finished units; it commits them in small
  transactions (calls, judgements, then labels and flags for every pair whose units
  are all done), so a batch killed half-way keeps everything it had committed.

Verdicts in `judgements` and `labels` are relative to the STORED A/B: a unit shown
in order "ba" has its verdict flipped before it gets here.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from data.ids import stable_json_hash
from data.store import PairView, PreferenceStore
from judges.client import Completion

FLIP = {"a": "b", "b": "a", "tie": "tie"}
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
            "NOT EXISTS (SELECT 1 FROM labels l WHERE l.pair_id = p.pair_id AND l.retracted_at IS NULL)"
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


@dataclass
class PairResult:
    labelled: bool = False
    inconsistent: bool = False
    disagrees_with_ensemble: bool = False


class Writer:
    """Commits outcomes and, once a pair's units are all in, its label and flags."""

    def __init__(
        self,
        store: PreferenceStore,
        *,
        endpoint: str,
        models: tuple[str, ...],
        orders: tuple[str, ...],
        template_hash: str,
        batch_id: str,
        units: list[Unit],
    ):
        self.store = store
        self.endpoint = endpoint
        self.models = models
        self.orders = orders
        self.template_hash = template_hash
        self.batch_id = batch_id
        self.remaining = Counter(u.pair_id for u in units)
        self.round = store.current_round()
        self.ensemble_version = store.scalar("SELECT max(version) FROM scores")
        self.labels = 0
        self.judged = 0
        self.inconsistent = 0
        self.ensemble_disagreements = 0

    @property
    def who(self) -> str:
        return self.models[0] if len(self.models) == 1 else "panel:" + ",".join(self.models)

    def commit(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        with self.store.transaction() as cur:
            for outcome in outcomes:
                self._write_outcome(cur, outcome)
            for outcome in outcomes:
                pair_id = outcome.unit.pair_id
                self.remaining[pair_id] -= 1
                if self.remaining[pair_id] == 0:
                    self._finalize(cur, pair_id)

    def _write_outcome(self, cur: Any, outcome: Outcome) -> None:
        last_key = None
        for key, model, request, completion in outcome.calls:
            if not key:  # a call that failed: counted by the batch, nothing to cache
                continue
            cur.execute(
                """
                INSERT OR REPLACE INTO judge_calls (cache_key, endpoint, model, request, response_text,
                    logprobs, prompt_tokens, completion_tokens)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    key,
                    self.endpoint,
                    model,
                    json.dumps(request),
                    completion.text,
                    None if completion.logprobs is None else json.dumps(completion.logprobs),
                    completion.prompt_tokens,
                    completion.completion_tokens,
                ],
            ).fetchall()
            last_key = key
        unit = outcome.unit
        cur.execute(
            """
            INSERT OR REPLACE INTO judgements (pair_id, model, template_hash, order_shown, cache_key,
                status, verdict, p_a, raw_text, error, batch_id)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                unit.pair_id,
                unit.model,
                self.template_hash,
                unit.order,
                last_key,
                outcome.status,
                outcome.verdict,
                outcome.p_a,
                outcome.raw_text,
                outcome.error,
                self.batch_id,
            ],
        ).fetchall()

    def _finalize(self, cur: Any, pair_id: str) -> PairResult:
        """Turn a pair's judgements (this template, these models) into a label and flags."""
        rows = cur.execute(
            "SELECT model, order_shown, status, verdict, p_a FROM judgements "
            "WHERE pair_id = ? AND template_hash = ? AND model IN (SELECT unnest(?::VARCHAR[]))",
            [pair_id, self.template_hash, list(self.models)],
        ).fetchall()
        self.judged += 1
        found = {(r[0], r[1]): r for r in rows}
        votes: dict[str, str] = {}
        p_as: list[float] = []
        inconsistent: dict[str, dict[str, str]] = {}
        for model in self.models:
            got = [found.get((model, order)) for order in self.orders]
            if any(r is None or r[2] != "ok" for r in got):
                continue  # failed or missing: this model gives no vote
            verdicts = {r[3] for r in got}
            if len(verdicts) > 1:
                inconsistent[model] = {r[1]: r[3] for r in got}
                continue
            votes[model] = got[0][3]
            p_as += [r[4] for r in got if r[4] is not None]
        result = PairResult()
        if inconsistent:
            result.inconsistent = True
            self.inconsistent += 1
            self._flag(
                cur,
                pair_id,
                "judge_inconsistent",
                {"template_hash": self.template_hash, "verdicts": inconsistent},
            )
        if not votes:
            return result
        tally = Counter(votes.values()).most_common()
        winner, count = tally[0]
        if len(self.models) > 1 and count * 2 <= len(votes):
            self._flag(
                cur,
                pair_id,
                "judge_panel_split",
                {"template_hash": self.template_hash, "votes": votes},
            )
            return result
        p_a = sum(p_as) / len(p_as) if p_as else None
        confidence = None
        if p_a is not None and winner in ("a", "b"):
            confidence = p_a if winner == "a" else 1.0 - p_a
        already = cur.execute(
            "SELECT 1 FROM labels WHERE pair_id = ? AND source = 'judge' AND who = ? "
            "AND retracted_at IS NULL AND json_extract_string(meta, '$.template_hash') = ?",
            [pair_id, self.who, self.template_hash],
        ).fetchall()
        if not already:
            meta = {
                "template_hash": self.template_hash,
                "batch_id": self.batch_id,
                "p_a": p_a,
                "orders": list(self.orders),
                "votes": votes,
                "agreement": count / len(self.models),
            }
            self.store.add_label(
                pair_id,
                source="judge",
                who=self.who,
                verdict=winner,
                confidence=confidence,
                round=self.round,
                meta=meta,
                cursor=cur,
            )
            self.labels += 1
            result.labelled = True
        if self.ensemble_version is not None and winner in ("a", "b"):
            score = cur.execute(
                "SELECT p_mean FROM scores WHERE pair_id = ? AND version = ?",
                [pair_id, self.ensemble_version],
            ).fetchall()
            if score:
                p_mean = float(score[0][0])
                if (p_mean > 0.9 and winner == "b") or (p_mean < 0.1 and winner == "a"):
                    result.disagrees_with_ensemble = True
                    self.ensemble_disagreements += 1
                    self._flag(
                        cur,
                        pair_id,
                        "judge_ensemble_disagree",
                        {
                            "ensemble_version": self.ensemble_version,
                            "p_mean": p_mean,
                            "judge": self.who,
                            "verdict": winner,
                            "template_hash": self.template_hash,
                        },
                    )
        return result

    def _flag(self, cur: Any, pair_id: str, flag: str, detail: dict[str, Any]) -> None:
        cur.execute(
            "INSERT OR REPLACE INTO pair_flags (pair_id, flag, detail) VALUES (?, ?, ?)",
            [pair_id, flag, json.dumps(detail)],
        ).fetchall()
