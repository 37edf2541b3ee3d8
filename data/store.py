"""`PreferenceStore`: the one way into prefloop's DuckDB file.

Single-writer model
-------------------
DuckDB lets one process open a file for writing (any number of threads inside
it) or several processes open it read-only, never both. prefloop follows that:

* The process that serves the app (or runs a CLI command) owns the file. Inside
  it, every write goes through `PreferenceStore.transaction()`, which holds a
  process-wide lock, so writes are serialised and each is one ACID transaction
  (DuckDB's WAL makes a committed transaction survive `kill -9`).
* Training jobs never open the store: they read a Parquet snapshot exported
  into their run folder and report back through files that the owner ingests.
* A second process that tries to open a file the owner holds gets
  `StoreLockedError` naming the file and the fix, before it can touch anything.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from data.errors import StoreError, StoreLockedError
from data.labels import insert_labels
from data.schema import MIGRATIONS, SCHEMA_VERSION, SOURCES, VERDICTS

DEFAULT_DB = "prefloop.duckdb"


def default_db_path() -> str:
    """`$PREFLOOP_DB`, then `./prefloop.duckdb`."""
    return os.environ.get("PREFLOOP_DB") or DEFAULT_DB


@dataclass(frozen=True)
class PairView:
    """A pair with its texts, oriented as stored (A has the smaller response id)."""

    pair_id: str
    prompt_id: str
    messages: list[dict[str, str]]
    prompt_text: str
    response_a_id: str
    response_b_id: str
    response_a: str
    response_b: str
    queue: str
    priority: float


class PreferenceStore:
    """Prompts, responses, pairs, labels, queues, scores, judge cache and runs in one file."""

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False):
        self.path = str(path)
        self.read_only = read_only
        if read_only and not Path(self.path).exists():
            raise StoreError(f"{self.path}: no such store; create it with `prefloop import`")
        try:
            self._con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreLockedError(
                    f"{self.path} is open for writing by another process "
                    f"({_holder(str(exc))}). prefloop allows one writer per store: stop that "
                    "process, or send the work through it (the app's tabs), or copy the file "
                    "and work on the copy.",
                    path=self.path,
                ) from None
            raise StoreError(f"{self.path}: cannot open store: {exc}") from None
        except duckdb.Error as exc:
            raise StoreError(
                f"{self.path}: not a readable DuckDB store ({exc}); "
                "check the path or move the file aside"
            ) from None
        self._write_lock = threading.RLock()
        self._local = threading.local()
        # Data derived from the store and kept in this (the owning) process, such as the
        # head of the human queue; cleared whenever the queue changes shape.
        self.cache: dict[str, Any] = {}
        if not read_only:
            self._migrate()
        else:
            self._check_version()

    # -- connection handling ----------------------------------------------------------

    def close(self) -> None:
        with self._write_lock:
            self._con.close()

    def __enter__(self) -> PreferenceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for the calling thread (DuckDB connections are not thread-safe)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
        return cur

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One serialised write transaction; rolled back whole on any exception."""
        if self.read_only:
            raise StoreError(
                f"{self.path} was opened read-only; open it without read_only to write"
            )
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION").fetchall()
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK").fetchall()
                raise
            cur.execute("COMMIT").fetchall()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.cursor().execute(sql, params or []).fetchall()

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.cursor().execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.cursor().execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

    # -- schema -----------------------------------------------------------------------

    def schema_version(self) -> int:
        has_meta = self.scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
        )
        if not has_meta:
            return 0
        value = self.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(value or 0)

    def _check_version(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this prefloop "
                f"({SCHEMA_VERSION}); upgrade prefloop"
            )

    def _migrate(self) -> None:
        self._check_version()
        with self.transaction() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
            ).fetchall()
        version = self.schema_version()
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction() as cur:
                cur.execute(sql).fetchall()
                cur.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(number)]
                ).fetchall()

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        value = self.scalar("SELECT value FROM meta WHERE key = ?", [key])
        return default if value is None else value

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value]).fetchall()

    def current_round(self) -> int:
        return int(self.get_meta("round", "0") or 0)

    # -- reading pairs ----------------------------------------------------------------

    def get_pair(self, pair_id: str) -> PairView:
        rows = self._pair_views("WHERE p.pair_id = ?", [pair_id])
        if not rows:
            raise StoreError(f"no pair with id {pair_id!r} in {self.path}")
        return rows[0]

    def pairs(self, where: str = "", params: Sequence[Any] | None = None) -> list[PairView]:
        """Pairs with texts; `where` is SQL over alias `p` (pairs)."""
        return self._pair_views(where, params or [])

    def _pair_views(self, where: str, params: Sequence[Any]) -> list[PairView]:
        import json

        rows = self.query(
            f"""
            SELECT p.pair_id, p.prompt_id, pr.messages, pr.text, p.response_a_id,
                   p.response_b_id, ra.text, rb.text, p.queue, p.priority
            FROM pairs p
            JOIN prompts pr USING (prompt_id)
            JOIN responses ra ON ra.response_id = p.response_a_id
            JOIN responses rb ON rb.response_id = p.response_b_id
            {where}
            """,
            params,
        )
        return [
            PairView(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9])
            for r in rows
        ]

    def count(self, table: str) -> int:
        if table not in _COUNTABLE:
            raise StoreError(f"unknown table {table!r}; one of {sorted(_COUNTABLE)}")
        return int(self.scalar(f"SELECT count(*) FROM {table}"))

    # -- labels -----------------------------------------------------------------------

    def add_label(
        self,
        pair_id: str,
        *,
        source: str,
        who: str,
        verdict: str,
        confidence: float | None = None,
        rationale: str | None = None,
        swapped: bool = False,
        round: int | None = None,
        meta: dict[str, Any] | None = None,
        cursor: duckdb.DuckDBPyConnection | None = None,
    ) -> int:
        """Store one label (verdict relative to the stored A/B) and return its id.

        Pass `cursor` to write inside a transaction the caller already holds. Annotators'
        votes go through `data.click_batch` (lease checks); this is for corrections and
        scripts.
        """
        check_label(source, verdict, confidence, rationale)
        if cursor is None:
            with self.transaction() as cur:
                return self.add_label(
                    pair_id,
                    source=source,
                    who=who,
                    verdict=verdict,
                    confidence=confidence,
                    rationale=rationale,
                    swapped=swapped,
                    round=round,
                    meta=meta,
                    cursor=cur,
                )
        known = cursor.execute("SELECT 1 FROM pairs WHERE pair_id = ?", [pair_id]).fetchall()
        if not known:
            raise StoreError(f"cannot label unknown pair {pair_id!r}")
        ((label_id, _, _),) = insert_labels(
            cursor,
            pair_ids=[pair_id],
            source=source,
            who=who,
            verdicts=[verdict],
            confidences=[confidence],
            rationales=[rationale],
            swapped=[swapped],
            round=round,
            metas=[meta],
        )
        if source == "human" and record_human_labels(cursor, [pair_id]):
            self.cache.clear()  # the cached head of the queue holds open pairs only
        return label_id

    def retract_label(
        self,
        label_id: int,
        *,
        who: str | None = None,
        cursor: duckdb.DuckDBPyConnection | None = None,
    ) -> bool:
        """Undo a label (kept for audit with `retracted_at`); False if there was none to undo.

        Pass `cursor` to write inside a transaction the caller already holds.
        """
        if cursor is None:
            with self.transaction() as cur:
                return self.retract_label(label_id, who=who, cursor=cur)
        sql = "UPDATE labels SET retracted_at = current_timestamp WHERE label_id = ? AND retracted_at IS NULL"
        params: list[Any] = [label_id]
        if who is not None:
            sql += " AND who = ?"
            params.append(who)
        undone = cursor.execute(sql + " RETURNING pair_id, source", params).fetchall()
        if undone and undone[0][1] == "human":
            refresh_human_queue(cursor, [undone[0][0]])
            self.cache.clear()
        return bool(undone)

    def labels(self, where: str = "", params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Active (not retracted) labels; `where` is extra SQL conditions starting with AND."""
        return self.query_dicts(
            f"SELECT * FROM labels WHERE retracted_at IS NULL {where} ORDER BY label_id",
            params,
        )


def record_human_labels(cur: duckdb.DuckDBPyConnection, pair_ids: Sequence[str]) -> list[str]:
    """Keep `human_queue` in step with new human labels on `pair_ids` (a pair may repeat).

    Counts go up, and a pair that has all its human labels leaves the table, so the top
    of the queue stays open pairs and the next-pair scan stops early. Returns the pairs
    that left.
    """
    counts = Counter(pair_ids)
    params = {"ids": list(counts), "adds": list(counts.values())}
    # Most labelled pairs are now complete (one label needed): one DELETE, no UPDATE.
    closed = cur.execute(
        """
        DELETE FROM human_queue USING (SELECT unnest($ids) AS pair_id, unnest($adds) AS add) n
        WHERE human_queue.pair_id = n.pair_id AND human_labels + n.add >= needed_labels
        RETURNING human_queue.pair_id
        """,
        params,
    ).fetchall()
    if len(closed) < len(counts):
        cur.execute(
            """
            UPDATE human_queue SET human_labels = human_labels + n.add
            FROM (SELECT unnest($ids) AS pair_id, unnest($adds) AS add) n
            WHERE human_queue.pair_id = n.pair_id
            """,
            params,
        ).fetchall()
    return [row[0] for row in closed]


def refresh_human_queue(
    cursor: duckdb.DuckDBPyConnection, pair_ids: Sequence[str] | None = None
) -> None:
    """Recount human labels for these pairs (None: every pair) and keep in `human_queue` the
    human-queue pairs still wanting labels, appended in priority order so that the
    next-pair scan over a full rebuild stops early."""
    params: dict[str, Any] = {}
    only_queue = only_pairs = ""
    if pair_ids is not None:
        params["ids"] = list(pair_ids)
        only_queue = "WHERE pair_id IN (SELECT unnest($ids))"
        only_pairs = "AND p.pair_id IN (SELECT unnest($ids))"
    cursor.execute(f"DELETE FROM human_queue {only_queue}", params).fetchall()
    cursor.execute(
        f"""
        INSERT INTO human_queue
        SELECT p.pair_id, p.priority, p.needed_labels, count(l.label_id)
        FROM pairs p LEFT JOIN labels l
          ON l.pair_id = p.pair_id AND l.source = 'human' AND l.retracted_at IS NULL
        WHERE p.queue = 'human' {only_pairs}
        GROUP BY ALL
        HAVING count(l.label_id) < p.needed_labels
        ORDER BY p.priority DESC, p.pair_id
        """,
        params,
    ).fetchall()


MAX_RATIONALE_CHARS = 4_000  # a label's rationale; longer ones are refused, not cut


def check_rationale(rationale: str | None) -> None:
    """Every label path (add_label, the annotate click batch) refuses an over-long rationale."""
    if rationale is not None and len(rationale) > MAX_RATIONALE_CHARS:
        raise StoreError(
            f"rationale is {len(rationale)} characters, over the {MAX_RATIONALE_CHARS}-character "
            "limit; shorten it to the reason for the verdict"
        )


def check_label(
    source: str, verdict: str, confidence: float | None, rationale: str | None = None
) -> None:
    """A label's fields, as every label path checks them (`add_label`, the click batch)."""
    if source not in SOURCES:
        raise StoreError(f"label source {source!r} is not one of {', '.join(SOURCES)}")
    if verdict not in VERDICTS:
        raise StoreError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    if confidence is not None and not 0.0 <= confidence <= 1.0:
        raise StoreError(f"confidence {confidence} must be between 0 and 1")
    check_rationale(rationale)


def _holder(message: str) -> str:
    """DuckDB's lock error names the holder's PID; keep just that part when present."""
    marker = "PID"
    if marker in message:
        tail = message[message.index(marker) :]
        return tail.split(")")[0].strip().rstrip(".")
    return "lock held"


_COUNTABLE = {
    "prompts",
    "responses",
    "prompt_responses",
    "pairs",
    "labels",
    "label_corrections",
    "reference_labels",
    "leases",
    "pair_flags",
    "embeddings",
    "ensembles",
    "scores",
    "judge_calls",
    "judgements",
    "runs",
    "ref_logprobs",
    "feedback",
}
