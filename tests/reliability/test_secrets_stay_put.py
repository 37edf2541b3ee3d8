"""The API key goes to the judge endpoint and nowhere else (issue 14, class 4).

`test_secrets.py` checks that an honest pipeline writes the key nowhere. These check the
two ways it used to travel further: a trainer process inherited it with the whole
environment, and an endpoint that echoes the bearer token (in a reply, an error body, a
401) got it stored in `judgements.raw_text` / `error` and shown by the CLI and the Judge
tab. Every store table's text columns are searched, not just the file's bytes (DuckDB
may compress strings).
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from app.cli import main
from data.store import PreferenceStore
from judges.secrets import REDACTED, secret_forms
from tests.fakes.hh import TINY, import_hh
from tests.fakes.judging import make_pairs
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.fakes.secrets import SECRET
from training.launch import trainer_env

OTHER_SECRET = "vllm-endpoint-key-SECRET-55e0"


# -- the trainer's environment ---------------------------------------------------------


def test_the_trainer_environment_is_an_allow_list() -> None:
    caller = {
        "PATH": "/usr/bin",
        "HOME": "/home/x",
        "LC_ALL": "C.UTF-8",
        "CUDA_VISIBLE_DEVICES": "0",
        "PREFLOOP_CACHE_DIR": "/c",
        "HF_TOKEN": "hf_kept_for_gated_models",
        "OPENAI_API_KEY": SECRET,
        "OPENAI_BASE_URL": "http://judge/v1",
        "VLLM_API_KEY": OTHER_SECRET,
        "HF_API_KEY": OTHER_SECRET,
        "PREFLOOP_SECRET": OTHER_SECRET,
        "GITHUB_TOKEN": OTHER_SECRET,
        "AWS_SECRET_ACCESS_KEY": OTHER_SECRET,
        "DATABASE_URL": "postgres://u:pw@host/db",
        "SOMETHING_ELSE": "x",
    }
    env = trainer_env(caller)
    assert {"PATH", "HOME", "LC_ALL", "CUDA_VISIBLE_DEVICES", "PREFLOOP_CACHE_DIR"} <= set(env)
    assert env["HF_TOKEN"] == "hf_kept_for_gated_models"  # documented: the hub may need it
    assert env["PYTHONUNBUFFERED"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert env["PYTHONPATH"]  # the repository root, so `python -m training` imports
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "VLLM_API_KEY",
        "HF_API_KEY",
        "PREFLOOP_SECRET",
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DATABASE_URL",
        "SOMETHING_ELSE",
    ):
        assert name not in env, name
    assert SECRET not in str(env) and OTHER_SECRET not in str(env)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_a_running_trainer_never_sees_the_api_key(
    tmp_path: Path, hh_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.jobs import JobManager, TrainRequest

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("VLLM_API_KEY", OTHER_SECRET)
    monkeypatch.setenv("HF_TOKEN", "hf_kept_for_gated_models")
    with PreferenceStore(tmp_path / "s.duckdb") as store:
        import_hh(store, hh_path, tmp_path, 0, 30)
        jobs = JobManager(store, tmp_path / "runs")
        try:
            run_id = jobs.submit(
                TrainRequest("sft", policy="tiny", max_steps=500, overrides={**TINY})
            )
            environ = _environ_after_exec(lambda: jobs.status(run_id))
            assert "OPENAI_API_KEY" not in environ and "VLLM_API_KEY" not in environ
            assert environ.get("HF_TOKEN") == "hf_kept_for_gated_models"
            assert "PATH" in environ and "PYTHONPATH" in environ
            raw = Path(f"/proc/{jobs.status(run_id)['pid']}/environ").read_bytes()
            assert SECRET.encode() not in raw and OTHER_SECRET.encode() not in raw
        finally:
            jobs.cancel(run_id)
            jobs.close()


def _environ_after_exec(status: Callable[[], dict[str, Any]]) -> dict[str, str]:
    """The trainer's environment from /proc, once it runs `python -m training` (before its
    exec, a forked child still shows the parent's environment)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = status()
        assert current["status"] in ("queued", "running"), current.get("log_tail")
        pid = current.get("pid")
        if pid:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"training" in cmdline:
                    raw = Path(f"/proc/{pid}/environ").read_bytes()
                    pairs = [item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item]
                    return {k.decode(): v.decode(errors="replace") for k, v in pairs}
            except FileNotFoundError:
                pass
        time.sleep(0.05)
    raise AssertionError("the trainer never started")


# -- an endpoint that echoes the key ---------------------------------------------------


class EchoingEndpoint:
    """A responder that puts the Authorization header it received into its answers, in turn:
    as text beside a verdict, in an error body (500, 400), with no verdict (so the repair
    request goes out and fails too), base64- and URL-encoded."""

    def __init__(self, server: FakeOpenAIServer):
        self.server = server
        self.turn = 0

    def __call__(self, body: dict[str, Any]) -> Reply:
        auth = self.server.requests[-1]["headers"].get("authorization", "")
        kinds: list[Callable[[str], Reply]] = [
            lambda a: Reply(text=f"[[A]] (you sent {a})"),
            lambda a: Reply(status=500, error_message=f"upstream refused {a}"),
            lambda a: Reply(status=400, error_message=f"bad request from {a}"),
            lambda a: Reply(text=f"no idea, {a}"),
            lambda a: Reply(text=f"no idea, {a}"),  # the repair of the one before
            lambda a: Reply(text=f"[[B]] {base64.b64encode(a.encode()).decode()}"),
            lambda a: Reply(text=f"[[A]] {quote(a, safe='')}"),
        ]
        reply = kinds[self.turn % len(kinds)](auth)
        self.turn += 1
        return reply


