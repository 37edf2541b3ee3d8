"""The store commands through the CLI runner, and meta-tests over every command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from app.cli import cli

REPO = Path(__file__).resolve().parents[2]


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append(prefix + (name,))
        if isinstance(command, click.Group):
            found += all_commands(command, prefix + (name,))
    return found


def test_every_command_has_help_text() -> None:
    runner = CliRunner()
    commands = all_commands(cli)
    assert {("import",), ("export",), ("stats",)} <= set(commands)
    for path in commands:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        command = cli
        for name in path:
            command = command.commands[name]
        assert (command.help or "").strip(), f"`prefloop {' '.join(path)}` has no help text"


def test_import_stats_export_through_the_cli(hh_path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "s.duckdb")
    result = runner.invoke(
        cli,
        [
            "import",
            str(hh_path),
            "--db",
            db,
            "--skip-invalid",
            "--json",
            "--report",
            str(tmp_path / "rej.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (
        summary["imported_pairs"],
        summary["labels"],
        summary["invalid"],
        summary["duplicates"],
    ) == (2352, 2352, 2, 0)
    stats = json.loads(runner.invoke(cli, ["stats", "--db", db, "--json"]).stdout)
    assert stats["pairs"] == 2352 and stats["labels_by_source"] == {"import": 2352}
    out = tmp_path / "train.jsonl"
    exported = runner.invoke(
        cli, ["export", "--db", db, "--out", str(out), "--test-fraction", "0.1", "--json"]
    )
    assert exported.exit_code == 0, exported.output
    assert sum(json.loads(exported.stdout)[k] for k in ("train", "test")) == 2352


def test_db_defaults_to_env_then_cwd(tmp_path: Path, monkeypatch) -> None:
    rows = tmp_path / "r.jsonl"
    rows.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    env_db = tmp_path / "env.duckdb"
    runner = CliRunner(env={"PREFLOOP_DB": str(env_db)})
    assert runner.invoke(cli, ["import", str(rows), "--json"]).exit_code == 0
    assert env_db.exists()
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    plain = CliRunner(env={"PREFLOOP_DB": ""})
    assert plain.invoke(cli, ["import", str(rows), "--json"]).exit_code == 0
    assert (workdir / "prefloop.duckdb").exists()


def test_errors_are_one_line_with_non_zero_exit(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "a"}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "app", "import", str(bad), "--db", str(tmp_path / "s.duckdb")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert error_lines == [
        f"Error: {bad}:1: field 'rejected': is identical to chosen: a pair needs two "
        "different responses; nothing was imported"
    ]
    missing = subprocess.run(
        [sys.executable, "-m", "app", "stats", "--db", str(tmp_path / "none.duckdb")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert (
        missing.returncode == 1
        and "Traceback" not in missing.stderr
        and "prefloop import" in missing.stderr
    )
