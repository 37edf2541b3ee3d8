"""The CLI while `prefloop serve` holds the store: with 8 annotators clicking, a CLI judge
batch, a CLI import and `stats --json` run in the serving process, and no label is lost."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

from app.control import absolute_paths, control_file
from tests.fakes.annotators import SimulatedAnnotator, bench_app, check_store, make_users
from tests.fakes.openai_server import FakeOpenAIServer, always

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": "sk-test"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_cli_commands_run_in_the_serving_process_while_annotators_click(tmp_path: Path) -> None:
    db = tmp_path / "served.duckdb"
    bench_app.build_store(db, 400)
    extra = tmp_path / "more.jsonl"
    extra.write_text(
        "\n".join(
            json.dumps(
                {"prompt": f"New question {i}?", "chosen": f"Good {i}", "rejected": f"Bad {i}"}
            )
            for i in range(20)
        )
    )
    users = make_users(tmp_path / "users.json", 8)
    port = bench_app.free_port()
    proc = bench_app.serve(db, users, port)
    stop = threading.Event()
    workers = [
        SimulatedAnnotator(f"http://127.0.0.1:{port}/", f"ann{i}", None, stop) for i in range(8)
    ]
    try:
        info = control_file(db)
        assert info.exists() and stat.S_IMODE(info.stat().st_mode) == 0o600  # owner only
        for w in workers:
            w.start()
        with FakeOpenAIServer(responder=always("A")) as judge:
            judged = cli(
                "judge", "--db", db.name, "--base-url", judge.url, "--model", "m",
                "--all-unlabelled", "--limit", "30", "--json", cwd=tmp_path,
            )  # fmt: skip
        assert judged.returncode == 0, judged.stderr
        assert json.loads(judged.stdout.strip().splitlines()[-1])["judged"] == 30
        imported = cli("import", "--db", db.name, extra.name, "--json", cwd=tmp_path)
        assert imported.returncode == 0, imported.stderr
        assert json.loads(imported.stdout.strip().splitlines()[-1])["imported_pairs"] == 20
        stats = cli("stats", "--db", db.name, "--json", cwd=tmp_path)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["pairs"] == 420
        failed = cli("import", "--db", db.name, "missing.jsonl", cwd=tmp_path)
        assert failed.returncode == 1 and "missing.jsonl" in failed.stderr  # errors come back
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=60)
        proc.terminate()
        proc.wait(timeout=60)
    assert [w.error for w in workers if w.error] == []
    assert sum(len(w.acked) for w in workers) > 0
    counts = check_store(db, {w.name: w.acked for w in workers})
    assert counts["acknowledged"] == counts["stored"]
    assert not control_file(db).exists()  # the server took it away when it stopped


def test_paths_are_sent_absolute() -> None:
    cwd = str(REPO)
    sent = absolute_paths(
        ["import", "--db", "README.md", "--out", "new.jsonl", "--model", "m"], cwd
    )
    assert sent == [
        "import",
        "--db",
        f"{cwd}/README.md",
        "--out",
        f"{cwd}/new.jsonl",
        "--model",
        "m",
    ]
    assert absolute_paths(["--out=x.json", "tiny"], cwd) == [f"--out={cwd}/x.json", "tiny"]


def test_the_control_port_needs_the_token_and_streams_the_output(tmp_path: Path) -> None:
    import httpx

    from app.control import ControlServer

    ran: list[list[str]] = []

    def run(argv: list[str]) -> int:
        ran.append(argv)
        print("hello from", argv[0])  # the command's stdout goes to its caller only
        return 3

    server = ControlServer(str(tmp_path / "s.duckdb"), run).start()
    try:
        info = json.loads(control_file(tmp_path / "s.duckdb").read_text())
        url = f"http://127.0.0.1:{info['port']}/run"
        for token in ("", "Bearer wrong", f"Bearer {info['token']}x"):
            refused = httpx.post(url, json={"argv": ["stats"]}, headers={"Authorization": token})
            assert refused.status_code == 403
        assert ran == []
        reply = httpx.post(
            url, json={"argv": ["stats"]}, headers={"Authorization": f"Bearer {info['token']}"}
        )
        lines = [json.loads(line) for line in reply.text.splitlines()]
        assert "".join(m.get("text", "") for m in lines if m.get("stream") == "out") == (
            "hello from stats\n"
        )
        assert lines[-1] == {"exit": 3}
    finally:
        server.close()
    assert not control_file(tmp_path / "s.duckdb").exists()
