"""The human queue: routing results and leases (who is shown which pair next).

A pair in the human queue is offered to one annotator at a time (a lease that
expires), never to an annotator who already labelled it, until it has
`needed_labels` human labels (overlap). Claiming runs in one store transaction, so two
annotators never hold the same pair. Human labels are written by `data.click_batch`.

The app labels with `leased_only=True`: a label is accepted only for the pair leased to
that annotator, the one they were shown. A lease that ran out still counts while nobody
else has been given the pair. Every refusal then says `NOT_YOUR_PAIR`, whatever the
reason (unknown id, leased to someone else, labelled already, never shown), so an
annotator learns nothing about pairs that are not theirs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import duckdb

from data.errors import StoreError
from data.gold import gold_picks
from data.store import PreferenceStore, refresh_human_queue

# Two stages keep this fast at millions of pairs: a top-K over `human_queue` (stored in
# priority order, so the scan stops early; cached, see `top_open_ids`), then the lease and
# own-label checks on those K only (`_HOLDERS_SQL`, one query for a whole batch of
# annotators). K grows 4x until enough candidates survive or the queue is exhausted.
_TOP_OPEN_SQL = """
SELECT pair_id FROM human_queue
WHERE human_labels < needed_labels
ORDER BY priority DESC, pair_id
LIMIT $k
"""
# Who holds or labelled what, among the head of the queue ($ids) and the annotators who
# ask ($who). Two small tables (leases, and labels filtered by annotator), no big scan.
_HOLDERS_SQL = """
SELECT 'lease', pair_id, annotator FROM leases
WHERE expires_at > now()::TIMESTAMP
  AND (list_contains($ids, pair_id) OR list_contains($who, annotator))
UNION ALL
SELECT 'label', pair_id, who FROM labels
WHERE list_contains($who, who) AND source = 'human' AND retracted_at IS NULL
  AND list_contains($ids, pair_id)
"""
# The same question in one plain query: the baseline that bench/store.py compares against.
NAIVE_NEXT_PAIRS_SQL = """
SELECT p.pair_id
FROM pairs p
WHERE p.queue = 'human'
  AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.pair_id = p.pair_id
                  AND l.expires_at > now()::TIMESTAMP AND l.annotator <> $annotator)
  AND NOT EXISTS (SELECT 1 FROM labels x WHERE x.pair_id = p.pair_id AND x.source = 'human'
                  AND x.who = $annotator AND x.retracted_at IS NULL)
  AND p.needed_labels > (SELECT count(*) FROM labels y WHERE y.pair_id = p.pair_id
                         AND y.source = 'human' AND y.retracted_at IS NULL)
