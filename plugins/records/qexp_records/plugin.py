"""Entry point of the built-in records plugin: record templates, strategies and ``qexp runs report``."""
from __future__ import annotations

import click

from qexp.ext import ComponentRegister, hookimpl


@hookimpl
def register_record_templates(register: ComponentRegister) -> None:
    from .components import register_components
    register_components(register)


@hookimpl
def qexp_init(settings: dict) -> list:
    """Qlib's ``trade_unit``, ``limit_threshold`` and ``deal_price``: the exchange's defaults when a backtest
    config's ``exchange_kwargs`` does not give its own."""
    from .backtest.exchange import set_init_defaults
    return set_init_defaults(settings)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import add_commands
    add_commands(cli)
