"""Judge signals, debiased verdicts, panel splits and routing, end to end: the real judge
batch (openai client over HTTP to the fake server), the real store, scorer and router."""

from __future__ import annotations

import math
from typing import Any

import pytest

from data.click_batch import submit_human_label
from data.export import aggregated_pairs
from data.queue import Assignment, assign, claim_next
from data.store import PreferenceStore
from judges.batch import run_batch
from judges.config import JudgeConfig
from labeling.ensemble import EnsembleConfig
from labeling.router import RouterConfig, route_store
from labeling.scoring import ScoreConfig, score_store
from labeling.signals import read_signals
from tests.fakes.judging import good_side, make_pairs, prefers_good, shown_responses
from tests.fakes.openai_server import FakeOpenAIServer, Reply

LENGTH_ONLY = ScoreConfig(features=("length",), ensemble=EnsembleConfig(members=4), min_labels=2)


def judge(server: FakeOpenAIServer, **overrides: Any) -> JudgeConfig:
    options: dict[str, Any] = dict(
        models=("judge-m",), base_url=server.url, concurrency=4, progress=False, timeout=5.0
    )
    return JudgeConfig(**(options | overrides))


def always_first(p_first_good: float, p_first_bad: float):
    """A position-biased judge: always answers "A" (the response shown first); its logprob
    P(first is better) still leans towards the GOOD response."""

    def respond(body: dict[str, Any]) -> Reply:
        first, _ = shown_responses(body)
        return Reply(text="A", p_a=p_first_good if "GOOD" in first else p_first_bad)

    return respond


def test_single_order_signals_by_hand(store: PreferenceStore) -> None:
    pair_ids = make_pairs(store, 4)
    with FakeOpenAIServer(lambda body: Reply(text="A", p_a=0.8)) as server:
        run_batch(store, judge(server))
    signals = read_signals(store, pair_ids)
    rate = (4 + 1) / (4 + 2)  # 4 of 4 verdicts for the first position, smoothed
    for i, pid in enumerate(pair_ids):
        pair = store.get_pair(pid)
        assert signals.reason[i] is None and signals.auto_verdict[i] == "a"
        assert signals.margin[i] == pytest.approx(2 * 0.8 - 1)
        assert signals.position[i] == pytest.approx(math.log(rate / (1 - rate)))
        assert signals.length[i] == pytest.approx(
            math.log((len(pair.response_a) + 1) / (len(pair.response_b) + 1))
        )
        assert signals.panel_disagreement[i] == 0.0
        assert math.isnan(signals.ens_against[i]) and math.isnan(signals.ens_std[i])

    # the ensemble signals are computed at route time from the latest scores
    first = score_store(store, LENGTH_ONLY)
    scores = dict(
        (pid, (p, s))
        for pid, p, s in store.query(
            "SELECT pair_id, p_mean, p_std FROM scores WHERE version = ?", [first.version]
        )
    )
    signals = read_signals(store, pair_ids)
    for i, pid in enumerate(pair_ids):
        assert signals.ens_against[i] == pytest.approx(1.0 - scores[pid][0])  # judge said a
        assert signals.ens_std[i] == pytest.approx(scores[pid][1])

    # a human-labelled pair keeps the scores of the version fitted before its label
    assign(store, [Assignment(pair_ids[0], "human")])
    submit_human_label(store, pair_ids[0], "ann", verdict_shown="b", swapped=False)
    score_store(store, LENGTH_ONLY)
    now = read_signals(store, pair_ids[:1])
    then = read_signals(store, pair_ids[:1], as_of_human_label=True)
    assert then.ens_against[0] == pytest.approx(1.0 - scores[pair_ids[0]][0])
    assert now.ens_against[0] != pytest.approx(then.ens_against[0])


