"""Judge batches with the real `openai` client against the fake server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from data.errors import JudgeError
from data.store import PreferenceStore
from judges.batch import run_batch
from judges.config import JudgeConfig, Price
from tests.fakes.judging import good_side, make_pairs, prefers_good, shown_responses
from tests.fakes.openai_server import FakeOpenAIServer, Reply, always


def config(server: FakeOpenAIServer, **overrides: Any) -> JudgeConfig:
    options: dict[str, Any] = dict(
        models=("judge-m",),
        base_url=server.url,
        concurrency=4,
        progress=False,
        timeout=2.0,
        max_retries=2,
        flush_every=4,
    )
    options.update(overrides)
    return JudgeConfig(**options)


def judgements(store: PreferenceStore) -> list[dict[str, Any]]:
    return store.query_dicts("SELECT * FROM judgements ORDER BY pair_id, order_shown")


def test_swap_consistent_judge_labels_relative_to_stored_order(
    store: PreferenceStore, fake_openai
) -> None:
    pair_ids = make_pairs(store, 6)
    report = run_batch(store, config(fake_openai, swap=True))
    assert (report.judged, report.labels, report.failed, report.inconsistent) == (6, 6, 0, 0)
    assert report.calls == 12 == fake_openai.request_count
    assert report.prompt_tokens > 0 and report.completion_tokens == 12
    labels = {row["pair_id"]: row for row in store.labels("AND source = 'judge'")}
    assert set(labels) == set(pair_ids)
    for pair_id, label in labels.items():
        assert label["verdict"] == good_side(store, pair_id)  # the swap was undone
        assert label["who"] == "judge-m"
        assert label["confidence"] == pytest.approx(0.9)  # P(verdict) from top logprobs
        meta = json.loads(label["meta"])
        assert meta["template_hash"] == report.template_hash and meta["orders"] == ["ab", "ba"]
    rows = judgements(store)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"}
    assert all(r["cache_key"] for r in rows) and store.count("judge_calls") == 12
    for row in rows:
        good_p_a = 0.9 if good_side(store, row["pair_id"]) == "a" else 0.1
        assert row["p_a"] == pytest.approx(good_p_a)  # P(stored A), whichever order was shown
    assert store.get_meta(f"judge_template:{report.template_hash}").startswith("You are a careful")
    # every request was temperature 0 with one-token logprobs
    body = fake_openai.requests[0]["body"]
    assert body["temperature"] == 0 and body["logprobs"] is True and body["top_logprobs"] == 5


def test_position_biased_judge_is_flagged_not_labelled(store: PreferenceStore) -> None:
    make_pairs(store, 5)
    with FakeOpenAIServer(always("A")) as server:
        report = run_batch(store, config(server, swap=True))
    assert (report.judged, report.labels, report.inconsistent) == (5, 0, 5)
    assert store.labels("AND source = 'judge'") == []
    flags = store.query_dicts("SELECT * FROM pair_flags")
    assert len(flags) == 5 and {f["flag"] for f in flags} == {"judge_inconsistent"}
    detail = json.loads(flags[0]["detail"])
    assert detail["verdicts"]["judge-m"] == {"ab": "a", "ba": "b"}


def test_unparseable_reply_is_repaired_once_then_fails_without_label(
    store: PreferenceStore,
) -> None:
    make_pairs(store, 3)
    with FakeOpenAIServer(always("I would rather not say.")) as server:
        report = run_batch(store, config(server))
        repairs = [r["body"] for r in server.requests if len(r["body"]["messages"]) == 4]
    assert len(repairs) == 3
    repair_body = repairs[0]
    assert (report.failed, report.labels, report.calls) == (3, 0, 6)  # each unit: ask + one repair
    assert repair_body["messages"][-2] == {
        "role": "assistant",
        "content": "I would rather not say.",
    }
    rows = judgements(store)
    assert {r["status"] for r in rows} == {"failed"} and all(r["verdict"] is None for r in rows)
    assert all("I would rather not say." in r["raw_text"] for r in rows)
    assert store.labels() == []


def test_repair_that_answers_gives_a_judgement(store: PreferenceStore) -> None:
    (pair_id,) = make_pairs(store, 1)
    with FakeOpenAIServer(always("B")) as server:
        server.push(Reply(text="Both have merits."))
        report = run_batch(store, config(server))
    assert (report.failed, report.labels, report.calls) == (0, 1, 2)
    row = judgements(store)[0]
    assert row["status"] == "ok" and row["verdict"] == "b" and "[repair]" in row["raw_text"]
    assert store.labels()[0]["pair_id"] == pair_id


def test_retries_honour_retry_after_then_succeed(store: PreferenceStore, fake_openai) -> None:
    make_pairs(store, 1)
    fake_openai.push(Reply.rate_limited(retry_after=0.4), Reply.server_error(), Reply.dropped())
    report = run_batch(store, config(fake_openai, max_retries=3, concurrency=1))
    assert (report.labels, report.failed, report.calls) == (1, 0, 1)
    times = [r["time"] for r in fake_openai.requests]
    assert len(times) == 4  # 429, 500, dropped connection, answer
    assert times[1] - times[0] >= 0.38  # waited as long as Retry-After said


def test_retries_stop_and_the_failure_is_kept(store: PreferenceStore) -> None:
    make_pairs(store, 2)
    with FakeOpenAIServer(lambda body: Reply.server_error(503)) as server:
        report = run_batch(store, config(server, max_retries=1, concurrency=1))
        sent = server.request_count
    assert sent == 4  # 2 units x (1 try + 1 retry), then it stops
    assert (report.failed, report.labels, report.calls) == (2, 0, 2)
    assert all("HTTP 503" in r["error"] for r in judgements(store))
    assert store.count("judge_calls") == 0  # failures are never cached


def test_timeouts_are_retried_then_fail(store: PreferenceStore) -> None:
    make_pairs(store, 1)
    with FakeOpenAIServer(lambda body: Reply.slow(1.5)) as server:
        started = time.monotonic()
        report = run_batch(store, config(server, timeout=0.3, max_retries=1))
        assert server.request_count == 2
    assert time.monotonic() - started < 3.0
    assert report.failed == 1 and "timed out" in judgements(store)[0]["error"]


def test_truncated_body_is_retried(store: PreferenceStore, fake_openai) -> None:
    make_pairs(store, 1)
    fake_openai.push(Reply.truncated())
    report = run_batch(store, config(fake_openai))
    assert fake_openai.request_count == 2 and report.failed == 0 and report.labels == 1


def test_logprobs_refused_switches_them_off_for_the_batch(
    store: PreferenceStore, fake_openai
) -> None:
    make_pairs(store, 4)
    fake_openai.push(Reply.logprobs_unsupported())
    report = run_batch(store, config(fake_openai, concurrency=1))
    assert report.logprobs is False and report.labels == 4 and report.failed == 0
    bodies = [r["body"] for r in fake_openai.requests]
    assert bodies[0]["logprobs"] is True
    assert all("logprobs" not in b for b in bodies[1:]) and len(bodies) == 5
    assert all(r["p_a"] is None for r in judgements(store))  # verdicts parsed from text
    assert all(label["confidence"] is None for label in store.labels())


def test_missing_logprobs_fall_back_to_text(store: PreferenceStore) -> None:
    make_pairs(store, 2)
    with FakeOpenAIServer(
        lambda body: Reply(text=prefers_good(body).text, logprobs=False)
    ) as server:
        report = run_batch(store, config(server))
    assert report.labels == 2 and all(
        r["p_a"] is None and r["status"] == "ok" for r in judgements(store)
    )


def test_concurrency_limit_holds(store: PreferenceStore) -> None:
    make_pairs(store, 16)
    with FakeOpenAIServer(prefers_good, latency=0.1) as server:
        report = run_batch(store, config(server, concurrency=3))
        assert server.max_in_flight == 3  # reached, never exceeded
    assert report.labels == 16


def test_rerun_is_free_and_cache_answers_repeated_requests(
    store: PreferenceStore, fake_openai
) -> None:
    make_pairs(store, 5)
    first = run_batch(store, config(fake_openai, swap=True))
    assert first.calls == 10
    again = run_batch(store, config(fake_openai, swap=True))
    assert (again.calls, again.judged, again.units) == (0, 0, 0) and fake_openai.request_count == 10
    with store.transaction() as cur:  # forget the judgements, keep the call cache
        cur.execute("DELETE FROM judgements").fetchall()
    cached = run_batch(store, config(fake_openai, swap=True))
    assert (cached.calls, cached.cache_hits, cached.judged) == (0, 10, 5)
    assert fake_openai.request_count == 10
    assert len(store.labels("AND source = 'judge'")) == 5  # no duplicate labels


def test_retry_failed_reruns_only_failures(store: PreferenceStore, fake_openai) -> None:
    make_pairs(store, 6)
    fake_openai.push(Reply.server_error(), Reply.server_error())  # the first unit fails
    first = run_batch(store, config(fake_openai, max_retries=1, concurrency=1))
    assert (first.failed, first.labels) == (1, 5)
    fake_openai.reset_counts()
    plain = run_batch(store, config(fake_openai))
    assert plain.calls == 0  # a failure is not retried unless asked
    retried = run_batch(store, config(fake_openai, retry_failed=True))
    assert (retried.calls, retried.failed, retried.labels) == (1, 0, 1)
    assert fake_openai.request_count == 1
    assert {r["status"] for r in judgements(store)} == {"ok"}


def test_limit_and_queue_scope(store: PreferenceStore, fake_openai) -> None:
    make_pairs(store, 5, queue="human")
    assert run_batch(store, config(fake_openai)).units == 0  # human-queue pairs are not the judge's
    limited = run_batch(store, config(fake_openai, all_unlabelled=True, limit=2))
    assert (limited.judged, limited.labels) == (2, 2)
    rest = run_batch(store, config(fake_openai, all_unlabelled=True))
    assert rest.judged == 3


def test_panel_majority_and_agreement(store: PreferenceStore) -> None:
    pair_ids = make_pairs(store, 4)

    def panel(body: dict[str, Any]) -> Reply:
        if body["model"] == "contrarian":
            first, _ = shown_responses(body)
            return Reply(text="B" if "GOOD" in first else "A")
        return prefers_good(body)

    with FakeOpenAIServer(panel) as server:
        report = run_batch(store, config(server, models=("m1", "m2", "contrarian")))
    assert report.calls == 12 and report.labels == 4
    for label in store.labels():
        assert label["who"] == "panel:m1,m2,contrarian"
        assert label["verdict"] == good_side(store, label["pair_id"])
        meta = json.loads(label["meta"])
        assert meta["agreement"] == pytest.approx(2 / 3) and set(meta["votes"]) == {
            "m1",
            "m2",
            "contrarian",
        }
    assert {label["pair_id"] for label in store.labels()} == set(pair_ids)


def test_confident_ensemble_disagreement_is_flagged(store: PreferenceStore, fake_openai) -> None:
    pair_ids = make_pairs(store, 2)
    with store.transaction() as cur:
        for pair_id in pair_ids:  # the ensemble is sure of the response WITHOUT "GOOD"
            p_mean = 0.02 if good_side(store, pair_id) == "a" else 0.97
            cur.execute(
                "INSERT INTO scores VALUES (?, 1, [0.5], ?, 0.01)", [pair_id, p_mean]
            ).fetchall()
    report = run_batch(store, config(fake_openai))
    assert report.labels == 2 and report.ensemble_disagreements == 2
    flags = store.query("SELECT flag FROM pair_flags")
    assert flags == [("judge_ensemble_disagree",)] * 2


def test_cost_from_price_table(store: PreferenceStore) -> None:
    make_pairs(store, 3)
    with FakeOpenAIServer(
        lambda b: Reply(text="A", prompt_tokens=1000, completion_tokens=1)
    ) as server:
        report = run_batch(
            store, config(server, prices={"judge-m": Price(prompt=2.0, completion=10.0)})
        )
    assert report.prompt_tokens == 3000 and report.completion_tokens == 3
    assert report.cost_usd == pytest.approx((3000 * 2.0 + 3 * 10.0) / 1e6)


def test_swap_after_a_one_order_run_retracts_the_biased_label(store: PreferenceStore) -> None:
    make_pairs(store, 3)
    with FakeOpenAIServer(always("A")) as server:
        first = run_batch(store, config(server))
        assert first.labels == 3  # one order: a position-biased judge looks decisive
        swapped = run_batch(store, config(server, swap=True))
    assert (swapped.calls, swapped.inconsistent, swapped.labels, swapped.retracted) == (3, 3, 0, 3)
    assert store.labels("AND source = 'judge'") == []  # retracted, kept for audit
    assert store.scalar("SELECT count(*) FROM labels WHERE retracted_at IS NOT NULL") == 3


def test_wrong_endpoint_or_key_stops_the_batch_with_the_fix(
    store: PreferenceStore, fake_openai
) -> None:
    make_pairs(store, 3)
    without_v1 = fake_openai.url.removesuffix("/v1")
    with pytest.raises(JudgeError, match="check --model and that --base-url ends in /v1"):
        run_batch(store, config(fake_openai, base_url=without_v1))
    fake_openai.push(Reply(status=401, error_message="Incorrect API key provided"))
    with pytest.raises(JudgeError, match=r"rejected the API key .* set \$OPENAI_API_KEY"):
        run_batch(store, config(fake_openai, concurrency=1))
