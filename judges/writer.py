"""The one writer of a judge batch.

Workers hand it finished units; it commits them in small transactions (cached calls,
judgements, then labels and flags for every pair whose units are all done), so a batch
killed half-way keeps everything it had committed. Rows go in set-wise through Arrow:
a commit is a handful of statements, whatever its size.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa

from data.labels import insert_labels
from data.store import PreferenceStore
from judges.aggregate import JudgementRow, decide, disagrees_with_ensemble
from judges.store_io import Outcome, Unit


class Writer:
    """Commits outcomes and, once a pair's units are all in, its label and flags (set-wise)."""

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
        debias_margin: float = 0.1,
    ):
        self.debias_margin = debias_margin
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
        self.retracted = 0
        self.judged = 0
        self.inconsistent = 0
        self.debiased = 0  # pairs with a model whose disagreeing orders were averaged
        self.split = 0
        self.ensemble_disagreements = 0

    @property
    def who(self) -> str:
        return self.models[0] if len(self.models) == 1 else "panel:" + ",".join(self.models)

    def commit(self, outcomes: list[Outcome]) -> None:
        """One transaction: cache rows, judgements, then labels/flags of the pairs now complete."""
        if not outcomes:
            return
        finished = []
        for outcome in outcomes:
            self.remaining[outcome.unit.pair_id] -= 1
            if self.remaining[outcome.unit.pair_id] == 0:
                finished.append(outcome.unit.pair_id)
        with self.store.transaction() as cur:
            _insert(cur, "judge_calls", self._call_rows(outcomes), replace=True)
            _insert(cur, "judgements", self._judgement_rows(outcomes), replace=True)
            if finished:
                self._finalize(cur, finished)

    def _call_rows(self, outcomes: list[Outcome]) -> dict[str, list[Any]]:
        return call_rows(self.endpoint, outcomes)

    def _judgement_rows(self, outcomes: list[Outcome]) -> dict[str, list[Any]]:
        columns: dict[str, list[Any]] = {
            name: []
            for name in (
                "pair_id",
                "model",
                "template_hash",
                "order_shown",
                "cache_key",
                "status",
                "verdict",
                "p_a",
                "raw_text",
                "error",
                "batch_id",
            )
        }
        for o in outcomes:
            keys = [c[0] for c in o.calls if c[0]]
            values = (
                o.unit.pair_id,
                o.unit.model,
                self.template_hash,
                o.unit.order,
                keys[-1] if keys else None,
                o.status,
                o.verdict,
                o.p_a,
                o.raw_text,
                o.error,
                self.batch_id,
            )
            for name, value in zip(columns, values, strict=True):
                columns[name].append(value)
        return columns

    def _finalize(self, cur: Any, pair_ids: list[str]) -> None:
        """Turn the finished pairs' judgements (this template, these models) into labels and flags."""
        cur.register("_finished", pa.table({"pair_id": pair_ids}))
        try:
            rows = cur.execute(
                "SELECT j.pair_id, j.model, j.order_shown, j.status, j.verdict, j.p_a FROM judgements j "
                "JOIN _finished USING (pair_id) WHERE j.template_hash = ? "
                "AND j.model IN (SELECT unnest(?::VARCHAR[]))",
                [self.template_hash, list(self.models)],
            ).fetchall()
            labelled: dict[str, list[tuple[int, str]]] = {}
            for pair_id, label_id, verdict in cur.execute(
                "SELECT l.pair_id, l.label_id, l.verdict FROM labels l JOIN _finished USING (pair_id) "
                "WHERE l.source = 'judge' AND l.who = ? AND l.retracted_at IS NULL "
                "AND json_extract_string(l.meta, '$.template_hash') = ?",
                [self.who, self.template_hash],
            ).fetchall():
                labelled.setdefault(pair_id, []).append((label_id, verdict))
            scores = {}
            if self.ensemble_version is not None:
                scores = dict(
                    cur.execute(
                        "SELECT s.pair_id, s.p_mean FROM scores s JOIN _finished USING (pair_id) WHERE s.version = ?",
                        [self.ensemble_version],
                    ).fetchall()
                )
        finally:
            cur.unregister("_finished")
        by_pair: dict[str, list[JudgementRow]] = {p: [] for p in pair_ids}
        for pair_id, model, order, status, verdict, p_a in rows:
            by_pair[pair_id].append(JudgementRow(model, order, status, verdict, p_a))
        labels: dict[str, list[Any]] = {k: [] for k in ("pair_id", "verdict", "confidence", "meta")}
        flags: dict[tuple[str, str], str] = {}
        retract: list[int] = []
        for pair_id, judged in by_pair.items():
            self.judged += 1
            decision = decide(judged, self.models, self.orders, debias_margin=self.debias_margin)
            if decision.inconsistent:
                self.inconsistent += 1
                flags[(pair_id, "judge_inconsistent")] = json.dumps(
                    {"template_hash": self.template_hash, "verdicts": decision.inconsistent}
                )
            self.debiased += bool(decision.debiased)
            if decision.split:
                self.split += 1
                flags[(pair_id, "judge_panel_split")] = json.dumps(
                    {"template_hash": self.template_hash, "votes": decision.votes}
                )
            # an earlier label of this judge that the new evidence contradicts (e.g. a one-order
            # label that --swap shows to be position bias) is retracted, kept for audit
            stale = [i for i, verdict in labelled.get(pair_id, []) if verdict != decision.verdict]
            retract += stale
            if decision.verdict is None:
                continue
            if len(stale) == len(labelled.get(pair_id, [])):
                meta = {
                    "template_hash": self.template_hash,
                    "batch_id": self.batch_id,
                    "p_a": decision.p_a,
                    "orders": list(self.orders),
                    "votes": decision.votes,
                    "agreement": decision.agreement,
                    "debiased": decision.debiased or None,
                    "resolved_by": decision.resolved_by,
                }
                for name, value in zip(
                    labels,
                    (pair_id, decision.verdict, decision.confidence, meta),
                    strict=True,
                ):
                    labels[name].append(value)
            if disagrees_with_ensemble(decision.verdict, scores.get(pair_id)):
                self.ensemble_disagreements += 1
                flags[(pair_id, "judge_ensemble_disagree")] = json.dumps(
                    {
                        "ensemble_version": self.ensemble_version,
                        "p_mean": scores[pair_id],
                        "judge": self.who,
                        "verdict": decision.verdict,
                        "template_hash": self.template_hash,
                    }
                )
        if retract:
            cur.execute(
                "UPDATE labels SET retracted_at = current_timestamp "
                "WHERE label_id IN (SELECT unnest(?::BIGINT[]))",
                [retract],
            ).fetchall()
            self.retracted += len(retract)
        if labels["pair_id"]:
            insert_labels(
                cur,
                pair_ids=labels["pair_id"],
                source="judge",
                who=self.who,
                verdicts=labels["verdict"],
                confidences=labels["confidence"],
                round=self.round,
                metas=labels["meta"],
            )
            self.labels += len(labels["pair_id"])
        if flags:
            _insert(
                cur,
                "pair_flags",
                {
                    "pair_id": [k[0] for k in flags],
                    "flag": [k[1] for k in flags],
                    "detail": list(flags.values()),
                },
                replace=True,
            )


