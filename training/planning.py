"""Resolve what a run will do, from the store: policy, warm start, reward, cache keys.

Read-only planning that `training.jobs` runs before it starts a process; like jobs, it
imports no torch, so the app can import it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from data.errors import ConfigError, TrainingError
from data.models import NAMED_MODELS, SMOLLM2, is_named, source_file
from data.store import PreferenceStore
from training import runfiles, runs
from training.generation_io import PROMPTS, export_prompts
from training.snapshot import (
    export_eval_pairs,
    export_feedback,
    export_ref_pairs,
    export_snapshot,
    label_watermark,
    model_hash,
    template_hash,
    uncached_pairs,
)
from training.stage_config import StageConfig, profile_defaults
from training.stages import TrainRequest, get_stage, policy_stages, stage_config

POLICY_STAGES = policy_stages()  # stages whose artifact is a policy
TINY = "tiny"  # the embedded random-init GPT-2 (unit tests, `--policy tiny`), built in the run
DEFAULT_POLICY = SMOLLM2  # with no --policy and no promoted SFT model: a real instruct model


def plan_generate(store: PreferenceStore, request: TrainRequest, run_dir: Path) -> dict[str, Any]:
    """Resolve the policy (or the endpoints) and export the prompts for a generation run."""
    if request.endpoints:
        count = export_prompts(store, request.prompts, run_dir / PROMPTS, request.max_prompts)
        return {
            "stage": "generate",
            "policy": request.endpoint_model,
            "endpoints": list(request.endpoints),
            "prompt_count": count,
        }
    policy = request.policy
    if policy in (None, "latest"):
        policy = latest_artifact(store, POLICY_STAGES)
        if policy is None:
            raise ConfigError(
                "no promoted policy yet: train one (`prefloop train dpo` or sft/ppo/grpo/rloo) "
                f"or pass --policy MODEL (e.g. --policy {DEFAULT_POLICY})"
            )
    if is_named(policy):
        source_file(NAMED_MODELS[policy])  # a missing package fails here, with the pip command
    count = export_prompts(store, request.prompts, run_dir / PROMPTS, request.max_prompts)
    return {"stage": "generate", "policy": policy, "prompt_count": count}


def plan_evaluate(store: PreferenceStore, request: TrainRequest, run_dir: Path) -> dict[str, Any]:
    """Check the model and write the labelled file's decided pairs for an evaluation run."""
    from data.eval_sets import read_eval_set

    if not request.eval_file or not request.policy:
        raise ConfigError("an evaluation needs a model (--model) and a labelled file")
    count = export_eval_pairs(
        read_eval_set(request.eval_file, category_field=request.overrides.get("category_field")),
        run_dir / runfiles.EVAL_PAIRS,
    )
    return {"stage": "evaluate", "policy": request.policy, "eval_file": request.eval_file, **count}


def reference_todo(
    store: PreferenceStore, request: TrainRequest
) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    """A reference pass's plan: the DPO run with the same policy and settings resolves the
    cache keys, so the pass fills exactly the entries that run looks up. Returns the pairs
    to compute, why there are none (when so), and the resolved plan."""
    # not incremental: no warm start and no parent, as the reference is the base
    plan = plan_run(store, replace(request, stage="dpo", incremental=False, pairs=None))
    plan = {**plan, "stage": "reference"}
    if plan["ref_model_hash"] is None:
        return [], f"{plan['policy']} has no reference cache (no fixed weights to key it by)", plan
    if not stage_config("dpo", request.overrides).use_lora:
        return [], "use_lora=false: the DPO run's reference is not the cached base", plan
    ids = None
    if request.pairs is not None:
        ids = [x.strip() for x in Path(request.pairs).read_text("utf-8").split() if x.strip()]
    rows = uncached_pairs(store, ids, plan["ref_model_hash"], plan["template_hash"])
    return rows, "" if rows else "every pair's reference log-probs are cached already", plan


def plan_reference(store: PreferenceStore, request: TrainRequest, run_dir: Path) -> dict[str, Any]:
    """Resolve a reference pass and write its pairs; raise when it has nothing to compute."""
    rows, why, plan = reference_todo(store, request)
    if not rows:
        raise TrainingError(f"no reference pass needed: {why}")
    export_ref_pairs(rows, run_dir / runfiles.REF_PAIRS)
    return {**plan, "ref_pairs": len(rows)}


def plan_rollouts(store: PreferenceStore, request: TrainRequest, run_dir: Path) -> dict[str, Any]:
    """A PPO run's first batch ahead of it (`training.pre_rollouts`): planned as that run
    (same snapshot, cut-off, warm start), but before its reward model exists."""
    plan = plan_training(store, replace(request, stage="ppo"), run_dir, resolve_reward=False)
    return {**plan, "stage": "rollouts"}


