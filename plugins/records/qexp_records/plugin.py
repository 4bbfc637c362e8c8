"""Entry point of the built-in records plugin: record templates, strategies and ``qexp runs report``."""
from __future__ import annotations

from qexp import hookimpl


@hookimpl
def register_record_templates(register) -> None:  # type: ignore[no-untyped-def]
    from .components import register_components
    register_components(register)


@hookimpl
def register_commands(cli) -> None:  # type: ignore[no-untyped-def]
    from .cli import add_commands
    add_commands(cli)
