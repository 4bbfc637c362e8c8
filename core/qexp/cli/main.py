"""``qexp``: the command group. Core commands come from the modules in :data:`CORE_COMMANDS`; plugins add
theirs through the ``register_commands`` hook. Both ways end in ``add_commands(cli)``-style calls, here."""
from __future__ import annotations

import sys

import click

from ..plugins import load_plugins, pm
from . import cache_cmd, exp_cmds, index_cmd, migrate_cmd, plugins_cmd, rolling_cmd, run_cmd, runs_cmds, tasks_cmd
from .common import experiment_ids  # noqa: F401  (old import path of plugin commands)
from .errors import QexpGroup
from .runs_cmds import runs_group  # noqa: F401  (old import path)

CORE_COMMANDS = (plugins_cmd, exp_cmds, runs_cmds, migrate_cmd, index_cmd, run_cmd, rolling_cmd, tasks_cmd, cache_cmd)
"""Modules whose ``add_commands(cli)`` adds the core's commands, in this order."""


@click.group(cls=QexpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qexp")
def cli() -> None:
    """qexp: experiment management for quantitative research (Qlib's R API and qrun, on plugins).

    Errors are one line; add --traceback (anywhere) or set QEXP_DEBUG=1 for the full traceback.
    """


for _module in CORE_COMMANDS:
    _module.add_commands(cli)

_commands_loaded = False


def get_cli() -> click.Group:
    """The ``qexp`` group with every plugin's commands added (once per process)."""
    global _commands_loaded
    if not _commands_loaded:
        _commands_loaded = True
        load_plugins()
        for impl in pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:  # a plugin's broken command must not break the CLI
                click.echo(f"warning: plugin {impl.plugin_name!r} failed to add its commands: {exc}", err=True)
    return cli


def main(argv: list[str] | None = None) -> None:
    get_cli()(args=argv, prog_name="qexp")


def qrun_main() -> None:
    """``qrun CONFIG``: the Qlib-style alias of ``qexp run CONFIG``."""
    get_cli()  # plugins loaded, as for `qexp run`
    run_cmd.run_cmd.main(args=sys.argv[1:], prog_name="qrun")
