"""Gold pairs: pairs with a known verdict, mixed blind into each annotator's queue.

`prefloop import --gold FILE` stores the file's pairs and keeps their verdicts here, in
`gold_answers`, never as labels: the router leaves gold pairs alone, the export leaves
them out unless asked (`AggregationPolicy.include_gold`), and the answers are never shown.
When an annotator asks for a next pair, `gold_picks` (called by `data.queue.choose_next`)
gives them, at `GoldConfig.rate`, a gold pair they have not labelled instead: it comes
through the same lease, view and click as any other pair, so nothing in the app's
answer tells it apart. An annotator's gold accuracy over their last `window` gold pairs
flags them on the Dashboard and can drop their labels from the export
(`--min-annotator-gold-accuracy`). This module owns `gold_answers`.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import duckdb

from data.errors import ConfigError
from data.schema import VERDICTS
from data.store import PreferenceStore

log = logging.getLogger(__name__)

_META_KEY = "gold_config"
_CACHE_KEY = "gold.state"  # (rate, gold pairs) kept between clicks; dropped on change
_RNG = random.SystemRandom()  # which next pair is gold must not be predictable


class _Asking(Protocol):
    """Who asks for a next pair (`data.queue.NextPairRequest`; not imported: no circle)."""

    @property
    def annotator(self) -> str: ...

    @property
    def avoid(self) -> Collection[str]: ...


@dataclass(frozen=True)
class GoldConfig:
    """How gold pairs are mixed in and how annotators are judged on them."""

    rate: float = field(
        default=0.05,
        metadata={"help": "Share of next-pair requests answered with a gold pair (0.05 = 5%)."},
    )
    window: int = field(
        default=20,
        metadata={"help": "Gold accuracy counts each annotator's last this-many gold pairs."},
    )
    min_accuracy: float = field(
        default=0.7, metadata={"help": "Flag annotators whose gold accuracy is below this."}
    )
    min_gold: int = field(
        default=5,
        metadata={"help": "Gold pairs an annotator must have labelled before they can be flagged."},
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError(f"gold rate {self.rate} must be between 0 and 1 (0.05 is 5%)")
        if self.window < 1 or self.min_gold < 1:
            raise ConfigError("gold window and min_gold must be at least 1")
        if not 0.0 <= self.min_accuracy <= 1.0:
            raise ConfigError(f"gold min_accuracy {self.min_accuracy} must be between 0 and 1")


def read_gold_config(store: PreferenceStore) -> GoldConfig:
    raw = store.get_meta(_META_KEY)
    return GoldConfig(**json.loads(raw)) if raw else GoldConfig()


def write_gold_config(store: PreferenceStore, config: GoldConfig) -> GoldConfig:
    store.set_meta(_META_KEY, json.dumps(asdict(config)))
    store.cache.pop(_CACHE_KEY, None)
    return config


def store_gold_answers(
    store: PreferenceStore,
    answers: Mapping[str, str],
    *,
    who: str,
    cursor: duckdb.DuckDBPyConnection | None = None,
) -> int:
    """Keep `answers` (pair_id -> verdict relative to the stored A/B) as gold; a pair's
    earlier gold answer is replaced. Returns how many were stored."""
    bad = sorted({v for v in answers.values() if v not in VERDICTS})
    if bad:
        raise ConfigError(f"gold verdicts {bad} are not among {', '.join(VERDICTS)}")
    if not answers:
        return 0
    if cursor is None:
        with store.transaction() as cur:
            return store_gold_answers(store, answers, who=who, cursor=cur)
    cursor.execute(
        "INSERT OR REPLACE INTO gold_answers (pair_id, verdict, who) "
        "SELECT unnest($ids), unnest($verdicts), $who",
        {"ids": list(answers), "verdicts": list(answers.values()), "who": who},
    ).fetchall()
    store.cache.pop(_CACHE_KEY, None)
    return len(answers)


def gold_answers(store: PreferenceStore) -> dict[str, str]:
    """pair_id -> gold verdict (relative to the stored A/B)."""
    return dict(store.query("SELECT pair_id, verdict FROM gold_answers"))


def gold_count(store: PreferenceStore) -> int:
    return int(store.scalar("SELECT count(*) FROM gold_answers"))


def _state(store: PreferenceStore, cur: duckdb.DuckDBPyConnection) -> tuple[float, int]:
    state = store.cache.get(_CACHE_KEY)
    if state is None:
        raw = cur.execute("SELECT value FROM meta WHERE key = ?", [_META_KEY]).fetchall()
        rate = GoldConfig(**json.loads(raw[0][0])).rate if raw else GoldConfig().rate
        count = cur.execute("SELECT count(*) FROM gold_answers").fetchall()[0][0]
        state = (rate, int(count))
        store.cache[_CACHE_KEY] = state
    return state


# For the annotators drawn for gold: those who hold a live lease (they keep their pair), and
# the gold pairs each may get (not labelled by them, not leased to anyone else).
_HOLDING_SQL = """
SELECT DISTINCT annotator FROM leases
WHERE list_contains($who, annotator) AND expires_at > now()::TIMESTAMP
  AND NOT list_contains($done, pair_id)
