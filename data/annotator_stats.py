"""Per-annotator quality numbers for the annotation lead (`prefloop annotators`, Dashboard).

For every annotator with a human label (active or undone) or a skip:

* **labels**: active human labels in total, since midnight (`today`) and per hour of
  labelling (`per_hour`: labels divided by the clock hours in which they labelled);
* **median_seconds**: the median time from the lease (the pair shown to them,
  `lease_starts`, kept by `data.queue`) to the label;
* **agreement** with the majority of the *other* humans on the same pair (pairs where the
  others have a strict majority), with gold answers (their last `GoldConfig.window` gold
  pairs, `data.gold`) and with the judge's majority verdict; each as a rate with its
  count and a 95% Wilson interval;
* **tie_rate**, **both_bad_rate** (shares of their labels) and **skip_rate** (skipped
  pairs as the store keeps them, over skipped + labelled);
* **left_rate**, the position bias: among their A/B verdicts, the share that chose the
  response shown on the left, from the stored `swapped` (0.5 is no bias);
* **undo_rate**: labels they undid over labels they gave (admin corrections not counted);
* **gold_flag**: gold accuracy under `GoldConfig.min_accuracy` with at least
  `GoldConfig.min_gold` gold pairs.

Reads only; every table keeps its owner (labels through `active_labels`).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from data.gold import GoldConfig, gold_scores, read_gold_config
from data.intervals import wilson
from data.store import PreferenceStore


@dataclass(frozen=True)
class Rate:
    """right out of n, with its 95% interval."""

    right: int
    n: int

    @property
    def rate(self) -> float | None:
        return round(self.right / self.n, 4) if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.n == 0:
            return None
        low, high = wilson(self.right, self.n)
        return (round(low, 4), round(high, 4))

    def as_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "n": self.n, "interval": self.interval}


@dataclass(frozen=True)
class AnnotatorRow:
    annotator: str
    labels: int
    today: int
    per_hour: float | None
    median_seconds: float | None
    vs_majority: Rate
    vs_gold: Rate
    vs_judge: Rate
    tie_rate: float | None
    both_bad_rate: float | None
    skip_rate: float | None
    left: Rate  # position bias: verdicts for the side shown left, among A/B verdicts
    undo_rate: float | None
    gold_flag: bool

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.as_dict() if isinstance(value, Rate) else value
        return out

    def flat(self) -> dict[str, Any]:
        """One CSV row: each rate as `<name>`, `<name>_n`, `<name>_low`, `<name>_high`."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            rate = getattr(self, name)
            if isinstance(rate, Rate):
                low, high = rate.interval or (None, None)
                out |= {
                    name: rate.rate,
                    f"{name}_n": rate.n,
                    f"{name}_low": low,
                    f"{name}_high": high,
                }
            else:
                out[name] = value
        return out


_LABELS_SQL = """
SELECT pair_id, who, verdict, swapped, created_at, created_at >= current_date AS today,
       date_diff('millisecond',
                 (SELECT max(s.started_at) FROM lease_starts s WHERE s.pair_id = l.pair_id
                    AND s.annotator = l.who AND s.started_at <= l.created_at),
                 l.created_at) / 1000.0 AS seconds
FROM active_labels l WHERE source = 'human'
"""
_UNDONE_SQL = """
SELECT who, count(*) FROM labels
WHERE source = 'human' AND retracted_at IS NOT NULL
  AND label_id NOT IN (SELECT old_label_id FROM label_corrections)
GROUP BY who
"""


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _majority(verdicts: list[str]) -> str | None:
    ranked = Counter(verdicts).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def annotator_table(store: PreferenceStore, config: GoldConfig | None = None) -> list[AnnotatorRow]:
    """One row per annotator, by name."""
    config = config or read_gold_config(store)
    labels = store.query_dicts(_LABELS_SQL)
    undone = dict(store.query(_UNDONE_SQL))
    skips = dict(store.query("SELECT annotator, count(*) FROM skips GROUP BY annotator"))
    judge_votes: dict[str, list[str]] = defaultdict(list)
    for pair_id, verdict in store.query(
        "SELECT pair_id, verdict FROM active_labels WHERE source = 'judge'"
    ):
        judge_votes[pair_id].append(verdict)
    judge = {p: v for p, votes in judge_votes.items() if (v := _majority(votes)) is not None}
    human_votes: dict[str, dict[str, str]] = defaultdict(dict)
    for x in labels:
        human_votes[x["pair_id"]][x["who"]] = x["verdict"]
    gold = gold_scores(store, config.window)

    mine: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for x in labels:
        mine[x["who"]].append(x)
    rows = []
    for who in sorted(set(mine) | set(undone) | set(skips)):
        own = mine.get(who, [])
        n = len(own)
        seconds = sorted(x["seconds"] for x in own if x["seconds"] is not None)
        hours = {x["created_at"].replace(minute=0, second=0, microsecond=0) for x in own}
        majority_right = majority_n = judge_right = judge_n = left = ab = 0
        for x in own:
            others = [v for w, v in human_votes[x["pair_id"]].items() if w != who]
            consensus = _majority(others)
            if consensus is not None:
                majority_n += 1
                majority_right += consensus == x["verdict"]
            if x["pair_id"] in judge:
                judge_n += 1
                judge_right += judge[x["pair_id"]] == x["verdict"]
            if x["verdict"] in ("a", "b"):
                ab += 1
                left += (x["verdict"] == "a") != bool(x["swapped"])
        counts = Counter(x["verdict"] for x in own)
        score = gold.get(who)
        gold_rate = Rate(score.right, score.n) if score else Rate(0, 0)
        rows.append(
            AnnotatorRow(
                annotator=who,
                labels=n,
                today=sum(bool(x["today"]) for x in own),
                per_hour=round(n / len(hours), 2) if hours else None,
                median_seconds=round(_median(seconds), 2) if seconds else None,
                vs_majority=Rate(majority_right, majority_n),
                vs_gold=gold_rate,
                vs_judge=Rate(judge_right, judge_n),
                tie_rate=_share(counts["tie"], n),
                both_bad_rate=_share(counts["both_bad"], n),
                skip_rate=_share(int(skips.get(who, 0)), int(skips.get(who, 0)) + n),
                left=Rate(left, ab),
                undo_rate=_share(int(undone.get(who, 0)), int(undone.get(who, 0)) + n),
                gold_flag=gold_rate.n >= config.min_gold
                and (gold_rate.rate or 0.0) < config.min_accuracy,
            )
        )
    return rows


def _median(values: list[float]) -> float:
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def write_csv(rows: list[AnnotatorRow], path: str | Path) -> Path:
    """The table as CSV (rates flattened: value, n, low, high)."""
    out = Path(path)
    flat = [row.flat() for row in rows]
    names = list(flat[0]) if flat else [f.name for f in fields(AnnotatorRow)]
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(flat)
    return out


def labels_by_hour(store: PreferenceStore) -> dict[str, list[tuple[datetime, int]]]:
    """annotator -> (hour, active human labels given in that hour), oldest first."""
    out: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for who, hour, n in store.query(
        "SELECT who, date_trunc('hour', created_at) AS t, count(*) FROM active_labels "
        "WHERE source = 'human' GROUP BY ALL ORDER BY t, who"
    ):
        out[who].append((hour, int(n)))
    return dict(out)
