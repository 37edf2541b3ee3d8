"""`prefloop judge` and `prefloop judge-report` through the CLI, a killed batch, and the API key."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from data.store import PreferenceStore
from judges.agreement import agreement_report, cohen_kappa
from tests.fakes.judging import good_side, make_pairs, prefers_good
from tests.fakes.openai_server import FakeOpenAIServer, Reply

REPO = Path(__file__).resolve().parents[2]
SECRET = "sk-prefloop-test-SECRET-7f3a9c"
CONTRACT_KEYS = [
    "judged",
    "labels",
    "failed",
    "inconsistent",
    "calls",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
]


def new_store(path: Path, n: int) -> list[str]:
    with PreferenceStore(path) as store:
        return make_pairs(store, n)


def judge(db: Path, url: str, *extra: str) -> dict:
    result = CliRunner().invoke(
        cli,
        [
            "judge",
            "--db",
            str(db),
            "--base-url",
            url,
            "--model",
            "judge-m",
            "--timeout",
            "2",
            "--max-retries",
            "1",
            "--json",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cli_contract_and_prices(
    store_path: Path, fake_openai: FakeOpenAIServer, tmp_path: Path
) -> None:
    new_store(store_path, 4)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"judge-m": {"prompt": 1.0, "completion": 4.0}}))
    out = judge(
        store_path, fake_openai.url, "--swap", "--concurrency", "2", "--prices", str(prices)
    )
    assert list(out)[: len(CONTRACT_KEYS)] == CONTRACT_KEYS
    assert (out["judged"], out["labels"], out["calls"], out["failed"]) == (4, 4, 8, 0)
    assert out["cost_usd"] == pytest.approx(
        (out["prompt_tokens"] * 1.0 + out["completion_tokens"] * 4.0) / 1e6
    )
    again = judge(store_path, fake_openai.url, "--swap")
    assert again["calls"] == 0 and fake_openai.request_count == 8


def test_cli_errors_name_the_fix(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    new_store(store_path, 1)
    result = subprocess.run(
        [sys.executable, "-m", "app", "judge", "--db", str(store_path), "--model", "m"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "pass --base-url URL" in result.stderr and "OPENAI_BASE_URL" in result.stderr
    for command in ("judge", "judge-report"):
        assert CliRunner().invoke(cli, [command, "--help"]).exit_code == 0


def test_api_key_never_reaches_store_logs_or_exports(
    store_path: Path,
    fake_openai: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    new_store(store_path, 3)
    fake_openai.push(
        Reply.rate_limited(0.05), Reply(text="no idea")
    )  # exercise retry and repair paths
    with caplog.at_level(logging.DEBUG):
        out = judge(store_path, fake_openai.url, "--swap")
        export = tmp_path / "export.jsonl"
        result = CliRunner().invoke(cli, ["export", "--db", str(store_path), "--out", str(export)])
        assert result.exit_code == 0, result.output
        report = CliRunner().invoke(cli, ["judge-report", "--db", str(store_path), "--json"])
    assert out["labels"] == 3
    assert fake_openai.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"  # it was used
    assert SECRET not in caplog.text and SECRET not in report.output
    assert json.loads(report.output)["judges"][0]["labels"] == 3
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert store_path in files and export in files
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


def test_killed_batch_resumes_with_only_the_missing_work(store_path: Path) -> None:
    total = 120
    new_store(store_path, total)
    with FakeOpenAIServer(prefers_good, latency=0.05) as server:
        env = {**os.environ, "OPENAI_API_KEY": "sk-x"}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "judge",
                "--db",
                str(store_path),
                "--base-url",
                server.url,
                "--model",
                "judge-m",
                "--concurrency",
                "2",
                "--json",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        wal = Path(f"{store_path}.wal")

        def wal_size() -> int:
            return wal.stat().st_size if wal.exists() else 0

        while server.request_count == 0 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        before_calls = wal_size()  # the batch's own set-up writes happen before its first call
        while (
            not (wal_size() > before_calls and server.completed >= 10)  # a writer commit began
            and time.monotonic() < deadline
            and process.poll() is None
        ):
            time.sleep(0.02)
        # a commit is written to the WAL in pieces on a busy machine: kill once it has not
        # grown for 0.1 s, so the commit seen is whole (a half-written one is rolled back)
        size, still_since = wal_size(), time.monotonic()
        while time.monotonic() - still_since < 0.1 and process.poll() is None:
            time.sleep(0.01)
            if wal_size() != size:
                size, still_since = wal_size(), time.monotonic()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert server.settle()  # counted what the killed batch sent before the reset
        first_calls = server.request_count
        assert 0 < first_calls < total
        with PreferenceStore(store_path) as store:
            done = store.scalar("SELECT count(*) FROM judgements")
            assert done >= 1  # committed in small batches before the kill
            server.reset_counts()
            from judges.batch import run_batch
            from judges.config import JudgeConfig

            report = run_batch(
                store,
                JudgeConfig(
                    models=("judge-m",),
                    base_url=server.url,
                    concurrency=4,
                    progress=False,
                    timeout=2,
                ),
            )
            assert report.calls == total - done == server.request_count  # only the missing units
            assert store.scalar("SELECT count(*) FROM judgements") == total
            assert len(store.labels("AND source = 'judge'")) == total


def test_agreement_report(store: PreferenceStore, fake_openai: FakeOpenAIServer) -> None:
    pair_ids = make_pairs(store, 6)
    from judges.batch import run_batch
    from judges.config import JudgeConfig

    run_batch(
        store, JudgeConfig(models=("judge-m",), base_url=fake_openai.url, swap=True, progress=False)
    )
    for i, pair_id in enumerate(pair_ids):  # people agree with the judge on 4 of 6 pairs
        good = good_side(store, pair_id)
        verdict = good if i < 4 else {"a": "b", "b": "a"}[good]
        store.add_label(pair_id, source="human", who="ann", verdict=verdict)
    report = agreement_report(store)
    (judge_row,) = report["judges"]
    assert judge_row["who"] == "judge-m" and judge_row["vs_reference"]["pairs"] == 6
    assert judge_row["vs_reference"]["accuracy"] == pytest.approx(4 / 6)
    assert judge_row["prefers_longer"] == 1.0  # the GOOD answers are the longer ones
    (model_row,) = report["models"]
    assert model_row["position_consistency"] == 1.0 and model_row[
        "first_position_rate"
    ] == pytest.approx(0.5)


def test_cohen_kappa_values() -> None:
    assert cohen_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == 1.0
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == 0.0
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None
    assert cohen_kappa([], []) is None


def test_human_summary(store_path: Path, fake_openai: FakeOpenAIServer) -> None:
    new_store(store_path, 2)
    args = ["judge", "--db", str(store_path), "--base-url", fake_openai.url, "--model", "m"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0 and "judged 2 pairs: 2 labels" in first.stdout
    assert "2 calls, " in first.stdout and " prompt + 2 completion tokens" in first.stdout
    # ids, hashes and counters of the batch's bookkeeping stay in --json
    for internal in ("batch_id", "template_hash", "units", "logprobs", "_", "{", "True"):
        assert internal not in first.stdout, first.stdout
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "nothing to judge" in again.stdout
    assert "--all-unlabelled" in again.stdout
    as_json = json.loads(CliRunner().invoke(cli, [*args, "--json"]).stdout)
    assert {"batch_id", "template_hash", "units", "logprobs", "seconds"} <= set(as_json)


def test_judge_flags_that_mirror_a_config_field_take_its_help_text() -> None:
    import dataclasses

    from app.commands.judge import judge_command
    from judges.config import JudgeConfig

    fields = {f.name: f.metadata["help"] for f in dataclasses.fields(JudgeConfig)}
    mirrored = [p for p in judge_command.params if p.name in fields]
    assert len(mirrored) >= 12
    for param in mirrored:
        assert param.help == fields[param.name], param.name
