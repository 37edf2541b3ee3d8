"""`prefloop eval`: the loop measured against the reference labels (thin layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from app.cli_common import db_option, emit, json_option, open_store
from data.errors import ConfigError
from training import runs
from training.jobs import EVAL_MODEL_KINDS, TrainRequest


def _line(name: str, result: dict[str, Any] | None) -> str:
    if not result or not result.get("pairs"):
        return f"{name}: no pairs with a reference label"
    low, high = result["interval"]
    return (
        f"{name}: {result['accuracy']:.1%} agree on {result['pairs']:,} pairs "
        f"(95% {low:.1%}–{high:.1%})"
    )


def _summary(r: dict[str, Any]) -> str:
    if not r["reference_pairs"]:
        return r["note"]
    lines = [f"{r['reference_pairs']:,} pairs carry a reference label"]
    ensemble = r["ensemble"]
    if ensemble is None:
        lines.append("reward ensemble: none yet (run `prefloop score`)")
    else:
        lines.append(_line(f"reward ensemble v{ensemble['version']}", ensemble))
        lines.append("  " + _line("on pairs it was fitted on", ensemble["fitted_pairs"]))
        lines.append("  " + _line("on the other pairs", ensemble["other_pairs"]))
    for source, result in r["labels_by_source"].items():
        lines.append(_line(f"{source} labels", result))
    for judge in r.get("judges", []):
        lines.append("  " + _line(f"judge {judge['who']}", judge["vs_reference"]))
    export = r.get("export")
    if export and export.get("accuracy") is not None:
        lines.append(
            f"export: {export['accuracy']:.1%} of {export['exported_with_reference']:,} exported "
            f"labels agree; {export['right_share_of_reference_pairs']:.1%} of the reference "
            "pairs are exported and right"
        )
    return "\n".join(lines)


@click.command("eval")
@db_option
@click.option(
    "--model",
    default=None,
    help="Measure this model on FILE instead of the store against its reference labels: a "
    "run id (rm, dpo, kto, ...), a model or adapter folder, an ensemble folder, or "
    "'ensemble' (the store's latest).",
)
@click.option(
    "--kind",
    type=click.Choice(EVAL_MODEL_KINDS),
    default=None,
    help="What --model is: rm, ensemble or policy (implicit reward against its reference). "
    "Default: from the run's stage or the folder.",
)
@click.option(
    "--category-field",
    default=None,
    help="FILE's field naming each row's category (default: subset, else category).",
)
@click.argument("file", required=False)
@json_option
def eval_command(
    db: str,
    model: str | None,
    kind: str | None,
    category_field: str | None,
    file: str | None,
    as_json: bool,
) -> None:
    """Measure the reward ensemble, each label source, each judge and the export against the
    reference labels (`prefloop import --labels as-reference`); or, with --model, a reward
    model, an ensemble or a policy's preference accuracy on a labelled FILE (any file
    `prefloop import` reads; RewardBench-style `subset` fields give per-category figures)."""
    if model is not None or file is not None:
        if model is None or file is None:
            raise ConfigError("--model and FILE go together: prefloop eval --model RUN FILE")
        emit(
            evaluate_model(db, model, kind, category_field, file, as_json), as_json, _model_summary
        )
        return
    from labeling.evaluation import evaluate_against_reference

    with open_store(db, read_only=True) as store:
        result = evaluate_against_reference(store)
        if result["reference_pairs"]:
            from judges.agreement import agreement_report

            report = agreement_report(store, reference_sources=("reference",))
            result["judges"] = [
                {"who": j["who"], "vs_reference": _interval(j["vs_reference"])}
                for j in report["judges"]
            ]
    emit(result, as_json, _summary)


def _interval(vs: dict[str, Any]) -> dict[str, Any]:
    """A judge's agreement with the reference, with the same count and interval as the rest."""
    from data.intervals import accuracy_with_interval

    n = int(vs.get("pairs") or 0)
    return {**vs, **accuracy_with_interval(round((vs.get("accuracy") or 0) * n), n)}


def evaluate_model(
    db: str, model: str, kind: str | None, category_field: str | None, file: str, as_json: bool
) -> dict[str, Any]:
    """Check FILE here (located errors), then score it in an evaluation run (a subprocess)."""
    from app.commands.train import _run_blocking
    from data.eval_sets import read_eval_set

    read_eval_set(file, category_field=category_field)  # a bad row fails before any run
    with open_store(db) as store:
        path, kind = _resolve_model(store, model, kind)
    overrides: dict[str, Any] = {"model_kind": kind}
    if category_field:
        overrides["category_field"] = category_field
    request = TrainRequest(
        "evaluate", policy=path, eval_file=str(Path(file).resolve()), overrides=overrides
    )
    return _run_blocking(db, None, request, as_json)


def _resolve_model(store: Any, model: str, kind: str | None) -> tuple[str, str]:
    """The folder to load and what it is, from a run id, 'ensemble' or a folder."""
    from labeling.scoring import latest_artifact

    if model == "ensemble":
        return latest_artifact(store), kind or "ensemble"
    run = runs.get_run(store, model)
    if run is not None:
        if run["status"] != "succeeded" or not run.get("artifact_path"):
            raise ConfigError(f"run {model} is {run['status']} and left no model to evaluate")
        return run["artifact_path"], kind or ("rm" if run["kind"] == "rm" else "policy")
    folder = Path(model)
    if (folder / "ensemble.json").exists():
        return str(folder), kind or "ensemble"
    if not folder.exists():
        raise ConfigError(
            f"--model {model!r} is no run id (see `prefloop runs`), folder or 'ensemble'"
        )
    if kind is None:
        raise ConfigError(f"--model {model}: say what it is with --kind rm or --kind policy")
    return str(folder), kind


def _model_summary(result: dict[str, Any]) -> str:
    m = result.get("metrics") or {}
    low, high = m.get("interval") or (0.0, 0.0)
    lines = [
        f"{m.get('model_kind')} {m.get('model')}: {m.get('accuracy', 0):.1%} of "
        f"{m.get('pairs', 0):,} pairs ranked right (95% {low:.1%}–{high:.1%}) "
        f"on {m.get('eval_file')}"
    ]
    for name, c in (m.get("categories") or {}).items():
        lo, hi = c["interval"]
        lines.append(f"  {name}: {c['accuracy']:.1%} of {c['pairs']:,} ({lo:.1%}–{hi:.1%})")
    lines.append(f"run {result.get('run_id')}")
    return "\n".join(lines)


COMMANDS: list[click.Command] = [eval_command]
