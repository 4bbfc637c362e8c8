"""``qexp.init``: choose the store by URI, hand the other settings to plugins, install mirrors.

It sits above :mod:`qexp.api` (it configures ``R``); nothing below imports it.
"""
from __future__ import annotations

import warnings
from typing import Any

from . import registry
from .api import R
from .backends import create_manager
from .exceptions import ConfigError, RecorderInitializationError
from .plugins import call_init_hooks, load_plugins, register, unregister
from .uri import uri_scheme

_settings: dict[str, Any] = {}
_mirror_plugins: list[str] = []


def _uri_from_exp_manager(exp_manager: Any) -> tuple[str | None, dict]:
    """Accept Qlib's ``exp_manager={"class": ..., "kwargs": {"uri": ..., "default_exp_name": ...}}``."""
    if exp_manager is None:
        return None, {}
    if not isinstance(exp_manager, dict):
        raise ConfigError(f"exp_manager must be a dict like {{'class': 'MLflowExpManager', 'kwargs': "
                          f"{{'uri': ...}}}}, got {type(exp_manager).__name__}")
    kwargs = dict(exp_manager.get("kwargs") or {})
    return kwargs.pop("uri", None), kwargs


def init(uri: str | None = None, default_exp_name: str | None = None, *, exp_manager: dict | None = None,
         mirrors: list[str] | None = None, skip_if_reg: bool = False, autolog: bool = True,
         **settings: Any) -> None:
    """Set up qexp: the tracking store (``uri``; plain files at ``./qexp_runs`` by default) and any
    settings plugins own (``provider_uri``, ``region`` for the data plugin).

    ``mirrors=["wandb://project"]`` mirrors every run to other services through the recorder events.
    ``qexp.init(**qexp.get_settings())`` in another process (an executor's worker) reproduces this session.
    """
    if R.has_active() and not skip_if_reg:
        raise RecorderInitializationError("qexp.init was called while an experiment is active; end it first "
                                          "(R.end_exp()) or pass skip_if_reg=True")
    if skip_if_reg and R.is_registered():
        return
    load_plugins()
    em_uri, em_kwargs = _uri_from_exp_manager(exp_manager)
    uri = uri or em_uri
    name = default_exp_name or em_kwargs.pop("default_exp_name", None) or "Experiment"
    manager = create_manager(uri, default_exp_name=name)
    R.setup(manager)
    R.autolog = autolog

    _install_mirrors(mirrors or [])
    consumed = call_init_hooks(settings)
    unknown = sorted(set(settings) - consumed)
    if unknown:
        warnings.warn(f"qexp.init: no plugin uses the setting(s) {', '.join(unknown)}; they were ignored",
                      stacklevel=2)
    _settings.clear()
    _settings.update(settings, uri=manager.uri, default_exp_name=name, mirrors=list(mirrors or []), autolog=autolog)


def _install_mirrors(uris: list[str]) -> None:
    for name in _mirror_plugins:
        unregister(name)
    _mirror_plugins.clear()
    for i, uri in enumerate(uris):
        mirror = registry.mirrors.create(uri)
        _mirror_plugins.append(register(mirror, name=f"mirror-{i}-{uri_scheme(uri)}"))


def clear_mirrors() -> None:
    """Remove the mirrors installed by ``qexp.init(mirrors=...)``."""
    _install_mirrors([])


def get_settings() -> dict[str, Any]:
    """The keyword arguments of the last ``qexp.init`` (the store as an absolute URI), so that
    ``qexp.init(**get_settings())`` elsewhere reproduces it. Before any ``init``: the store ``R`` uses."""
    if not _settings and R.is_registered():
        return {"uri": R.get_uri()}
    return dict(_settings)