def test_position_biased_judge_is_debiased_with_swap(store: PreferenceStore) -> None:
    pair_ids = make_pairs(store, 6)
    with FakeOpenAIServer(always_first(0.9, 0.6)) as server:
        report = run_batch(store, judge(server, swap=True))
    # every pair's orders disagree ("A" both times); P(stored A) averages away the bias
    assert (report.labels, report.debiased, report.inconsistent) == (6, 6, 0)
    labels = {r["pair_id"]: r for r in store.labels("AND source = 'judge'")}
    assert {pid: labels[pid]["verdict"] for pid in pair_ids} == {
        pid: good_side(store, pid) for pid in pair_ids
    }
    assert all(labels[pid]["confidence"] == pytest.approx(0.65) for pid in pair_ids)
    assert store.count("pair_flags") == 0


def test_pure_position_bias_goes_to_humans_or_is_listed(store: PreferenceStore) -> None:
    pair_ids = make_pairs(store, 5)
    with FakeOpenAIServer(always_first(0.8, 0.8)) as server:
        report = run_batch(store, judge(server, swap=True))
    assert report.labels == 0 and report.inconsistent == 5
    routed = route_store(store, RouterConfig(human_budget=3, seed=0))
    assert routed.promoted == 3 and routed.by_reason == {"promoted:judge_inconsistent": 3}
    assert routed.unlabelled_left == 2  # not silently dropped: listed
    assert {p["pair_id"] for p in routed.human_pairs} <= set(pair_ids)


def test_split_panel_pairs_end_with_a_human_label_or_are_listed(store: PreferenceStore) -> None:
    pair_ids = make_pairs(store, 6)

    def contrarian(body: dict[str, Any]) -> Reply:
        reply = prefers_good(body)
        if body["model"] == "judge-y":
            reply = Reply(text="B" if reply.text == "A" else "A")
        return Reply(text=reply.text, logprobs=False)

    with FakeOpenAIServer(contrarian) as server:
        report = run_batch(store, judge(server, models=("judge-x", "judge-y")))
    assert report.panel_split == 6 and report.labels == 0  # no logprobs: nothing to resolve
    routed = route_store(store, RouterConfig(human_budget=4, seed=0))
    assert routed.by_reason == {"promoted:panel_split": 4} and routed.unlabelled_left == 2
    for entry in routed.human_pairs:
        pid = entry["pair_id"]
        submit_human_label(store, pid, "ann", verdict_shown=good_side(store, pid), swapped=False)
    exported = {p.pair_id for p in aggregated_pairs(store)}
    left = set(pair_ids) - exported
    assert len(exported) == 4 and len(left) == 2
    # a later budget reaches the two left in the judge queue
    later = route_store(store, RouterConfig(human_budget=2, seed=0))
    assert {p["pair_id"] for p in later.human_pairs} == left and later.unlabelled_left == 0


def test_route_first_then_judge_then_reroute_keeps_budget_and_held_pairs(
    store: PreferenceStore,
) -> None:
    pair_ids = make_pairs(store, 10, queue="unrouted")
    first = route_store(store, RouterConfig(human_budget=3, calibration_fraction=0.0, seed=1))
    assert first.human == 3 and first.judge == 7
    held = claim_next(store, "ann")  # one human pair is leased: it must stay
    assert held in {p["pair_id"] for p in first.human_pairs}
    split = [pid for pid in pair_ids if pid not in {p["pair_id"] for p in first.human_pairs}][:2]

    def panel(body: dict[str, Any]) -> Reply:
        reply = prefers_good(body)
        first_text, second_text = shown_responses(body)
        disputed = any(
            store_texts[pid] & {first_text.strip(), second_text.strip()} for pid in split
        )
        if body["model"] == "judge-y" and disputed:
            return Reply(text="B" if reply.text == "A" else "A", logprobs=False)
        return Reply(text=reply.text, logprobs=False)

    store_texts = {
        pid: {store.get_pair(pid).response_a, store.get_pair(pid).response_b} for pid in split
    }
    with FakeOpenAIServer(panel) as server:
        report = run_batch(store, judge(server, models=("judge-x", "judge-y")))
    assert report.panel_split == 2
    again = route_store(store, RouterConfig(human_budget=0, seed=1))
    humans = {r[0] for r in store.query("SELECT pair_id FROM pairs WHERE queue = 'human'")}
    assert len(humans) == 3 and again.human_queue_total == 3  # the total budget is kept
    assert held in humans and again.kept == 1  # the leased pair was not pulled
    assert set(split) <= humans and again.swapped_out == 2  # unstarted picks swapped


