"""``qexp.init``: choose the backend by URI, hand other settings to plugins, install exit handlers."""
from __future__ import annotations

import os
import warnings
from typing import Any

from . import registry
from .exceptions import ConfigError

DEFAULT_URI = "./qexp_runs"
_settings: dict[str, Any] = {}


def default_uri() -> str:
    """``QEXP_URI`` if set, else ``./qexp_runs`` (resolved to an absolute path at init)."""
    return os.environ.get("QEXP_URI") or DEFAULT_URI


def resolve_uri(uri: str | os.PathLike | None) -> str:
    """Make a bare or ``file:`` path absolute, so later changes of the working directory do not move the
    store (Qlib's CWD-relative lock path bug)."""
    uri = os.fspath(uri) if uri is not None else default_uri()
    scheme = registry.uri_scheme(uri)
    if scheme == "":
        return os.path.abspath(os.path.expanduser(uri))
    if scheme == "file":
        from .fileuri import file_uri_to_path, path_to_file_uri
        return path_to_file_uri(os.path.abspath(os.path.expanduser(file_uri_to_path(uri))))
    return uri


def create_manager(uri: str | None = None, default_exp_name: str = "Experiment", **kwargs: Any):
    """An ExpManager for ``uri`` from the backend registry."""
    from .plugins import load_plugins
    load_plugins()
    uri = resolve_uri(uri)
    return registry.backends.create(uri, default_exp_name=default_exp_name, **kwargs)


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
    """
    from .api import R
    from .plugins import hook, load_plugins, pm

    if R.has_active() and not skip_if_reg:
        from .exceptions import RecorderInitializationError
        raise RecorderInitializationError("qexp.init was called while an experiment is active; end it first "
                                          "(R.end_exp()) or pass skip_if_reg=True")
    if skip_if_reg and R.is_registered():
        return
    load_plugins()
    em_uri, em_kwargs = _uri_from_exp_manager(exp_manager)
    uri = uri or em_uri
    name = default_exp_name or em_kwargs.pop("default_exp_name", None) or "Experiment"
    manager = create_manager(uri, default_exp_name=name)
    R.register(manager)
    R.autolog = autolog

    _install_mirrors(mirrors or [])
    consumed: set[str] = set()
    for keys in hook().qexp_init(settings=dict(settings)) or []:
        consumed.update(keys or [])
    unknown = sorted(set(settings) - consumed)
    if unknown:
        warnings.warn(f"qexp.init: no plugin uses the setting(s) {', '.join(unknown)}; they were ignored",
                      stacklevel=2)
    _settings.clear()
    _settings.update(settings, uri=manager.uri, default_exp_name=name, mirrors=list(mirrors or []))
    from .exit_handler import install
    install()


_mirror_plugins: list[str] = []


def _install_mirrors(uris: list[str]) -> None:
    from .plugins import register, unregister
    for name in _mirror_plugins:
        unregister(name)
    _mirror_plugins.clear()
    for i, uri in enumerate(uris):
        mirror = registry.mirrors.create(uri)
        _mirror_plugins.append(register(mirror, name=f"mirror-{i}-{registry.uri_scheme(uri)}"))


def clear_mirrors() -> None:
    """Remove the mirrors installed by ``qexp.init(mirrors=...)``."""
    _install_mirrors([])


def get_settings() -> dict[str, Any]:
    """The settings of the last ``qexp.init``."""
    return dict(_settings)
