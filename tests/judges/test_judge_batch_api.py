"""`prefloop judge --batch-api`: upload, batch, poll, download, ingest with the live path's
cache keys and parsing; failed lines judged live or listed; batch prices; a prefloop
killed mid-poll resumes polling the same batch."""

from __future__ import annotations

import json
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
from judges.openai_batch import stored_batches
from judges.store_io import cache_key
from tests.fakes.judging import make_pairs, prefers_good
from tests.fakes.openai_server import FakeOpenAIServer, Reply

REPO = Path(__file__).resolve().parents[2]
PRICES = {"judge-m": {"prompt": 2.0, "completion": 8.0}}


def judge(db: Path, url: str, *extra: str) -> dict:
    args = ["judge", "--db", str(db), "--base-url", url, "--model", "judge-m", "--json"]
    result = CliRunner().invoke(cli, [*args, "--timeout", "5", "--max-retries", "0", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def new_store(path: Path, n: int) -> None:
    with PreferenceStore(path) as store:
        make_pairs(store, n)


def judgement_keys(db: Path) -> dict[tuple[str, str], str]:
    with PreferenceStore(db) as store:
        rows = store.query(
            "SELECT pair_id, order_shown, cache_key FROM judgements WHERE status = 'ok'"
        )
    return {(r[0], r[1]): r[2] for r in rows}


def test_batch_api_ingests_with_live_keys_retries_failed_lines_live_and_prices_at_batch_rates(
    tmp_path: Path,
) -> None:
    live_db, batch_db = tmp_path / "live.duckdb", tmp_path / "batch.duckdb"
    new_store(live_db, 5)
    new_store(batch_db, 5)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    with FakeOpenAIServer(prefers_good) as server:
        live = judge(live_db, server.url, "--swap")
        server.reset_counts()
        server.push(Reply.server_error())  # the batch's first line fails
        out = judge(
            batch_db, server.url, "--swap", "--batch-api", "--batch-poll-seconds", "0.05",
            "--prices", str(prices),
        )  # fmt: skip
        live_requests = server.request_count
        live_body = dict(server.requests[0]["body"])
        uploads = [c for c in server.batch_calls if c == ("POST", "/v1/files")]
        assert len(server.batches) == 1 and len(uploads) == 1
    assert (out["judged"], out["labels"], out["failed"]) == (5, 5, 0)
    batch = out["batch_api"]
    assert (batch["requests"], batch["completed"], batch["failed_lines"]) == (10, 9, 1)
    assert batch["retried_live"] == 1 and not batch["resumed"] and live_requests == 1
    assert out["calls"] == 10 and out["cache_hits"] == 0
    # the same cache keys and verdicts as live calls
    assert judgement_keys(batch_db) == judgement_keys(live_db) and len(live["batch_id"]) > 0
    with PreferenceStore(batch_db) as store, PreferenceStore(live_db) as live_store:
        verdicts = "SELECT pair_id, verdict FROM active_labels ORDER BY pair_id"
        assert store.query(verdicts) == live_store.query(verdicts)
        model, messages = live_body.pop("model"), live_body.pop("messages")
        live_key = cache_key(server.url, model, live_body, messages)
        (one_live_prompt, one_live_completion) = store.query(
            "SELECT prompt_tokens, completion_tokens FROM judge_calls WHERE cache_key = ?",
            [live_key],
        )[0]
        assert store.scalar("SELECT count(*) FROM judge_calls") == 10
        assert stored_batches(store)[0]["status"] == "ingested"
    # 9 answers at half price, one live at full price
    live_cost = (one_live_prompt * 2.0 + one_live_completion * 8.0) / 1e6
    full = (out["prompt_tokens"] * 2.0 + out["completion_tokens"] * 8.0) / 1e6
    assert out["cost_usd"] == pytest.approx((full - live_cost) / 2 + live_cost, rel=1e-3)


def test_failed_lines_can_be_listed_and_left_for_the_next_run(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    new_store(db, 4)
    with FakeOpenAIServer(prefers_good) as server:
        server.push(Reply.server_error(500))
        out = judge(db, server.url, "--batch-api", "--batch-poll-seconds", "0.05",
                    "--batch-failed", "list")  # fmt: skip
        assert server.request_count == 0  # nothing live
        listed = out["batch_api"]["listed"]
        assert len(listed) == 1 and "HTTP 500" in listed[0]["error"]
        assert (out["judged"], out["labels"]) == (3, 3)
        again = judge(db, server.url, "--batch-api", "--batch-poll-seconds", "0.05")
        assert again["batch_api"]["requests"] == 1 and again["labels"] == 1
        assert len(server.batches) == 2


def test_a_prefloop_killed_mid_poll_resumes_polling_the_same_batch(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    new_store(db, 6)
    with FakeOpenAIServer(prefers_good) as server:
        server.batch_hold = True  # the batch stays in_progress until released
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "judge", "--db", str(db), "--base-url", server.url,
             "--model", "judge-m", "--batch-api", "--batch-poll-seconds", "0.05", "--json"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while sum(1 for c in server.batch_calls if c[0] == "GET") < 3:  # polled since commit
                assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the batch was never polled"
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        (batch_id,) = server.batches
        with PreferenceStore(db) as store:
            assert [b["batch_id"] for b in stored_batches(store)] == [batch_id]
            assert store.scalar("SELECT count(*) FROM judgements") == 0
        server.batch_hold = False
        out = judge(db, server.url, "--batch-api", "--batch-poll-seconds", "0.05")
        assert out["batch_api"]["batch_id"] == batch_id and out["batch_api"]["resumed"]
        assert len(server.batches) == 1  # not paid twice
        assert sum(1 for c in server.batch_calls if c == ("POST", "/v1/files")) == 1
        assert (out["labels"], out["failed"], server.request_count) == (6, 0, 0)
        done = judge(db, server.url, "--batch-api", "--batch-poll-seconds", "0.05")
        assert done["units"] == 0 and len(server.batches) == 1
    with PreferenceStore(db) as store:
        assert stored_batches(store)[0]["status"] == "ingested"


def test_batch_no_wait_submits_and_a_later_run_ingests(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    new_store(db, 3)
    with FakeOpenAIServer(prefers_good) as server:
        server.batch_hold = True
        first = judge(db, server.url, "--batch-api", "--batch-no-wait")
        assert first["batch_api"]["pending"] and first["judged"] == 0
        assert first["batch_api"]["status"] == "in_progress"
        again = judge(db, server.url, "--batch-api", "--batch-no-wait")  # still running
        assert again["batch_api"]["batch_id"] == first["batch_api"]["batch_id"]
        server.batch_hold = False
        done = judge(db, server.url, "--batch-api", "--batch-no-wait")
        assert done["batch_api"]["resumed"] and not done["batch_api"]["pending"]
        assert (done["labels"], len(server.batches), server.request_count) == (3, 1, 0)
