"""The one human-label path: annotator clicks, many labels and next-pair leases a transaction.

The store has one writer, so with many annotators every click waits for the clicks
before it. Doing each click's dozen statements and commit one after another costs
about 10-15 ms a click; 16 busy annotators then wait 16 x that. Here the clicks that
arrive while a batch is being written are written together: a fixed handful of
set-based statements and one commit per batch, whatever its size (group commit).

A click is acknowledged only after its batch committed, so a crash loses no
acknowledged label. Each click is checked (known pair, in the human queue, not leased to
someone else, not already labelled by this annotator); a click that fails a check gets its
own `StoreError` and does not affect the others in its batch. `submit_human_label` is one
click on its own that leases no next pair (scripts, benchmarks, tests): the same checks and
the same INSERT, so every human vote is written here. A click with `leased_only`
(every click from the app) is accepted only on the pair leased to its annotator, and any
refusal says `data.queue.NOT_YOUR_PAIR`, nothing about other pairs. A click whose fields
have the wrong types is refused on its own, before the batch's statements see it.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

import duckdb

from data.errors import StoreError
from data.labels import insert_labels
from data.queue import (
    NOT_YOUR_PAIR,
    choose_next,
    drop_cached_head,
    forget_closed,
    lease,
    lease_back,
)
from data.row_source import row_source
from data.schema import swap_verdict
from data.store import PairView, PreferenceStore, check_label, record_human_labels

# Per click: who holds a live lease on its pair, whether the clicker labelled it already,
# and who the pair was last leased to (live or run out; see `data.queue`). Live leases
# exist only on human-queue pairs (`data.queue.assign` ends the others), so a click on a
# pair the clicker holds needs no look at `pairs`, the biggest table.
_CHECK_SQL = """
SELECT c.idx,
       (SELECT first(l.annotator) FROM leases l WHERE l.pair_id = c.pair_id
          AND l.expires_at > now()::TIMESTAMP),
       EXISTS (SELECT 1 FROM labels x WHERE x.pair_id = c.pair_id AND x.source = 'human'
               AND x.who = c.who AND x.retracted_at IS NULL),
       (SELECT first(l.annotator) FROM leases l WHERE l.pair_id = c.pair_id)
