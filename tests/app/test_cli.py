"""`prefloop serve`, `prefloop demo` and `prefloop users add` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.ui.auth import load_users

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args",
    [["serve", "--help"], ["demo", "--help"], ["users", "--help"], ["users", "add", "--help"]],
)
def test_commands_have_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and len(result.output) > 100


def test_serve_refuses_a_network_host_without_auth(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "serve",
            "--db",
            str(tmp_path / "x.duckdb"),
            "--host",
            "0.0.0.0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert (
        "--auth" in proc.stderr and "--insecure" in proc.stderr and "Traceback" not in proc.stderr
    )
    assert not (tmp_path / "x.duckdb").exists()  # refused before touching anything


def test_serve_names_a_missing_store(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--db", str(tmp_path / "missing.duckdb")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "prefloop import" in proc.stderr


def test_users_add_stores_a_hash(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    result = CliRunner().invoke(
        cli,
        ["users", "add", "carol", "--file", str(path), "--role", "admin", "--password-stdin"],
        input="correct horse\n",
    )
    assert result.exit_code == 0, result.output
    assert "correct horse" not in path.read_text()
    assert load_users(path)["carol"].role == "admin"
    assert json.loads(path.read_text())["users"]["carol"]["password"].startswith("scrypt$")


def test_demo_build_only_with_fallback_routing(tmp_path: Path) -> None:
    from data.store import PreferenceStore

    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path), "--build-only", "--no-score"])
    assert result.exit_code == 0, result.output
    assert "44 prompts" in result.output and "fallback" in result.output
    with PreferenceStore(tmp_path / "demo.duckdb", read_only=True) as store:
        queues = dict(store.query("SELECT queue, count(*) FROM pairs GROUP BY 1"))
        seeded = store.scalar("SELECT count(DISTINCT pair_id) FROM labels WHERE who = 'demo-seed'")
        gold = store.scalar("SELECT count(*) FROM gold_answers")  # the history's, never routed
        assert gold > 0 and queues["human"] == store.count("pairs") - seeded - gold
        multi_turn = store.scalar(
            "SELECT count(*) FROM prompts WHERE json_array_length(messages) > 1"
        )
        code = store.scalar("SELECT count(*) FROM responses WHERE text LIKE '%```%'")
        assert multi_turn >= 5 and code >= 10


@pytest.mark.slow
def test_demo_scores_and_routes_with_labeling(tmp_path: Path) -> None:
    from data.store import PreferenceStore

    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path), "--build-only"])
    assert result.exit_code == 0, result.output
    assert "labeling: ensemble v1" in result.output
    with PreferenceStore(tmp_path / "demo.duckdb", read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM scores") == store.count("pairs")
        assert store.scalar("SELECT count(*) FROM pairs WHERE route_reason = 'calibration'") >= 1
