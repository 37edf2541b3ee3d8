"""The Annotate tab's logic, free of Gradio so it can be tested and benchmarked directly.

* The next pair comes from `data.queue.claim_next` (a lease on the human queue); after
  a Skip the annotator's skipped pairs are passed over until nothing else is left.
* Blind: only the prompt and the two responses are shown, never scores or other labels.
* A/B order is swapped for half the (annotator, pair) combinations, decided by a keyed
  hash (a salt kept in the store), so a reload shows the same order and the verdict can
  be turned back into the stored orientation by `data.click_batch.submit_human_label(..., swapped=)`.
* A strength of preference ("much" / "slightly", when the project asks for one) is stored
  as the label's confidence (`data.project.STRENGTH_CONFIDENCE`).
* A label is accepted only for the pair leased to the annotator, the one shown to them
  (`leased_only`); any refusal is `data.queue.NOT_YOUR_PAIR`, whatever the reason. The
  handlers' values arrive unchecked from the API (`preprocess=False`), so their types are
  checked here first: a wrong one is a `StoreError` that names the field.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from data.click_batch import (
    Click,
    GroupCommitter,
    human_progress,
    submit_human_label,
    undo_last_label,
)
from data.errors import StoreError
from data.project import check_lease_seconds, strength_confidence
from data.queue import claim_next, forget_skips, skip_pair, skipped_pairs
from data.store import PairView, PreferenceStore

SHOWN_VERDICTS = ("a", "b", "tie", "both_bad")
_SKIP_MEMORY = 200  # skipped pairs remembered per annotator (the latest ones)


@dataclass(frozen=True)
class AnnotateConfig:
    """How the human queue is served to annotators."""

    lease_seconds: float = 600.0  # a pair returns to the queue when its lease is this old


@dataclass(frozen=True)
class Shown:
    """A pair as one annotator sees it: maybe swapped, nothing else attached."""

    pair_id: str
    messages: list[dict[str, str]]
    left: str  # shown as "A"
    right: str  # shown as "B"
    swapped: bool


@dataclass(frozen=True)
class Progress:
    mine_today: int
    queue_left: int


class AnnotationService:
    """Claims, labels, skips and undoes for every annotator of one store."""

    def __init__(self, store: PreferenceStore, config: AnnotateConfig | None = None):
        self.store = store
        self.config = config or AnnotateConfig()
        salt = store.get_meta("app_swap_salt")
        if salt is None and not store.read_only:
            salt = secrets.token_hex(16)
            store.set_meta("app_swap_salt", salt)
        self._salt = (salt or "prefloop").encode()
        self._skipped: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        # Clicks from concurrent annotators share one transaction and one commit.
        self._clicks = GroupCommitter(store)

    def set_lease_seconds(self, seconds: float) -> None:
        """Change the lease for claims from now on (leases already given keep theirs)."""
        self.config = replace(self.config, lease_seconds=check_lease_seconds(seconds))

    # -- what the annotator sees -----------------------------------------------------

    def swapped(self, annotator: str, pair_id: str) -> bool:
        digest = hashlib.sha256(self._salt + b"\0" + annotator.encode() + b"\0" + pair_id.encode())
        return digest.digest()[0] & 1 == 1

    def show(self, annotator: str, pair: PairView) -> Shown:
        swap = self.swapped(annotator, pair.pair_id)
        left, right = (
            (pair.response_b, pair.response_a) if swap else (pair.response_a, pair.response_b)
        )
        return Shown(pair.pair_id, pair.messages, left, right, swap)

    def next(self, annotator: str) -> Shown | None:
        """The pair this annotator holds, or a newly leased one; None when nothing is left."""
        pair_id = self._claim(annotator)
        return None if pair_id is None else self.show(annotator, self.store.get_pair(pair_id))

    def _claim(self, annotator: str) -> str | None:
        skipped = self._skips(annotator)
        pair_id = claim_next(self.store, annotator, self.config.lease_seconds, avoid=skipped)
        if pair_id is not None and pair_id in skipped:
            self._forget_skips(annotator)  # only skipped pairs are left: offered again
        return pair_id

    def _skips(self, annotator: str) -> deque[str]:
        """This annotator's skipped pairs, oldest first; kept in the store's `skips` table."""
        with self._lock:
            if annotator not in self._skipped:
                self._skipped[annotator] = deque(
                    skipped_pairs(self.store, annotator, _SKIP_MEMORY), maxlen=_SKIP_MEMORY
                )
            return self._skipped[annotator]

    def _forget_skips(self, annotator: str) -> None:
        with self._lock:
            self._skipped[annotator] = deque(maxlen=_SKIP_MEMORY)
        forget_skips(self.store, annotator)

    # -- actions ----------------------------------------------------------------------

    def label(
        self,
        annotator: str,
        pair_id: str,
        verdict_shown: str,
        rationale: str | None,
        strength: str | None = None,
    ) -> int:
        """Store a verdict given on the pair as shown; returns the label id."""
        pair_id, rationale = _checked_pair(pair_id), _checked_rationale(rationale)
        self._check_verdict(pair_id, verdict_shown)
        return submit_human_label(
            self.store,
            pair_id,
            annotator,
            verdict_shown=verdict_shown,
            swapped=self.swapped(annotator, pair_id),
            rationale=rationale,
            confidence=self._confidence(verdict_shown, strength),
            leased_only=True,
        )

    def click(
        self,
        annotator: str,
        pair_id: str,
        verdict_shown: str,
        rationale: str | None,
        strength: str | None = None,
    ) -> tuple[Shown | None, Progress]:
        """A label click, and the progress line to show with the next pair.

        `strength` is "much" or "slightly" (A/B verdicts only) when the project asks
        how much better. Concurrent clicks are written together (`data.click_batch`);
        this returns once the batch holding this click has committed, so a returned pair
        means a stored label.
        """
        pair_id, rationale = _checked_pair(pair_id), _checked_rationale(rationale)
        self._check_verdict(pair_id, verdict_shown)
        confidence = self._confidence(verdict_shown, strength)
        skipped = self._skips(annotator)
        done = self._clicks.submit(
            Click(
                pair_id,
                annotator,
                verdict_shown,
                swapped=self.swapped(annotator, pair_id),
                rationale=rationale,
                lease_seconds=self.config.lease_seconds,
                avoid=tuple(skipped),
                confidence=confidence,
                leased_only=True,
            )
        )
        progress = Progress(done.mine_today, done.queue_left)
        if done.next_pair is None:
            return None, progress
        if done.next_pair_id in skipped:
            self._forget_skips(annotator)  # only skipped pairs are left: offered again
        return self.show(annotator, done.next_pair), progress

    def _check_verdict(self, pair_id: str, verdict_shown: str) -> None:
        if verdict_shown not in SHOWN_VERDICTS:
            raise StoreError(f"verdict {verdict_shown!r} is not one of {', '.join(SHOWN_VERDICTS)}")
        if not pair_id:
            raise StoreError("no pair is shown; ask for the next pair first")

    @staticmethod
    def _confidence(verdict_shown: str, strength: str | None) -> float | None:
        if strength is not None and verdict_shown not in ("a", "b"):
            raise StoreError(
                f"a strength ({strength}) goes with A or B better, not with {verdict_shown}"
            )
        return strength_confidence(strength)

    def skip(self, annotator: str, pair_id: str | None) -> None:
        """Give the pair back and pass over it for this annotator while others remain."""
        pair_id = _checked_pair(pair_id)
        skipped = self._skips(annotator)
        skip_pair(self.store, annotator, pair_id or None)
        with self._lock:
            if pair_id and pair_id not in skipped:
                skipped.append(pair_id)

    def undo(self, annotator: str) -> str | None:
        """Retract this annotator's last human label and show that pair again.

        Returns the pair id, or None when there is nothing to undo. The pair is leased
        back unless another annotator holds it now.
        """
        return undo_last_label(self.store, annotator, self.config.lease_seconds)

    def progress(self, annotator: str) -> Progress:
        mine, left = human_progress(self.store.cursor(), [annotator])
        return Progress(mine.get(annotator, 0), left)


def _checked_pair(pair_id: Any) -> str:
    """The pair id as the page sent it: text, or nothing ("") when no pair is shown."""
    if pair_id is None:
        return ""
    if not isinstance(pair_id, str):
        raise StoreError(
            f"the pair id must be text (the id next_pair returned), not {type(pair_id).__name__}"
        )
    return pair_id


def _checked_rationale(rationale: Any) -> str | None:
    """The rationale as stored: stripped text, or None when empty."""
    if rationale is None:
        return None
    if not isinstance(rationale, str):
        raise StoreError(f"the rationale must be text, not {type(rationale).__name__}")
    return rationale.strip() or None