FROM {clicks}
"""
_CHECK_PAIRS_SQL = """
SELECT c.idx, p.pair_id IS NOT NULL, p.queue
FROM {clicks} LEFT JOIN pairs p ON p.pair_id = c.pair_id
WHERE list_contains(?, c.idx)
"""


@dataclass(frozen=True)
class Click:
    """One label click: the verdict on the pair as shown, and the wish for the next pair."""

    pair_id: str
    annotator: str
    verdict_shown: str  # a, b, tie or both_bad, as the annotator saw A/B
    swapped: bool
    rationale: str | None = None
    lease_seconds: float = 600.0
    avoid: Collection[str] = ()  # e.g. pairs this annotator skipped
    confidence: float | None = None  # strength of preference (`data.project`), if asked
    leased_only: bool = False  # accept only on the pair leased to `annotator` (the app's clicks)
    claim_next: bool = True  # lease the annotator's next pair in the same transaction

    @property
    def verdict(self) -> str:
        """The verdict in the stored A/B orientation."""
        return swap_verdict(self.verdict_shown) if self.swapped else self.verdict_shown


@dataclass(frozen=True)
class ClickResult:
    """What a click got: its label id and the pair now leased to the annotator (or None)."""

    label_id: int
    annotator: str
    next_pair_id: str | None
    # Filled by `GroupCommitter`, which reads these for the whole batch after its commit:
    next_pair: PairView | None = None
    mine_today: int = 0  # the annotator's human labels today, this one included
    queue_left: int = 0  # open pairs in the human queue


def label_and_claim_batch(
    store: PreferenceStore, clicks: Sequence[Click]
) -> list[ClickResult | StoreError]:
    """Write `clicks` in one transaction; per click, a `ClickResult` or the `StoreError` it got.

    Within a batch the clicks count in order: a later click by the same annotator on the
    same pair is refused as a second label, and no pair is leased to two annotators.
    """
    try:
        with store.transaction() as cur:
            return _write(store, cur, clicks)
    except BaseException:
        drop_cached_head(store)  # it may have forgotten pairs that the rollback reopened
        raise


def submit_human_label(
    store: PreferenceStore,
    pair_id: str,
    annotator: str,
    *,
    verdict_shown: str,
    swapped: bool,
    rationale: str | None = None,
    confidence: float | None = None,
    leased_only: bool = False,
) -> int:
    """Store one annotator's verdict on the pair as it was shown; returns the label id.

    `verdict_shown` refers to what the annotator saw as A/B; when the display was swapped
    it is turned back into the stored orientation (`Click.verdict`). `leased_only`: accept
    it only for the pair leased to `annotator` (else `NOT_YOUR_PAIR`). Leases no next pair.
    """
    click = Click(
        pair_id,
        annotator,
        verdict_shown,
        swapped,
        rationale,
        confidence=confidence,
        leased_only=leased_only,
        claim_next=False,
    )
    (result,) = label_and_claim_batch(store, [click])
    if isinstance(result, StoreError):
        raise result
    return result.label_id


def _write(
    store: PreferenceStore, cur: duckdb.DuckDBPyConnection, clicks: Sequence[Click]
) -> list[ClickResult | StoreError]:
    results: list[ClickResult | StoreError | None] = [None] * len(clicks)
    problems = [_wrong_type(click) for click in clicks]
    clicks = [_placeholder(c) if p else c for c, p in zip(clicks, problems, strict=True)]
    for i, click in enumerate(clicks):
        if problems[i]:
            results[i] = StoreError(problems[i])
            continue
        try:  # an unknown verdict is the same text shown or stored (swap_verdict keeps it)
            check_label("human", click.verdict, click.confidence, click.rationale)
        except StoreError as exc:
            results[i] = exc
    columns = {
        "idx": ("INTEGER", list(range(len(clicks)))),
        "pair_id": ("VARCHAR", [c.pair_id for c in clicks]),
        "who": ("VARCHAR", [c.annotator for c in clicks]),
    }
    with row_source(cur, "c", columns) as (clicks_sql, params):
        checks = cur.execute(_CHECK_SQL.format(clicks=clicks_sql), params).fetchall()
        unleased = [idx for idx, holder, _, _ in checks if holder != clicks[idx].annotator]
        pairs = {idx: (True, "human") for idx in range(len(clicks))}
        if unleased:
            found = cur.execute(
                _CHECK_PAIRS_SQL.format(clicks=clicks_sql), [*params, unleased]
            ).fetchall()
            pairs.update({idx: (known, queue) for idx, known, queue in found})
        ok = _accept(clicks, checks, pairs, results)
    if not ok:
        return results  # type: ignore[return-value] - every click got its error
    rows = insert_labels(
        cur,
        pair_ids=[clicks[i].pair_id for i in ok],
        source="human",
        who=[clicks[i].annotator for i in ok],
        verdicts=[clicks[i].verdict for i in ok],
        confidences=[clicks[i].confidence for i in ok],
        rationales=[clicks[i].rationale for i in ok],
        swapped=[clicks[i].swapped for i in ok],
    )
    labelled = {(pair_id, who): label_id for label_id, pair_id, who in rows}
    labelled_pairs = [clicks[i].pair_id for i in ok]
    forget_closed(store, record_human_labels(cur, labelled_pairs))
    claiming = [i for i in ok if clicks[i].claim_next]
    chosen = (
        dict(
            zip(
                claiming,
                choose_next(store, cur, [clicks[i] for i in claiming], set(labelled_pairs)),
                strict=True,
            )
        )
        if claiming
        else {}
    )
    nexts = [chosen.get(i) for i in ok]
    picks = [
        (pair_id, clicks[i].annotator, clicks[i].lease_seconds)
        for i, pair_id in zip(ok, nexts, strict=True)
        if pair_id is not None
    ]
    lease(cur, picks, labelled_now=labelled_pairs)
    for i, next_id in zip(ok, nexts, strict=True):
        click = clicks[i]
        results[i] = ClickResult(
            labelled[(click.pair_id, click.annotator)], click.annotator, next_id
        )
    assert all(r is not None for r in results), "every click gets a result"
    return results  # type: ignore[return-value]


def _accept(
    clicks: Sequence[Click],
    checks: list[tuple],
    pairs: dict[int, tuple[bool, str | None]],
    results: list[ClickResult | StoreError | None],
) -> list[int]:
    """Indices of the clicks that pass their checks; the others get their error."""
    seen: set[tuple[str, str]] = set()
    ok: list[int] = []
    for idx, holder, already, last_leased_to in sorted(checks):
        click = clicks[idx]
        known, queue = pairs[idx]
        if holder == click.annotator:
            holder = None
        if results[idx] is not None:
            continue
        if click.leased_only:
            if (
                last_leased_to != click.annotator
                or already
                or (click.pair_id, click.annotator) in seen
            ):
                results[idx] = StoreError(NOT_YOUR_PAIR)
            else:
                seen.add((click.pair_id, click.annotator))
                ok.append(idx)
        elif not known:
            results[idx] = StoreError(f"cannot label unknown pair {click.pair_id!r}")
        elif queue != "human":
            results[idx] = StoreError(
                f"pair {click.pair_id} is not in the human queue; ask for the next pair"
            )
        elif holder is not None:
            results[idx] = StoreError(
                f"pair {click.pair_id} is leased to another annotator; ask for the next pair"
            )
        elif already or (click.pair_id, click.annotator) in seen:
            results[idx] = StoreError(
                f"{click.annotator} has already labelled pair {click.pair_id}"
            )
        else:
            seen.add((click.pair_id, click.annotator))
            ok.append(idx)
    return ok


def _wrong_type(click: Click) -> str | None:
    """What is wrong with the types of `click`'s fields, if anything (callers outside the
    app may pass anything; one bad click must not fail its batch)."""
    if not isinstance(click.pair_id, str):
        return f"pair id must be text, not {type(click.pair_id).__name__}"
    if not isinstance(click.annotator, str):
        return f"annotator must be text, not {type(click.annotator).__name__}"
    if not isinstance(click.verdict_shown, str):
        return f"verdict must be text, not {type(click.verdict_shown).__name__}"
    if click.rationale is not None and not isinstance(click.rationale, str):
        return f"rationale must be text, not {type(click.rationale).__name__}"
    if click.confidence is not None and not isinstance(click.confidence, int | float):
        return f"confidence must be a number, not {type(click.confidence).__name__}"
    return None


def _placeholder(click: Click) -> Click:
    """A refused click with fields the batch's row source can hold (it writes nothing)."""
    return Click("", "", "a", False, leased_only=click.leased_only)