def plan_training(
    store: PreferenceStore, request: TrainRequest, run_dir: Path, *, resolve_reward: bool = True
) -> dict[str, Any]:
    """Resolve a training run and export its snapshot; raise when nothing can be trained."""
    plan = plan_run(store, request, resolve_reward=resolve_reward)
    plan["snapshot"] = export_snapshot(
        store,
        run_dir / runfiles.SNAPSHOT,
        test_fraction=request.test_fraction,
        watermark=plan["watermark"] if plan["warm_start"] else 0,
        ref_model_hash=plan["ref_model_hash"],
        template=plan["template_hash"],
        label_cutoff=request.label_cutoff,
    )
    if get_stage(request.stage).unpaired:
        plan["feedback"] = export_feedback(
            store, run_dir / runfiles.FEEDBACK, test_fraction=request.test_fraction
        )
        if plan["snapshot"]["train"] + plan["feedback"]["train"] == 0:
            raise TrainingError(
                "nothing to train KTO on: no labelled pairs and no thumbs up/down rows; label "
                "pairs, or import a prompt/completion/label file with `prefloop import`"
            )
        return plan
    if plan["snapshot"]["train"] == 0:
        raise TrainingError(
            "no labelled pairs to train on (ties, both_bad and split votes are left out); "
            "label some pairs or import a labelled file with `prefloop import`"
        )
    return plan


def plan_run(
    store: PreferenceStore, request: TrainRequest, *, resolve_reward: bool = True
) -> dict[str, Any]:
    """Resolve policy, warm start, reward (unless `resolve_reward` is false) and cache keys
    for a run, from the store."""
    policy = request.policy
    if policy in (None, "latest"):
        policy = latest_artifact(store, ("sft",)) if request.stage != "sft" else None
        policy = policy or DEFAULT_POLICY
    if is_named(policy):
        source_file(NAMED_MODELS[policy])  # a missing package fails here, with the pip command
    parent = None
    if request.incremental:
        parent = latest_promoted(store, request.stage, policy, request.overrides.get("use_lora"))
    reward = request.reward
    if resolve_reward and get_stage(request.stage).needs_reward:
        reward = reward or ("rm" if latest_artifact(store, ("rm",)) else None)
        if reward == "rm":
            reward = latest_artifact(store, ("rm",))
            if reward is None:
                raise ConfigError(
                    "--reward rm: no promoted reward model yet; run "
                    "`prefloop train rm` first or pass --reward ENSEMBLE_DIR"
                )
        if reward is None:
            raise ConfigError(
                "PPO/GRPO/RLOO need a reward: train one with `prefloop train rm`, or pass "
                "--reward PATH to an ensemble artifact folder (docs/ENSEMBLE_ARTIFACT.md)"
            )
    profile = policy_profile(store, policy)
    max_length = int(
        request.overrides.get("max_length")
        or profile_defaults(StageConfig, profile).get("max_length", 256)
    )
    return {
        "stage": request.stage,
        "policy": policy,
        "profile": profile,
        "reward": reward,
        "warm_start": parent["artifact_path"] if parent else None,
        "parent_run_id": parent["run_id"] if parent else None,
        "parent_metrics": parent["metrics"] if parent else None,
        "watermark": parent["config"].get("label_watermark", 0) if parent else 0,
        "label_watermark": label_watermark(store, request.label_cutoff),
        "ref_model_hash": model_hash(policy) if policy != TINY else None,
        "template_hash": template_hash(max_length, "keep_end"),
    }


def policy_profile(store: PreferenceStore, policy: str) -> str:
    """`tiny` for the embedded GPT-2 and the runs trained from it, else `pretrained`."""
    if policy == TINY:
        return "tiny"
    for parent in runs.configs_with_artifact(store, policy):
        return parent.get("profile") or ("tiny" if parent.get("policy") == TINY else "pretrained")
    return "pretrained"


def latest_artifact(store: PreferenceStore, kinds: tuple[str, ...]) -> str | None:
    """Artifact of the newest promoted, succeeded run of one of these kinds."""
    return runs.latest_promoted_artifact(store, kinds)


def latest_promoted(
    store: PreferenceStore, stage: str, policy: str, use_lora: bool | None
) -> dict[str, Any] | None:
    """The last promoted run of `stage` on `policy` trained the same way (LoRA or full)."""
    for row in runs.promoted_runs(store, stage):
        same_kind = (
            row["config"].get("request", {}).get("overrides", {}).get("use_lora") == use_lora
        )
        if row["config"].get("policy") == policy and row["artifact_path"] and same_kind:
            return row
    return None
