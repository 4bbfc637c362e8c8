"""Entry point of qexp_sweep: the ``qexp sweep`` command (extra ``optuna``)."""
from __future__ import annotations

from typing import Any

from qexp.ext import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    from .cli import sweep_cmd
    cli.add_command(sweep_cmd)