@dataclass
class _Pending:
    click: Click
    result: ClickResult | StoreError | BaseException | None = None
    taken: bool = False  # a leader is writing it
    done: bool = False


@dataclass
class GroupCommitter:
    """Write clicks that arrive together in one batch (leader/follower group commit).

    The first thread to find no batch in flight writes everything pending, its own click
    included; the others wait for their result. No extra thread: a batch runs on the
    thread of one of its callers. The texts of the next pairs are read after the commit,
    in one query, while the next batch is already being written.
    """

    store: PreferenceStore
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _pending: list[_Pending] = field(default_factory=list, repr=False)
    _busy: bool = field(default=False, repr=False)
    batches: int = 0  # batches written so far
    clicks: int = 0  # clicks in them (clicks / batches = the mean batch size)

    @property
    def waiting(self) -> int:
        """Clicks queued for the next batch (not yet taken by a leader)."""
        with self._cond:
            return len(self._pending)

    def submit(self, click: Click) -> ClickResult:
        """Label and lease the next pair; returns once the batch holding this click committed."""
        mine = _Pending(click)
        with self._cond:
            self._pending.append(mine)
            while not mine.done and (self._busy or mine.taken):
                self._cond.wait()
            if mine.done:
                return _unwrap(mine.result)
            self._busy = True
            batch, self._pending = self._pending, []
            for pending in batch:
                pending.taken = True
            self.batches += 1
            self.clicks += len(batch)
        outcome: list[ClickResult | StoreError] | BaseException
        try:
            outcome = label_and_claim_batch(self.store, [p.click for p in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to every click of the batch
            outcome = exc
        with self._cond:  # the next batch may start while this one's texts are read
            self._busy = False
            self._cond.notify_all()
        if not isinstance(outcome, BaseException):
            try:
                outcome = _with_pairs(self.store, outcome)
            except BaseException as exc:  # noqa: BLE001 - the labels are stored; say so
                outcome = exc
        with self._cond:
            for i, pending in enumerate(batch):
                pending.result = outcome if isinstance(outcome, BaseException) else outcome[i]
                pending.done = True
            self._cond.notify_all()
        return _unwrap(mine.result)


def _with_pairs(
    store: PreferenceStore, results: list[ClickResult | StoreError]
) -> list[ClickResult | StoreError]:
    """Texts of the next pairs and each annotator's progress: two queries for the batch."""
    done = [r for r in results if isinstance(r, ClickResult)]
    if not done:
        return results
    ids = sorted({r.next_pair_id for r in done if r.next_pair_id})
    placeholders = ", ".join("?" * len(ids))
    views = (
        {v.pair_id: v for v in store.pairs(f"WHERE p.pair_id IN ({placeholders})", ids)}
        if ids
        else {}
    )
    who = sorted({r.annotator for r in done})
    mine, left = human_progress(store.cursor(), who)
    return [
        replace(
            r,
            next_pair=views.get(r.next_pair_id) if r.next_pair_id else None,
            mine_today=mine.get(r.annotator, 0),
            queue_left=left,
        )
        if isinstance(r, ClickResult)
        else r
        for r in results
    ]


def undo_last_label(store: PreferenceStore, annotator: str, lease_seconds: float) -> str | None:
    """Retract `annotator`'s last human label and lease that pair back to them (unless it
    left the human queue or someone else holds it now); the pair id, or None."""
    with store.transaction() as cur:
        last = cur.execute(
            "SELECT label_id, pair_id FROM active_labels WHERE source = 'human' AND who = ? "
            "ORDER BY label_id DESC LIMIT 1",
            [annotator],
        ).fetchall()
        if not last:
            return None
        label_id, pair_id = last[0]
        # retract_label keeps the store's own bookkeeping (human_queue) right
        if not store.retract_label(label_id, who=annotator, cursor=cur):
            return None
        lease_back(cur, pair_id, annotator, lease_seconds)
    return pair_id


def human_progress(
    cur: duckdb.DuckDBPyConnection, annotators: list[str]
) -> tuple[dict[str, int], int]:
    """Human labels today per annotator (retracted ones not counted), and open pairs left."""
    rows = cur.execute(
        """
        SELECT who, count(*) FROM labels
        WHERE source = 'human' AND list_contains($who, who) AND retracted_at IS NULL
          AND created_at >= current_date
        GROUP BY who
        """,
        {"who": annotators},
    ).fetchall()
    # human_queue holds exactly the open human-queue pairs (the store keeps it so)
    left = cur.execute("SELECT count(*) FROM human_queue").fetchall()[0][0]
    return dict(rows), int(left)


def _unwrap(result: ClickResult | StoreError | BaseException | None) -> ClickResult:
    if isinstance(result, BaseException):
        raise result
    assert result is not None, "a click left its batch without a result"
    return result
