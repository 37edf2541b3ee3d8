"""`prefloop loop` end to end: a real demo store, real training and generation subprocesses
(a tiny GPT-2), the real openai client against the fake judge server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data.store import PreferenceStore
from tests.fakes.loop_cli import kill_when, loop_args, run_cli, signal_when

ROUND_STAGES = (
    "generate",
    "reference",
    "score",
    "judge",
    "route",
    "cutoff",
    "train:dpo",
    "rescore",
)


def summary_of(result) -> dict:
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def intervals(summary: dict) -> dict[tuple[int, str], tuple[float, float]]:
    return {(s["round"], s["stage"]): (s["start_s"], s["end_s"]) for s in summary["stages"]}


def run_dir_of(db: Path, run_id: str) -> Path:
    with PreferenceStore(db, read_only=True) as store:
        return Path(store.scalar("SELECT run_dir FROM runs WHERE run_id = ?", [run_id]))


def responses_of(ref_pairs: Path) -> set[tuple[str, str]]:
    """(prompt id, response id) of both responses of a reference pass's pairs."""
    rows = pq.read_table(ref_pairs).to_pylist()
    return {(r["prompt_id"], r[side]) for r in rows for side in ("chosen_id", "rejected_id")}


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def judge_calls(db: Path) -> int:
    with PreferenceStore(db, read_only=True) as store:
        return store.count("judge_calls")


CONTRACT_FLAGS = (
    "--db",
    "--rounds",
    "--pipeline",
    "--human-budget-per-round",
    "--judge-base-url",
    "--judge-model",
    "--generate-n",
    "--prompts-per-round",
    "--wait-for-humans",
    "--human-deadline",
    "--no-overlap",
    "--json",
    "--resume",
)


def test_loop_has_the_issue_flags_and_errors_are_one_line_with_the_fix(tmp_path) -> None:
    from click.testing import CliRunner

    from app.cli import cli

    shown = CliRunner().invoke(cli, ["loop", "--help"])
    assert shown.exit_code == 0
    assert all(flag in shown.output for flag in CONTRACT_FLAGS)
    db = str(tmp_path / "s.duckdb")
    for args, fix in (
        (["--policy", "tiny"], "pass a policy folder"),
        (["--resume"], "start one with `prefloop loop --rounds N`"),
        (["--pipeline", "rm+ppo", "--generate-n", "1", "--policy", "x"], "at least 2"),
    ):
        result = run_cli(["loop", "--db", db, *args])
        assert result.returncode == 1
        assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
        assert fix in result.stderr, result.stderr


def test_the_pipelined_loop_overlaps_rounds_and_records_every_stage(
    loop_db, tiny_policy, judge_server
) -> None:
    summary = summary_of(run_cli(loop_args(loop_db, tiny_policy, judge_server.url, "--json")))
    assert summary["status"] == "finished" and summary["stop_reason"] is None
    spans = intervals(summary)
    assert set(spans) == {(k, s) for k in (1, 2) for s in ROUND_STAGES}
    assert all(s["status"] == "done" for s in summary["stages"])
    # round 2's generation, reference pass, scoring and judging ran while round 1 was at work
    early = [spans[(2, s)] for s in ("generate", "reference", "score", "judge")]
    round1 = [spans[(1, s)] for s in ("score", "judge", "route", "train:dpo")]
    assert any(overlaps(a, b) for a in early for b in round1)
    # one training job at a time, round 2's after round 1's
    assert spans[(1, "train:dpo")][1] <= spans[(2, "train:dpo")][0]
    # round 1 sampled from the base policy; round 2 before round 1 had trained (staleness 1)
    r1, r2 = summary["rounds"]
    assert set(r1["staleness"]) == {"0"} and set(r2["staleness"]) == {"1"}
    assert r1["run_id"] and r2["run_id"] and r1["labels"]["judge"] > 0
    # round 2's pairs were judged after round 1's run took its snapshot: they went into
    # round 2's run, as its new rows
    assert r2["labels"]["judge"] > r1["labels"]["judge"]
    train2 = next(s for s in summary["stages"] if (s["round"], s["stage"]) == (2, "train:dpo"))
    assert train2["counts"]["metrics"]["new_rows"] > 0
    # each round's reference pass computed its pairs' reference log-probs, and the round's
    # DPO run computed none of them again (only older pairs it replays for the first time)
    by_key = {(s["round"], s["stage"]): s["counts"] for s in summary["stages"]}
    for k in (1, 2):
        reference = by_key[(k, "reference")]
        assert reference["ref_forward_pairs"] == reference["round_pairs"] > 0
        assert reference["round_pairs"] == by_key[(k, "generate")]["round_pairs"]
        precomputed = responses_of(run_dir_of(loop_db, reference["run_id"]) / "ref_pairs.parquet")
        recomputed = (
            run_dir_of(loop_db, by_key[(k, "train:dpo")]["run_id"]) / "ref_logprobs.parquet"
        )
        if recomputed.exists():
            again = {
                (r["prompt_id"], r["response_id"]) for r in pq.read_table(recomputed).to_pylist()
            }
            assert precomputed and not precomputed & again
    with PreferenceStore(loop_db, read_only=True) as store:
        tagged = store.scalar("SELECT count(*) FROM loop_pairs")
        generated = store.scalar("SELECT count(*) FROM pairs WHERE origin = 'generate'")
        assert tagged == generated > 0
        kinds = store.query("SELECT kind, count(*) FROM runs GROUP BY kind ORDER BY kind")
        assert kinds == [("dpo", 2), ("generate", 2), ("reference", 2)]
        # every judge call was sent once: the server saw as many requests as the cache holds
        assert judge_server.request_count == store.count("judge_calls") > 0


