"""What every CLI command module shares: the ``--uri`` option, the store, errors and experiment lookup.

Plugins reach these through :mod:`qexp.ext`.
"""
from __future__ import annotations

from typing import NoReturn

import click

from ..backends import create_manager
from ..exceptions import ExpNotFoundError
from ..experiment import Experiment
from ..manager import ExpManager

uri_option = click.option("--uri", envvar="QEXP_URI", default=None,
                          help="Tracking store URI (default: $QEXP_URI, else ./qexp_runs).")


def manager(uri: str | None) -> ExpManager:
    """An ExpManager for the CLI's ``--uri`` (no run is started)."""
    return create_manager(uri)


def fail(msg: str) -> NoReturn:
    """Stop the command with ``Error: msg`` and exit status 1."""
    raise click.ClickException(msg)


def find_exp(m: ExpManager, name_or_id: str) -> Experiment:
    """The experiment named ``name_or_id``, else the one with that id; a clear CLI error when neither exists."""
    try:
        return m.get_exp(experiment_name=name_or_id, create=False)
    except ExpNotFoundError:
        try:
            return m.get_exp(experiment_id=name_or_id, create=False)
        except ExpNotFoundError:
            fail(f"no experiment named {name_or_id!r} (and none with that id) in {m.uri}; "
                 f"`qexp exp list --uri {m.uri}` lists them")


def experiment_ids(m: ExpManager, exp: tuple[str, ...]) -> list[str] | None:
    """Ids of the experiments named (by name, else by id) in a command's ``--exp`` options; None for none
    named (all). An unknown one is a clear CLI error. Plugin commands with ``--exp`` use this too."""
    if not exp:
        return None
    return [find_exp(m, e).id for e in exp]


def cli_group(cli: click.Group, name: str) -> click.Group:
    """The sub-group ``name`` of the ``qexp`` command (``runs``, ``exp``, ...), for plugins adding commands."""
    group = cli.commands.get(name)
    if not isinstance(group, click.Group):
        raise RuntimeError(f"the qexp command has no {name!r} group")
    return group
