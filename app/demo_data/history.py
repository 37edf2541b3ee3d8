"""A small simulated labelling history for the demo store, so quality control has something
to show on the first start.

* **Gold pairs**: from every fourth prompt (offset 2), up to 12 pairs whose responses
  differ in `quality` get that verdict as their gold answer (`data.gold`), before routing
  (the router leaves gold pairs alone).
* **Annotators of known quality** label through the real path (`data.queue.claim_next`,
  `data.click_batch.submit_human_label`, the gold mixing of `data.queue`): `maya`
  (right 95% of the time), `li` (85%), `sam` (careless, 55%, undoes now and then) and
  `pat` (clicks the response shown on the left 90% of the time). The pairs the router sent
  to humans want two labels each (overlap), so some votes split and the adjudication
  queue has pairs in it.
* The truth for each pair comes from the responses' `quality`; which side was shown on
  the left is drawn per label and stored with it (`swapped`).

Everything is written now, so the times are the real ones of a simulation (lease to
label is milliseconds, and all labels fall in one hour); the numbers, not the clock, are
what the history shows.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from data.adjudication import split_pairs
from data.click_batch import submit_human_label
from data.errors import StoreError
from data.gold import GoldConfig, read_gold_config, store_gold_answers, write_gold_config
from data.ingest import pair_verdicts
from data.queue import claim_next, release
from data.schema import swap_verdict
from data.shapes import ShapeConfig, parse_row
from data.store import PreferenceStore

log = logging.getLogger(__name__)

GOLD_EVERY, GOLD_OFFSET = 4, 2  # prompts whose pairs become gold
MAX_GOLD = 12
VERDICTS_AB = ("a", "b")


@dataclass(frozen=True)
class SimulatedAnnotator:
    name: str
    accuracy: float  # chance of the true verdict (else another one, at random)
    left_bias: float = 0.0  # chance of clicking the left response whatever the pair
    undo_rate: float = 0.0  # chance of undoing a label just given
    labels: int = 14  # labels given in the history


ANNOTATORS = (
    SimulatedAnnotator("maya", 0.95),
    SimulatedAnnotator("li", 0.85),
    SimulatedAnnotator("sam", 0.55, undo_rate=0.2, labels=12),
    SimulatedAnnotator("pat", 0.6, left_bias=0.9),
)


def _truths(rows: list[dict[str, Any]], pick: Any = None) -> dict[str, str]:
    """pair_id -> the verdict the responses' quality gives (a or b; equal quality left out)."""
    scored = [
        parse_row(
            {"prompt": r["prompt"], "responses": r["responses"], "scores": r["quality"]},
            "responses",
            ShapeConfig(),
        )
        for i, r in enumerate(rows)
        if pick is None or pick(i)
    ]
    return {
        pair_id: next(iter(verdicts))
        for pair_id, verdicts in pair_verdicts(scored).items()
        if len(verdicts) == 1 and next(iter(verdicts)) in VERDICTS_AB
    }


def add_gold(store: PreferenceStore, rows: list[dict[str, Any]], seed_every: int) -> int:
    """Gold answers for the pairs of every GOLD_EVERY-th prompt (never a seed prompt)."""
    answers = _truths(rows, lambda i: i % GOLD_EVERY == GOLD_OFFSET and i % seed_every != 0)
    kept = dict(sorted(answers.items())[:MAX_GOLD])
    return store_gold_answers(store, kept, who="demo-gold")


def _verdict(
    person: SimulatedAnnotator, truth: str | None, swapped: bool, rng: random.Random
) -> str:
    """The verdict as shown (left = a) that this annotator clicks."""
    if rng.random() < person.left_bias:
        return "a"
    if truth is None:
        return rng.choice(("a", "b", "tie"))
    stored = (
        truth
        if rng.random() < person.accuracy
        else rng.choice([v for v in ("a", "b", "tie", "both_bad") if v != truth])
    )
    return swap_verdict(stored) if swapped else stored


def simulate_history(
    store: PreferenceStore, rows: list[dict[str, Any]], *, seed: int = 0
) -> dict[str, int]:
    """Label part of the human queue as ANNOTATORS would; returns counts for the report."""
    rng = random.Random(seed)
    truths = _truths(rows)
    config = read_gold_config(store)
    write_gold_config(store, GoldConfig(rate=0.25, window=config.window))  # gold shows up
    given = undone = 0
    try:
        for turn in range(max(p.labels for p in ANNOTATORS)):
            for person in ANNOTATORS:
                if turn >= person.labels:
                    continue
                pair_id = claim_next(store, person.name)
                if pair_id is None:
                    continue
                swapped = rng.random() < 0.5
                shown = _verdict(person, truths.get(pair_id), swapped, rng)
                try:
                    label_id = submit_human_label(
                        store, pair_id, person.name, verdict_shown=shown, swapped=swapped,
                        leased_only=True,
                    )  # fmt: skip
                except StoreError as exc:  # not expected; the demo must still start
                    log.warning("simulated label refused: %s", exc)
                    release(store, person.name)
                    continue
                given += 1
                if rng.random() < person.undo_rate and store.retract_label(
                    label_id, who=person.name
                ):
                    undone += 1
    finally:
        write_gold_config(store, config)
        for person in ANNOTATORS:
            release(store, person.name)
    return {"labels": given, "undone": undone, "splits": len(split_pairs(store))}
