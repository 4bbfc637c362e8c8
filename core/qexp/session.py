"""``qexp.init``: choose the store by URI, hand the other settings to plugins, install mirrors.

It sits above :mod:`qexp.api` (it configures ``R``); nothing below imports it.
"""
from __future__ import annotations

from typing import Any

from . import log as _log, registry, runtime as _runtime
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
         artifact_root: str | None = None, **settings: Any) -> None:
    """Set up qexp: the tracking store (``uri``; plain files at ``./qexp_runs`` by default) and any
    settings plugins own (``provider_uri``, ``region`` for the data plugin).

    ``artifact_root`` keeps the artifacts of new runs under that URI (any scheme an artifact-store plugin
    serves, or a local folder) instead of the store's default place; each run records where its artifacts
    are, so reading them back needs no setting.

    ``mirrors=["wandb://project"]`` mirrors every run to other services through the recorder events.
    ``qexp.init(**qexp.get_settings())`` in another process (an executor's worker) reproduces this session.
    """
    if R.has_active() and not skip_if_reg:
        raise RecorderInitializationError("qexp.init was called while an experiment is active; end it first "
                                          "(R.end_exp()) or pass skip_if_reg=True")
    if skip_if_reg and R.is_registered():
        return
    _runtime.validate(settings)  # a bad value of a runtime key raises before anything changes
    _log.configure(settings)
    load_plugins()
    em_uri, em_kwargs = _uri_from_exp_manager(exp_manager)
    uri = uri or em_uri
    name = default_exp_name or em_kwargs.pop("default_exp_name", None) or "Experiment"
    artifact_root = artifact_root or em_kwargs.pop("artifact_root", None)
    backend_kwargs: dict[str, Any] = {"artifact_root": artifact_root} if artifact_root else {}
    manager = create_manager(uri, default_exp_name=name, **backend_kwargs)
    R.setup(manager)
    R.autolog = autolog

    _install_mirrors(mirrors or [])
    consumed = call_init_hooks(settings)
    # Qlib keys with no meaning in qexp get a one-line notice; keys neither qexp nor Qlib knows raise
    _runtime.check_unused(settings, consumed)
    _settings.clear()
    _settings.update(settings, uri=manager.uri, default_exp_name=name, mirrors=list(mirrors or []), autolog=autolog,
                     **backend_kwargs)
    _log.initialized(manager, settings, uri_given=uri is not None)


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
