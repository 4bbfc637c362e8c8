"""Entry point of qexp_ui: the ``qexp ui`` command and ``qexp runs export-config``. Imports nothing heavy:
FastAPI, uvicorn and plotly load when the command runs."""
from __future__ import annotations

import click

from qexp import hookimpl


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import add_commands
    add_commands(cli)
