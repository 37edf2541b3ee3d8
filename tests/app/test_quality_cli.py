"""`prefloop import --gold`, `prefloop gold`, `prefloop export --include-gold` and
`--min-annotator-gold-accuracy`, and the demo's simulated history, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from app.cli import cli
from data.errors import ConfigError


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_gold_import_settings_and_export(tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        "".join(
            json.dumps({"prompt": f"g{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
            for i in range(3)
        )
    )
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    assert run("import", "--gold", str(gold), "--db", db)["gold_answers"] == 3
    assert run("import", str(labelled), "--db", db)["labels"] == 1
    assert run("gold", "--db", db) == {
        "gold_pairs": 3,
        "rate": 0.05,
        "window": 20,
        "min_accuracy": 0.7,
        "min_gold": 5,
    }
    assert run("gold", "--db", db, "--rate", "0.1", "--window", "4")["rate"] == 0.1
    assert run("gold", "--db", db)["window"] == 4
    out = tmp_path / "out.jsonl"
    assert run("export", "--db", db, "--out", str(out))["train"] == 1  # gold left out
    assert run("export", "--db", db, "--out", str(out), "--include-gold")["train"] == 4
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["chosen"] for r in rows} == {"c", "good 0", "good 1", "good 2"}
    floor = run("export", "--db", db, "--out", str(out), "--min-annotator-gold-accuracy", "0.8")
    assert floor["train"] == 1  # nobody has gold labels yet: nobody is dropped
    bad = CliRunner().invoke(cli, ["gold", "--db", db, "--rate", "2"])
    assert isinstance(bad.exception, ConfigError) and "between 0 and 1" in str(bad.exception)
    bad = CliRunner().invoke(
        cli, ["export", "--db", db, "--out", str(out), "--min-annotator-gold-accuracy", "7"]
    )
    assert isinstance(bad.exception, ConfigError) and "must be between 0 and 1" in str(
        bad.exception
    )


def test_the_demo_store_has_a_history_to_show(tmp_path: Path) -> None:
    from data.adjudication import next_case
    from data.annotator_stats import annotator_table
    from data.store import PreferenceStore

    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path), "--build-only", "--no-score"])
    assert result.exit_code == 0, result.output
    assert "split pairs waiting in Adjudicate" in result.output
    with PreferenceStore(tmp_path / "demo.duckdb", read_only=True) as store:
        rows = {r.annotator: r for r in annotator_table(store)}
        assert sorted(rows) == ["li", "maya", "pat", "sam"]
        assert rows["pat"].left.rate is not None and rows["pat"].left.rate > 0.8
        assert rows["sam"].undo_rate and rows["sam"].undo_rate > 0
        assert sum(r.vs_gold.n for r in rows.values()) > 0  # gold came through the queue
        assert all(r.vs_majority.n for r in rows.values())
        assert next_case(store) is not None  # the adjudication queue is not empty