"""
_CANDIDATES_SQL = """
SELECT w.who, g.pair_id
FROM gold_answers g, (SELECT unnest($who) AS who) w
WHERE NOT EXISTS (SELECT 1 FROM active_labels x WHERE x.pair_id = g.pair_id
                  AND x.source = 'human' AND x.who = w.who)
  AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.pair_id = g.pair_id AND l.annotator <> w.who
                  AND l.expires_at > now()::TIMESTAMP AND NOT list_contains($done, l.pair_id))
"""


def gold_picks(
    store: PreferenceStore,
    cur: duckdb.DuckDBPyConnection,
    wants: Sequence[_Asking],
    labelled_now: Collection[str] = (),
) -> dict[int, str]:
    """Which of `wants` get a gold pair next (index -> pair id), each with chance `rate`.

    An annotator who holds a live lease keeps it (no gold instead), and one who asks twice
    in the batch gets none; a gold pair goes to at most one of them, never to one who
    labelled it or would rather not get it (`avoid`).
    Costs nothing while the store has no gold pairs.
    """
    rate, count = _state(store, cur)
    if not count or rate <= 0.0:
        return {}
    asks = Counter(w.annotator for w in wants)  # two clicks of one annotator: no gold
    drawn = [i for i in range(len(wants)) if asks[wants[i].annotator] == 1 and _RNG.random() < rate]
    if not drawn:
        return {}
    who = sorted({wants[i].annotator for i in drawn})
    params = {"who": who, "done": list(labelled_now)}
    holding = {r[0] for r in cur.execute(_HOLDING_SQL, params).fetchall()}
    options: dict[str, list[str]] = {}
    for person, pair_id in cur.execute(_CANDIDATES_SQL, params).fetchall():
        options.setdefault(person, []).append(pair_id)
    picks: dict[int, str] = {}
    for i in drawn:
        want = wants[i]
        if want.annotator in holding:
            continue
        free = [
            p
            for p in options.get(want.annotator, ())
            if p not in want.avoid and p not in picks.values()
        ]
        if free:
            picks[i] = _RNG.choice(sorted(free))
    return picks


@dataclass(frozen=True)
class GoldScore:
    """An annotator's answers on their last `window` gold pairs."""

    right: int
    n: int

    @property
    def accuracy(self) -> float | None:
        return self.right / self.n if self.n else None


def gold_scores(store: PreferenceStore, window: int | None = None) -> dict[str, GoldScore]:
    """annotator -> their gold score over their last `window` labelled gold pairs
    (default: the stored `GoldConfig.window`)."""
    window = window or read_gold_config(store).window
    rows = store.query(
        """
        SELECT who, count(*), count(*) FILTER (WHERE right_answer) FROM (
            SELECT l.who, l.verdict = g.verdict AS right_answer,
                   row_number() OVER (PARTITION BY l.who ORDER BY l.created_at DESC, l.label_id DESC) AS k
            FROM active_labels l JOIN gold_answers g USING (pair_id)
            WHERE l.source = 'human'
        ) WHERE k <= ? GROUP BY who
        """,
        [window],
    )
    return {who: GoldScore(int(right), int(n)) for who, n, right in rows}


def below_gold_accuracy(
    store: PreferenceStore, threshold: float, *, window: int | None = None, min_gold: int = 1
) -> set[str]:
    """Annotators whose gold accuracy is under `threshold` (with at least `min_gold` gold
    pairs labelled; annotators with fewer are not judged)."""
    return {
        who
        for who, score in gold_scores(store, window).items()
        if score.n >= min_gold and score.accuracy is not None and score.accuracy < threshold
    }
