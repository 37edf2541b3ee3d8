"""README's "A loop, by hand", run as written on the HH-RLHF data it names.

The code block is read from README.md, so the test and the README cannot drift. Each line
runs through the real CLI in its own process, with two substitutions only: the judge's
base URL points at an OpenAI-compatible server this test starts on 127.0.0.1 (a
length-biased judge, so its labels are imperfect as real ones are), and `serve` gets a free
port. While `serve` runs, a few pairs of the human queue are labelled through the app's
API, as an annotator would; then it is stopped with Ctrl-C (SIGINT), as README says.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from data.store import PreferenceStore
from tests.fakes.judging import shown_responses
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.fakes.served_app import free_port

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"
README_URL = "http://127.0.0.1:8000/v1"


def readme_loop() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("A loop, by hand", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def commands(line: str) -> list[tuple[dict[str, str], list[str]]]:
    """The commands of one README line: `A && B  # comment` -> [(env, argv), ...]."""
    line = line.split("  #", 1)[0].strip()
    out = []
    for part in line.split("&&"):
        words = shlex.split(part)
        env = {}
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        assert words[0] == "prefloop", line
        out.append((env, words[1:]))
    return out


def longer_is_better(body: dict[str, Any]) -> Reply:
    first, second = shown_responses(body)
    first_wins = len(first) >= len(second)
    return Reply(text="A" if first_wins else "B", p_a=0.7 if first_wins else 0.3)


def label_in_the_app(port: int, n: int) -> int:
    from gradio_client import Client

    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    labelled = 0
    pair_id = client.predict(api_name="/next_pair")[3]
    while pair_id and labelled < n:
        pair_id = client.predict(pair_id, "", api_name="/label_a")[3]
        labelled += 1
    return labelled


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError("prefloop serve did not start")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # SmolLM2 trains and generates on CPU: about 15 min on 2 cores
@pytest.mark.skipif(not HH.exists(), reason=f"HH-RLHF data not at {HH}")
def test_the_readme_loop_runs_as_written(tmp_path: Path) -> None:
    db = tmp_path / "prefloop.duckdb"
    base_env = {**os.environ, "PREFLOOP_DB": str(db)}
    seen: list[str] = []
    routes = labelled_in_app = 0
    timings: list[dict[str, Any]] = []  # written to tests/artifacts for README's figures
    with FakeOpenAIServer(longer_is_better) as judge:
        for line in readme_loop():
            for env, argv in commands(line.replace(README_URL, judge.url)):
                seen.append(argv[0])
                started = time.monotonic()
                if argv[0] == "serve":
                    port = free_port()
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "app", *argv, "--port", str(port)],
                        cwd=ROOT,
                        env={**base_env, **env},
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    try:
                        wait_for_port(port, proc)
                        labelled_in_app = label_in_the_app(port, 6)
                        assert labelled_in_app == 6
                    finally:
                        proc.send_signal(signal.SIGINT)  # Ctrl-C, as README says
                        proc.communicate(timeout=60)
                    timings.append({"command": "serve (6 labels)", "s": time.monotonic() - started})
                    continue
                done = subprocess.run(
                    [sys.executable, "-m", "app", *argv],
                    cwd=ROOT,
                    env={**base_env, **env},
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
                timings.append(
                    {"command": " ".join(argv), "s": round(time.monotonic() - started, 1)}
                )
                assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}\n{timings}"
                if argv[0] == "route":  # each route adds 200 (unstarted pairs are re-chosen)
                    routes += 1
                    open_pairs = 200 * routes - labelled_in_app
                    assert f"{open_pairs} open in the human queue" in done.stdout, done.stdout
    artifacts = ROOT / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "readme_loop.json").write_text(json.dumps(timings, indent=1))
    assert seen[:2] == ["import", "judge"] and "serve" in seen and "generate" in seen

    with PreferenceStore(db, read_only=True) as store:
        pairs = store.count("pairs")
        reference = store.count("reference_labels")
        assert reference >= 2000  # HH's labels, kept only to measure
        assert store.scalar("SELECT count(*) FROM labels WHERE source = 'import'") == 0
        assert store.scalar("SELECT count(*) FROM labels WHERE source = 'human'") == 6
        assert store.scalar("SELECT count(*) FROM ensembles") == 2  # scored twice
        generated = store.scalar("SELECT count(*) FROM pairs WHERE origin = 'generate'")
        assert generated >= 1
        # two routes of 200 (the second re-chooses unstarted pairs and adds 200 more)
        assert store.scalar("SELECT count(*) FROM pairs WHERE queue = 'human'") == 400
        # the last judge call labelled the new pairs that went to the judge queue
        unjudged = store.scalar(
            "SELECT count(*) FROM pairs p WHERE queue = 'judge' AND NOT EXISTS (SELECT 1 FROM "
            "labels l WHERE l.pair_id = p.pair_id AND l.source = 'judge' AND l.retracted_at IS NULL)"
        )
        assert unjudged == 0, unjudged
        run = store.query_dicts("SELECT config, run_dir FROM runs WHERE kind = 'dpo'")[0]
        assert json.loads(run["config"])["policy"] == "smollm2-135m-instruct"  # README's
    # reference labels never reach the training snapshot: it holds judge and human labels
    import pyarrow.parquet as pq

    snapshot = pq.read_table(Path(run["run_dir"]) / "snapshot.parquet").to_pylist()
    assert len(snapshot) > 2000
    assert {row["source"] for row in snapshot} == {"judge", "human"}
    assert pairs > reference
