"""Entry point of the built-in data plugin: providers, data components and the ``qexp data`` commands."""
from __future__ import annotations

from qexp import hookimpl


@hookimpl
def qexp_init(settings: dict) -> list:
    from .provider_setup import configure
    return configure(settings)


@hookimpl
def register_data_providers(register) -> None:  # type: ignore[no-untyped-def]
    from .provider_setup import register_providers
    register_providers(register)


@hookimpl
def register_data_components(register) -> None:  # type: ignore[no-untyped-def]
    from .components import register_components
    register_components(register)


@hookimpl
def register_commands(cli) -> None:  # type: ignore[no-untyped-def]
    from .cli import data_group
    cli.add_command(data_group)


@hookimpl
def register_cache_stores(register) -> None:  # type: ignore[no-untyped-def]
    from .provider_setup import register_cache_stores as register_stores
    register_stores(register)
