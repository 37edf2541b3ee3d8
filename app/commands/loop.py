"""`prefloop loop`: generate, score, judge, route, train and gate, round after round,
with the stages of neighbouring rounds overlapped (a thin layer over `app.loop`)."""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from app.cli_common import db_option, emit, json_option, open_store
from app.loop.config import PIPELINES, LoopConfig, help_of
from data.errors import ConfigError


def _settings(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set beta=0.2")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@click.command("loop")
@db_option
@click.option(
    "--rounds", type=int, default=LoopConfig.rounds, show_default=True, help=help_of("rounds")
)
@click.option(
    "--pipeline",
    type=click.Choice(PIPELINES),
    default=LoopConfig.pipeline,
    show_default=True,
    help=help_of("pipeline"),
)
@click.option("--policy", default=None, help=help_of("policy"))
@click.option(
    "--human-budget-per-round",
    type=int,
    default=LoopConfig.human_budget_per_round,
    show_default=True,
    help=help_of("human_budget_per_round"),
)
@click.option("--judge-base-url", default=None, help=help_of("judge_base_url"))
@click.option("--judge-model", "judge_models", multiple=True, help=help_of("judge_models"))
@click.option(
    "--judge-concurrency",
    type=int,
    default=LoopConfig.judge_concurrency,
    show_default=True,
    help=help_of("judge_concurrency"),
)
@click.option(
    "--reward",
    type=click.Choice(("rm", "judge")),
    default=LoopConfig.reward,
    show_default=True,
    help=help_of("reward"),
)
@click.option(
    "--generate-n",
    type=int,
    default=LoopConfig.generate_n,
    show_default=True,
    help=help_of("generate_n"),
)
@click.option(
    "--prompts-per-round",
    type=int,
    default=LoopConfig.prompts_per_round,
    show_default=True,
    help=help_of("prompts_per_round"),
)
@click.option(
    "--max-new-tokens",
    type=int,
    default=LoopConfig.max_new_tokens,
    show_default=True,
    help=help_of("max_new_tokens"),
)
@click.option(
    "--wait-for-humans",
    type=int,
    default=None,
    metavar="MIN_LABELS",
    help=help_of("wait_for_humans"),
)
@click.option(
    "--human-deadline", type=float, default=None, metavar="SECONDS", help=help_of("human_deadline")
)
@click.option("--no-overlap", is_flag=True, help=help_of("overlap"))
@click.option("--no-warm-trainers", is_flag=True, help=help_of("warm_trainers"))
@click.option("--max-steps", type=int, default=None, help=help_of("max_steps"))
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help=help_of("train_settings"),
)
@click.option(
    "--min-gain",
    type=float,
    default=LoopConfig.min_gain,
    show_default=True,
    help=help_of("min_gain"),
)
@click.option("--seed", type=int, default=LoopConfig.seed, show_default=True, help=help_of("seed"))
@click.option("--out", default=None, help=help_of("runs_root"))
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the newest unfinished loop of the store from its last finished stage, with "
    "its own settings (the other flags are ignored); a run it had started is waited for.",
)
@json_option
def loop_command(
    db: str,
    rounds: int,
    pipeline: str,
    policy: str | None,
    human_budget_per_round: int,
    judge_base_url: str | None,
    judge_models: tuple[str, ...],
    judge_concurrency: int,
    reward: str,
    generate_n: int,
    prompts_per_round: int,
    max_new_tokens: int,
    wait_for_humans: int | None,
    human_deadline: float | None,
    no_overlap: bool,
    no_warm_trainers: bool,
    max_steps: int | None,
    settings: tuple[str, ...],
    min_gain: float,
    seed: int,
    out: str | None,
    resume: bool,
    as_json: bool,
) -> None:
    """Run the loop: each round generates pairs from the last promoted policy, scores them,
    judges them, routes a human budget, trains incrementally on the labels present at the
    round's cut-off, gates the run and re-scores. Stages of neighbouring rounds overlap
    (generation, reference log-probs and judging of round k+1 while round k trains; in
    rm+ppo, PPO's first batch sampled while the reward model trains) unless --no-overlap. Humans
    are never waited for unless --wait-for-humans or --human-deadline. Stops early when the
    gate fails twice in a row or the held-out metric stops improving (--min-gain)."""
    from app.loop.runner import run_loop

    if not as_json:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per judge call
    config = None
    if not resume:
        config = LoopConfig(
            rounds=rounds,
            pipeline=pipeline,
            policy=policy,
            human_budget_per_round=human_budget_per_round,
            judge_base_url=judge_base_url,
            judge_models=judge_models,
            judge_concurrency=judge_concurrency,
            reward=reward,
            generate_n=generate_n,
            prompts_per_round=prompts_per_round,
            max_new_tokens=max_new_tokens,
            wait_for_humans=wait_for_humans,
            human_deadline=human_deadline,
            overlap=not no_overlap,
            warm_trainers=not no_warm_trainers,
            max_steps=max_steps,
            train_settings=_settings(settings),
            min_gain=min_gain,
            seed=seed,
            runs_root=out,
        )
    with open_store(db) as store:
        try:
            result = run_loop(store, config, resume=resume)
        except KeyboardInterrupt:
            raise click.exceptions.Abort() from None
    emit(result, as_json, _summary)


def _summary(result: dict[str, Any]) -> str:
    lines = [f"{result['loop_id']}: {result['status']} in {result['wall_s']:g} s"]
    if result.get("stop_reason"):
        lines[0] += f" ({result['stop_reason']})"
    for r in result["rounds"]:
        metric = r["heldout_accuracy"] if r["heldout_accuracy"] is not None else r["heldout_reward"]
        shown = f"{metric:.3f}" if isinstance(metric, float) else "-"
        lines.append(
            f"round {r['round']}: {'promoted' if r['promoted'] else 'kept parent'}, held-out "
            f"{shown}, labels {r['labels']}, staleness {r['staleness']}, {r['round_s']} s"
        )
    return "\n".join(lines)


COMMANDS: list[click.Command] = [loop_command]
