"""The loop's plan as data: which stages each round has, what each waits for, and on what.

Round k, in plan order (the `--no-overlap` order):

    generate -> [reference,] score, judge -> route -> cutoff -> [rollouts,] train[:rm]
    -> train[:policy] -> rescore

Dependencies (what lets stages of neighbouring rounds overlap):

- `generate` k waits for round k-1's cut-off (so its pairs are labelled after it: every
  run of round k-1 trains on the labels up to that cut-off, and these go into round k),
  and for the training of round k-2: it samples from the last promoted policy while round
  k-1 trains (a staleness of at most one round);
- `rollouts` k (rm+ppo): the PPO run's first batch, sampled from its starting policy (so
  after round k-1's PPO run) on the side lane while round k's reward model trains; round
  k's PPO run waits for it and scores it instead of sampling;
- `reference` k (DPO pipelines): the reference log-probs of round k's pairs, which do not
  depend on their labels, on the side lane next to round k-1's training; round k's DPO run
  waits for it and finds them cached;
- `score` and `judge` k need only round k's pairs, so they run during round k-1's training;
- `route` k needs the scores and the judge's labels; `cutoff` k waits for humans if asked;
- the first training stage of round k waits for `cutoff` k and round k-1's training (one
  training job at a time, and an incremental run starts from the previous round's);
- `rescore` k follows round k's training.

Resources: one `trainer` (one training job on the GPU, or on the CPU), one `generator`
(sampling, or a reference pass, next to the training job), one `cpu` slot for ensemble fits and routing, and one
`judge` batch at a time (its calls are bounded by the judge concurrency inside it).
"""

from __future__ import annotations

from dataclasses import dataclass

CAPACITIES = {"trainer": 1, "generator": 1, "cpu": 1, "judge": 1}
REFERENCE_STAGES = ("dpo",)  # policy stages whose runs read the reference log-prob cache
PRE_ROLLOUT_STAGES = ("ppo",)  # policy stages that take a pre-generated first batch


@dataclass(frozen=True)
class Step:
    """One stage of one round: its key, dependencies and resource."""

    round: int
    stage: str  # generate, score, judge, route, cutoff, train:<stage>, rescore
    deps: tuple[str, ...]
    resource: str | None

    @property
    def key(self) -> str:
        return step_key(self.round, self.stage)


def step_key(round_: int, stage: str) -> str:
    return f"r{round_}.{stage}"


def parse_key(key: str) -> tuple[int, str]:
    head, _, stage = key.partition(".")
    return int(head[1:]), stage


def train_stages(training: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"train:{s}" for s in training)


def plan_steps(rounds: int, training: tuple[str, ...]) -> list[Step]:
    """Every step of `rounds` rounds, in plan order; `training` e.g. ("dpo",) or ("rm", "ppo")."""
    trains = train_stages(training)
    last_train = trains[-1]
    steps: list[Step] = []
    for k in range(1, rounds + 1):
        gen_deps = []
        if k > 1:
            gen_deps += [step_key(k - 1, "generate"), step_key(k - 1, "cutoff")]
        if k > 2:
            gen_deps.append(step_key(k - 2, last_train))
        steps.append(Step(k, "generate", tuple(gen_deps), "generator"))
        reference = any(stage in REFERENCE_STAGES for stage in training)
        if reference:
            steps.append(Step(k, "reference", (step_key(k, "generate"),), "generator"))
        steps.append(Step(k, "score", (step_key(k, "generate"),), "cpu"))
        steps.append(Step(k, "judge", (step_key(k, "generate"),), "judge"))
        steps.append(Step(k, "route", (step_key(k, "score"), step_key(k, "judge")), "cpu"))
        steps.append(Step(k, "cutoff", (step_key(k, "route"),), None))
        pre_rollouts = len(trains) > 1 and training[-1] in PRE_ROLLOUT_STAGES
        if pre_rollouts:
            deps = [step_key(k, "cutoff")] + ([step_key(k - 1, last_train)] if k > 1 else [])
            steps.append(Step(k, "rollouts", tuple(deps), "generator"))
        for i, stage in enumerate(trains):
            deps = [step_key(k, "cutoff")] if i == 0 else [step_key(k, trains[i - 1])]
            if i == 0 and k > 1:
                deps.append(step_key(k - 1, last_train))
            if reference and stage.split(":", 1)[1] in REFERENCE_STAGES:
                deps.append(step_key(k, "reference"))
            if pre_rollouts and stage == last_train:
                deps.append(step_key(k, "rollouts"))
            steps.append(Step(k, stage, tuple(deps), "trainer"))
        steps.append(Step(k, "rescore", (step_key(k, last_train),), "cpu"))
    return steps
