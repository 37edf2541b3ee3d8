"""Quality-control commands: `prefloop annotators` (the per-annotator table), `prefloop gold`."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import click

from app.cli_common import db_option, emit, json_option, open_store
from data.annotator_stats import AnnotatorRow, annotator_table, write_csv
from data.gold import GoldConfig, gold_count, read_gold_config, write_gold_config


@click.command("annotators")
@db_option
@click.option("--csv", "csv_path", default=None, help="Also write the table to this CSV file.")
@json_option
def annotators_command(db: str, csv_path: str | None, as_json: bool) -> None:
    """Per-annotator quality: labels (total, today, per hour), median lease-to-label time,
    agreement with the other humans, gold and the judge, tie/both-bad/skip rates, position
    bias (share of A/B verdicts for the side shown left) and undo rate."""
    with open_store(db, read_only=True) as store:
        rows = annotator_table(store)
    if csv_path:
        write_csv(rows, csv_path)
    emit({"annotators": [row.as_dict() for row in rows]}, as_json, lambda _: _table(rows))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _table(rows: list[AnnotatorRow]) -> str:
    if not rows:
        return "no human labels yet"
    lines = [
        "annotator  labels  today  /hour  median s  vs-majority  vs-gold  vs-judge  tie  "
        "both-bad  skip  left  undo  flag"
    ]
    for r in rows:
        lines.append(
            f"{r.annotator}  {r.labels}  {r.today}  {r.per_hour or '—'}  "
            f"{r.median_seconds if r.median_seconds is not None else '—'}  "
            f"{_pct(r.vs_majority.rate)} ({r.vs_majority.n})  {_pct(r.vs_gold.rate)} "
            f"({r.vs_gold.n})  {_pct(r.vs_judge.rate)} ({r.vs_judge.n})  {_pct(r.tie_rate)}  "
            f"{_pct(r.both_bad_rate)}  {_pct(r.skip_rate)}  {_pct(r.left.rate)}  "
            f"{_pct(r.undo_rate)}  {'GOLD' if r.gold_flag else ''}"
        )
    return "\n".join(lines)


def _gold_options(func: Any) -> Any:
    for f in reversed(fields(GoldConfig)):
        func = click.option(
            f"--{f.name.replace('_', '-')}",
            f.name,
            type=type(f.default),
            default=None,
            help=f.metadata["help"] + f" [default: {f.default}]",
        )(func)
    return func


@click.command("gold")
@db_option
@_gold_options
@json_option
def gold_command(db: str, as_json: bool, **changes: Any) -> None:
    """Show (or, with options, change) how gold pairs are mixed into annotators' queues and
    how annotators are flagged on them. Gold pairs come from `prefloop import --gold FILE`."""
    wanted = {k: v for k, v in changes.items() if v is not None}
    with open_store(db, read_only=not wanted) as store:
        config = read_gold_config(store)
        if wanted:
            config = write_gold_config(store, replace(config, **wanted))
        count = gold_count(store)
    result = {"gold_pairs": count, **{f.name: getattr(config, f.name) for f in fields(config)}}
    emit(result, as_json)


COMMANDS: list[click.Command] = [annotators_command, gold_command]
