"""The plugin manager: loads entry points of group ``qexp`` one by one and fills the registries.

Built-in plugins are entry points too, so they go through exactly the path a third party's does.
``QEXP_LOAD_PLUGINS=a,b`` loads only the named entry points (an empty value loads none);
``QEXP_TRACE_PLUGINS=1`` prints every hook call.

The file backend is essential (pytest's ``essential_plugins``, llm's default plugins): when no entry point
serves bare paths after loading (stale package metadata, or ``QEXP_LOAD_PLUGINS`` leaving it out), it is
registered by module path, so ``qexp.init()`` always has a store.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata as md
import os
import sys
import threading
import warnings
from typing import Any, Iterable, Mapping

import pluggy

from . import hookspecs, registry

ENTRY_POINT_GROUP = "qexp"
ESSENTIAL_PLUGINS: dict[str, tuple[str, str, str]] = {
    "file": ("qexp_file.plugin", "backend", ""),
    "executors": ("qexp_executors.plugin", "executor", "local"),
    "task_stores": ("qexp_task_stores.plugin", "task_store", "sqlite"),
}
"""Plugins registered by module path when, after the entry points, nothing serves their scheme:
name -> (module, kind of scheme table, scheme)."""
CORE_COMPONENTS = "qexp.task.components"
"""The core module whose ``register_components(register)`` puts the core's own classes named in configs (the
task layer, under Qlib's module paths) into the component registry, as plugin ``qexp``, after the plugins."""

pm = pluggy.PluginManager("qexp")
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False
_loading = False                        # True while the thread holding _lock loads the entry points
_versions: dict[str, str] = {}          # plugin name -> distribution version
_dists: dict[str, str] = {}             # plugin name -> distribution name
_load_errors: dict[str, str] = {}       # plugin name -> error text


def _allowed_names() -> set[str] | None:
    raw = os.environ.get("QEXP_LOAD_PLUGINS")
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _registration_hooks(name: str) -> dict[str, Any]:
    """The ``register`` callbacks handed to a plugin's registration hooks, tagged with its name."""

    def component_register(kind: str):
        def register(cls: Any, name_: str | None = None, module_paths: Iterable[str] = (), **kw: Any) -> None:
            registry.components.register(cls, kw.pop("name", name_), tuple(kw.pop("module_paths", module_paths)),
                                         kind=kind, plugin=name)
        return register

    def scheme_register(table: registry.SchemeRegistry):
        def register(schemes: str | list[str], factory: Any, *, description: str = "") -> None:
            table.register(schemes, factory, plugin=name, description=description)
        return register

    hooks: dict[str, Any] = {f"register_{kind}s": scheme_register(table)
                             for kind, table in registry.SCHEME_TABLES.items()}
    return {
        **hooks,
        "register_models": component_register("model"),
        "register_record_templates": component_register("record"),
        "register_data_components": component_register("data"),
    }


def register(plugin: Any, name: str | None = None, version: str = "") -> str:
    """Register a plugin object (module or instance) and run its registration hooks.

    Tests use this with a temporary plugin and :func:`unregister` in a ``finally``.
    """
    with _lock:
        name = pm.register(plugin, name=name)
        if name is None:  # pragma: no cover - pluggy returns None only for blocked plugins
            raise ValueError(f"plugin {plugin!r} is blocked")
        if version:
            _versions[name] = version
        for hook, callback in _registration_hooks(name).items():
            impl = getattr(plugin, hook, None)
            if impl is not None and pm.parse_hookimpl_opts(plugin, hook) is not None:
                impl(register=callback)
        return name


def unregister(name: str) -> None:
    """Remove a plugin and everything it registered."""
    with _lock:
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)
        for table in registry.SCHEME_TABLES.values():
            table.unregister_plugin(name)
        registry.components.unregister_plugin(name)
        _versions.pop(name, None)


