"""Shared CLI pieces: the --db/--json options and the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from data.errors import PrefloopError, StoreLockedError
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


# Stores this process serves (`prefloop serve`): a forwarded CLI command gets the open
# store instead of a second connection (app/control.py)
SERVED: dict[str, PreferenceStore] = {}
NOT_FORWARDED = frozenset({"serve", "demo", "users"})  # they start or manage a server


class _Borrowed:
    """The served store, lent to one command: closing it leaves it open for the app."""

    def __init__(self, store: PreferenceStore):
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def __enter__(self) -> PreferenceStore:
        return self.store

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None


def open_store(db: str, *, read_only: bool = False) -> PreferenceStore:
    served = SERVED.get(str(Path(db).resolve()))
    if served is not None:
        return _Borrowed(served)  # type: ignore[return-value]
    return PreferenceStore(db, read_only=read_only)


@contextlib.contextmanager
def serving(store: PreferenceStore) -> Iterator[None]:
    """Lend `store` to CLI commands this process runs for others (`app.control`), until the
    block ends."""
    key = str(Path(store.path).resolve())
    SERVED[key] = store
    try:
        yield
    finally:
        SERVED.pop(key, None)


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
    """Run the CLI; a PrefloopError becomes one line on stderr and exit code 1. A command on
    a store that `prefloop serve` holds runs in that process instead (`app.control`)."""
    argv = list(sys.argv[1:] if args is None else args)
    try:
        group.main(args=argv, standalone_mode=False)
    except StoreLockedError as exc:
        code = _forwarded(exc, argv)
        if code is None:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        sys.exit(code)
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


def _forwarded(exc: StoreLockedError, argv: list[str]) -> int | None:
    from app.control import forward

    if exc.path is None or not argv or argv[0] in NOT_FORWARDED:
        return None
    return forward(exc.path, argv)


def run_in_process(group: click.Group, argv: list[str]) -> int:
    """Run a command here for a forwarded CLI call; its exit code, errors as the CLI shows them."""
    try:
        run_cli(group, argv)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
