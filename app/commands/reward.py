"""`prefloop serve-reward`: the reward ensemble behind OpenRLHF's remote reward-model protocol."""

from __future__ import annotations

import dataclasses
import logging

import click

from app.cli_common import db_option, open_store
from labeling.reward_service import RewardServerConfig


def _help(name: str) -> str:
    """The help text of a `RewardServerConfig` field, written once there."""
    return {f.name: f for f in dataclasses.fields(RewardServerConfig)}[name].metadata["help"]


@click.command("serve-reward")
@db_option
@click.option(
    "--ensemble",
    "folder",
    default=None,
    type=click.Path(file_okay=False),
    help="An ensemble artifact folder (default: the store's latest `prefloop score` version).",
)
@click.option("--host", default=RewardServerConfig.host, show_default=True, help=_help("host"))
@click.option(
    "--port", type=int, default=RewardServerConfig.port, show_default=True, help=_help("port")
)
@click.option(
    "--lambda",
    "conservative_lambda",
    type=float,
    default=RewardServerConfig.conservative_lambda,
    show_default=True,
    help=_help("conservative_lambda"),
)
@click.option(
    "--batch-size",
    type=int,
    default=RewardServerConfig.batch_size,
    show_default=True,
    help=_help("batch_size"),
)
def serve_reward_command(
    db: str,
    folder: str | None,
    host: str,
    port: int,
    conservative_lambda: float,
    batch_size: int,
) -> None:
    """Serve the reward ensemble (mean - lambda * std) at POST /get_reward in OpenRLHF's
    remote reward-model protocol ({"query": [...], "prompts": [...]} -> {"rewards": [...]}),
    for `--remote_rm_url` in OpenRLHF or a verl reward function. The store is read once,
    then left free for labelling; restart after `prefloop score` to serve the new version."""
    from labeling.reward_service import EnsembleScorer, RewardServer
    from labeling.scoring import latest_artifact

    config = RewardServerConfig(
        host=host, port=port, conservative_lambda=conservative_lambda, batch_size=batch_size
    )
    if folder is None:
        with open_store(db, read_only=True) as store:
            folder = latest_artifact(store)
    scorer = EnsembleScorer(folder, conservative_lambda=conservative_lambda, batch_size=batch_size)
    server = RewardServer(scorer, config)
    logging.getLogger("prefloop").info("serving %s", folder)
    click.echo(f"reward ensemble {folder} at {server.url} (Ctrl-C stops)", err=True)
    click.echo(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop_listening()


COMMANDS: list[click.Command] = [serve_reward_command]
