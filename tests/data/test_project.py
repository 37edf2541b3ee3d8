"""Project settings in a real store's meta table, and strength of preference in the export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from data.click_batch import submit_human_label
from data.errors import ConfigError
from data.export import AggregationPolicy, aggregated_pairs, export_pairs, margin_of
from data.ingest import ingest
from data.project import (
    DEFAULT_GUIDELINES,
    STRENGTH_CONFIDENCE,
    STRENGTH_GUIDELINES,
    ProjectSettings,
    custom_guidelines,
    read_project,
    strength_confidence,
    update_project,
    write_project,
)
from data.queue import Assignment, assign
from data.shapes import PairRecord
from data.store import PreferenceStore


def test_defaults_on_a_new_store(store: PreferenceStore) -> None:
    settings = read_project(store)
    assert settings == ProjectSettings()
    assert (settings.overlap, settings.lease_seconds, settings.strength) == (1, 600.0, False)
    assert settings.shown_guidelines == DEFAULT_GUIDELINES
    assert ProjectSettings(strength=True).shown_guidelines == DEFAULT_GUIDELINES + (
        STRENGTH_GUIDELINES
    )


def test_settings_survive_a_reopen_and_update_keeps_the_others(store_path: Path) -> None:
    with PreferenceStore(store_path) as store:
        write_project(store, ProjectSettings("# Rules", overlap=3, lease_seconds=90.0))
        update_project(store, strength=True)
    with PreferenceStore(store_path, read_only=True) as store:
        settings = read_project(store)
        assert settings == ProjectSettings("# Rules", 3, 90.0, True)
        assert store.get_meta("guidelines") == "# Rules"  # the key the app always read
    with PreferenceStore(store_path) as store:
        assert update_project(store, guidelines=None).guidelines is None  # back to the default
        assert store.get_meta("guidelines") is None
        assert read_project(store).overlap == 3


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"overlap": 0}, "overlap 0 must be between 1 and 20"),
        ({"overlap": 21}, "between 1 and 20"),
        ({"overlap": 2.5}, "whole number"),
        ({"overlap": True}, "whole number"),
        ({"lease_seconds": 1}, "lease seconds 1 must be between 10"),
        ({"lease_seconds": None}, "must be a number"),
        ({"guidelines": "  \n"}, "guidelines are empty"),
        ({"guidelines": "x" * 100_001}, "keep them under 100,000"),
        ({"strength": "yes"}, "true or false"),
        ({"colour": "red"}, "unknown project setting"),
    ],
)
def test_bad_settings_are_refused_and_nothing_changes(
    store: PreferenceStore, changes: dict, message: str
) -> None:
    update_project(store, overlap=2)
    with pytest.raises(ConfigError, match=message):
        update_project(store, **changes)
    assert read_project(store) == ProjectSettings(overlap=2)


def test_a_damaged_stored_value_names_the_fix(store: PreferenceStore) -> None:
    store.set_meta("project.overlap", "lots")
    with pytest.raises(ConfigError, match="prefloop project set"):
        read_project(store)


def test_the_default_text_saved_back_stays_the_default() -> None:
    assert custom_guidelines(DEFAULT_GUIDELINES + "\n") is None
    assert custom_guidelines(DEFAULT_GUIDELINES + STRENGTH_GUIDELINES) is None
    assert custom_guidelines("# Ours") == "# Ours"


def test_strength_levels() -> None:
    assert strength_confidence(None) is None
    assert strength_confidence("much") == STRENGTH_CONFIDENCE["much"] == 0.9
    assert strength_confidence("slightly") == 0.7
    with pytest.raises(ConfigError, match="much, slightly"):
        strength_confidence("hugely")
    # the margin is the Bradley-Terry reward gap at which the chosen one wins that often
    assert margin_of(0.9) == pytest.approx(math.log(9), abs=1e-4)
    assert margin_of(0.7) == pytest.approx(math.log(7 / 3), abs=1e-4)
    assert margin_of(None) == margin_of(0.5) == margin_of(0.3) == 0.0
    assert math.isfinite(margin_of(1.0))


def labelled_store(store: PreferenceStore) -> list[str]:
    records = [
        PairRecord([{"role": "user", "content": f"question {i}"}], f"good {i}", f"bad {i}")
        for i in range(4)
    ]
    pair_ids = list(ingest(store, records, origin="test").pair_ids)
    assign(store, [Assignment(p, "human", needed_labels=2) for p in pair_ids])
    return pair_ids


def human(store: PreferenceStore, pair_id: str, who: str, verdict: str, confidence=None) -> None:
    submit_human_label(
        store, pair_id, who, verdict_shown=verdict, swapped=False, confidence=confidence
    )


def test_export_writes_trl_margins_from_human_strengths(
    store: PreferenceStore, tmp_path: Path
) -> None:
    p0, p1, p2, p3 = labelled_store(store)
    human(store, p0, "x", "a", 0.9)  # much better
    human(store, p0, "y", "a", 0.7)  # slightly better: the pair's margin is their mean
    human(store, p1, "x", "b", 0.9)
    human(store, p1, "y", "a", 0.7)  # split vote: no label, no row
    human(store, p2, "x", "b")  # no strength asked: margin 0
    store.add_label(p3, source="judge", who="j", verdict="a", confidence=0.95)  # not a human

    margins = {p.pair_id: p.margin for p in aggregated_pairs(store)}
    assert margins == {
        p0: pytest.approx((margin_of(0.9) + margin_of(0.7)) / 2, abs=1e-3),
        p2: None,
        p3: None,
    }
    export_pairs(store, tmp_path / "x.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(
        set(r) == {"prompt", "chosen", "rejected", "margin"} for r in rows
    )
    # the prompt of p0 is "question 0" (A/B order in the store is by response id)
    by_prompt = {r["prompt"].split()[-1]: r["margin"] for r in rows}
    assert by_prompt == {"0": pytest.approx(1.5223, abs=1e-3), "2": 0.0, "3": 0.0}
    export_pairs(store, tmp_path / "c.parquet", fmt="trl-conversational")
    import pyarrow.parquet as pq

    assert "margin" in pq.read_table(tmp_path / "c.parquet").column_names
    # labels under the policy's confidence floor give no margin either
    floor = aggregated_pairs(store, AggregationPolicy(min_confidence=0.8))
    assert {p.pair_id: p.margin for p in floor}[p0] == pytest.approx(margin_of(0.9))


def test_no_strengths_no_margin_column(store: PreferenceStore, tmp_path: Path) -> None:
    p0, p1, *_ = labelled_store(store)
    human(store, p0, "x", "a")
    human(store, p1, "x", "tie", None)
    report = export_pairs(store, tmp_path / "x.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert report.train == 1 and set(rows[0]) == {"prompt", "chosen", "rejected"}