@pytest.mark.slow
def test_no_overlap_runs_one_stage_after_another_in_round_order(
    loop_db, tiny_policy, judge_server
) -> None:
    args = loop_args(loop_db, tiny_policy, judge_server.url, "--no-overlap", "--json")
    summary = summary_of(run_cli(args))
    ordered = sorted(summary["stages"], key=lambda s: s["start_s"])
    assert [(s["round"], s["stage"]) for s in ordered] == [
        (k, s) for k in (1, 2) for s in ROUND_STAGES
    ]
    spans = [(s["start_s"], s["end_s"]) for s in ordered]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all(set(r["staleness"]) == {"0"} for r in summary["rounds"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "marker",
    [
        "round 1: generate started",  # a generation run in flight
        "round 1: judge started",  # a judge batch half committed
        "round 1: train:dpo started",  # a training run in flight
        "round 2: score started",  # round 2 scoring while round 1's run goes on
        "round 2: rescore started",  # the last stage
    ],
)
def test_resume_after_kill_9_finishes_every_stage_once(
    loop_db, tiny_policy, judge_server, marker
) -> None:
    kill_when(loop_args(loop_db, tiny_policy, judge_server.url), marker)
    assert judge_server.settle()  # counted what the killed loop sent before the reset
    calls_at_kill = judge_calls(loop_db)
    judge_server.reset_counts()
    summary = summary_of(run_cli(["loop", "--db", str(loop_db), "--resume", "--json"]))
    assert summary["status"] == "finished"
    assert set(intervals(summary)) == {(k, s) for k in (1, 2) for s in ROUND_STAGES}
    assert all(s["status"] == "done" for s in summary["stages"])
    with PreferenceStore(loop_db, read_only=True) as store:
        runs = store.query("SELECT kind, status, count(*) FROM runs GROUP BY ALL ORDER BY ALL")
        # a run in flight at the kill was waited for, not started again
        assert runs == [
            ("dpo", "succeeded", 2),
            ("generate", "succeeded", 2),
            ("reference", "succeeded", 2),
        ]
        # the resumed judge sent only what had no cached call yet
        assert judge_server.request_count == store.count("judge_calls") - calls_at_kill
        assert store.scalar("SELECT count(*) FROM loops") == 1


@pytest.mark.slow
def test_the_loop_stops_early_when_the_held_out_metric_stops_gaining(
    loop_db, tiny_policy, judge_server
) -> None:
    args = loop_args(loop_db, tiny_policy, judge_server.url, "--min-gain", "1.0", "--json")
    summary = summary_of(run_cli([*args, "--rounds", "4"]))
    # a gain of 1.0 in accuracy is impossible: after round 3 the loop stops, for that reason
    # or, first, because the gate kept the parent in rounds 2 and 3
    assert summary["status"] == "stopped"
    reason = summary["stop_reason"]
    assert reason.startswith("early stop after round ")
    stopped_after = int(reason.split("round ")[1].split(":")[0])
    assert stopped_after == 3  # round 1 is always promoted (it has no parent)
    assert "below --min-gain 1" in reason or "gate failed twice in a row" in reason
    trained = {s["round"] for s in summary["stages"] if s["stage"].startswith("train")}
    assert trained == set(range(1, stopped_after + 1))  # round 4 never ran
    assert {s["round"] for s in summary["stages"]} <= {1, 2, 3, stopped_after + 1}


@pytest.mark.slow
def test_rm_then_ppo_rounds_train_both_stages_in_order(loop_db, tiny_policy, judge_server) -> None:
    args = loop_args(loop_db, tiny_policy, judge_server.url, "--pipeline", "rm+ppo", "--json")
    summary = summary_of(run_cli(args))
    assert summary["status"] == "finished"
    spans = intervals(summary)
    stages = ("generate", "score", "judge", "route", "cutoff", "rollouts", "train:rm")
    stages += ("train:ppo", "rescore")
    assert set(spans) == {(k, s) for k in (1, 2) for s in stages}
    assert all(s["status"] == "done" for s in summary["stages"])
    counts = {(s["round"], s["stage"]): s["counts"] for s in summary["stages"]}
    for k in (1, 2):  # the PPO run trains on the reward model of its own round
        assert spans[(k, "train:rm")][1] <= spans[(k, "train:ppo")][0]
        # its first batch was sampled from its starting policy next to the reward model's
        # training (after the last PPO run), and it scored that batch instead of sampling
        assert overlaps(spans[(k, "rollouts")], spans[(k, "train:rm")])
        assert spans[(k, "rollouts")][1] <= spans[(k, "train:ppo")][0]
        assert counts[(k, "train:ppo")]["pre_rollouts"] == "used"
    assert spans[(1, "train:ppo")][1] <= spans[(2, "rollouts")][0]
    assert spans[(1, "train:ppo")][1] <= spans[(2, "train:rm")][0]
    # round 2 sampled after round 1's cut-off, while round 1 trained
    assert spans[(1, "cutoff")][1] <= spans[(2, "generate")][0] < spans[(1, "train:ppo")][1]
    assert all(r["heldout_reward"] is not None for r in summary["rounds"])


@pytest.mark.slow
def test_ctrl_c_cancels_the_running_run_and_resume_finishes(
    loop_db, tiny_policy, judge_server
) -> None:
    import signal

    log, code = signal_when(
        loop_args(loop_db, tiny_policy, judge_server.url),
        "round 1: train:dpo started",
        signal.SIGINT,
    )
    assert code == 130 and "Aborted." in log, log[-3000:]
    with PreferenceStore(loop_db, read_only=True) as store:
        assert store.query("SELECT status, stop_reason FROM loops") == [
            ("stopped", "interrupted (Ctrl-C); its runs were cancelled")
        ]
        assert store.scalar("SELECT count(*) FROM runs WHERE status = 'running'") == 0
        assert store.scalar("SELECT status FROM runs WHERE kind = 'dpo'") == "cancelled"
    summary = summary_of(run_cli(["loop", "--db", str(loop_db), "--resume", "--json"]))
    assert summary["status"] == "finished"
    undone = [
        (s["round"], s["stage"], s["status"], s["error"], s["counts"])
        for s in summary["stages"]
        if s["status"] != "done"
    ]
    assert undone == []
    # the restarted run trained on the labels up to its round's cut-off, not on round 2's
    # judge labels (judged meanwhile), so round 2's run had new labels of its own
    stages = {(s["round"], s["stage"]): s["counts"] for s in summary["stages"]}
    for k in (1, 2):
        cutoff = stages[(k, "cutoff")]["label_cutoff"]
        assert stages[(k, "train:dpo")]["labels_at_cutoff"] == stages[(k, "cutoff")]["labels"]
        with PreferenceStore(loop_db, read_only=True) as store:
            config = json.loads(
                store.scalar(
                    "SELECT config FROM runs WHERE run_id = ?",
                    [stages[(k, "train:dpo")]["run_id"]],
                )
            )
        assert config["request"]["label_cutoff"] == cutoff == config["label_watermark"]
    assert stages[(1, "cutoff")]["label_cutoff"] < stages[(2, "cutoff")]["label_cutoff"]


@pytest.mark.slow
def test_grpo_with_the_judge_as_reward(loop_db, tiny_policy, judge_server) -> None:
    args = loop_args(
        loop_db, tiny_policy, judge_server.url, "--pipeline", "rm+grpo", "--reward", "judge"
    )
    summary = summary_of(run_cli([*args, "--rounds", "1", "--json"]))
    assert summary["status"] == "finished"
    train = next(s for s in summary["stages"] if s["stage"] == "train:grpo")
    assert train["status"] == "done" and train["counts"]["metrics"]["heldout_reward"] is not None
    rewarded = train["counts"]["judge_reward_so_far"]
    assert rewarded["items"] > 0 and rewarded["calls"] > 0 and rewarded["failed"] == 0
    assert not any(s["stage"] == "train:rm" for s in summary["stages"])  # no reward model
    with PreferenceStore(loop_db, read_only=True) as store:
        kinds = store.query("SELECT kind, status FROM runs ORDER BY kind")
        assert kinds == [("generate", "succeeded"), ("grpo", "succeeded")]
        # every judge call, the judge stage's and the rewards', was sent once and cached
        assert judge_server.request_count == store.count("judge_calls")
