"""Entry point of the built-in records plugin: record templates, strategies and ``qexp runs report``."""
from __future__ import annotations

import click

from qexp.ext import ComponentRegister, hookimpl


@hookimpl
def register_record_templates(register: ComponentRegister) -> None:
    from .components import register_components
    register_components(register)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import add_commands
    add_commands(cli)
