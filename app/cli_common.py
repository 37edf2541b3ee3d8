"""Shared CLI pieces: the --db/--json options and the one place errors become exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from data.errors import PrefloopError
from data.store import PreferenceStore, default_db_path

F = TypeVar("F", bound=Callable[..., Any])


def db_option(func: F) -> F:
    return click.option(
        "--db",
        "db",
        default=default_db_path,
        show_default="$PREFLOOP_DB, then ./prefloop.duckdb",
        help="Path of the DuckDB preference store.",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(func)


def open_store(db: str, *, read_only: bool = False) -> PreferenceStore:
    return PreferenceStore(db, read_only=read_only)


def emit(
    result: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str] | None = None
) -> None:
    """Print a result as JSON (machine) or as readable lines (people)."""
    if as_json:
        click.echo(json.dumps(result, default=str))
    elif human is not None:
        click.echo(human(result))
    else:
        for key, value in result.items():
            click.echo(f"{key}: {value}")


def run_cli(group: click.Group, args: list[str] | None = None) -> None:
    """Run the CLI; a PrefloopError becomes one line on stderr and exit code 1."""
    try:
        group.main(args=args, standalone_mode=False)
    except PrefloopError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