def load_plugins() -> None:
    """Load the ``qexp`` entry points once. A plugin that fails to import gives a warning naming it.

    Another thread calling it meanwhile waits until every plugin is registered (``_loaded`` is set only
    then); a call from a plugin being imported (the loading thread itself) returns at once."""
    global _loaded, _loading
    if _loaded:
        return
    with _lock:
        if _loaded or _loading:
            return
        _loading = True
        try:
            _load_entry_points()
        finally:
            _loading = False
            _loaded = True


def _load_entry_points() -> None:
    """The body of :func:`load_plugins`, run once under ``_lock``."""
    if os.environ.get("QEXP_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda s: sys.stderr.write(s))
        pm.enable_tracing()
    allowed = _allowed_names()
    seen: set[str] = set()
    entry_points = md.entry_points(group=ENTRY_POINT_GROUP)
    if allowed:
        _warn_unknown_names(allowed, {ep.name for ep in entry_points})
    for ep in entry_points:
        if ep.name in seen or (allowed is not None and ep.name not in allowed):
            continue
        seen.add(ep.name)
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            obj = ep.load()
            version = ep.dist.version if ep.dist is not None else ""
            if ep.dist is not None:
                _dists[ep.name] = ep.dist.metadata["Name"]
            register(obj, name=ep.name, version=version)
        except Exception as exc:  # a broken plugin must not take the others down
            _record_load_error(ep.name, ep.value, exc)
    _load_essential_plugins()
    _load_core_components()


def _warn_unknown_names(allowed: set[str], available: set[str]) -> None:
    """``QEXP_LOAD_PLUGINS`` naming no entry point (a typo) loads nothing for that name: say so."""
    unknown = sorted(allowed - available - set(ESSENTIAL_PLUGINS))
    if unknown:
        import difflib
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(available), n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        warnings.warn(f"qexp: QEXP_LOAD_PLUGINS names {', '.join(hints)}, which no installed plugin provides; "
                      f"installed: {', '.join(sorted(available)) or 'none'}", RuntimeWarning, stacklevel=4)


def _load_core_components() -> None:
    def register(cls: Any, name: str | None = None, module_paths: Iterable[str] = ()) -> None:
        registry.components.register(cls, name, tuple(module_paths), kind="task", plugin="qexp")
    try:
        importlib.import_module(CORE_COMPONENTS).register_components(register)
    except Exception as exc:
        _record_load_error("qexp", CORE_COMPONENTS, exc)


def _record_load_error(name: str, where: str, exc: BaseException) -> None:
    _load_errors[name] = f"{type(exc).__name__}: {exc}"
    if pm.get_plugin(name) is not None:
        unregister(name)
    warnings.warn(f"qexp: plugin '{name}' ({where}) failed to load and was skipped: {type(exc).__name__}: {exc}",
                  RuntimeWarning, stacklevel=3)


def _load_essential_plugins() -> None:
    """Register the essential plugins by module path when nothing serves their scheme yet."""
    for name, (module, kind, scheme) in ESSENTIAL_PLUGINS.items():
        if scheme in registry.SCHEME_TABLES[kind].schemes() or pm.get_plugin(name) is not None \
                or pm.is_blocked(name):
            continue
        try:
            register(importlib.import_module(module), name=name, version=_own_version())
            _dists[name] = "qexp"
        except Exception as exc:
            _record_load_error(name, module, exc)


def _own_version() -> str:
    try:
        return md.version("qexp")
    except md.PackageNotFoundError:
        return ""


def reload_plugins() -> None:
    """Forget the entry-point plugins and load them again (honours a changed ``QEXP_LOAD_PLUGINS``)."""
    global _loaded
    with _lock:
        for name, _ in list(pm.list_name_plugin()):
            unregister(name)
        _load_errors.clear()
        _loaded = False
    load_plugins()


def get_plugins(all: bool = False) -> list[dict[str, Any]]:
    """A description of each loaded plugin: name, version, hooks and the schemes it serves."""
    load_plugins()
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda p: p[0]):
        module = getattr(plugin, "__name__", type(plugin).__module__)
        builtin = _dists.get(name) == "qexp" or _shipped_with_qexp(module)
        if builtin and not all:
            continue
        hooks = sorted(h.name for h in (pm.get_hookcallers(plugin) or []))
        schemes = {}
        for kind, table in registry.SCHEME_TABLES.items():
            s = [e.scheme or "<path>" for e in table.entries() if e.plugin == name]
            if s:
                schemes[kind] = s
        comps = [c.name for c in registry.components.components() if c.plugin == name]
        out.append({"name": name, "module": module, "version": _versions.get(name, ""), "builtin": builtin,
                    "hooks": hooks, "schemes": schemes, "components": comps})
    return out


