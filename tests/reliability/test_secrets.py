"""The API key never lands in the store, its WAL, logs, exports or run folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from data.ingest import ingest
from data.shapes import PairRecord
from tests.fakes.hh import TINY, import_hh
from tests.fakes.openai_server import FakeOpenAIServer, always
from tests.fakes.secrets import SECRET

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_api_key_appears_nowhere(tmp_path: Path, hh_path: Path) -> None:
    from data.store import PreferenceStore

    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        import_hh(store, hh_path, tmp_path, 0, 30)
        ingest(
            store,
            [
                PairRecord([{"role": "user", "content": f"q{i}"}], f"x{i}", f"y{i}")
                for i in range(5)
            ],
            origin="unlabelled",
        )
    env = dict(os.environ, OPENAI_API_KEY=SECRET, PREFLOOP_DB=str(db))
    outputs = []
    with FakeOpenAIServer(responder=always("[[A]]")) as server:
        outputs.append(
            cli(
                "judge",
                "--base-url",
                server.url,
                "--model",
                "m",
                "--all-unlabelled",
                "--json",
                env=env,
            )
        )
        # the key did go over the wire (so this test can see a leak), and nowhere else
        assert server.requests
        assert all(SECRET in r["headers"].get("authorization", "") for r in server.requests)
    outputs.append(cli("export", "--out", str(tmp_path / "export.jsonl"), env=env))
    outputs.append(cli("stats", "--json", env=env))
    outputs.append(
        cli(
            "train",
            "sft",
            "--policy",
            "tiny",
            "--max-steps",
            "1",
            "--out",
            str(tmp_path / "runs"),
            "--json",
            *[f"--set={k}={v}" for k, v in TINY.items()],
            env=env,
        )
    )
    for proc in outputs:
        assert SECRET not in proc.stdout and SECRET not in proc.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in files) and any("runs" in p.parts for p in files)
    leaked = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert leaked == []
