"""`prefloop eval`: the loop measured against the reference labels (thin layer)."""

from __future__ import annotations

from typing import Any

import click

from app.cli_common import db_option, emit, json_option, open_store


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
@json_option
def eval_command(db: str, as_json: bool) -> None:
    """Measure the reward ensemble, each label source, each judge and the export against the
    reference labels (`prefloop import --labels as-reference`)."""
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


COMMANDS: list[click.Command] = [eval_command]
