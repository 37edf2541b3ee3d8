"""Several `--base-url` replicas: balancing by in-flight count, a cap per endpoint, benching
a failing endpoint, and a cache key that does not depend on which replica answered."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from data.endpoints import EndpointPool, PoolPolicy, parse_base_urls, pool_name
from data.errors import ConfigError
from data.store import PreferenceStore
from judges.config import JudgeConfig
from tests.fakes.judging import make_pairs, prefers_good
from tests.fakes.openai_server import FakeOpenAIServer, Reply


def judge(db: Path, urls: list[str], *extra: str) -> dict:
    args = ["judge", "--db", str(db), "--model", "judge-m", "--json", "--timeout", "5"]
    for url in urls:
        args += ["--base-url", url]
    result = CliRunner().invoke(cli, [*args, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def stored(db: Path) -> tuple[set[str], set[str], int]:
    """(cache keys of the judgements, endpoints in judge_calls, labels)."""
    with PreferenceStore(db) as store:
        keys = {r[0] for r in store.query("SELECT cache_key FROM judgements")}
        endpoints = {r[0] for r in store.query("SELECT DISTINCT endpoint FROM judge_calls")}
        labels = store.scalar("SELECT count(*) FROM active_labels WHERE source = 'judge'")
    return keys, endpoints, labels


def test_urls_parse_from_repeats_commas_and_spaces() -> None:
    assert parse_base_urls(["http://a/v1/, http://b/v1", "http://c/v1 http://a/v1"]) == (
        "http://a/v1",
        "http://b/v1",
        "http://c/v1",
    )
    assert pool_name(["http://b/v1", "http://a/v1"]) == pool_name(["http://a/v1", "http://b/v1"])
    assert pool_name(["http://a/v1"]) == "http://a/v1"  # one endpoint: its old cache stays valid
    with pytest.raises(ConfigError, match="not an http"):
        parse_base_urls("127.0.0.1:8000")
    config = JudgeConfig(models=("m",), base_url="http://a/v1 , http://b/v1")
    assert config.resolved_base_urls == ("http://a/v1", "http://b/v1")
    with pytest.raises(ConfigError, match="per-endpoint-concurrency"):
        JudgeConfig(models=("m",), base_url="http://a/v1", per_endpoint_concurrency=0)


def test_requests_are_balanced_by_in_flight_count_under_each_cap(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        make_pairs(store, 30)
    with (
        FakeOpenAIServer(prefers_good, latency=0.03) as fast,
        FakeOpenAIServer(prefers_good, latency=0.12) as slow,
    ):
        out = judge(
            db, [fast.url, slow.url], "--concurrency", "8", "--per-endpoint-concurrency", "3"
        )
        assert (out["judged"], out["labels"], out["failed"]) == (30, 30, 0)
        assert fast.max_in_flight <= 3 and slow.max_in_flight <= 3
        # the slow replica holds its requests four times as long, so it gets fewer of them
        assert fast.request_count > slow.request_count > 0
        assert fast.request_count + slow.request_count == 30
    by_url = {e["url"]: e for e in out["endpoints"]}
    assert by_url[fast.url]["requests"] == fast.request_count
    assert by_url[fast.url]["max_in_flight"] <= 3


def test_a_failing_endpoint_is_benched_and_its_requests_go_to_the_other(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        make_pairs(store, 24)
    with (
        FakeOpenAIServer(prefers_good) as good,
        FakeOpenAIServer(lambda body: Reply.server_error(503)) as bad,
    ):
        out = judge(
            db,
            [bad.url, good.url],
            "--max-retries", "0",
            "--concurrency", "4",
            "--per-endpoint-concurrency", "2",
            "--bench-after", "2",
            "--bench-seconds", "60",
        )  # fmt: skip
        assert (out["judged"], out["labels"], out["failed"]) == (24, 24, 0)
        # benched after 2 failures in a row (with at most 2 more already in flight)
        assert bad.request_count <= 4
        assert good.request_count == 24
    by_url = {e["url"]: e for e in out["endpoints"]}
    assert by_url[bad.url]["benched"] >= 1 and by_url[bad.url]["failures"] == bad.request_count
    _keys, endpoints, labels = stored(db)
    assert endpoints == {pool_name([good.url, bad.url])} and labels == 24


def test_an_unreachable_replica_is_benched_not_fatal(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with PreferenceStore(db) as store:
        make_pairs(store, 6)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    with FakeOpenAIServer(prefers_good) as good:
        out = judge(db, [closed, good.url], "--max-retries", "0", "--concurrency", "2")
    assert (out["labels"], out["failed"]) == (6, 0)
    assert {e["url"]: e["benched"] for e in out["endpoints"]}[closed] >= 1


def test_the_cache_key_does_not_depend_on_the_replica_or_the_url_order(tmp_path: Path) -> None:
    first, second = tmp_path / "1.duckdb", tmp_path / "2.duckdb"
    for db in (first, second):
        with PreferenceStore(db) as store:
            make_pairs(store, 8)
    with FakeOpenAIServer(prefers_good) as a, FakeOpenAIServer(prefers_good) as b:
        judge(first, [a.url, b.url], "--concurrency", "4")
        a_first = a.request_count
        judge(second, [b.url, a.url], "--concurrency", "4")
    keys_1, endpoints_1, _ = stored(first)
    keys_2, endpoints_2, _ = stored(second)
    assert a_first > 0  # both replicas answered in the first run
    assert keys_1 == keys_2 and len(keys_1) == 8
    assert endpoints_1 == endpoints_2 == {pool_name([a.url, b.url])}


async def _hold(pool: EndpointPool, results: list[int], fail: bool) -> None:
    async with pool.slot() as slot:
        results.append(slot.index)
        slot.failed() if fail else slot.ok()


def test_pool_benches_after_failures_in_a_row_and_probes_when_all_are_benched() -> None:
    import asyncio

    now = [0.0]
    pool = EndpointPool(["http://a", "http://b"], PoolPolicy(fail_threshold=2, bench_seconds=10),
                        clock=lambda: now[0])  # fmt: skip
    chosen: list[int] = []

    async def scenario() -> None:
        for _ in range(2):  # a fails twice: benched
            async with pool.slot(exclude={1}) as slot:
                chosen.append(slot.index)
                slot.failed()
        for _ in range(3):  # everything goes to b now
            await _hold(pool, chosen, fail=False)
        now[0] = 11.0  # a's bench is over: least in flight, fewest requests -> a again
        await _hold(pool, chosen, fail=False)

    asyncio.run(scenario())
    assert chosen == [0, 0, 1, 1, 1, 0]
    assert pool.stats()[0]["benched"] == 1


def test_the_judge_tabs_endpoint_field_takes_several_replicas(tmp_path: Path) -> None:
    """The Judge tab builds its config with `judge_config`: URLs separated by commas or
    spaces become replicas, judged through the same pool as the CLI's repeated flag."""
    from app.ui.judge_jobs import judge_config
    from judges.batch import run_batch

    db = tmp_path / "s.duckdb"
    with FakeOpenAIServer(prefers_good) as a, FakeOpenAIServer(prefers_good) as b:
        config = judge_config(
            backend="openai", base_url=f"{a.url}, {b.url}", model="judge-m", template=None,
            concurrency=4, limit=None, swap=False,
        )  # fmt: skip
        assert config.resolved_base_urls == (a.url, b.url)
        with PreferenceStore(db) as store:
            make_pairs(store, 6)
            report = run_batch(store, config)
        assert report.labels == 6 and a.request_count + b.request_count == 6
        assert {e["url"] for e in report.endpoints} == {a.url, b.url}
