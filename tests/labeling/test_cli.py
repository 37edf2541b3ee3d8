from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from data.importer import ImportOptions, import_sources
from data.store import PreferenceStore

SCORE = ["--features", "response,length", "--max-length", "64", "--members", "4", "--json"]


@pytest.fixture
def hh_store(tmp_path: Path, hh_path: Path) -> Path:
    """12 labelled HH pairs and 8 unlabelled ones (the same kind of texts, no verdict)."""
    with gzip.open(hh_path, "rt") as handle:
        rows = [json.loads(line) for _, line in zip(range(20), handle, strict=False)]
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows[:12]))
    unlabelled = tmp_path / "unlabelled.jsonl"
    with unlabelled.open("w") as handle:
        for r in rows[12:]:
            prompt = r["chosen"].split("\n\nAssistant:")[0].removeprefix("\n\nHuman: ")
            handle.write(
                json.dumps(
                    {
                        "prompt": prompt,
                        "response_a": r["chosen"].rsplit("\n\nAssistant:", 1)[1].strip(),
                        "response_b": r["rejected"].rsplit("\n\nAssistant:", 1)[1].strip(),
                    }
                )
                + "\n"
            )
    db = tmp_path / "store.duckdb"
    with PreferenceStore(db) as store:
        import_sources(store, [str(labelled), str(unlabelled)], ImportOptions())
    return db


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def test_score_then_route_on_a_real_store(hh_store: Path):
    first = invoke("score", "--db", str(hh_store), *SCORE)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert (
        report["version"] == 1 and report["labelled_pairs"] == 12 and report["scored_pairs"] == 20
    )
    assert report["texts_encoded"] == 40  # 20 pairs x 2 responses; length needs no encoder
    artifact = Path(report["artifact"])
    assert artifact == hh_store.parent / "store.artifacts" / "ensemble-v1"
    assert json.loads((artifact / "ensemble.json").read_text())["features"] == [
        "response",
        "length",
    ]

    second = json.loads(invoke("score", "--db", str(hh_store), *SCORE).stdout)
    assert second["version"] == 2 and second["texts_encoded"] == 0  # cache hit

    with PreferenceStore(hh_store) as store:
        assert store.count("scores") == 40 and store.count("ensembles") == 2
        config = json.loads(store.scalar("SELECT config FROM ensembles WHERE version = 2"))
        assert config["artifact"].endswith("ensemble-v2")
        p = store.query("SELECT member_p_a, p_mean, p_std FROM scores WHERE version = 2 LIMIT 1")[0]
        assert len(p[0]) == 4 and 0 <= p[1] <= 1

    routed = invoke(
        "route",
        "--db",
        str(hh_store),
        "--human-budget",
        "3",
        "--strategy",
        "bald",
        "--seed",
        "0",
        "--json",
    )
    assert routed.exit_code == 0, routed.output
    out = json.loads(routed.stdout)
    assert out["human"] == 3 and out["judge"] == 5 and out["version"] == 2
    with PreferenceStore(hh_store) as store:
        counts = dict(store.query("SELECT queue, count(*) FROM pairs GROUP BY queue"))
    assert counts == {"human": 3, "judge": 5, "unrouted": 12}

    # a later budget reaches judge-queue pairs; re-routing with 0 keeps the total
    again = json.loads(
        invoke("route", "--db", str(hh_store), "--human-budget", "3", "--json").stdout
    )
    assert again["human_queue_total"] == 6 and again["judge"] == 2
    text = invoke("route", "--db", str(hh_store), "--human-budget", "0")
    assert "6 open in the human queue" in text.output
    with PreferenceStore(hh_store) as store:
        counts = dict(store.query("SELECT queue, count(*) FROM pairs GROUP BY queue"))
    assert counts == {"human": 6, "judge": 2, "unrouted": 12}


def test_score_without_enough_labels_fails_with_the_fix(tmp_path: Path):
    db = tmp_path / "empty.duckdb"
    PreferenceStore(db).close()
    result = CliRunner().invoke(cli, ["score", "--db", str(db)], catch_exceptions=True)
    assert result.exit_code != 0
    assert "label more pairs" in str(result.exception)


def test_every_labeling_command_has_help():
    for args in (
        ["score", "--help"],
        ["route", "--help"],
        ["bench", "--help"],
        ["bench", "active-learning", "--help"],
    ):
        result = invoke(*args)
        assert result.exit_code == 0 and len(result.output) > 100
    assert "--human-budget" in invoke("route", "--help").output
