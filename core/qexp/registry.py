"""Registries filled by plugins: URI schemes -> factories, and component names -> classes.

Scheme tables follow MLflow's store registry: a plain dict, later registrations win, and an unknown
scheme raises an error listing the known schemes and the extra that provides a missing one.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from .exceptions import QexpError, UnknownSchemeError
from .uri import uri_scheme

# Schemes that qexp's optional built-in plugins serve, per kind, and the extra that brings each.
BACKEND_EXTRAS: dict[str, str] = {
    **{s: "mlflow" for s in ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "mlflow+file")},
    "wandb": "wandb",
}


@dataclass
class SchemeEntry:
    scheme: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""


class SchemeRegistry:
    """Maps URI schemes to factories for one kind of thing (backends, artifact stores, ...)."""

    def __init__(self, kind: str, known_extras: dict[str, str] | None = None):
        self.kind = kind
        self.known_extras: dict[str, str] = dict(known_extras or {})
        self._entries: dict[str, SchemeEntry] = {}

    def register(self, schemes: str | list[str], factory: Callable[..., Any], *, plugin: str = "",
                 description: str = "") -> None:
        for s in [schemes] if isinstance(schemes, str) else schemes:
            self._entries[s.lower()] = SchemeEntry(s.lower(), factory, plugin, description)

    def unregister_plugin(self, plugin: str) -> None:
        for k in [k for k, e in self._entries.items() if e.plugin == plugin]:
            del self._entries[k]

    def schemes(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[SchemeEntry]:
        return [self._entries[k] for k in sorted(self._entries)]

    def get(self, uri: str) -> SchemeEntry:
        scheme = uri_scheme(uri)
        entry = self._entries.get(scheme)
        if entry is not None:
            return entry
        known = ", ".join(f"'{s}:'" if s else "bare paths" for s in self.schemes()) or "none"
        hint = ""
        if scheme in self.known_extras:
            extra = self.known_extras[scheme]
            hint = (f" The '{scheme}:' scheme is provided by the qexp[{extra}] extra: install it with "
                    f"pip install \"qexp[{extra}]\" (and check QEXP_LOAD_PLUGINS does not exclude its plugin).")
        raise UnknownSchemeError(
            f"Unknown {self.kind} URI scheme '{scheme}' in '{uri}'. Known schemes: {known}.{hint}")

    def create(self, uri: str, **kwargs: Any) -> Any:
        return self.get(uri).factory(uri, **kwargs)


@dataclass
class Component:
    cls: Any
    name: str
    kind: str
    plugin: str
    module_paths: tuple[str, ...] = field(default_factory=tuple)


class ComponentRegistry:
    """Resolves class names used in configs (``class: LGBModel``) to classes registered by plugins.

    A class may also be registered under module paths (``qlib.contrib.model.gbdt``) so Qlib configs that
    say ``module_path: qlib.contrib.model.gbdt`` resolve to qexp's implementation.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, Component] = {}
        self._by_path: dict[str, Component] = {}

    def register(self, cls: Any, name: str | None = None, module_paths: tuple[str, ...] | list[str] = (),
                 *, kind: str = "component", plugin: str = "") -> None:
        name = name or cls.__name__
        comp = Component(cls, name, kind, plugin, tuple(module_paths))
        existing = self._by_name.get(name)
        if existing is not None and existing.cls is not cls and existing.plugin != plugin:
            warnings.warn(f"qexp: component '{name}' from plugin '{plugin}' replaces the one from "
                          f"'{existing.plugin}'", stacklevel=2)
        self._by_name[name] = comp
        self._by_path[f"{cls.__module__}.{cls.__qualname__}"] = comp
        for mp in module_paths:
            self._by_path[f"{mp}.{name}"] = comp

    def unregister_plugin(self, plugin: str) -> None:
        for table in (self._by_name, self._by_path):
            for k in [k for k, c in table.items() if c.plugin == plugin]:
                del table[k]

    def resolve(self, name: str, module_path: str | None = None) -> Any | None:
        """The class registered as ``module_path.name``, or by bare ``name``; None when unknown."""
        if module_path:
            comp = self._by_path.get(f"{module_path}.{name}")
            if comp is not None:
                return comp.cls
        if "." in name:
            comp = self._by_path.get(name)
            return comp.cls if comp is not None else None
        comp = self._by_name.get(name)
        return comp.cls if comp is not None else None

    def get(self, name: str, kind: str | None = None) -> Any:
        comp = self._by_name.get(name)
        if comp is None or (kind and comp.kind != kind):
            known = sorted(n for n, c in self._by_name.items() if not kind or c.kind == kind)
            raise QexpError(f"Unknown {kind or 'component'} '{name}'. Registered: {', '.join(known) or 'none'}.")
        return comp.cls

    def components(self, kind: str | None = None) -> list[Component]:
        return [c for _, c in sorted(self._by_name.items()) if kind is None or c.kind == kind]


backends = SchemeRegistry("backend", BACKEND_EXTRAS)
artifact_stores = SchemeRegistry("artifact store")
mirrors = SchemeRegistry("mirror", {"wandb": "wandb"})
data_providers = SchemeRegistry("data provider")
executors = SchemeRegistry("executor", {"dask": "dask", "dask+local": "dask", "dask+file": "dask"})
task_stores = SchemeRegistry("task store", {"postgresql": "postgres"})
cache_stores = SchemeRegistry("cache store", {"redis": "redis"})
components = ComponentRegistry()

SCHEME_TABLES: dict[str, SchemeRegistry] = {
    "backend": backends, "artifact_store": artifact_stores, "mirror": mirrors, "data_provider": data_providers,
    "executor": executors, "task_store": task_stores, "cache_store": cache_stores,
}
"""Every scheme table by kind: ``qexp plugins`` lists them and unregistering a plugin empties its rows."""
