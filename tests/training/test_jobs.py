"""Runs through JobManager with real subprocesses, a real store and a tiny GPT-2."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.fakes.hh import TINY, import_hh
from training import runfiles
from training.jobs import JobManager, TrainRequest


def request(stage: str, steps: int = 3, **overrides) -> TrainRequest:
    return TrainRequest(
        stage, policy="tiny", max_steps=steps, overrides={**TINY, "eval_every": 0, **overrides}
    )


def store_counts(store) -> dict[str, int]:
    return {t: store.count(t) for t in ("prompts", "responses", "pairs", "labels", "ref_logprobs")}


def test_sft_run_trains_and_is_recorded(jobs, labelled_store) -> None:
    status = jobs.run(request("sft"), timeout=300)
    assert status["status"] == "succeeded", status["log_tail"]
    assert status["promoted"] is True
    metrics = status["metrics"]
    assert metrics["steps"] == 3 and metrics["param_change"] > 0
    assert (
        metrics["rows_used"] == 3 * TINY["batch_size"]
    )  # one pass of 3 steps: no more rows tokenized
    assert metrics["heldout_used"] == metrics["heldout_rows"]
    run_dir = Path(status["run_dir"])
    assert (run_dir / "artifact" / "config.json").exists()
    assert [m["step"] for m in runfiles.read_metrics(run_dir) if "loss" in m] == [1, 2, 3]
    assert runfiles.read_json(run_dir / runfiles.STATUS)["state"] == "succeeded"
    assert labelled_store.scalar("SELECT started_at <= finished_at FROM runs") is True
    # report_to=auto: TensorBoard event files in the run folder (tensorboardX is a test extra)
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents*"))


def test_killed_run_is_failed_with_log_tail_and_store_untouched(jobs, labelled_store) -> None:
    before = store_counts(labelled_store)
    run_id = jobs.submit(request("sft", 500, eval_every=0))
    deadline = time.monotonic() + 240
    while True:
        status = jobs.status(run_id)
        if (status["progress"] or {}).get("step"):
            break
        assert status["status"] == "running", status["log_tail"]
        assert time.monotonic() < deadline, "trainer never reached step 1"
        time.sleep(0.2)
    os.killpg(status["pid"], signal.SIGKILL)
    final = jobs.wait(run_id, timeout=60)
    assert final["status"] == "failed"
    assert "killed by signal 9" in final["log_tail"]
    assert "loss" in final["log_tail"]  # the trainer's own output is in the tail
    assert store_counts(labelled_store) == before
    assert final["artifact_path"] is None and final["promoted"] is False


def test_requests_during_a_run_merge_into_one_queued_run_and_cancel_works(jobs) -> None:
    running = jobs.submit(request("sft", 500))
    queued = jobs.submit(request("dpo", 2))
    merged = jobs.submit(request("dpo", 3))
    assert merged == queued
    assert jobs.status(queued)["status"] == "queued"
    assert jobs.status(queued)["config"]["merged_requests"] == 2
    assert jobs.status(queued)["config"]["request"]["max_steps"] == 3  # latest request wins
    assert jobs.cancel(queued)
    assert jobs.cancel(running)
    assert jobs.status(running)["status"] == "cancelled"
    assert jobs.status(queued)["status"] == "cancelled"
    assert not jobs.cancel(running)  # already over


def test_dpo_reference_cache_then_incremental_run(
    jobs, labelled_store, hh_path, tmp_path, tiny_policy
) -> None:
    policy = str(tiny_policy)
    jobs.keep_warm(True)  # four runs: forked from one process that has done the imports
    big = {**TINY, "batch_size": 40}  # 2 steps x 40 covers every row: nothing is left out of a run
    first = jobs.run(
        TrainRequest("dpo", policy=policy, max_steps=2, overrides={**big, "eval_every": 0}),
        timeout=300,
    )
    assert first["status"] == "succeeded", first["log_tail"]
    pairs = first["metrics"]["snapshot_rows"]
    assert first["metrics"]["ref_forward_pairs"] == pairs
    assert (
        labelled_store.count("ref_logprobs") == 2 * pairs == first["metrics"]["ref_logprobs_added"]
    )
    assert first["metrics"]["param_change"] > 0

    # +20 labelled pairs, then an incremental run: new + replay rows, reference cache for the rest
    import_hh(labelled_store, hh_path, tmp_path, 60, 20)
    inc = jobs.run(
        TrainRequest(
            "dpo",
            policy=policy,
            incremental=True,
            max_steps=2,
            overrides={**big, "eval_every": 0, "replay_ratio": 0.5, "min_replay": 4},
        ),
        timeout=300,
    )
    assert inc["status"] == "succeeded", inc["log_tail"]
    assert inc["parent_run_id"] == first["run_id"]
    metrics = inc["metrics"]
    snapshot = pq.read_table(Path(inc["run_dir"]) / runfiles.SNAPSHOT).to_pylist()
    new_train = {r["pair_id"] for r in snapshot if r["is_new"] and r["split"] == "train"}
    new_all = {r["pair_id"] for r in snapshot if r["is_new"]}
    trained = set(json.loads((Path(inc["run_dir"]) / "train_pair_ids.json").read_text()))
    assert metrics["new_rows"] == len(new_train) > 0
    assert new_train <= trained
    assert metrics["replay_rows"] == max(4, round(0.5 * len(new_train)))
    assert metrics["train_rows"] == len(trained) == len(new_train) + metrics["replay_rows"]
    gate = metrics["gate"]
    assert gate["parent_heldout_accuracy"] == first["metrics"]["heldout_accuracy"]
    assert (
        gate["promoted"]
        == inc["promoted"]
        == (gate["heldout_accuracy"] >= gate["parent_heldout_accuracy"])
    )
    # a reference forward pass only for pairs that were not cached: the new ones
    # (the incremental run sees new train rows + replay + held-out rows; replayed and old held-out
    # rows are cached, new held-out rows are not)
    assert metrics["ref_forward_pairs"] == len(new_all)
    assert inc["config"]["snapshot"]["ref_cached_pairs"] == len(snapshot) - len(new_all)

    # a full (non-incremental) run now finds every pair in the cache
    again = jobs.run(
        TrainRequest("dpo", policy=policy, max_steps=2, overrides={**big, "eval_every": 0}),
        timeout=300,
    )
    assert again["status"] == "succeeded", again["log_tail"]
    assert again["metrics"]["ref_forward_pairs"] == 0
    assert again["metrics"]["ref_cached_pairs"] == len(snapshot)
    assert not (Path(again["run_dir"]) / runfiles.REF_LOGPROBS).exists()

    # the reference is the adapter-disabled base in a warm-started run too (TRL would use a
    # copy of the warm-start adapter): the new pairs' cached values equal a fresh base pass
    assert not (Path(inc["artifact_path"]) / "ref").exists()
    fresh = jobs.run(
        TrainRequest(
            "dpo",
            policy=policy,
            max_steps=2,
            overrides={**big, "eval_every": 0, "cache_reference": False},
        ),
        timeout=300,
    )
    assert fresh["status"] == "succeeded", fresh["log_tail"]
    recomputed = pq.read_table(Path(fresh["run_dir"]) / runfiles.REF_LOGPROBS).to_pylist()
    by_key = {(r["prompt_id"], r["response_id"]): r["logp"] for r in recomputed}
    new_keys = [
        (r["prompt_id"], r[side])
        for r in snapshot
        if r["is_new"]
        for side in ("chosen_id", "rejected_id")
    ]
    cached = dict(
        ((p, r), v)
        for p, r, v in labelled_store.query("SELECT prompt_id, response_id, logp FROM ref_logprobs")
    )
    assert new_keys and all(by_key[k] == pytest.approx(cached[k], abs=1e-3) for k in new_keys)


def test_no_labels_fails_before_starting_a_process(tmp_path) -> None:
    from data.store import PreferenceStore

    with PreferenceStore(tmp_path / "empty.duckdb") as store:
        manager = JobManager(store, tmp_path / "runs")
        status = manager.run(request("dpo"), timeout=30)
        assert status["status"] == "failed"
        assert "no labelled pairs" in status["log_tail"]
        assert status["pid"] is None


def test_one_shared_manager_per_store_until_its_last_user_closes(labelled_store, tmp_path) -> None:
    first = JobManager.shared(labelled_store, tmp_path / "runs", background=True)
    second = JobManager.shared(labelled_store)  # e.g. a CLI command the app runs for others
    assert second is first and first._thread is not None
    second.close()
    assert JobManager.shared(labelled_store) is first  # still the app's
    first.close()
    first.close()
    third = JobManager.shared(labelled_store)  # the last user closed it: a new one
    assert third is not first and third._thread is None
    third.close()