def _shipped_with_qexp(module: str) -> bool:
    """Whether ``module`` belongs to qexp's own distribution (the core, a built-in plugin, or a listener one
    of them registered), judged by its top-level package, so a third party's ``qexp_foo`` is not."""
    top = module.split(".")[0]
    return top == "qexp" or "qexp" in _top_level_distributions().get(top, ())


@functools.lru_cache(maxsize=1)
def _top_level_distributions() -> Mapping[str, list[str]]:
    return md.packages_distributions()


def get_plugin(name: str) -> Any | None:
    """The registered plugin object named ``name``, or None."""
    return pm.get_plugin(name)


def load_errors() -> dict[str, str]:
    """Plugins that failed to load in this process, with the error."""
    return dict(_load_errors)


def hook() -> Any:
    """The hook relay (``hook().recorder_started(recorder=r)``), plugins loaded."""
    load_plugins()
    return pm.hook


def has_impls(name: str) -> bool:
    """Whether any registered plugin implements hook ``name`` (looked up on every call: nothing is cached,
    so plugins registered after ``qexp.init()`` are seen)."""
    return bool(getattr(pm.hook, name).get_hookimpls())


def fire(name: str, **kwargs: Any) -> None:
    """Call every implementation of event hook ``name``, each in its own ``try``.

    pluggy stops at the first implementation that raises; an event must reach every plugin, so a failing one
    (a W&B mirror that lost its connection, say) is warned about by plugin name and the others still run.

    Wrappers (``@hookimpl(wrapper=True)``, and old-style ``hookwrapper=True``) run as pluggy runs them: their
    code up to ``yield`` before every plain implementation, the rest after, innermost first; the new-style
    ones receive the list of the plain implementations' results from ``yield``, the old-style ones a
    ``pluggy.Result``. A wrapper that raises, or yields not exactly once, is warned about by plugin name and
    the others still run.
    """
    impls = getattr(pm.hook, name).get_hookimpls()
    wrappers = [i for i in impls if i.wrapper or i.hookwrapper]
    plain = [i for i in impls if not (i.wrapper or i.hookwrapper)]

    def warn(impl: Any, what: str) -> None:
        warnings.warn(f"qexp: plugin '{impl.plugin_name}' failed in its {name} hook: {what}", RuntimeWarning,
                      stacklevel=3)

    entered: list[tuple[Any, Any]] = []
    for impl in reversed(wrappers):  # pluggy's order: last registered (and tryfirst) first, outermost
        try:
            gen = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            next(gen)
        except StopIteration:
            warn(impl, "the wrapper did not yield")
        except Exception as exc:
            warn(impl, f"{type(exc).__name__}: {exc}")
        else:
            entered.append((impl, gen))
    results: list[Any] = []
    for impl in reversed(plain):
        try:
            res = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except Exception as exc:
            warn(impl, f"{type(exc).__name__}: {exc}")
        else:
            if res is not None:
                results.append(res)
    for impl, gen in reversed(entered):  # innermost first
        try:
            gen.send(pluggy.Result(results, None) if impl.hookwrapper else results)
        except StopIteration as stop:
            if impl.wrapper and isinstance(stop.value, list):
                results = stop.value
        except Exception as exc:
            warn(impl, f"{type(exc).__name__}: {exc}")
        else:
            gen.close()
            warn(impl, "the wrapper yielded more than once")


def call_init_hooks(settings: dict[str, Any]) -> set[str]:
    """Run every plugin's ``qexp_init`` with ``settings``; return the keys some plugin used."""
    consumed: set[str] = set()
    for keys in hook().qexp_init(settings=dict(settings)) or []:
        consumed.update(keys or [])
    return consumed
