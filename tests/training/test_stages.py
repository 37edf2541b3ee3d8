"""Every stage runs a few steps on a tiny model and changes its parameters (slow: several runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fakes.ensembles import make_ensemble  # noqa: F401 - used below
from tests.fakes.hh import TINY
from training.jobs import TrainRequest


def run_ok(jobs, request: TrainRequest) -> dict:
    status = jobs.run(request, timeout=600)
    assert status["status"] == "succeeded", status["log_tail"]
    return status


@pytest.mark.slow
def test_rm_then_ppo_with_the_reward_model(jobs, tiny_policy) -> None:
    rm = run_ok(
        jobs,
        TrainRequest(
            "rm", policy=str(tiny_policy), max_steps=3, overrides={**TINY, "eval_every": 0}
        ),
    )
    assert rm["metrics"]["param_change"] > 0 and rm["promoted"]
    ppo = run_ok(
        jobs,
        TrainRequest(
            "ppo",
            policy=str(tiny_policy),
            max_steps=2,
            reward="rm",
            overrides={
                **TINY,
                "rollout_batch": 4,
                "minibatch": 2,
                "ppo_epochs": 2,
                "max_new_tokens": 8,
            },
        ),
    )
    assert ppo["config"]["reward"] == rm["artifact_path"]
    assert ppo["metrics"]["steps"] == 2 and ppo["metrics"]["param_change"] > 0
    assert (Path(ppo["artifact_path"]) / "value_head.pt").exists()
    rows = [m for m in jobs.metrics(ppo["run_id"]) if "kl_coef" in m]
    assert len(rows) == 2 and all(np.isfinite(r["policy_loss"]) for r in rows)


@pytest.mark.slow
def test_ppo_grpo_and_rloo_with_an_ensemble_reward(jobs, tiny_policy, tmp_path) -> None:
    ensemble = make_ensemble(tmp_path / "ens", ["length"], 2)
    ppo = run_ok(
        jobs,
        TrainRequest(
            "ppo",
            policy=str(tiny_policy),
            max_steps=2,
            reward=str(ensemble),
            overrides={
                **TINY,
                "rollout_batch": 4,
                "minibatch": 4,
                "ppo_epochs": 1,
                "max_new_tokens": 8,
            },
        ),
    )
    assert ppo["metrics"]["param_change"] > 0
    critic_free = {  # GRPO and RLOO: TRL trainers with the ensemble as `reward_funcs`
        stage: run_ok(
            jobs,
            TrainRequest(
                stage,
                policy=str(tiny_policy),
                max_steps=2,
                reward=str(ensemble),
                overrides={**TINY, "num_generations": 2, "max_new_tokens": 8},
            ),
        )
        for stage in ("grpo", "rloo")
    }
    for run in critic_free.values():
        assert run["metrics"]["steps"] == 2 and run["metrics"]["param_change"] > 0
        assert run["config"]["reward"] == str(ensemble)
    # the RL promotion gate: held-out reward before vs after, KL
    for run in (ppo, *critic_free.values()):
        gate = run["metrics"]["gate"]
        before, after = gate["heldout_reward_before"], gate["heldout_reward_after"]
        assert before is not None and after is not None
        kl_ok = gate["kl"] is None or gate["kl"] <= gate["kl_bound"]
        assert bool(run["promoted"]) == (after >= before and kl_ok)


@pytest.mark.slow
def test_a_pre_generated_first_batch_stands_in_for_the_ppo_runs_own(
    jobs, tiny_policy, tmp_path
) -> None:
    ensemble = make_ensemble(tmp_path / "ens", ["length"], 2)
    settings = {**TINY, "rollout_batch": 4, "minibatch": 4, "ppo_epochs": 1, "max_new_tokens": 8}

    def ppo(**extra) -> dict:
        request = TrainRequest(
            "ppo",
            policy=str(tiny_policy),
            max_steps=2,
            reward=str(ensemble),
            overrides={**settings, **extra},
        )
        return run_ok(jobs, request)

    # sampled before any reward exists: the rollouts run plans as the PPO run, minus its reward
    ahead = run_ok(
        jobs, TrainRequest("rollouts", policy=str(tiny_policy), max_steps=2, overrides=settings)
    )
    assert ahead["metrics"]["first_batch"] == 4 and ahead["config"]["reward"] is None
    with_it = ppo(pre_rollouts=ahead["artifact_path"])
    assert with_it["metrics"]["pre_rollouts"] == "used"
    assert with_it["metrics"]["steps"] == 2 and with_it["metrics"]["param_change"] > 0
    # the same starting policy's greedy completions: the gate's "before" is the run's own
    without = ppo()
    assert without["metrics"]["pre_rollouts"] == "none given"
    before = [r["metrics"]["gate"]["heldout_reward_before"] for r in (with_it, without)]
    assert before[0] is not None and before[0] == pytest.approx(before[1], abs=1e-5)
    # made for other lengths: the run samples its own batch, and says why
    other = ppo(pre_rollouts=ahead["artifact_path"], max_new_tokens=6)
    assert other["metrics"]["pre_rollouts"].startswith("made for another")


@pytest.mark.slow
def test_two_processes_through_accelerate_both_ranks_train(jobs, tiny_policy) -> None:
    status = run_ok(
        jobs,
        TrainRequest(
            "dpo",
            policy=str(tiny_policy),
            max_steps=2,
            num_processes=2,
            overrides={**TINY, "eval_every": 0},
        ),
    )
    ranks = sorted((Path(status["run_dir"]) / "ranks").glob("rank-*.json"))
    reports = [json.loads(p.read_text()) for p in ranks]
    assert [r["rank"] for r in reports] == [0, 1]
    assert all(r["world_size"] == 2 and r["steps"] == 2 and r["param_change"] > 0 for r in reports)


@pytest.mark.slow
def test_cached_reference_values_equal_a_fresh_computation(
    jobs, labelled_store, tiny_policy
) -> None:
    import pyarrow.parquet as pq

    first = run_ok(
        jobs,
        TrainRequest(
            "dpo", policy=str(tiny_policy), max_steps=1, overrides={**TINY, "eval_every": 0}
        ),
    )
    fresh = run_ok(
        jobs,
        TrainRequest(
            "dpo",
            policy=str(tiny_policy),
            max_steps=1,
            overrides={**TINY, "eval_every": 0, "cache_reference": False},
        ),
    )
    assert fresh["metrics"]["ref_forward_pairs"] == first["metrics"]["ref_forward_pairs"]
    cached = {
        (p, r): v
        for p, r, v in labelled_store.query("SELECT prompt_id, response_id, logp FROM ref_logprobs")
    }
    recomputed = pq.read_table(Path(fresh["run_dir"]) / "ref_logprobs.parquet").to_pylist()
    assert len(recomputed) == len(cached)
    for row in recomputed:
        assert row["logp"] == pytest.approx(
            cached[(row["prompt_id"], row["response_id"])], abs=1e-3
        )
