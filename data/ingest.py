"""Bulk writes of prompts, responses, pairs and their labels in one transaction.

Rows are collected in Python, deduplicated, handed to DuckDB as Arrow tables and
inserted set-wise: that is what makes 100k pairs a few seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from data.feedback import insert_feedback
from data.ids import (
    canonical_messages_json,
    canonical_order,
    pair_id,
    prompt_id_from_json,
    render_messages,
    response_id,
)
from data.labels import insert_labels
from data.schema import swap_verdict
from data.shapes import PairRecord, Record, ResponsesRecord, UnpairedRecord
from data.store import PreferenceStore, refresh_human_queue


@dataclass
class IngestResult:
    imported_pairs: int = 0
    duplicates: int = 0
    labels: int = 0
    duplicate_labels: int = 0
    reference_labels: int = 0  # with as_reference: stored in reference_labels instead
    feedback: int = 0  # unpaired thumbs up/down rows new or changed (data.feedback)
    responses: int = 0
    pair_ids: list[str] = field(default_factory=list)


@dataclass
class _Batch:
    prompts: dict[str, tuple[str, str]] = field(default_factory=dict)
    responses: dict[str, str] = field(default_factory=dict)
    prompt_responses: dict[tuple[str, str], None] = field(default_factory=dict)
    pairs: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    labels: dict[tuple[str, str], float | None] = field(default_factory=dict)
    feedback: dict[tuple[str, str], bool] = field(default_factory=dict)  # the last row wins
    rows_seen: int = 0
    in_batch_duplicates: int = 0

    def add_prompt(self, messages: list[dict[str, str]]) -> str:
        messages_json = canonical_messages_json(messages)
        pid = prompt_id_from_json(messages_json)
        if pid not in self.prompts:
            self.prompts[pid] = (messages_json, render_messages(messages))
        return pid

    def add_response(self, pid: str, text: str) -> str:
        rid = response_id(text)
        self.responses.setdefault(rid, text)
        self.prompt_responses.setdefault((pid, rid), None)
        return rid

    def add_pair(self, record: PairRecord) -> None:
        self.rows_seen += 1
        pid = self.add_prompt(record.messages)
        r1 = self.add_response(pid, record.response_1)
        r2 = self.add_response(pid, record.response_2)
        a, b, flipped = canonical_order(r1, r2)
        key = pair_id(pid, a, b)
        if key in self.pairs:
            self.in_batch_duplicates += 1
        else:
            self.pairs[key] = (pid, a, b)
        if record.verdict is not None:
            verdict = swap_verdict(record.verdict) if flipped else record.verdict
            # confidence is P(stated verdict): renaming A/B does not change it
            self.labels.setdefault((key, verdict), record.confidence)


def _batch_of(records: Iterable[Record]) -> _Batch:
    batch = _Batch()
    for record in records:
        if isinstance(record, ResponsesRecord):
            pid = batch.add_prompt(record.messages)
            for text in record.responses:
                batch.add_response(pid, text)
            for pair in record.pairs:
                batch.add_pair(pair)
        elif isinstance(record, UnpairedRecord):
            pid = batch.add_prompt(record.messages)
            batch.feedback[(pid, batch.add_response(pid, record.completion))] = record.desirable
        else:
            batch.add_pair(record)
    return batch


def pair_verdicts(records: Iterable[Record]) -> dict[str, set[str]]:
    """pair_id -> the verdicts `records` give it (relative to the stored A/B; empty when
    none), as `ingest` would store them: for gold answers (`data.gold`)."""
    batch = _batch_of(records)
    out: dict[str, set[str]] = {pair: set() for pair in batch.pairs}
    for pair, verdict in batch.labels:
        out[pair].add(verdict)
    return out


def ingest(
    store: PreferenceStore,
    records: Iterable[Record],
    *,
    origin: str,
    who: str = "import",
    source: str = "import",
    cursor: duckdb.DuckDBPyConnection | None = None,
    as_reference: bool = False,
) -> IngestResult:
    """Store records; pairs already present are counted as duplicates and left as they are.

    A label is skipped (counted in ``duplicate_labels``) when the pair already has an
    active label with the same source, who and verdict: re-importing never doubles.
    With `as_reference`, labels go to `reference_labels` instead: kept only to measure
    against, never trained on or routed around.
    """
    batch = _batch_of(records)
    if cursor is None:
        with store.transaction() as cur:
            return _write(
                store, cur, batch, origin=origin, who=who, source=source, as_reference=as_reference
            )
    return _write(
        store, cursor, batch, origin=origin, who=who, source=source, as_reference=as_reference
    )


def _write(
    store: PreferenceStore,
    cur: duckdb.DuckDBPyConnection,
    batch: _Batch,
    *,
    origin: str,
    who: str,
    source: str,
    as_reference: bool = False,
) -> IngestResult:
    round = store.current_round()
    result = IngestResult()
    prompts = pa.table(
        {
            "prompt_id": list(batch.prompts),
            "messages": [v[0] for v in batch.prompts.values()],
            "text": [v[1] for v in batch.prompts.values()],
        }
    )
    cur.register("_new_prompts", prompts)
    cur.execute(
        "INSERT INTO prompts (prompt_id, messages, text) SELECT prompt_id, messages, text "
        "FROM _new_prompts WHERE prompt_id NOT IN (SELECT prompt_id FROM prompts)"
    ).fetchall()
    responses = pa.table(
        {"response_id": list(batch.responses), "text": list(batch.responses.values())}
    )
    cur.register("_new_responses", responses)
    before = cur.execute("SELECT count(*) FROM responses").fetchall()[0][0]
    cur.execute(
        "INSERT INTO responses (response_id, text) SELECT response_id, text FROM _new_responses "
        "WHERE response_id NOT IN (SELECT response_id FROM responses)"
    ).fetchall()
    result.responses = cur.execute("SELECT count(*) FROM responses").fetchall()[0][0] - before
    links = pa.table(
        {
            "prompt_id": [k[0] for k in batch.prompt_responses],
            "response_id": [k[1] for k in batch.prompt_responses],
        }
    )
    cur.register("_new_links", links)
    cur.execute(
        "INSERT INTO prompt_responses (prompt_id, response_id, origin) "
        "SELECT n.prompt_id, n.response_id, ? FROM _new_links n ANTI JOIN prompt_responses p "
        "ON p.prompt_id = n.prompt_id AND p.response_id = n.response_id",
        [origin],
    ).fetchall()
    pairs = pa.table(
        {
            "pair_id": list(batch.pairs),
            "prompt_id": [v[0] for v in batch.pairs.values()],
            "response_a_id": [v[1] for v in batch.pairs.values()],
            "response_b_id": [v[2] for v in batch.pairs.values()],
        }
    )
    cur.register("_new_pairs", pairs)
    new_ids = [
        r[0]
        for r in cur.execute(
            "INSERT INTO pairs (pair_id, prompt_id, response_a_id, response_b_id, origin) "
            "SELECT pair_id, prompt_id, response_a_id, response_b_id, ? FROM _new_pairs "
            "WHERE pair_id NOT IN (SELECT pair_id FROM pairs) RETURNING pair_id",
            [origin],
        ).fetchall()
    ]
    result.imported_pairs = len(new_ids)
    result.pair_ids = list(batch.pairs)
    result.duplicates = batch.rows_seen - result.imported_pairs
    if batch.labels:
        labels = pa.table(
            {
                "pair_id": [k[0] for k in batch.labels],
                "verdict": [k[1] for k in batch.labels],
                "confidence": pa.array(list(batch.labels.values()), type=pa.float64()),
            }
        )
        cur.register("_new_labels", labels)
        if as_reference:
            inserted = cur.execute(
                """
                INSERT INTO reference_labels (pair_id, who, verdict, confidence)
                SELECT n.pair_id, ?, n.verdict, n.confidence FROM _new_labels n
                ANTI JOIN reference_labels old
                  ON old.pair_id = n.pair_id AND old.who = ? AND old.verdict = n.verdict
                RETURNING pair_id
                """,
                [who, who],
            ).fetchall()
            result.reference_labels = len(inserted)
        else:
            fresh = cur.execute(
                """
                SELECT n.pair_id, n.verdict, n.confidence
                FROM _new_labels n ANTI JOIN (
                    SELECT pair_id, verdict FROM labels
                    WHERE source = ? AND who = ? AND retracted_at IS NULL
                ) old ON old.pair_id = n.pair_id AND old.verdict = n.verdict
                """,
                [source, who],
            ).fetchall()
            inserted = insert_labels(
                cur,
                pair_ids=[r[0] for r in fresh],
                source=source,
                who=who,
                verdicts=[r[1] for r in fresh],
                confidences=[r[2] for r in fresh],
                round=round,
                metas={"origin": origin},
            )
            result.labels = len(inserted)
            if source == "human" and inserted:
                refresh_human_queue(cur, list({k[0] for k in batch.labels}))
                store.cache.clear()
        result.duplicate_labels = len(batch.labels) - len(inserted)
    result.feedback = insert_feedback(cur, batch.feedback, who=who, source=source)
    for name in ("_new_prompts", "_new_responses", "_new_links", "_new_pairs", "_new_labels"):
        cur.unregister(name)
    return result
