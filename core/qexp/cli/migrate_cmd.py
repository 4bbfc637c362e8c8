"""``qexp runs migrate``: copy experiments and runs from one store to another (any two backends)."""
from __future__ import annotations

import click

from .common import cli_group, fail
from .output import print_json


@click.command("migrate")
@click.option("--from", "source", required=True, metavar="URI",
              help="Store to copy from (a path, file:, sqlite:///..., postgresql://..., http://server, ...).")
@click.option("--to", "target", required=True, metavar="URI", help="Store to copy into.")
@click.option("--exp", "experiments", multiple=True, metavar="NAME",
              help="Experiment name to copy (repeatable; default: all).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def migrate_cmd(source: str, target: str, experiments: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Copy runs with their params, full metric history, tags, artifacts, status and times.

    Running it again copies only what is new: each copy is tagged qexp.migrated_from=<source run id>.
    """
    from qexp.backends import create_manager
    from qexp.exceptions import QexpError, StoreNotFoundError
    from qexp.migrate import migrate
    try:
        src = create_manager(source, create=False)  # reading the source never creates it
    except StoreNotFoundError as exc:
        fail(f"--from: {exc}")
    try:
        report = migrate(src, target, experiments=list(experiments) or None, progress=False if quiet else None)
    except QexpError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        print_json({"experiments": report.experiments, "copied": report.copied, "skipped": report.skipped,
                    "running": report.running, "redone": report.redone, "times_kept": report.times_kept})
    else:
        click.echo(report.summary())


def add_commands(cli: click.Group) -> None:
    cli_group(cli, "runs").add_command(migrate_cmd)
