"""What every CLI command module shares: the ``--uri`` option, the store, errors and experiment lookup.

Plugins reach these through :mod:`qexp.ext`.
"""
from __future__ import annotations

from typing import NoReturn

import click

from ..backends import create_manager
from ..exceptions import ExpNotFoundError, QexpError, StoreNotFoundError
from ..experiment import Experiment
from ..manager import ExpManager
from ..recorder import Recorder
from ..uri import DEFAULT_URI, local_path

uri_option = click.option("--uri", envvar="QEXP_URI", default=None,
                          help="Tracking store URI (default: $QEXP_URI, else ./qexp_runs).")


def option_source(param: str, envvar: str) -> str | None:
    """``--param`` or ``$envvar`` when the running command's ``param`` came from the command line or that
    environment variable; None when it is the default (or no command is running)."""
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source(param) if ctx is not None else None
    if source is click.core.ParameterSource.COMMANDLINE:
        return f"--{param.replace('_', '-')}"
    if source is click.core.ParameterSource.ENVIRONMENT:
        return f"${envvar}"
    return None


def uri_source(param: str = "uri") -> str:
    """How the command's store URI was chosen: ``--uri``, ``$QEXP_URI`` or the default."""
    return option_source(param, "QEXP_URI") or f"the default {DEFAULT_URI}, as neither --uri nor $QEXP_URI is set"


def store_not_found(exc: BaseException) -> NoReturn:
    """The one-line error of a command that reads a store its ``--uri`` does not name: what was not found,
    how the URI was chosen and how to give the right one (a read must never create a new empty store)."""
    fail(f"{exc}; the store URI came from {uri_source()}. Give the right one with --uri PATH_OR_URI (or "
         f"$QEXP_URI); a store is created by `qexp run` or qexp.init() when its first run starts")


def manager(uri: str | None, create: bool = False) -> ExpManager:
    """An ExpManager for the CLI's ``--uri`` (no run is started). Commands read existing stores, so by
    default a store that does not exist is a one-line error naming the path and how the URI was chosen,
    never a new empty store; ``create=True`` is for commands that write a new store."""
    try:
        return create_manager(uri, create=create)
    except StoreNotFoundError as exc:
        store_not_found(exc)


def announce_store(m: ExpManager) -> None:
    """One line on stderr saying which store a listing read (stdout stays the table or pure JSON)."""
    where = local_path(m.uri) or m.uri
    click.echo(f"store: {where} (from {uri_source().split(',')[0]})", err=True)


def find_recorder(m: ExpManager, run_id: str) -> Recorder:
    """A run by id or unique id prefix (8 characters as listed); a clear CLI error otherwise."""
    try:
        return m.get_recorder_by_id(run_id)
    except QexpError as exc:
        fail(str(exc))


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
            names = sorted(m.list_experiments())
            fail(f"no experiment named {name_or_id!r} (and none with that id) in {local_path(m.uri) or m.uri}; "
                 f"existing: {', '.join(map(repr, names[:20])) or 'none'}")


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