def call_rows(endpoint: str, outcomes: list[Outcome]) -> dict[str, list[Any]]:
    """`judge_calls` rows (column lists) of the fresh calls in `outcomes`."""
    rows: dict[str, tuple[Any, ...]] = {}
    for outcome in outcomes:
        for key, model, request, completion in outcome.calls:
            if not key:  # a call that failed: counted by the batch, nothing to cache
                continue
            logprobs = None if completion.logprobs is None else json.dumps(completion.logprobs)
            rows[key] = (
                key,
                endpoint,
                model,
                json.dumps(request),
                completion.text,
                logprobs,
                completion.prompt_tokens,
                completion.completion_tokens,
            )
    names = (
        "cache_key",
        "endpoint",
        "model",
        "request",
        "response_text",
        "logprobs",
        "prompt_tokens",
        "completion_tokens",
    )
    return {name: [row[i] for row in rows.values()] for i, name in enumerate(names)}


def write_calls(store: PreferenceStore, endpoint: str, outcomes: list[Outcome]) -> int:
    """Cache the fresh calls of outcomes that are not pair judgements (the judge as a reward)."""
    rows = call_rows(endpoint, outcomes)
    with store.transaction() as cur:
        _insert(cur, "judge_calls", rows, replace=True)
    return len(rows["cache_key"])


def _insert(
    cur: Any,
    table: str,
    columns: dict[str, list[Any]],
    *,
    replace: bool = False,
    types: dict[str, pa.DataType] | None = None,
) -> None:
    """Insert column lists in one statement (an Arrow scan); `replace` overwrites on key conflicts."""
    first = next(iter(columns.values()))
    if not first:
        return
    types = {
        "p_a": pa.float64(),
        "confidence": pa.float64(),
        "verdict": pa.string(),
        "raw_text": pa.string(),
        "error": pa.string(),
        "cache_key": pa.string(),
        "logprobs": pa.string(),
        "response_text": pa.string(),
        **(types or {}),
    }
    arrow = pa.table(
        {name: pa.array(values, type=types.get(name)) for name, values in columns.items()}
    )
    name = f"_new_{table}"
    cur.register(name, arrow)
    try:
        names = ", ".join(columns)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        cur.execute(f"{verb} INTO {table} ({names}) SELECT {names} FROM {name}").fetchall()
    finally:
        cur.unregister(name)