@pytest.fixture
def echoing() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        server.responder = EchoingEndpoint(server)
        yield server


@dataclass
class CliResult:
    exit_code: int
    output: str  # stdout and stderr


def judge_cli(capsys: pytest.CaptureFixture[str], db: Path, url: str, *extra: str) -> CliResult:
    """`prefloop judge` as `python -m app` runs it: a PrefloopError is one stderr line, exit 1."""
    args = ["judge", "--db", str(db), "--base-url", url, "--model", "echo-m"]
    # one request at a time, no retries, and a token cap that lets the whole key through
    # (the fake cuts replies to max_tokens tokens)
    args += ["--concurrency", "1", "--max-retries", "0", "--max-tokens", "400", *extra]
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return CliResult(code, captured.out + captured.err)


def text_columns(store: PreferenceStore) -> list[tuple[str, str]]:
    return [
        (table, column)
        for table, column in store.query(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN ('VARCHAR', 'JSON') AND table_schema = 'main'"
        )
    ]


def leaks(store: PreferenceStore, *keys: str) -> list[str]:
    """Every (table.column) holding a key in any form `judges.secrets` knows."""
    found = []
    for table, column in text_columns(store):
        for form in secret_forms(*keys):
            hits = store.scalar(
                f'SELECT count(*) FROM "{table}" WHERE contains(CAST("{column}" AS VARCHAR), ?)',
                [form],
            )
            if hits:
                found.append(f"{table}.{column}: {form[:12]}…")
    return found


def test_an_echoing_endpoint_leaves_the_key_in_no_table_and_no_output(
    tmp_path: Path,
    echoing: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        make_pairs(store, 6)
    result = judge_cli(capsys, db, echoing.url, "--json")
    assert result.exit_code == 0, result.output
    assert all(f"Bearer {SECRET}" == r["headers"]["authorization"] for r in echoing.requests)
    outputs = [result.output]
    # 401 and 404 with the key in the body stop the batch with one error line
    for status in (401, 404):
        echoing.push(Reply(status=status, error_message=f"you sent Bearer {SECRET}"))
        failed = judge_cli(capsys, db, echoing.url, "--retry-failed")
        assert failed.exit_code != 0
        assert REDACTED in failed.output, failed.output
        outputs.append(failed.output)
    for output in outputs:
        for form in secret_forms(SECRET):
            assert form not in output
    with PreferenceStore(db, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM judgements WHERE status = 'failed'") >= 3
        stored = " ".join(
            str(v) for row in store.query("SELECT raw_text, error FROM judgements") for v in row
        )
        assert REDACTED in stored  # the echo was there, and was scrubbed
        assert text_columns(store)  # the search below looks at something
        assert leaks(store, SECRET) == []


def test_a_per_endpoint_key_variable(
    tmp_path: Path,
    echoing: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("VLLM_API_KEY", OTHER_SECRET)
    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        make_pairs(store, 2)
    result = judge_cli(capsys, db, echoing.url, "--api-key-env", "VLLM_API_KEY", "--limit", "1")
    assert result.exit_code == 0, result.output
    sent = {r["headers"]["authorization"] for r in echoing.requests}
    assert sent == {f"Bearer {OTHER_SECRET}"}  # the OpenAI key did not go to this endpoint
    assert OTHER_SECRET not in result.output
    with PreferenceStore(db, read_only=True) as store:
        assert leaks(store, SECRET, OTHER_SECRET) == []
    unset = judge_cli(capsys, db, echoing.url, "--api-key-env", "NOT_SET_ANYWHERE_KEY")
    assert unset.exit_code != 0 and "$NOT_SET_ANYWHERE_KEY is not set" in unset.output
    given_the_key = judge_cli(capsys, db, echoing.url, "--api-key-env", OTHER_SECRET + "!")
    assert given_the_key.exit_code != 0 and "not a variable name" in given_the_key.output
    assert OTHER_SECRET not in given_the_key.output.replace(OTHER_SECRET + "!", "")


def test_the_judge_tab_shows_no_echoed_key(
    tmp_path: Path, echoing: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.served_app import serve_store, stop, wait_for_batch

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the key comes from the tab only
    (tmp_path / "app").mkdir()
    served = serve_store(tmp_path / "app", n=7)
    try:
        with served.store.transaction() as cur:
            cur.execute("UPDATE pairs SET queue = 'judge'").fetchall()
        client = served.client("boss")
        shown = []
        # first 4 pairs against the echoes, then the rest against a 401 that echoes the key
        for limit, push in ((4, None), (0, Reply(status=401, error_message=f"Bearer {SECRET}"))):
            if push is not None:
                echoing.push(push)
            client.predict(
                echoing.url, "echo-m", "", 1, limit, False, 0, 0, "openai", SECRET,
                api_name="/judge_start",
            )  # fmt: skip
            shown.append(wait_for_batch(client))
            status, failures = client.predict(api_name="/judge_status")
            shown += [status, str(failures)]
        shown = [html.unescape(text) for text in shown]  # the tab escapes Markdown and HTML
        assert "**Batch**: failed" in shown[-2] and REDACTED in shown[-2]
        assert any(REDACTED in text for text in shown[:-2])  # an echo was shown, scrubbed
        for text in shown:
            for form in secret_forms(SECRET):
                assert form not in text, text
        assert leaks(served.store, SECRET) == []
    finally:
        stop(served)
