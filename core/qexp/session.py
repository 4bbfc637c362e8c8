"""``qexp.init``: choose the store by URI, hand the other settings to plugins, install mirrors.

All or nothing: everything that can be checked without changing state is checked first (runtime values,
the logging config, the store URI, the mirrors); then logging, the plugins' settings, the store and the
mirrors are applied, and if any of that fails the previous session is put back, so a refused ``init`` leaves
qexp as it was.

It sits above :mod:`qexp.api` (it configures ``R``); nothing below imports it.
"""
from __future__ import annotations

from typing import Any

from . import data_api, log as _log, registry, runtime as _runtime
from .api import R
from .backends import create_manager
from .exceptions import ConfigError, RecorderInitializationError
from .plugins import call_init_hooks, load_plugins, register, unregister
from .uri import uri_scheme

_settings: dict[str, Any] = {}
_mirror_plugins: list[tuple[str, Any]] = []   # (plugin name, mirror object)
_hooks_settings: dict[str, Any] | None = None  # what the plugins' qexp_init hooks were last given
_CORE_INIT_KEYS = ("uri", "default_exp_name", "mirrors", "autolog", "artifact_root")


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
    # 1. checks that change nothing: a refused init must leave the session as it was
    _runtime.validate(settings)  # a bad value of a runtime key
    _log.validate(settings)      # a logging_config dictConfig would refuse, a bad QEXP_LOG_LEVEL
    load_plugins()
    em_uri, em_kwargs = _uri_from_exp_manager(exp_manager)
    uri = uri or em_uri
    name = default_exp_name or em_kwargs.pop("default_exp_name", None) or "Experiment"
    artifact_root = artifact_root or em_kwargs.pop("artifact_root", None)
    backend_kwargs: dict[str, Any] = {"artifact_root": artifact_root} if artifact_root else {}
    manager = create_manager(uri, default_exp_name=name, **backend_kwargs)
    new_mirrors = _make_mirrors(mirrors or [])

    # 2. apply; on any failure put the previous session back
    saved = _snapshot()
    try:
        _log.configure(settings)
        consumed = _call_init_hooks(settings)
        # Qlib keys with no meaning in qexp get a one-line notice; keys neither qexp nor Qlib knows raise
        _runtime.check_unused(settings, consumed)
        _set_mirrors(new_mirrors)
        R.setup(manager)
        R.autolog = autolog
    except BaseException:
        _restore(saved)
        raise
    _settings.clear()
    _settings.update(settings, uri=manager.uri, default_exp_name=name, mirrors=list(mirrors or []), autolog=autolog,
                     **backend_kwargs)
    _log.initialized(manager, settings, uri_given=uri is not None)


def _call_init_hooks(settings: dict[str, Any]) -> set[str]:
    global _hooks_settings
    _hooks_settings = dict(settings)
    return call_init_hooks(settings)


def _snapshot() -> dict[str, Any]:
    return {"log": _log.snapshot(), "hooks": _hooks_settings, "data": dict(data_api._global),
            "mirrors": list(_mirror_plugins), "manager": R._manager, "managers": dict(R._managers),
            "autolog": R.autolog}


def _restore(saved: dict[str, Any]) -> None:
    """Put back the session :func:`_snapshot` saw: plugins get their previous settings again (their
    ``qexp_init`` is how a plugin's state is set), the rest is restored as it was."""
    global _hooks_settings
    _log.restore(saved["log"])
    try:
        call_init_hooks(saved["hooks"] if saved["hooks"] is not None else {})
    except Exception:  # noqa: BLE001 - the settings that worked before; the original error is what counts
        pass
    _hooks_settings = saved["hooks"]
    data_api._global.clear()
    data_api._global.update(saved["data"])
    _set_mirrors(saved["mirrors"])
    R._manager, R._managers, R.autolog = saved["manager"], saved["managers"], saved["autolog"]


def _set_mirrors(mirrors: list[tuple[str, Any]]) -> None:
    for name, _ in _mirror_plugins:
        unregister(name)
    _mirror_plugins.clear()
    for name, mirror in mirrors:
        _mirror_plugins.append((register(mirror, name=name), mirror))


def _install_mirrors(uris: list[str]) -> None:
    """Mirror every run to ``uris`` from now on (replacing the mirrors installed before)."""
    _set_mirrors(_make_mirrors(uris))


def _make_mirrors(uris: list[str]) -> list[tuple[str, Any]]:
    return [(f"mirror-{i}-{uri_scheme(u)}", registry.mirrors.create(u)) for i, u in enumerate(uris)]


def clear_mirrors() -> None:
    """Remove the mirrors installed by ``qexp.init(mirrors=...)``."""
    _set_mirrors([])


def get_settings() -> dict[str, Any]:
    """The keyword arguments of the last ``qexp.init`` (the store as an absolute URI), so that
    ``qexp.init(**get_settings())`` elsewhere reproduces it. Before any ``init``: the store ``R`` uses."""
    if not _settings and R.is_registered():
        return {"uri": R.get_uri()}
    return dict(_settings)
