"""`prefloop generate --base-url URL --model M` against fake OpenAI-compatible servers: the
sampling parameters sent and stored, the endpoint's model name, n samples from servers
that ignore `n`, a faulty replica, and a generation client without torch."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from app.cli import cli
from data.store import PreferenceStore
from tests.fakes.judging import make_pairs
from tests.fakes.openai_server import FakeOpenAIServer, Reply, last_user_text

REPO = Path(__file__).resolve().parents[2]


def sampler(body: dict[str, Any]) -> Reply:
    """Distinct texts per prompt, seed and choice, as a sampling server would give."""
    tag = hashlib.sha1(last_user_text(body).encode()).hexdigest()[:6]
    seed = body.get("seed")
    return Reply(choices=[f"answer {tag} seed {seed} sample {i}" for i in range(body.get("n", 1))],
                 text=f"answer {tag} seed {seed}")  # fmt: skip


def generate(db: Path, urls: list[str], *extra: str) -> dict[str, Any]:
    args = ["generate", "--db", str(db), "--model", "qwen-local", "--json"]
    for url in urls:
        args += ["--base-url", url]
    result = CliRunner().invoke(cli, [*args, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def stored_meta(db: Path) -> list[dict[str, Any]]:
    with PreferenceStore(db) as store:
        rows = store.query("SELECT meta FROM prompt_responses WHERE origin = 'generate'")
    return [json.loads(r[0]) for r in rows]


def test_generate_through_an_endpoint_stores_sampling_and_the_served_model(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        make_pairs(store, 4)
    with FakeOpenAIServer(sampler, model_name="Qwen/Qwen2-0.5B-Instruct") as server:
        run = generate(
            db, [server.url], "--n", "3", "--temperature", "0.7", "--top-p", "0.9",
            "--max-new-tokens", "20", "--concurrency", "2",
        )  # fmt: skip
        bodies = [r["body"] for r in server.requests]
        assert server.max_in_flight <= 2
    assert run["status"] == "succeeded"
    metrics = run["metrics"]
    assert (metrics["prompts"], metrics["generated"], metrics["new_pairs"]) == (4, 12, 12)
    assert metrics["engine"] == "openai-compatible" and metrics["failed_prompts"] == 0
    assert len(bodies) == 4  # one request per prompt: the server honours n
    for body in bodies:
        assert body["model"] == "qwen-local" and body["n"] == 3
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.9, 20)
    metas = stored_meta(db)
    assert len(metas) == 12
    for meta in metas:
        assert meta["run_id"] == run["run_id"]
        assert (meta["n"], meta["temperature"], meta["top_p"], meta["max_new_tokens"]) == (
            3, 0.7, 0.9, 20,
        )  # fmt: skip
        assert meta["model"] == "Qwen/Qwen2-0.5B-Instruct"  # what the endpoint says it served
        assert meta["requested_model"] == "qwen-local" and meta["endpoint"] == server.url
        assert meta["engine"] == "openai-compatible"


def test_a_server_that_ignores_n_is_asked_again_and_a_faulty_replica_is_avoided(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        make_pairs(store, 5)
    with (
        FakeOpenAIServer(sampler, honour_n=False) as one_choice,  # llama.cpp-like
        FakeOpenAIServer(lambda body: Reply.server_error(502)) as broken,
    ):
        run = generate(db, [broken.url, one_choice.url], "--n", "2", "--concurrency", "2",
                       "--max-retries", "0")  # fmt: skip
        assert broken.request_count <= 4  # benched after 3 failures (and 1 more in flight)
        assert one_choice.request_count == 10  # two requests per prompt, one choice each
    metrics = run["metrics"]
    assert (metrics["generated"], metrics["new_pairs"], metrics["failed_prompts"]) == (10, 5, 0)
    by_url = {e["url"]: e for e in metrics["endpoints"]}
    assert by_url[broken.url]["benched"] >= 1
    assert {m["endpoint"] for m in stored_meta(db)} == {one_choice.url}


def test_the_generation_client_imports_no_torch() -> None:
    code = (
        "import sys, training.generate, training.remote_generate, openai\n"
        "print(','.join(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_endpoint_flags_are_checked_before_anything_runs(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        make_pairs(store, 1)
    for args, fix in (
        (["--base-url", "http://127.0.0.1:1/v1"], "--base-url needs --model NAME"),
        (["--model", "m"], "add --base-url URL"),
        (["--base-url", "127.0.0.1:8000", "--model", "m"], "not an http(s) URL"),
        (["--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--policy", "tiny"], "exclude"),
    ):
        result = CliRunner().invoke(cli, ["generate", "--db", str(db), *args])
        assert result.exit_code != 0 and fix in str(result.exception), (args, result.exception)
    assert not (tmp_path / "runs").exists()
