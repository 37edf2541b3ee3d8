"""Dashboard numbers from a hand-built store: calibration accuracy per ensemble version."""

from __future__ import annotations

import json
from pathlib import Path

from app.ui import dashboard
from data.queue import Assignment, assign
from data.store import PreferenceStore
from labeling.score_reports import calibration_accuracy
from tests.fakes.served_app import make_store


def test_calibration_accuracy_per_version(tmp_path: Path) -> None:
    pair_ids = make_store(tmp_path / "s.duckdb", 6)
    with PreferenceStore(tmp_path / "s.duckdb") as store:
        calibration, active = pair_ids[:4], pair_ids[4:]
        assign(
            store,
            [Assignment(p, "human", reason="calibration") for p in calibration]
            + [Assignment(p, "human", reason="active:variance") for p in active],
        )
        for pid, verdict in zip(pair_ids, ["a", "a", "b", "tie", "a", "b"], strict=True):
            store.add_label(pid, source="human", who="ann", verdict=verdict)
        with store.transaction() as cur:
            for version in (1, 2):
                cur.execute(
                    "INSERT INTO ensembles (version, encoder, config) VALUES (?, 'e', ?)",
                    [version, json.dumps({})],
                ).fetchall()
            # v1 says A for every pair: right on 2 of the 3 a/b calibration pairs
            # v2 gets all three right; active pairs and the tie never count
            p_a = {1: [0.9, 0.8, 0.7, 0.6, 0.1, 0.9], 2: [0.9, 0.8, 0.2, 0.6, 0.1, 0.9]}
            for version, values in p_a.items():
                for pid, p in zip(pair_ids, values, strict=True):
                    cur.execute(
                        "INSERT INTO scores VALUES (?, ?, ?, ?, 0.1)", [pid, version, [p], p]
                    ).fetchall()
        rows = calibration_accuracy(store)
        assert [(r["version"], r["n"]) for r in rows] == [(1, 3), (2, 3)]
        assert abs(rows[0]["accuracy"] - 2 / 3) < 1e-9 and rows[1]["accuracy"] == 1.0
        assert all(r["human_labels"] == 6 for r in rows)
        outputs = dashboard.dashboard(store)
        assert "human-human" in outputs[0] and len(outputs) == 5
        # every exported label is human: right share 100%; the budget table by reason
        assert "Estimated right labels in the export: **100.0%**" in outputs[0]
        assert "| calibration | 4 | 4 |" in outputs[0]
        assert "| active:variance | 2 | 2 |" in outputs[0]


def test_figures_are_not_kept_by_pyplot(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    make_store(tmp_path / "s.duckdb", 2)
    before = len(plt.get_fignums())
    with PreferenceStore(tmp_path / "s.duckdb") as store:
        for _ in range(3):
            dashboard.dashboard(store)
    assert len(plt.get_fignums()) == before
