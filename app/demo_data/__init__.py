"""prefloop's own demo data and the store `prefloop demo` builds from it.

`demo.jsonl` holds 44 prompts (single- and multi-turn; prose, code, tables, a few
safety cases), each with 3-4 responses of clearly different quality. Each row also has
`quality` (3 = good ... 0 = bad), written by hand with the responses.

The demo store: every fourth prompt is a *seed*: its pairs get labels from `quality`
(source `import`, who `demo-seed`), so the ensemble has something to fit. Then the
store is scored and routed with `labeling` (fit the ensemble with the default
encoder, send the most uncertain pairs plus a calibration slice to humans, the rest to
the judge queue). Fallback when `labeling` is missing or fails (documented in
`prefloop demo --help`): every unlabelled pair goes to the human queue, in file order.

With `history=True` (what `prefloop demo` does), the store also gets gold pairs and a
small simulated labelling history (`app.demo_data.history`): annotators of different
quality, a left-clicker, undos and split votes, with two labels wanted per human-queue
pair, so the Dashboard's per-annotator plots and the Adjudicate queue have content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.gold import gold_answers
from data.ingest import ingest
from data.queue import Assignment, assign
from data.shapes import ShapeConfig, parse_row
from data.store import PreferenceStore

DEMO_FILE = Path(__file__).resolve().parent / "demo.jsonl"
SEED_EVERY = 4  # every n-th prompt is labelled from its quality scores


@dataclass
class DemoReport:
    prompts: int = 0
    pairs: int = 0
    seed_labels: int = 0
    gold_pairs: int = 0
    history: dict[str, int] = field(default_factory=dict)
    routing: str = ""
    to_human: int = 0
    to_judge: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def demo_rows() -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in DEMO_FILE.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def build_demo_store(
    store: PreferenceStore, *, score: bool = True, human_budget: int = 60, history: bool = False
) -> DemoReport:
    """Fill an empty store with the demo data, then score and route it (and, with
    `history`, add gold pairs and a simulated labelling history)."""
    report = _build(store, score=score, human_budget=human_budget, overlap=2 if history else 1)
    if history:
        from app.demo_data.history import simulate_history

        report.history = simulate_history(store, demo_rows())
    return report


def _build(store: PreferenceStore, *, score: bool, human_budget: int, overlap: int) -> DemoReport:
    report = DemoReport()
    seeds, rest = [], []
    for index, row in enumerate(demo_rows()):
        shaped: dict[str, Any] = {"prompt": row["prompt"], "responses": row["responses"]}
        if index % SEED_EVERY == 0:
            shaped["scores"] = row["quality"]
            seeds.append(parse_row(shaped, "responses", ShapeConfig()))
        else:
            rest.append(parse_row(shaped, "responses", ShapeConfig()))
    seeded = ingest(store, seeds, origin="demo", who="demo-seed")
    plain = ingest(store, rest, origin="demo")
    if overlap > 1:
        from app.demo_data.history import add_gold

        report.gold_pairs = add_gold(store, demo_rows(), SEED_EVERY)
    report.prompts = len(seeds) + len(rest)
    report.pairs = store.count("pairs")
    report.seed_labels = seeded.labels
    if score:
        try:
            from labeling.router import RouterConfig, route_store
            from labeling.scoring import score_store

            scored = score_store(store)
            routed = route_store(
                store, RouterConfig(human_budget=human_budget, seed=0, needed_labels=overlap)
            )
            report.routing = f"labeling: ensemble v{scored.version}, strategy {routed.strategy}"
            report.to_human, report.to_judge = routed.human, routed.judge
            return report
        except ImportError as exc:
            report.notes.append(f"labeling not available ({exc}); fallback routing")
        except Exception as exc:  # noqa: BLE001 - the demo must still start
            report.notes.append(f"scoring failed ({type(exc).__name__}: {exc}); fallback routing")
    gold = gold_answers(store)
    unlabelled = [pid for pid in plain.pair_ids if pid not in gold]
    n = len(unlabelled)
    assign(
        store,
        [
            Assignment(
                pid, "human", priority=float(n - i), reason="demo-fallback", needed_labels=overlap
            )
            for i, pid in enumerate(unlabelled)
        ],
    )
    report.routing = "fallback: every unlabelled pair to the human queue"
    report.to_human = n
    return report
