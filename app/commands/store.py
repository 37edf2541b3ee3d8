"""Store commands: import, export, stats."""

from __future__ import annotations

import click

from app.cli_common import db_option, emit, json_option, open_store
from data.errors import ImportValidationError
from data.importer import ImportOptions, import_sources
from data.shapes import FORMATS, ShapeConfig


@click.command("import")
@click.argument("sources", nargs=-1, required=True)
@db_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Row shape; auto detects it from the first readable row of each source.")
@click.option("--skip-invalid", is_flag=True,
              help="Import the valid rows and write rejected ones to a report, instead of all-or-nothing.")
@click.option("--report", "report_path", default=None,
              help="Where --skip-invalid writes rejected rows (JSONL). Default: next to the store.")
@click.option("--who", default="import", show_default=True, help="Labeller recorded on imported labels.")
@click.option("--split", default=None, help="Split of a Hugging Face dataset (default: train).")
@click.option("--max-text-chars", type=int, default=ShapeConfig.max_text_chars, show_default=True,
              help="Reject texts longer than this.")
@click.option("--max-pairs-per-prompt", type=int, default=ShapeConfig.max_pairs_per_prompt,
              show_default=True, help="Pairs formed per prompt from a list of responses.")
@json_option
def import_command(
    sources: tuple[str, ...], db: str, fmt: str, skip_invalid: bool, report_path: str | None,
    who: str, split: str | None, max_text_chars: int, max_pairs_per_prompt: int, as_json: bool,
) -> None:
    """Import preference data from SOURCES (files, dataset folders or hub ids) into the store."""
    options = ImportOptions(
        format=fmt, skip_invalid=skip_invalid, report_path=report_path, who=who, split=split,
        shape=ShapeConfig(max_text_chars=max_text_chars, max_pairs_per_prompt=max_pairs_per_prompt),
        progress=not as_json,
    )
    with open_store(db) as store:
        try:
            report = import_sources(store, sources, options)
        except ImportValidationError as exc:
            if as_json:
                emit({"error": str(exc), "invalid": len(exc.problems), "imported_pairs": 0,
                      "problems": [p.as_dict() for p in exc.problems[:20]]}, True)
            for problem in exc.problems[1:10]:
                click.echo(f"  {problem}", err=True)
            raise
    result = report.as_dict()
    emit(result, as_json, _import_summary)


def _import_summary(result: dict[str, object]) -> str:
    lines = [
        f"imported {result['imported_pairs']} pairs, {result['labels']} labels "
        f"({result['duplicates']} duplicate rows skipped, {result['invalid']} invalid)"
    ]
    if result["report"]:
        lines.append(f"rejected rows listed in {result['report']}")
    return "\n".join(lines)


COMMANDS: list[click.Command] = [import_command]