ORDER BY p.priority DESC, p.pair_id
LIMIT $limit
"""


_TOP_CACHE = "queue.top_open_ids"

NOT_YOUR_PAIR = (
    "that pair is not the one shown to you (its lease may have gone to someone else); "
    "ask for the next pair"
)


def top_open_ids(
    store: PreferenceStore, cur: duckdb.DuckDBPyConnection, k: int
) -> tuple[list[str], bool]:
    """The k best open pair ids, cached in the owning process until the queue changes shape.

    The store is written only by this process. Routing, undo, label imports and
    `add_label` clear `store.cache` when they change which pairs are open, and batched
    clicks drop the pairs they close (`forget_closed`), so every id in the list is open;
    some may be leased or labelled by the asking annotator, which callers check.
    Second value: the list may be cut short (more open pairs lie below it).
    """
    cached = store.cache.get(_TOP_CACHE)
    if cached is None or cached[0] < k:
        ids = [r[0] for r in cur.execute(_TOP_OPEN_SQL, {"k": k}).fetchall()]
        cached = (k, ids, len(ids) >= k)
        store.cache[_TOP_CACHE] = cached
    return cached[1], cached[2]


def forget_closed(store: PreferenceStore, pair_ids: Collection[str]) -> None:
    """Drop pairs that now have all their human labels from the cached head of the queue."""
    cached = store.cache.get(_TOP_CACHE)
    if cached is not None and pair_ids:
        gone = set(pair_ids)
        store.cache[_TOP_CACHE] = (cached[0], [i for i in cached[1] if i not in gone], cached[2])


def drop_cached_head(store: PreferenceStore) -> None:
    """Read the head of the queue again next time (it no longer holds enough candidates)."""
    store.cache.pop(_TOP_CACHE, None)


class NextPairRequest(Protocol):
    """Who asks for a next pair, and the pairs they would rather not get (e.g. skipped)."""

    @property
    def annotator(self) -> str: ...

    @property
    def avoid(self) -> Collection[str]: ...


@dataclass(frozen=True)
class AskingAnnotator:
    """A `NextPairRequest` on its own (a click carries one too: `data.click_batch.Click`)."""

    annotator: str
    avoid: Collection[str] = ()


@dataclass
class _Head:
    """The cached head of the queue, with who holds or labelled its pairs."""

    ids: list[str]
    maybe_more: bool  # more open pairs lie below it
    holder: dict[str, str]  # pair -> annotator with a live lease on it
    held: dict[str, str]  # annotator -> a pair they hold (anywhere in the queue)
    done_by: dict[str, set[str]]  # pair -> annotators who labelled it

    def free_for(self, annotator: str, taken: Collection[str] = ()) -> list[str]:
        """Pairs `annotator` may label now, best first: not leased to anyone else, not
        labelled by them, not in `taken`."""
        return [
            pair_id
            for pair_id in self.ids
            if pair_id not in taken
            and self.holder.get(pair_id, annotator) == annotator
            and annotator not in self.done_by.get(pair_id, ())
        ]


def _read_head(
    store: PreferenceStore,
    cur: duckdb.DuckDBPyConnection,
    k: int,
    who: Sequence[str],
    labelled_now: Collection[str] = (),
) -> _Head:
    """The k best open pairs and, in one query, the leases and labels that concern them or
    `who`. Leases on pairs in `labelled_now` are ignored (they end in this transaction)."""
    ids, maybe_more = top_open_ids(store, cur, k)
    head = _Head(ids, maybe_more, {}, {}, {})
    for kind, pair_id, person in cur.execute(_HOLDERS_SQL, {"ids": ids, "who": who}).fetchall():
        if kind == "label":
            head.done_by.setdefault(pair_id, set()).add(person)
        elif pair_id not in labelled_now:
            head.holder[pair_id] = person
            head.held.setdefault(person, pair_id)
    return head


def choose_next(
    store: PreferenceStore,
    cur: duckdb.DuckDBPyConnection,
    wants: Sequence[NextPairRequest],
    labelled_now: Collection[str] = (),
) -> list[str | None]:
    """The next pair for each want, best first, never one pair for two annotators.

    An annotator who holds a lease keeps that pair (one lease each). Candidates come
    from the cached head of the queue (open pairs only); when it holds nothing left for
    some annotator (or only pairs they avoid), a deeper head is read, as often as needed.
    Leases on pairs in `labelled_now` (labelled in this transaction) do not count.
    With gold pairs in the store, a want may get one of them (`data.gold.gold_picks`).
    """
    who = sorted({w.annotator for w in wants})
    # Some wants get a gold pair instead, blind (`data.gold`; nothing while there is none).
    chosen: dict[int, str | None] = dict(gold_picks(store, cur, wants, labelled_now))
    taken: set[str] = {p for p in chosen.values() if p is not None}
    k = max(64, 4 * (len(wants) + max(len(w.avoid) for w in wants)))
    while len(chosen) < len(wants):
        head = _read_head(store, cur, k, who, labelled_now)
        taken |= set(head.held.values())
        for index, want in enumerate(wants):
            if index in chosen:
                continue
            if want.annotator in head.held:
                chosen[index] = head.held[want.annotator]
                continue
            free = head.free_for(want.annotator, taken)
            pick = next((p for p in free if p not in want.avoid), None)
            if pick is None and head.maybe_more:
                continue  # look deeper for this one
            pick = pick or (free[0] if free else None)
            chosen[index] = pick
            if pick is not None:
                taken.add(pick)
                head.held[want.annotator] = pick
        if len(chosen) < len(wants):
            drop_cached_head(store)
            k *= 4
    return [chosen[i] for i in range(len(wants))]


@dataclass(frozen=True)
class Assignment:
    """Where the router sends one pair."""

    pair_id: str
    queue: str  # human, judge or unrouted
    priority: float = 0.0
    reason: str | None = None
    needed_labels: int = 1


def assign(
    store: PreferenceStore, assignments: Sequence[Assignment], *, round: int | None = None
) -> int:
    """Write routing decisions in one transaction; returns how many pairs changed."""
    import pyarrow as pa

    for a in assignments:
        if a.queue not in ("human", "judge", "unrouted"):
            raise StoreError(
                f"queue {a.queue!r} for pair {a.pair_id} is not human, judge or unrouted"
            )
    table = pa.table(
        {
            "pair_id": [a.pair_id for a in assignments],
            "queue": [a.queue for a in assignments],
            "priority": pa.array([float(a.priority) for a in assignments], type=pa.float64()),
            "reason": pa.array([a.reason for a in assignments], type=pa.string()),
            "needed": pa.array([a.needed_labels for a in assignments], type=pa.int32()),
        }
    )
    with store.transaction() as cur:
        cur.register("_routing", table)
        changed = cur.execute(
            """
            UPDATE pairs SET queue = r.queue, priority = r.priority, route_reason = r.reason,
                             needed_labels = r.needed, routed_round = ?
            FROM _routing r WHERE pairs.pair_id = r.pair_id RETURNING pairs.pair_id
            """,
            [store.current_round() if round is None else round],
        ).fetchall()
        # Live leases stay on human-queue pairs only: a click on a leased pair relies on it.
        cur.execute(
            "DELETE FROM leases WHERE pair_id IN (SELECT pair_id FROM _routing "
            "WHERE queue <> 'human')"
        ).fetchall()
        cur.unregister("_routing")
        refresh_human_queue(cur)
        store.cache.clear()
    return len(changed)


def next_pair_ids(store: PreferenceStore, annotator: str, limit: int = 1) -> list[str]:
    """Highest-priority pairs this annotator may label now (read only, no lease taken)."""
    cur = store.cursor()
    k = max(64, 4 * limit)
    while True:
        head = _read_head(store, cur, k, [annotator])
        free = head.free_for(annotator)
        if len(free) >= limit or not head.maybe_more:
            return free[:limit]
        drop_cached_head(store)
        k *= 4


def claim_next(
    store: PreferenceStore,
    annotator: str,
    lease_seconds: float = 600.0,
    *,
    avoid: Collection[str] = (),
) -> str | None:
    """Lease the best pair to `annotator` and return its id, or None when the queue is empty.

    An annotator holds at most one lease: asking again returns the pair already held.
    Pairs in `avoid` (e.g. ones this annotator skipped) are offered only when nothing
    else is left.
    """
    with store.transaction() as cur:
        return claim_in(store, cur, annotator, lease_seconds, avoid)


def claim_in(
    store: PreferenceStore,
    cur: duckdb.DuckDBPyConnection,
    annotator: str,
    lease_seconds: float,
    avoid: Collection[str],
) -> str | None:
    """`claim_next` inside the caller's transaction `cur`."""
    (pair_id,) = choose_next(store, cur, [AskingAnnotator(annotator, avoid)])
    if pair_id is not None:
        lease(cur, [(pair_id, annotator, lease_seconds)])
    return pair_id


