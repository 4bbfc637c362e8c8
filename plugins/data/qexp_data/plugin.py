"""Entry point of the built-in data plugin: providers, data components and the ``qexp data`` commands."""
from __future__ import annotations

from typing import TYPE_CHECKING

from qexp.ext import ComponentRegister, SchemeRegister, hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def qexp_init(settings: dict) -> list:
    from .provider_setup import configure
    return configure(settings)


@hookimpl
def register_data_providers(register: SchemeRegister) -> None:
    from .provider_setup import register_providers
    register_providers(register)


@hookimpl
def register_data_components(register: ComponentRegister) -> None:
    from .components import register_components
    register_components(register)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import data_group
    cli.add_command(data_group)


@hookimpl
def register_cache_stores(register: SchemeRegister) -> None:
    from .provider_setup import register_cache_stores as register_stores
    register_stores(register)
