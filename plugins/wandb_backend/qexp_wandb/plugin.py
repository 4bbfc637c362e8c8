"""Entry point of the W&B plugin: the ``wandb://`` backend, the ``wandb://`` mirror and
``qexp runs sync-wandb``. Imports nothing heavy: wandb is imported at first use."""
from __future__ import annotations

from typing import Any

import click

from qexp.ext import SchemeRegister, hookimpl


def backend_factory(uri: str, default_exp_name: str = "Experiment", **kwargs: Any) -> Any:
    """``wandb://PROJECT?...`` -> a manager over a local store whose runs are mirrored into W&B."""
    from .backend import WandbExpManager
    return WandbExpManager(uri, default_exp_name=default_exp_name, **kwargs)


def mirror_factory(uri: str) -> Any:
    """``qexp.init(mirrors=["wandb://PROJECT?..."])`` -> a mirror of every run, whatever the backend."""
    from qexp.ext import ConfigError

    from ._lazy import import_wandb
    from .mirror import WandbMirror
    from .uri import parse_wandb_uri
    target = parse_wandb_uri(uri)
    if target.store is not None:
        raise ConfigError(f"{uri!r}: store= chooses the local store of the wandb:// backend; a mirror copies "
                          f"the runs of the backend given as qexp.init(uri=...), so drop store= here")
    import_wandb("the wandb:// mirror")
    return WandbMirror(target)


@hookimpl
def register_backends(register: SchemeRegister) -> None:
    register(["wandb"], backend_factory,
             description="a local qexp store (every read) with each run mirrored into a W&B run")


@hookimpl
def register_mirrors(register: SchemeRegister) -> None:
    register(["wandb"], mirror_factory, description="mirror each run into a W&B run (offline without login)")


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import add_commands
    add_commands(cli)
