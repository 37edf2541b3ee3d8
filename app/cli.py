"""The `prefloop` command: a thin layer over the library packages.

Each area registers its commands from its own module in `app/commands/`.
"""

from __future__ import annotations

import click

from app.cli_common import run_cli
from app.commands import evaluate as evaluate_commands
from app.commands import judge as judge_commands
from app.commands import labeling as labeling_commands
from app.commands import loop as loop_commands
from app.commands import project as project_commands
from app.commands import quality as quality_commands
from app.commands import reward as reward_commands
from app.commands import serve as serve_commands
from app.commands import store as store_commands
from app.commands import train as train_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prefloop")
def cli() -> None:
    """prefloop: fast RLHF iteration from a DuckDB preference store."""


for command in store_commands.COMMANDS:
    cli.add_command(command)
for command in labeling_commands.COMMANDS:
    cli.add_command(command)
for command in project_commands.COMMANDS:
    cli.add_command(command)
for command in evaluate_commands.COMMANDS:
    cli.add_command(command)
for command in judge_commands.COMMANDS:
    cli.add_command(command)
for command in quality_commands.COMMANDS:
    cli.add_command(command)
for command in serve_commands.COMMANDS:
    cli.add_command(command)
for command in reward_commands.COMMANDS:
    cli.add_command(command)
for command in train_commands.COMMANDS:
    cli.add_command(command)
for command in loop_commands.COMMANDS:
    cli.add_command(command)


def main(args: list[str] | None = None) -> None:
    run_cli(cli, args)


if __name__ == "__main__":
    main()
