"""`prefloop import --labels as-reference`: labels kept only to measure against."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from app.cli import cli
from data.click_batch import submit_human_label
from data.export import aggregated_pairs
from data.store import PreferenceStore
from judges.agreement import agreement_report
from judges.batch import run_batch
from judges.config import JudgeConfig
from labeling.label_quality import export_quality
from labeling.router import RouterConfig, route_store
from labeling.scoring import training_targets
from tests.fakes.judging import good_side, prefers_good
from tests.fakes.openai_server import FakeOpenAIServer


def write_pairs(path: Path, n: int) -> None:
    with path.open("w") as handle:
        for i in range(n):
            row = {
                "prompt": f"question {i}?",
                "response_a": f"GOOD answer number {i}, with detail",
                "response_b": f"meh {i}",
                "label": "a" if i % 4 else "b",  # the reference is wrong on every 4th pair
            }
            handle.write(json.dumps(row) + "\n")


def test_reference_labels_measure_but_never_train_or_block_routing(tmp_path: Path) -> None:
    data, db = tmp_path / "pairs.jsonl", tmp_path / "s.duckdb"
    write_pairs(data, 12)
    args = ["import", str(data), "--db", str(db), "--labels", "as-reference", "--json"]
    first = json.loads(CliRunner().invoke(cli, args).stdout)
    assert first["imported_pairs"] == 12 and first["labels"] == 0
    assert first["reference_labels"] == 12
    again = json.loads(CliRunner().invoke(cli, args).stdout)
    assert again["reference_labels"] == 0 and again["duplicate_labels"] == 12  # never doubled

    with PreferenceStore(db) as store:
        assert store.count("labels") == 0 and training_targets(store) == {}
        routed = route_store(store, RouterConfig(human_budget=4, seed=0))
        assert routed.human == 4 and routed.judge == 8  # routed like unlabelled pairs
        with FakeOpenAIServer(prefers_good) as server:
            run_batch(
                store,
                JudgeConfig(models=("judge-m",), base_url=server.url, progress=False),
            )
        for entry in routed.human_pairs:
            pid = entry["pair_id"]
            submit_human_label(
                store, pid, "ann", verdict_shown=good_side(store, pid), swapped=False
            )
        exported = aggregated_pairs(store)
        assert len(exported) == 12 and {p.source for p in exported} == {"human", "judge"}
        # every exported label says GOOD; the reference says GOOD on 9 of the 12 pairs
        reference = {
            pid: verdict
            for pid, verdict in store.query("SELECT pair_id, verdict FROM reference_labels")
        }
        expected = sum(reference[p.pair_id] == p.verdict for p in exported)
        assert expected == 9
        check = export_quality(store)["vs_reference"]
        assert check["exported_with_reference"] == 12 and check["right"] == 9
        assert check["accuracy"] == 0.75
        report = agreement_report(store, reference_sources=("reference",))
        judge = next(j for j in report["judges"] if j["who"] == "judge-m")
        assert judge["vs_reference"]["pairs"] == 8  # the judge-labelled ones
        from labeling.scoring import ScoreConfig, score_store

        length_only = ScoreConfig(features=("length",), min_labels=2)
        score_store(store, length_only)  # fitted on the human and judge labels, never the reference
    stats = json.loads(CliRunner().invoke(cli, ["stats", "--db", str(db), "--json"]).stdout)
    assert stats["reference_labels"] == 12

    # reference labels count in evaluation: every source, judge, the ensemble and the export
    evaluated = CliRunner().invoke(cli, ["eval", "--db", str(db), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    e = json.loads(evaluated.stdout)
    assert e["reference_pairs"] == 12
    by_source = e["labels_by_source"]
    assert by_source["human"]["pairs"] == 4 and by_source["judge"]["pairs"] == 8
    assert by_source["human"]["right"] + by_source["judge"]["right"] == 9
    assert [j["who"] for j in e["judges"]] == ["judge-m"]
    assert e["judges"][0]["vs_reference"]["pairs"] == 8
    assert e["export"]["right"] == 9
    ensemble = e["ensemble"]
    assert ensemble["pairs"] == 12 and ensemble["fitted_pairs"]["pairs"] == 12
    assert 0 <= ensemble["right"] <= 12 and ensemble["interval"][0] <= ensemble["accuracy"]
    human = CliRunner().invoke(cli, ["eval", "--db", str(db)]).stdout
    assert "12 pairs carry a reference label" in human and "judge judge-m" in human

    plain = str(tmp_path / "plain.duckdb")
    assert CliRunner().invoke(cli, ["import", str(data), "--db", plain]).exit_code == 0
    empty = CliRunner().invoke(cli, ["eval", "--db", plain])
    assert empty.exit_code == 0 and "--labels as-reference" in empty.stdout