def test_export_quality_and_judge_error_by_signal_from_the_calibration_slice(
    store: PreferenceStore,
) -> None:
    from labeling.label_quality import export_quality, judge_error_by_signal

    pair_ids = make_pairs(store, 12)
    wrong_on = set(pair_ids[:3])  # the judge is wrong on these three
    texts = {pid: store.get_pair(pid).response_a for pid in wrong_on}

    def judge_reply(body: dict[str, Any]) -> Reply:
        reply = prefers_good(body)
        first, second = (t.strip() for t in shown_responses(body))
        if any(t in (first, second) for t in texts.values()):
            flipped = "B" if reply.text == "A" else "A"
            return Reply(text=flipped, p_a=0.7 if flipped == "A" else 0.3)  # P(verdict) 0.7
        return reply

    with FakeOpenAIServer(judge_reply) as server:
        run_batch(store, judge(server))
    assert export_quality(store)["estimated_right_share"] is None  # nothing checked yet
    routed = route_store(store, RouterConfig(human_budget=6, calibration_fraction=1.0, seed=0))
    assert routed.calibration == 6
    for entry in routed.human_pairs:
        pid = entry["pair_id"]
        submit_human_label(store, pid, "ann", verdict_shown=good_side(store, pid), swapped=False)
    checked = [p["pair_id"] for p in routed.human_pairs]
    errors = sum(p in wrong_on for p in checked)
    quality = export_quality(store)
    assert quality["calibration_checked"] == 6
    assert quality["judge_accuracy"] == pytest.approx((6 - errors) / 6)
    expected = (6 + 6 * (6 - errors) / 6) / 12  # 6 human-decided, 6 judge-decided
    assert quality["estimated_right_share"] == pytest.approx(expected, abs=1e-4)
    low, high = quality["interval"]
    assert low <= quality["estimated_right_share"] <= high
    (report,) = judge_error_by_signal(store)
    assert report["who"] == "judge-m" and report["checked_pairs"] == 6
    assert report["calibration_error_rate"] == pytest.approx(errors / 6)
    margins = {b["bucket"]: b for b in report["buckets"] if b["signal"] == "margin"}
    # the judge's wrong answers came with P = 0.7 (margin 0.4), its right ones with 0.9
    if errors:
        assert margins["0.2-0.6"]["error_rate"] == 1.0
    if errors < 6:
        assert margins[">= 0.6"]["error_rate"] == 0.0


def test_panel_dissent_signal_by_hand(store: PreferenceStore) -> None:
    pair_ids = make_pairs(store, 3)

    def two_of_three(body: dict[str, Any]) -> Reply:
        reply = prefers_good(body)
        if body["model"] == "judge-z":
            return Reply(text="B" if reply.text == "A" else "A", logprobs=False)
        return Reply(text=reply.text, logprobs=False)

    with FakeOpenAIServer(two_of_three) as server:
        run_batch(store, judge(server, models=("judge-x", "judge-y", "judge-z")))
    s = read_signals(store, pair_ids)
    assert s.reason == [None] * 3
    assert s.auto_verdict == [good_side(store, pid) for pid in pair_ids]
    assert list(s.panel_disagreement) == pytest.approx([1 / 3] * 3)
    assert all(math.isnan(m) for m in s.margin)  # no logprobs, no margin