def lease(
    cur: duckdb.DuckDBPyConnection,
    picks: Sequence[tuple[str, str, float]],
    labelled_now: Sequence[str] = (),
) -> None:
    """Lease each (pair, annotator, seconds) in `picks`, ending every other lease on those
    pairs or of those annotators (one lease each), and the leases on `labelled_now` pairs.
    A pair picked twice (two clicks of one annotator in a batch) is leased once."""
    picks = list({pair_id: (pair_id, who, s) for pair_id, who, s in picks}.values())
    if picks:
        record_lease_starts(cur, picks)
    # DELETE + INSERT: cheaper in DuckDB than INSERT OR REPLACE on a keyed table
    cur.execute(
        "DELETE FROM leases WHERE list_contains($ids, pair_id) OR list_contains($who, annotator)",
        {"ids": [*labelled_now, *(p for p, _, _ in picks)], "who": [a for _, a, _ in picks]},
    ).fetchall()
    if picks:
        cur.execute(
            """
            INSERT INTO leases
            SELECT unnest($ids), unnest($who), now()::TIMESTAMP + to_microseconds(unnest($us))
            """,
            {
                "ids": [p for p, _, _ in picks],
                "who": [a for _, a, _ in picks],
                "us": [int(seconds * 1e6) for _, _, seconds in picks],
            },
        ).fetchall()


def record_lease_starts(
    cur: duckdb.DuckDBPyConnection, picks: Sequence[tuple[str, str, float]]
) -> None:
    """Note when each (pair, annotator) of `picks` starts, unless that annotator holds the
    pair already (a reload keeps its start): time per label is lease to label."""
    cur.execute(
        """
        INSERT INTO lease_starts (pair_id, annotator)
        SELECT n.pair_id, n.annotator
        FROM (SELECT unnest($ids) AS pair_id, unnest($who) AS annotator) n
        WHERE NOT EXISTS (SELECT 1 FROM leases l
                          WHERE l.pair_id = n.pair_id AND l.annotator = n.annotator)
        """,
        {"ids": [p for p, _, _ in picks], "who": [a for _, a, _ in picks]},
    ).fetchall()


