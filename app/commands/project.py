"""Project set-up commands: `prefloop guidelines set/show`, `prefloop project set/show`.

The settings live in the store (`data.project`); the app's Project tab edits the same ones.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from app.cli_common import db_option, emit, json_option, open_store
from data.errors import ConfigError
from data.project import (
    check_guidelines,
    check_lease_seconds,
    check_overlap,
    custom_guidelines,
    help_of,
    read_project,
    update_project,
)


@click.group("guidelines")
def guidelines_group() -> None:
    """The Markdown guidelines annotators see in the app's Annotate tab."""


@guidelines_group.command("set")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@db_option
@json_option
def guidelines_set(file: str, db: str, as_json: bool) -> None:
    """Use the Markdown in FILE (`-`: stdin) as the guidelines; the app shows them on its
    next page load. Raw HTML in them is shown as text."""
    text = _read_text(file)
    check_guidelines(text)
    with open_store(db) as store:
        settings = update_project(store, guidelines=custom_guidelines(text))
    emit(
        {
            "guidelines_chars": len(settings.shown_guidelines),
            "default": settings.guidelines is None,
        },
        as_json,
        lambda r: f"guidelines set ({r['guidelines_chars']} characters) in {db}",
    )


@guidelines_group.command("show")
@db_option
@json_option
def guidelines_show(db: str, as_json: bool) -> None:
    """Print the guidelines (the default ones when none were set)."""
    with open_store(db, read_only=True) as store:
        settings = read_project(store)
    emit(
        {"guidelines": settings.shown_guidelines, "default": settings.guidelines is None},
        as_json,
        lambda r: r["guidelines"].rstrip("\n"),
    )


@guidelines_group.command("reset")
@db_option
def guidelines_reset(db: str) -> None:
    """Go back to the default guidelines."""
    with open_store(db) as store:
        update_project(store, guidelines=None)
    click.echo(f"guidelines reset to the default in {db}")


def _read_text(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"{file}: no such file; write the guidelines in a Markdown file first")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text; save it as UTF-8 Markdown") from None


@click.group("project")
def project_group() -> None:
    """Project settings kept in the store: overlap, lease time, strength of preference."""


@project_group.command("show")
@db_option
@json_option
def project_show(db: str, as_json: bool) -> None:
    """Print the project settings."""
    with open_store(db, read_only=True) as store:
        settings = read_project(store)
    emit(settings.as_dict(), as_json, _summary)


@project_group.command("set")
@db_option
@click.option("--overlap", type=int, default=None, help=help_of("overlap"))
@click.option("--lease-seconds", type=float, default=None, help=help_of("lease_seconds"))
@click.option("--strength/--no-strength", default=None, help=help_of("strength"))
@json_option
def project_set(
    db: str,
    overlap: int | None,
    lease_seconds: float | None,
    strength: bool | None,
    as_json: bool,
) -> None:
    """Change some settings; the others stay as they are."""
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("overlap", overlap),
            ("lease_seconds", lease_seconds),
            ("strength", strength),
        )
        if value is not None
    }
    if not changes:
        raise click.UsageError("nothing to set: give --overlap, --lease-seconds or --strength")
    if overlap is not None:
        check_overlap(overlap, "--overlap")
    if lease_seconds is not None:
        check_lease_seconds(lease_seconds, "--lease-seconds")
    with open_store(db) as store:
        settings = update_project(store, **changes)
    emit(settings.as_dict(), as_json, _summary)


def _summary(r: dict[str, Any]) -> str:
    where = "default" if r["default_guidelines"] else "custom"
    return (
        f"overlap: {r['overlap']} human label(s) per routed pair\n"
        f"lease: {r['lease_seconds']:g} s\n"
        f"strength of preference: {'asked' if r['strength'] else 'off'}\n"
        f"guidelines: {where}, {len(r['guidelines'])} characters (`prefloop guidelines show`)"
    )


COMMANDS: list[click.Command] = [guidelines_group, project_group]
