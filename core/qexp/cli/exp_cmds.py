"""``qexp exp``: list and delete experiments."""
from __future__ import annotations

import click

from .common import announce_store, find_exp, manager, uri_option
from .output import print_json, print_table


@click.group("exp")
def exp_group() -> None:
    """Experiments."""


@exp_group.command("list")
@uri_option
@click.option("--json", "as_json", is_flag=True)
def exp_list(uri: str | None, as_json: bool) -> None:
    """List experiments."""
    m = manager(uri)
    announce_store(m)
    exps = m.list_experiments()
    rows = [{"id": e.id, "name": e.name} for e in exps.values()]
    if as_json:
        print_json(rows)
    else:
        print_table(["id", "name"], [[r["id"], r["name"]] for r in rows])


@exp_group.command("delete")
@uri_option
@click.argument("name_or_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def exp_delete(uri: str | None, name_or_id: str, yes: bool) -> None:
    """Delete an experiment (by name, or by id) and its runs."""
    m = manager(uri)
    exp = find_exp(m, name_or_id)
    if not yes:
        click.confirm(f"Delete experiment {exp.name!r} (id {exp.id}) and all its runs?", abort=True)
    m.delete_exp(experiment_id=exp.id)
    click.echo(f"deleted experiment {exp.name!r} (id {exp.id})")


def add_commands(cli: click.Group) -> None:
    cli.add_command(exp_group)
