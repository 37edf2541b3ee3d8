"""A team labelling in Label Studio or Argilla with prefloop's routing, through the CLI:
import, route, export the human queue with pre-annotations, answer it in the tool, import the
tool's export, and the labels are human labels on the same pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from tests.fakes.annotation_tools import annotate_argilla, annotate_labelstudio


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_pairs(path: Path, n: int, labelled: int = 0) -> Path:
    rows = []
    for i in range(n):
        row = {
            "prompt": f"What is {i} plus {i}?",
            "response_a": f"It is {2 * i}.",
            "response_b": f"Maybe {2 * i + 1}.",
        }
        if i < labelled:
            row["label"] = "a" if i % 4 else "b"
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_label_studio_keeps_its_ui_and_prefloop_routes(tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    run("import", str(write_pairs(tmp_path / "p.jsonl", 12)), "--db", db)
    assert run("route", "--db", db, "--human-budget", "4")["human_queue_total"] == 4
    out = tmp_path / "ls" / "tasks.json"
    exported = run(
        "export", "--db", db, "--format", "labelstudio", "--out", str(out), "--predictions", "none"
    )
    assert exported["pairs"] == 4 and exported["files"][1].endswith("tasks.label_config.xml")
    tasks = json.loads(out.read_text())
    votes = {t["data"]["pair_id"]: [({"id": 1, "email": "ann@team.org"}, "a")] for t in tasks}
    back = annotate_labelstudio(out, tmp_path / "project-1-export.json", votes)
    report = run("import", str(back), "--db", db)
    assert (report["imported_pairs"], report["labels"]) == (0, 4)
    stats = run("stats", "--db", db)
    assert stats["labels_by_source"] == {"human": 4}
    assert (stats["queues"]["human"], stats["queues"]["human_open"]) == (4, 0)
    again = run("export", "--db", db, "--format", "labelstudio", "--out", str(tmp_path / "t2.json"))
    assert again["pairs"] == 0  # the queue is done


def test_tool_cli_errors_are_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    run("import", str(write_pairs(tmp_path / "p.jsonl", 3)), "--db", db)
    runner = CliRunner()
    for args, message in (
        (["export", "--db", db, "--format", "labelstudio"], "needs --out"),
        (
            ["export", "--db", db, "--format", "labelstudio", "--out", str(tmp_path / "t.jsonl")],
            ".json file",
        ),
        (["export", "--db", db], "give --out FILE (or --push-to-hub REPO)"),
        (["export", "--db", db, "--push-to-hub", "me/x", "--out", "x.jsonl"], "takes no --out"),
        (
            ["import", str(tmp_path / "p.jsonl"), "--db", db, "--choice", "no-equals"],
            "TEXT=VERDICT",
        ),
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code != 0 and message in str(result.exception), (args, result.output)


@pytest.mark.slow
def test_argilla_with_ensemble_suggestions(tmp_path: Path) -> None:
    """The real ensemble (`prefloop score`: the MiniLM encoder, ~10 s) makes the suggestions."""
    db = str(tmp_path / "s.duckdb")
    run("import", str(write_pairs(tmp_path / "p.jsonl", 40, labelled=24)), "--db", db)
    run("score", "--db", db)
    run("route", "--db", db, "--human-budget", "5")
    folder = tmp_path / "argilla"
    exported = run(
        "export",
        "--db",
        db,
        "--format",
        "argilla",
        "--out",
        str(folder),
        "--predictions",
        "ensemble",
    )
    assert (exported["pairs"], exported["predictions"]) == (5, 5)
    records = json.loads((folder / "records.json").read_text())
    suggestion = records[0]["suggestions"]["preference"]
    assert suggestion["agent"] == "ensemble:v1" and 0.5 <= suggestion["score"] <= 1
    votes = {r["id"]: [("5e0c-user", "b"), ("77aa-user", "b")] for r in records}
    back = annotate_argilla(folder, tmp_path / "answered", votes)
    assert run("import", str(back), "--db", db)["labels"] == 10
    stats = run("stats", "--db", db)
    assert stats["labels_by_source"]["human"] == 10
    assert stats["human_human"]["pairs_with_overlap"] == 5
