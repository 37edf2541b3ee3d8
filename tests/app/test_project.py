"""Project set-up through the real CLI and the real app: guidelines, overlap, lease, strength."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from data.project import DEFAULT_GUIDELINES, ProjectSettings, read_project
from data.store import PreferenceStore
from tests.fakes.served_app import PASSWORDS, free_port, make_store, make_users

GUIDELINES = """# Rules for the pilot

Prefer the **correct** answer; <b>raw HTML</b> is shown as text.
"""


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def serve(path: Path, **config: object):
    from app.ui.server import ServeConfig, launch, make_app

    users = make_users(path.parent / "users.json")
    serve_config = ServeConfig(port=free_port(), auth=str(users), **config)
    store = PreferenceStore(path)
    ctx, blocks = make_app(store, serve_config)
    launch(ctx, blocks, serve_config, block=False)
    return f"http://127.0.0.1:{serve_config.port}/", store, ctx, blocks


def client(url: str, user: str):
    from gradio_client import Client

    return Client(url, auth=(user, PASSWORDS[user]), verbose=False)


@pytest.mark.parametrize(
    "args",
    [
        ["guidelines", "--help"],
        ["guidelines", "set", "--help"],
        ["guidelines", "show", "--help"],
        ["project", "set", "--help"],
        ["project", "show", "--help"],
    ],
)
def test_commands_have_help(args: list[str]) -> None:
    assert len(run(*args)) > 100


def test_guidelines_and_overlap_set_from_the_cli_show_in_the_app(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    make_store(db, 4)
    (tmp_path / "rules.md").write_text(GUIDELINES, encoding="utf-8")
    assert DEFAULT_GUIDELINES.splitlines()[0] in run("guidelines", "show", "--db", str(db))
    run("guidelines", "set", str(tmp_path / "rules.md"), "--db", str(db))
    assert run("guidelines", "show", "--db", str(db)).strip() == GUIDELINES.strip()
    shown = json.loads(
        run("project", "set", "--overlap", "2", "--strength", "--db", str(db), "--json")
    )
    assert (shown["overlap"], shown["strength"], shown["default_guidelines"]) == (2, True, False)
    routed = json.loads(
        run("route", "--human-budget", "3", "--seed", "0", "--db", str(db), "--json")
    )
    assert routed["overlap"] == 2 and routed["human"] >= 3  # + the unstarted ones re-chosen
    with PreferenceStore(db, read_only=True) as store:
        needed = store.query("SELECT DISTINCT needed_labels FROM pairs WHERE queue = 'human'")
    assert needed == [(2,)]

    url, store, ctx, blocks = serve(db)
    try:
        ann1, ann2, boss = client(url, "ann1"), client(url, "ann2"), client(url, "boss")
        guidelines = ann1.predict(api_name="/guidelines")
        assert "<h1>Rules for the pilot</h1>" in guidelines  # rendered on the server
        assert "&lt;b&gt;raw HTML&lt;/b&gt;" in guidelines and "<b>" not in guidelines
        loaded = boss.predict(api_name="/project_load")
        assert loaded[0] == GUIDELINES and loaded[2:5] == (2, 600.0, True)
        # overlap 2: both annotators label every routed pair, each once
        labelled: dict[str, set[str]] = {"ann1": set(), "ann2": set()}
        for name, who in (("ann1", ann1), ("ann2", ann2)):
            pair_id = who.predict(api_name="/next_pair")[3]
            while pair_id:
                labelled[name].add(pair_id)
                pair_id = who.predict(pair_id, "", api_name="/label_a_much")[3]
        assert labelled["ann1"] == labelled["ann2"]
        assert len(labelled["ann1"]) == routed["human"]
        assert {x["confidence"] for x in store.labels("AND source = 'human'")} == {0.9}
    finally:
        blocks.close()
        ctx.close()
        store.close()


def test_project_tab_saves_applies_the_lease_and_is_for_admins(tmp_path: Path) -> None:
    from gradio_client.exceptions import AppError

    db = tmp_path / "store.duckdb"
    make_store(db, 4)
    url, store, ctx, blocks = serve(db)
    try:
        assert ctx.annotator.config.lease_seconds == 600.0  # no flag: the project's default
        boss, ann1 = client(url, "boss"), client(url, "ann1")
        with pytest.raises(AppError, match="needs an admin"):
            ann1.predict("# Mine", 2, 60, True, api_name="/project_save")
        with pytest.raises(AppError, match="overlap 0 must be between 1 and 20"):
            boss.predict("# Ours", 0, 60, True, api_name="/project_save")
        assert read_project(store) == ProjectSettings()  # nothing half-saved
        saved = boss.predict("# Ours\n\n<i>x</i>", 3, 45, True, api_name="/project_save")
        assert "<h1>Ours</h1>" in saved[1] and "&lt;i&gt;x&lt;/i&gt;" in saved[1]  # the preview
        assert saved[2:5] == (3, 45.0, True)
        assert "Saved by boss" in saved[5]
        assert read_project(store) == ProjectSettings("# Ours\n\n<i>x</i>", 3, 45.0, True)
        assert ctx.annotator.config.lease_seconds == 45.0  # the running app uses it now
        pair_id = ann1.predict(api_name="/next_pair")[3]
        left = store.scalar(
            "SELECT epoch(expires_at - now()::TIMESTAMP) FROM leases WHERE pair_id = ?", [pair_id]
        )
        assert 30 < left <= 45
        assert "<h1>Ours</h1>" in ann1.predict(api_name="/guidelines")
        # with strength asked, A better counts as slightly better
        ann1.predict(pair_id, "", api_name="/label_b")
        assert store.labels("AND pair_id = ?", [pair_id])[0]["confidence"] == 0.7
        preview = boss.predict("<script>x</script> **b**", api_name="/project_preview")
        assert "&lt;script&gt;x&lt;/script&gt;" in preview and "<strong>b</strong>" in preview
        assert "<script" not in preview
        # the default text saved back is stored as the default
        boss.predict(DEFAULT_GUIDELINES, 3, 45, False, api_name="/project_save")
        assert store.get_meta("guidelines") is None
    finally:
        blocks.close()
        ctx.close()
        store.close()


def test_serve_flag_overrides_the_project_lease(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    make_store(db, 2)
    run("project", "set", "--lease-seconds", "120", "--db", str(db))
    from app.ui.server import ServeConfig, make_app

    for flag, expected in ((None, 120.0), (30.0, 30.0)):
        with PreferenceStore(db) as store:
            ctx, _ = make_app(store, ServeConfig(lease_seconds=flag))
            assert ctx.annotator.config.lease_seconds == expected
            ctx.close()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "store.duckdb"
    make_store(db, 2)
    repo = Path(__file__).resolve().parents[2]
    for args, message in [
        (["project", "set", "--overlap", "0"], "Error: --overlap 0 must be between 1 and 20"),
        (["route", "--human-budget", "1", "--overlap", "99"], "Error: --overlap 99 must be"),
        (["guidelines", "set", str(tmp_path / "none.md")], "no such file"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "app", *args, "--db", str(db)],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