def release(store: PreferenceStore, annotator: str) -> None:
    """Give back whatever this annotator holds (skip, log out)."""
    with store.transaction() as cur:
        cur.execute("DELETE FROM leases WHERE annotator = ?", [annotator]).fetchall()


def lease_back(
    cur: duckdb.DuckDBPyConnection, pair_id: str, annotator: str, lease_seconds: float
) -> bool:
    """Lease `pair_id` to `annotator` again (an undo) unless it left the human queue (a
    gold pair, never queued, is leased back like any other) or someone else holds it now;
    True if leased."""
    blocked = cur.execute(
        "SELECT EXISTS (SELECT 1 FROM leases WHERE pair_id = $p AND annotator <> $who "
        "AND expires_at > now()::TIMESTAMP) "
        "OR (NOT EXISTS (SELECT 1 FROM pairs WHERE pair_id = $p AND queue = 'human') "
        "AND NOT EXISTS (SELECT 1 FROM gold_answers WHERE pair_id = $p))",
        {"p": pair_id, "who": annotator},
    ).fetchall()[0][0]
    if not blocked:
        lease(cur, [(pair_id, annotator, lease_seconds)])
    return not blocked


# -- skips: the pairs an annotator passed over, offered to them again only when nothing
# else is left (kept in the store so that a restart keeps them)


def skip_pair(store: PreferenceStore, annotator: str, pair_id: str | None) -> None:
    """Give back what `annotator` holds and remember `pair_id` (if any) as skipped by them."""
    with store.transaction() as cur:
        cur.execute("DELETE FROM leases WHERE annotator = ?", [annotator]).fetchall()
        if pair_id:
            cur.execute(
                "INSERT OR REPLACE INTO skips (annotator, pair_id) "
                "SELECT ?, pair_id FROM pairs WHERE pair_id = ?",
                [annotator, pair_id],
            ).fetchall()


def skipped_pairs(store: PreferenceStore, annotator: str, limit: int) -> list[str]:
    """The newest `limit` pairs `annotator` skipped, oldest first."""
    rows = store.query(
        "SELECT pair_id FROM skips WHERE annotator = ? ORDER BY skipped_at DESC, pair_id LIMIT ?",
        [annotator, limit],
    )
    return [r[0] for r in reversed(rows)]


def forget_skips(store: PreferenceStore, annotator: str) -> None:
    with store.transaction() as cur:
        cur.execute("DELETE FROM skips WHERE annotator = ?", [annotator]).fetchall()


@dataclass(frozen=True)
class QueueCounts:
    """The queues in the words every surface uses (`route`, `stats`, the app's tabs).

    `human` counts every pair routed to humans, labelled or not; `human_open` the ones
    that still want a human label (what annotators can be given). `judge` counts the
    pairs routed to the judge; `judge_unlabelled` the ones no judge has labelled yet.
    """

    unrouted: int
    human: int
    human_open: int
    judge: int
    judge_unlabelled: int

    def as_dict(self) -> dict[str, int]:
        return {
            "unrouted": self.unrouted,
            "human": self.human,
            "human_open": self.human_open,
            "judge": self.judge,
            "judge_unlabelled": self.judge_unlabelled,
        }

    def sentence(self) -> str:
        return (
            f"human queue {self.human:,} pairs ({self.human_open:,} still want a human label) · "
            f"judge queue {self.judge:,} pairs ({self.judge_unlabelled:,} without a judge label) · "
            f"unrouted {self.unrouted:,}"
        )


def queue_counts(store: PreferenceStore) -> QueueCounts:
    row = store.query(
        """
        SELECT count(*) FILTER (WHERE queue = 'unrouted'),
               count(*) FILTER (WHERE queue = 'human'),
               (SELECT count(*) FROM human_queue WHERE human_labels < needed_labels),
               count(*) FILTER (WHERE queue = 'judge'),
               count(*) FILTER (WHERE queue = 'judge' AND NOT EXISTS (
                   SELECT 1 FROM labels l WHERE l.pair_id = p.pair_id AND l.source = 'judge'
                     AND l.retracted_at IS NULL))
        FROM pairs p
        """
    )[0]
    return QueueCounts(*(int(v or 0) for v in row))
