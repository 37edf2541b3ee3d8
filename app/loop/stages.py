"""What each stage of a loop round does, through the library calls the single commands use.

generate   `prefloop generate`: a `generate` run through `training.jobs` from the last
           promoted policy, for this round's prompts; its pairs are tagged with the round
reference  (DPO) a `reference` run through `training.jobs`: the reference log-probs of the
           round's pairs, on the side lane while the last round trains, so this round's
           DPO run finds them cached (skipped with `--no-overlap`, and with
           `--no-warm-trainers`, where the process's imports cost more than the pass)
score      `prefloop score`: `labeling.scoring.score_store`
judge      `prefloop judge --all-unlabelled`: `judges.batch.run_batch` (the judge cache
           means a resumed or repeated batch sends no call twice)
route      `prefloop route --human-budget B`: `labeling.router.route_store`
cutoff     waits for human labels only when asked (`--wait-for-humans`, `--human-deadline`),
           then records the newest label id: the round's cut-off
rollouts   (rm+ppo) a `rollouts` run: the PPO run's first batch, sampled on the side lane
           while the round's reward model trains (skipped with `--no-overlap`)
train:X    `prefloop train X --incremental --label-cutoff ID`: a run through `training.jobs`,
           whose gate promotes it or keeps the parent; it trains on the labels up to its
           round's cut-off, so later labels (humans', and the next round's judge labels)
           go into the next round, however late the run starts
rescore    the re-score after a run: `score_store`, then `route_store` with budget 0

Each stage records its start, end, counts and run in `loop_rounds` (`data.loop_rounds`).
A stage whose run was started before the loop was killed waits for that run on resume
instead of starting another one; a run that has to start again (it was cancelled, as by
Ctrl-C) trains on the same labels, since its cut-off is in the store.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.loop.config import LoopConfig
from app.loop.plan import parse_key, train_stages
from data import loop_rounds as state
from data.errors import PrefloopError, TrainingError
from data.labels import newest_label_id
from data.store import PreferenceStore
from training.jobs import (
    DEFAULT_POLICY,
    JobManager,
    TrainRequest,
    get_stage,
    new_run_id,
    policy_stages,
    reference_todo,
)

log = logging.getLogger(__name__)

ENDED = ("succeeded", "failed", "cancelled")
METRIC_KEYS = (
    "heldout_accuracy",
    "heldout_reward",
    "heldout_rows",
    "train_loss",
    "steps",
    "new_rows",
    "replay_rows",
    "snapshot_rows",
    "ref_forward_pairs",
    "ref_cached_pairs",
    "wall_s",
)
# what an incremental run says when the labels since its parent are all held out (or none)
NOTHING_NEW = "no labels were added since the promoted run"
DEFAULT_HUMAN_WAIT = 600.0  # seconds --wait-for-humans waits at most without --human-deadline


class LoopStopped(PrefloopError):
    """The loop was asked to stop while a stage was running."""


class LoopWork:
    """The stages of one loop over one store; the scheduler calls `run(key)` on threads."""

    def __init__(
        self,
        store: PreferenceStore,
        config: LoopConfig,
        loop_id: str,
        jobs: JobManager,
        folder: Path,
        stop: threading.Event,
        judge_reward: Any = None,
    ):
        self.judge_reward = judge_reward  # judges.reward_server.RewardServer (--reward judge)
        self.reward_spec = judge_reward.spec if judge_reward is not None else None
        self.store = store
        self.config = config
        self.loop_id = loop_id
        self.jobs = jobs
        self.folder = folder
        self.stop = stop
        self.trains = train_stages(config.stages)

    # -- the frame every stage runs in --------------------------------------------------

    def run(self, key: str) -> dict[str, Any]:
        round_, stage = parse_key(key)
        state.stage_started(self.store, self.loop_id, round_, stage)
        log.info("%s round %d: %s started", self.loop_id, round_, stage)
        try:
            counts, status, promoted = self._dispatch(round_, stage)
        except BaseException as exc:
            state.stage_failed(self.store, self.loop_id, round_, stage, f"{exc}")
            raise
        state.stage_done(
            self.store, self.loop_id, round_, stage, counts, promoted=promoted, status=status
        )
        log.info("%s round %d: %s %s", self.loop_id, round_, stage, status)
        return counts

    def _dispatch(self, round_: int, stage: str) -> tuple[dict[str, Any], str, bool | None]:
        if stage.startswith("train:"):
            counts = self.train(round_, stage.split(":", 1)[1])
            return counts, "skipped" if counts.get("skipped") else "done", counts.get("promoted")
        counts = getattr(self, stage)(round_)
        return counts, "skipped" if counts.get("skipped") else "done", None

    # -- the stages -----------------------------------------------------------------------

    def generate(self, round_: int) -> dict[str, Any]:
        policy, policy_round = self.current_policy()
        staleness = self.unfinished_trainings_before(round_)
        prompts = state.round_prompts(self.store, round_, self.config.prompts_per_round)
        path = self.folder / f"round-{round_}-prompts.jsonl"
        path.write_text("".join(json.dumps({"prompt": m}) + "\n" for m in prompts), "utf-8")
        request = TrainRequest(
            "generate",
            policy=policy,
            prompts=str(path),
            overrides={
                "n": self.config.generate_n,
                "max_new_tokens": self.config.max_new_tokens,
                "seed": self.config.seed + round_,
            },
        )
        final = self._run_job(round_, "generate", request)
        pairs = state.generated_pair_ids(self.store, final["run_id"])
        state.record_pairs(self.store, self.loop_id, round_, pairs, policy, staleness)
        metrics = final.get("metrics") or {}
        return {
            "run_id": final["run_id"],
            "policy": policy,
            "policy_round": policy_round,
            "staleness": staleness,
            "prompts": len(prompts),
            "generated": metrics.get("generated"),
            "new_pairs": metrics.get("new_pairs"),
            "round_pairs": len(pairs),
        }

    def reference(self, round_: int) -> dict[str, Any]:
        if not self.config.overlap:
            return {"skipped": True, "reason": "--no-overlap: the DPO run computes them"}
        if not self.config.warm_trainers:  # a cold process costs more than a round's pass
            return {"skipped": True, "reason": "--no-warm-trainers: the DPO run computes them"}
        path = self.folder / f"round-{round_}-pairs.txt"
        pairs = state.round_pair_ids(self.store, self.loop_id, round_)
        path.write_text("".join(p + "\n" for p in pairs), "utf-8")
        request = TrainRequest(
            "reference",
            policy=self.config.policy,
            overrides=dict(self.config.train_settings),
            pairs=str(path),
        )
        todo, why, _ = reference_todo(self.store, request)
        if not todo:
            return {"skipped": True, "reason": why, "round_pairs": len(pairs)}
        final = self._run_job(round_, "reference", request)
        _succeeded(round_, "reference", final)
        metrics = final.get("metrics") or {}
        keys = ("pairs", "ref_forward_pairs", "ref_seconds", "ref_logprobs_added", "wall_s")
        return {"run_id": final["run_id"], "round_pairs": len(pairs)} | {
            k: metrics[k] for k in keys if k in metrics
        }

    def rollouts(self, round_: int) -> dict[str, Any]:
        if not self.config.overlap:
            return {"skipped": True, "reason": "--no-overlap: the PPO run samples them itself"}
        stage = self.trains[-1].split(":", 1)[1]
        request = TrainRequest(
            "rollouts",
            policy=self.config.policy,
            incremental=True,
            max_steps=self.config.max_steps,
            overrides=dict(self.config.train_settings),
            label_cutoff=self.label_cutoff(round_),
        )
        final = self._run_job(round_, "rollouts", request)
        if final["status"] == "failed" and NOTHING_NEW in (final.get("log_tail") or ""):
            return {"skipped": True, "reason": f"the {stage} run will have no new labels"}
        _succeeded(round_, "rollouts", final)
        metrics = final.get("metrics") or {}
        return {
            "run_id": final["run_id"],
            "artifact": final.get("artifact_path"),
            "first_batch": metrics.get("first_batch"),
            "heldout_prompts": metrics.get("heldout_prompts"),
            "wall_s": metrics.get("wall_s"),
        }

    def score(self, round_: int) -> dict[str, Any]:
        from labeling.encoder import EncoderConfig
        from labeling.scoring import ScoreConfig, score_store

        try:
            report = score_store(self.store, ScoreConfig(encoder=EncoderConfig(progress=False)))
        except PrefloopError as exc:  # e.g. too few labels to fit yet: route without it
            return {"skipped": True, "reason": str(exc)}
        return {
            "ensemble_version": report.version,
            "labelled_pairs": report.labelled_pairs,
            "scored_pairs": report.scored_pairs,
            "texts_encoded": report.texts_encoded,
            "seconds": report.seconds,
        }

    def judge(self, round_: int) -> dict[str, Any]:
        if not self.config.judge_models:
            return {"skipped": True, "reason": "no --judge-model"}
        from judges.batch import run_batch
        from judges.config import JudgeConfig

        config = JudgeConfig(
            models=self.config.judge_models,
            base_url=self.config.judge_base_url,
            concurrency=self.config.judge_concurrency,
            all_unlabelled=True,
            progress=False,
        )
        full = run_batch(self.store, config).as_dict()
        keys = ("units", "judged", "labels", "failed", "calls", "cache_hits", "seconds")
        return {k: full[k] for k in keys}

    def route(self, round_: int) -> dict[str, Any]:
        from data.project import read_project
        from labeling.router import RouterConfig, route_store

        config = RouterConfig(
            human_budget=self.config.human_budget_per_round,
            needed_labels=read_project(self.store).overlap,
            seed=self.config.seed + round_,
        )
        report = route_store(self.store, config)
        return {
            "to_human": report.human,
            "to_judge": report.judge,
            "human_queue_open": report.human_queue_total,
            "human_labels": state.label_counts(self.store).get("human", 0),
        }

    def cutoff(self, round_: int) -> dict[str, Any]:
        wanted, deadline = self.config.wait_for_humans, self.config.human_deadline
        start = time.monotonic()
        before = state.label_counts(self.store).get("human", 0)
        waited_for = None
        if wanted is not None or deadline is not None:
            bound = deadline if deadline is not None else DEFAULT_HUMAN_WAIT
            while time.monotonic() - start < bound and not self.stop.is_set():
                now = state.label_counts(self.store).get("human", 0)
                if wanted is not None and now - before >= wanted:
                    waited_for = "labels"
                    break
                time.sleep(0.5)
            else:
                waited_for = "stop" if self.stop.is_set() else "deadline"
        label_cutoff = newest_label_id(self.store)
        labels = state.label_counts(self.store, label_cutoff)
        return {
            "label_cutoff": label_cutoff,
            "labels": labels,
            "new_human_labels": labels.get("human", 0) - before,
            "waited_s": round(time.monotonic() - start, 3),
            "waited_until": waited_for,
        }

    def train(self, round_: int, stage: str) -> dict[str, Any]:
        reward = (self.reward_spec or "rm") if get_stage(stage).needs_reward else None
        label_cutoff = self.label_cutoff(round_)
        overrides = dict(self.config.train_settings)
        pre_rollouts = self.stage_counts(round_, "rollouts").get("artifact")
        if pre_rollouts and stage == "ppo":
            overrides["pre_rollouts"] = pre_rollouts
        request = TrainRequest(
            stage,
            policy=self.config.policy,
            incremental=True,
            max_steps=self.config.max_steps,
            reward=reward,
            overrides=overrides,
            label_cutoff=label_cutoff,
        )
        labels = state.label_counts(self.store, label_cutoff)
        final = self._run_job(round_, f"train:{stage}", request)
        metrics = final.get("metrics") or {}
        if final["status"] == "failed" and NOTHING_NEW in (final.get("log_tail") or ""):
            return {
                "run_id": final["run_id"],
                "promoted": False,
                "skipped": True,
                "reason": "no new labels in the training split since the promoted run: "
                "the parent is kept",
                "labels_at_cutoff": labels,
            }
        _succeeded(round_, stage, final)
        return {
            "run_id": final["run_id"],
            "promoted": bool(final["promoted"]),
            "artifact": final.get("artifact_path"),
            "labels_at_cutoff": labels,
            "metrics": {k: metrics[k] for k in METRIC_KEYS if k in metrics},
            **({"pre_rollouts": metrics["pre_rollouts"]} if "pre_rollouts" in metrics else {}),
            "gate": metrics.get("gate"),
            **(
                {"judge_reward_so_far": asdict(self.judge_reward.reward.stats)}
                if self.judge_reward
                else {}
            ),
        }

    def rescore(self, round_: int) -> dict[str, Any]:
        from data.project import read_project
        from labeling.label_quality import judge_error_by_signal
        from labeling.router import RouterConfig, route_store

        agreement = {  # each judge vs humans on the random calibration slice, at round end
            e["who"]: {
                "agreement": round(1 - e["calibration_error_rate"], 4),
                "pairs": e["calibration_pairs"],
            }
            for e in judge_error_by_signal(self.store)
            if e["calibration_error_rate"] is not None
        }
        scored = self.score(round_)
        if scored.get("skipped"):
            return {**scored, "judge_calibration": agreement}
        routed = route_store(
            self.store,
            RouterConfig(
                human_budget=0,
                needed_labels=read_project(self.store).overlap,
                seed=self.config.seed + round_,
            ),
        )
        return {
            **scored,
            "human_queue_open": routed.human_queue_total,
            "judge_calibration": agreement,
        }

    # -- helpers --------------------------------------------------------------------------

    def _run_job(self, round_: int, stage: str, request: TrainRequest) -> dict[str, Any]:
        """Submit the run (or, after a resume, wait for the one this stage started)."""
        rows = [
            r
            for r in state.stage_rows(self.store, self.loop_id)
            if r["round"] == round_ and r["stage"] == stage
        ]
        run_id = rows[0]["run_id"] if rows else None
        submitted = run_id is not None and self.jobs.exists(run_id)
        if submitted:
            status = self.jobs.status(run_id)
            if status["status"] in ("failed", "cancelled"):
                run_id = None
            elif status["status"] in ("queued", "running") and _judge_url_gone(status, request):
                self.jobs.cancel(run_id)  # its judge reward endpoint died with the killed loop
                run_id = None
        if run_id is None or not submitted:
            # the id is recorded before the run exists: a loop killed in between submits
            # that id on resume, instead of a second run next to one it lost track of
            run_id = run_id or new_run_id(request.stage)
            state.stage_run(self.store, self.loop_id, round_, stage, run_id)
            merged_into = self.jobs.submit(request, run_id=run_id)
            if merged_into != run_id:
                run_id = merged_into
                state.stage_run(self.store, self.loop_id, round_, stage, run_id)
        while True:
            status = self.jobs.status(run_id)
            if status["status"] in ENDED:
                return status
            if self.stop.is_set():
                self.jobs.cancel(run_id)
                raise LoopStopped(f"loop stopped; run {run_id} cancelled")
            time.sleep(0.25)

    def stage_counts(self, round_: int, stage: str) -> dict[str, Any]:
        """The counts a finished stage of this loop recorded ({} if it has not finished)."""
        for row in state.stage_rows(self.store, self.loop_id):
            if row["round"] == round_ and row["stage"] == stage and row["status"] == "done":
                return row["counts"] or {}
        return {}

    def label_cutoff(self, round_: int) -> int:
        """The newest label id at this round's cut-off (a train stage runs after it). A loop
        from before cut-offs were recorded gets the newest id now."""
        recorded = self.stage_counts(round_, "cutoff").get("label_cutoff")
        return int(recorded) if recorded is not None else newest_label_id(self.store)

    def current_policy(self) -> tuple[str, int]:
        """The policy to sample from, and the round that trained it (0: from before the loop)."""
        policy_kinds = set(policy_stages())
        best: tuple[float, str, int] | None = None
        for row in state.stage_rows(self.store, self.loop_id):
            stage = row["stage"]
            if not stage.startswith("train:") or stage.split(":", 1)[1] not in policy_kinds:
                continue
            counts = row["counts"]
            if row["status"] == "done" and counts.get("promoted") and counts.get("artifact"):
                candidate = (row["finished_at"], counts["artifact"], row["round"])
                best = candidate if best is None or candidate > best else best
        if best is not None:
            return best[1], best[2]
        for run in self.jobs.runs(200):  # newest first
            if run["kind"] in policy_kinds and run["promoted"] and run["artifact_path"]:
                return run["artifact_path"], 0
        return self.config.policy or DEFAULT_POLICY, 0

    def unfinished_trainings_before(self, round_: int) -> int:
        """Earlier rounds whose training has not finished: the staleness of this round's policy."""
        done = {
            r["round"]
            for r in state.stage_rows(self.store, self.loop_id)
            if r["stage"] == self.trains[-1] and r["status"] == "done"
        }
        return sum(1 for k in range(1, round_) if k not in done)


def _succeeded(round_: int, stage: str, final: dict[str, Any]) -> None:
    """Raise, with the run's log tail and the fix, unless the stage's run succeeded."""
    if final["status"] != "succeeded":
        raise TrainingError(
            f"round {round_}: {stage} run {final['run_id']} {final['status']}; log tail:\n"
            f"{final.get('log_tail') or '(empty)'}\n`prefloop loop --resume` retries it"
        )


def _judge_url_gone(status: dict[str, Any], request: TrainRequest) -> bool:
    """A run that rewards with a judge endpoint other than the one served now."""
    old = ((status.get("config") or {}).get("request") or {}).get("reward") or ""
    return old.startswith("judge:") and old != request.reward
