"""Active-learning commands: score, route, and the `bench` group (active-learning)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from app.cli_common import db_option, emit, json_option, open_store
from labeling.ensemble import HEADS
from labeling.features import DEFAULT_FEATURES, FEATURE_BLOCKS
from labeling.label_risk import RiskConfig
from labeling.router import ROUTE_STRATEGIES


def _features(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@click.command("score")
@db_option
@click.option(
    "--encoder",
    default="all-MiniLM-L6-v2",
    show_default=True,
    help="Hugging Face encoder id or local folder (the default ships offline).",
)
@click.option(
    "--members", type=int, default=8, show_default=True, help="Reward heads in the ensemble (K)."
)
@click.option(
    "--head",
    type=click.Choice(HEADS),
    default="linear",
    show_default=True,
    help="Shape of each reward head.",
)
@click.option(
    "--features",
    default=",".join(DEFAULT_FEATURES),
    show_default=True,
    help=f"Comma-separated feature blocks from: {', '.join(FEATURE_BLOCKS)}.",
)
@click.option(
    "--max-length", type=int, default=256, show_default=True, help="Encoder tokens per text."
)
@click.option(
    "--min-labels",
    type=int,
    default=8,
    show_default=True,
    help="Refuse to fit on fewer pairs with an a/b verdict.",
)
@click.option(
    "--judge-targets",
    type=click.Choice(("soft", "hard", "none")),
    default="soft",
    show_default=True,
    help="Judge labels: soft targets at the judge's estimated accuracy, hard 1/0, or left out "
    "(human and import labels are always hard).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap and init seed.")
@json_option
def score_command(
    db: str,
    encoder: str,
    members: int,
    head: str,
    features: str,
    max_length: int,
    min_labels: int,
    judge_targets: str,
    seed: int,
    as_json: bool,
) -> None:
    """Fit a new reward-ensemble version on the current labels and score every pair.

    Embeddings are cached in the store, so a rerun only encodes new texts. The fitted
    ensemble is saved next to the store as <store>.artifacts/ensemble-v<N>/.
    """
    from labeling.encoder import EncoderConfig
    from labeling.ensemble import EnsembleConfig
    from labeling.scoring import ScoreConfig, score_store

    config = ScoreConfig(
        encoder=EncoderConfig(name=encoder, max_length=max_length, progress=not as_json),
        ensemble=EnsembleConfig(members=members, head=head, seed=seed),
        features=_features(features),
        min_labels=min_labels,
        judge_targets=judge_targets,
    )
    with open_store(db) as store:
        report = score_store(store, config)
    emit(report.as_dict(), as_json, _score_summary)


def _score_summary(r: dict[str, Any]) -> str:
    m = r["metrics"]
    oob = f", out-of-bag accuracy {m['oob_accuracy']:.3f}" if "oob_accuracy" in m else ""
    if "calibration_accuracy" in m:
        oob += (
            f"; v{m['calibration_version']:.0f} was right on {m['calibration_accuracy']:.1%} "
            f"of {m['calibration_pairs']:.0f} labelled calibration pairs"
        )
    return (
        f"ensemble v{r['version']}: fitted on {r['labelled_pairs']} labelled pairs{oob}; "
        f"scored {r['scored_pairs']} pairs ({r['texts_encoded']} texts encoded) in {r['seconds']}s\n"
        f"artifact: {r['artifact']}"
    )


@click.command("route")
@db_option
@click.option(
    "--human-budget",
    type=int,
    required=True,
    help="Pairs to add to the human queue (0: only re-choose the pairs nobody has started).",
)
@click.option(
    "--strategy",
    type=click.Choice(ROUTE_STRATEGIES),
    default="risk",
    show_default=True,
    help="What ranks pairs for humans: risk = estimated chance the automatic label is wrong; "
    "variance/bald/entropy = ensemble uncertainty only; random.",
)
@click.option(
    "--calibration-fraction",
    type=float,
    default=0.05,
    show_default=True,
    help="Share of the budget picked at random, for unbiased accuracy checks.",
)
@click.option(
    "--diversity/--no-diversity",
    default=True,
    show_default=True,
    help="Spread the human batch over the embedding space (k-center greedy).",
)
@click.option(
    "--promote/--no-promote",
    default=True,
    show_default=True,
    help="Send pairs without a usable automatic label (split panel, inconsistent, failed, tie) "
    "to humans first.",
)
@click.option(
    "--reroute/--no-reroute",
    default=True,
    show_default=True,
    help="Re-choose human-queue pairs that nobody has started (no label, no lease).",
)
@click.option(
    "--risk-model",
    type=click.Choice(("auto", "prior", "fitted")),
    default=RiskConfig.model,
    show_default=True,
    help="auto: the prior rule until humans have checked enough judge labels, then a fitted "
    "judge-error model.",
)
@click.option(
    "--prior-judge-error",
    type=float,
    default=RiskConfig.prior_error,
    show_default=True,
    help="Judge error rate assumed before human labels measure it.",
)
@click.option(
    "--overlap",
    type=int,
    default=None,
    help="Human labels wanted per pair sent to humans, from different annotators. "
    "Default: the project's setting (`prefloop project set --overlap`, 1 unless set).",
)
@click.option(
    "--seed", type=int, default=None, help="Seed for the calibration slice and random picks."
)
@json_option
def route_command(
    db: str,
    human_budget: int,
    strategy: str,
    calibration_fraction: float,
    diversity: bool,
    promote: bool,
    reroute: bool,
    risk_model: str,
    prior_judge_error: float,
    overlap: int | None,
    seed: int | None,
    as_json: bool,
) -> None:
    """Spend a human budget where the automatic label is most likely wrong or missing.

    Candidates are all pairs without a human label (unrouted, in the judge queue, judged
    or not) and the human-queue pairs nobody has started; pairs without a usable
    automatic label are promoted first. Every candidate humans do not get goes to the
    judge queue. Each call adds --human-budget pairs to the human queue.
    """
    from data.project import check_overlap, read_project
    from labeling.router import RouterConfig, route_store

    if overlap is not None:
        check_overlap(overlap, "--overlap")
    with open_store(db) as store:
        needed = overlap if overlap is not None else read_project(store).overlap
        config = RouterConfig(
            human_budget=human_budget,
            strategy=strategy,
            calibration_fraction=calibration_fraction,
            diversity=diversity,
            promote=promote,
            reroute=reroute,
            needed_labels=needed,
            risk=RiskConfig(model=risk_model, prior_error=prior_judge_error),
            seed=seed,
        )
        report = route_store(store, config)
    emit({**report.as_dict(), "overlap": needed}, as_json, _route_summary)


def _route_summary(r: dict[str, Any]) -> str:
    version = f"ensemble v{r['version']}" if r["version"] else "no ensemble"
    lines = [
        f"human queue: {r['human']} pairs chosen ({r['promoted']} promoted, {r['calibration']} "
        f"calibration, {r['active']} by {r['strategy']}, {version}); {r['human_queue_total']} "
        f"open in the human queue; judge queue: {r['judge']} pairs"
    ]
    if r.get("overlap", 1) > 1:
        lines.append(f"overlap: each pair chosen wants {r['overlap']} human labels")
    if r["by_reason"]:
        lines.append(
            "by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(r["by_reason"].items()))
        )
    if r["swapped_out"] or r["kept"]:
        lines.append(
            f"{r['kept']} started or calibration pairs kept; {r['swapped_out']} unstarted pairs "
            "swapped back to the judge queue for more valuable ones"
        )
    risk = r.get("risk")
    if risk:
        cal = risk.get("calibration") or {}
        fit = (
            f"fitted on {risk['fit_pairs']} human-checked pairs"
            if risk["kind"] == "fitted"
            else f"prior rule ({risk['fit_pairs']} human-checked pairs so far)"
        )
        line = f"risk: {fit}; judge error rate {risk['base_error']:.1%}"
        if cal.get("pairs"):
            line += (
                f"; on {cal['pairs']} calibration pairs: predicted {cal['predicted_error']:.1%}, "
                f"observed {cal['observed_error']:.1%}, Brier {cal['brier']:.3f}"
            )
        lines.append(line)
    if r["unlabelled_left"]:
        lines.append(
            f"{r['unlabelled_left']} pairs without a usable label stay with the judge: raise the budget"
        )
    if r["note"]:
        lines.append(f"note: {r['note']}")
    return "\n".join(lines)


@click.group("bench")
def bench_group() -> None:
    """Benchmarks that print JSON and compare against baselines measured in the same run."""


@bench_group.command("active-learning")
@click.option(
    "--data", default=None, help="Labelled preference file (default: HH helpful-base test split)."
)
@click.option(
    "--seeds", type=int, default=5, show_default=True, help="Seeds (splits and start sets)."
)
@click.option(
    "--features",
    default=",".join(DEFAULT_FEATURES),
    show_default=True,
    help="Feature blocks of the curves.",
)
@click.option(
    "--judge-agreement",
    type=float,
    default=0.70,
    show_default=True,
    help="Hybrid mode: probability that the simulated judge agrees with the human label.",
)
@click.option(
    "--quick", is_flag=True, help="Skip the feature and l2 comparisons and the extra curves."
)
@click.option(
    "--out", "out_dir", default=None, help="Folder for JSON and PNG (default: bench/out)."
)
def active_learning_command(
    data: str | None,
    seeds: int,
    features: str,
    judge_agreement: float,
    quick: bool,
    out_dir: str | None,
) -> None:
    """Label-efficiency curves of random, variance, BALD and BALD+diversity (JSON + PNG)."""
    from labeling.benchmark import REPO, BenchConfig, run_benchmark
    from labeling.benchmark_report import write_outputs

    kwargs: dict[str, Any] = {
        "seeds": seeds,
        "features": _features(features),
        "judge_agreement": judge_agreement,
    }
    if data:
        kwargs["data"] = data
    if quick:
        kwargs.update(compare_features=(), curve_features=())
    result = run_benchmark(BenchConfig(**kwargs), log=lambda msg: click.echo(msg, err=True))
    paths = write_outputs(result, Path(out_dir) if out_dir else REPO / "bench" / "out")
    click.echo(json.dumps({**result, "outputs": paths}, default=str))


@bench_group.command(
    "hybrid", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def hybrid_command(args: tuple[str, ...]) -> None:
    """Right exported labels for judge-only, random, uncertainty, default and oracle routing
    at several human budgets (bench/hybrid.py; its flags pass through, e.g. --quick)."""
    import runpy

    from labeling.benchmark import REPO

    script = REPO / "bench" / "hybrid.py"
    if not script.is_file():
        raise click.ClickException(
            f"{script} is missing: the hybrid benchmark runs from a source checkout of prefloop"
        )
    module = runpy.run_path(str(script), run_name="prefloop_bench_hybrid")
    module["main"](list(args))


COMMANDS: list[click.Command] = [score_command, route_command, bench_group]
