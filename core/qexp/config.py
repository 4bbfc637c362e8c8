"""Config utilities with Qlib's semantics: ``init_instance_by_config``, ``fill_placeholder``,
``flatten_dict``, ``update_config`` (with ``__DROP__``) and friends."""
from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

from . import registry
from .exceptions import ConfigError
from .pickling import RestrictedUnpickler
from .plugins import load_plugins
from .uri import file_uri_to_path

S_DROP = "__DROP__"
FLATTEN_TUPLE = "_FLATTEN_TUPLE"


# ---- class resolution -----------------------------------------------------------------------------
def get_module_by_module_path(module_path: str | ModuleType) -> ModuleType:
    """Import ``module_path`` (a dotted name, a ``.py`` file or a module object)."""
    if isinstance(module_path, ModuleType):
        return module_path
    if module_path.endswith(".py"):
        name = re.sub(r"\W", "_", os.path.abspath(module_path))
        if name in sys.modules:
            return sys.modules[name]
        if not os.path.isfile(module_path):  # an ImportError: the caller names the class it was looking for
            raise ModuleNotFoundError(f"no file {os.path.abspath(module_path)}; a relative .py module_path is read "
                                      f"from the working directory, as in Qlib: run from the folder that holds it "
                                      f"or give its absolute path")
        spec = importlib.util.spec_from_file_location(name, module_path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load module from file {module_path!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(module_path)


def split_module_path(path: str) -> tuple[str, str]:
    """``"a.b.Name"`` -> ``("a.b", "Name")``."""
    module, _, name = path.rpartition(".")
    return module, name


def _resolve_class(name: str, module_path: Any, default_module: Any, where: str) -> Any:
    load_plugins()
    mod_str = module_path if isinstance(module_path, str) else None
    if "." in name:
        mod_str, name = split_module_path(name)
    # the registry first: plugins register their classes under Qlib's module paths
    cls = registry.components.resolve(name, mod_str)
    if cls is not None:
        return cls
    candidates = [m for m in (mod_str if mod_str else module_path, default_module) if m is not None]
    errors = []
    for mod in candidates:
        try:
            module = get_module_by_module_path(mod)
        except ImportError as exc:
            errors.append(f"module {mod!r} could not be imported ({exc})")
            continue
        if hasattr(module, name):
            return getattr(module, name)
        errors.append(f"module {getattr(module, '__name__', mod)!r} has no attribute {name!r}")
    known = [c.name for c in registry.components.components()]
    near = [k for k in known if k.lower() == name.lower() or name.lower() in k.lower()][:5]
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    raise ConfigError(f"{where}: cannot resolve class {name!r}"
                      f"{' in ' + repr(mod_str) if mod_str else ''}: not registered by any plugin"
                      f"{'; ' + '; '.join(errors) if errors else ''}.{hint} Registered classes: "
                      f"{', '.join(sorted(known)) or 'none'}.")


def get_callable_kwargs(config: Any, default_module: Any = None, where: str = "config") -> tuple[Callable, dict]:
    """``(callable, kwargs)`` from a config dict (``class``/``func``, ``module_path``, ``kwargs``) or a name."""
    if isinstance(config, dict):
        key = "class" if "class" in config else "func" if "func" in config else None
        if key is None:
            raise ConfigError(f"{where}: a component config needs a 'class' key, got keys {sorted(config)}")
        target = config[key]
        kwargs = dict(config.get("kwargs") or {})
        if isinstance(target, str):
            return _resolve_class(target, config.get("module_path"), default_module, where), kwargs
        if callable(target):
            return target, kwargs
        raise ConfigError(f"{where}.{key}: expected a class name or a class, got {type(target).__name__}")
    if isinstance(config, str):
        return _resolve_class(config, None, default_module, where), {}
    if callable(config):
        return config, {}
    raise ConfigError(f"{where}: cannot build an object from {type(config).__name__} {config!r}")


get_cls_kwargs = get_callable_kwargs


def init_instance_by_config(config: Any, default_module: Any = None, accept_types: type | tuple = (),
                            try_kwargs: dict | None = None, *, where: str = "config", **kwargs: Any) -> Any:
    """Build an object from any of Qlib's config forms.

    Forms: an instance of ``accept_types`` (returned as is); ``{"class": "Name" | "a.b.Name" | cls,
    "module_path": ..., "kwargs": {...}}``; ``"Name"``; ``"a.b.Name"``; ``"file:///x.pkl"`` or a
    ``Path`` (a pickle, loaded with the restricted unpickler, which trusts the classes of installed plugins). ``try_kwargs`` are passed only if the
    constructor accepts them: unlike Qlib, a TypeError raised inside the constructor is not swallowed.
    """
    if accept_types and isinstance(config, accept_types):
        return config
    if isinstance(config, (str, Path)) and (isinstance(config, Path) or str(config).startswith("file://")):
        path = config if isinstance(config, Path) else Path(file_uri_to_path(str(config)))
        if not path.exists():
            raise ConfigError(f"{where}: pickle file {str(path)!r} does not exist")
        with open(path, "rb") as f:
            # the classes of installed plugins (a handler and its processors) are trusted, as Qlib trusts its
            # own in its restricted loader; anything else (os.system, an unknown package) is still refused
            return RestrictedUnpickler(f, allow=_component_packages()).load()
    klass, cfg_kwargs = get_callable_kwargs(config, default_module, where)
    # explicit kwargs win over try_kwargs (Qlib got there by retrying after the TypeError)
    extra = {k: v for k, v in (try_kwargs or {}).items() if k not in cfg_kwargs and k not in kwargs}
    if extra:
        # only to parameters the constructor names: a **kwargs catch-all may reject unknown keys itself
        accepted = _named_params(klass)
        extra = {k: v for k, v in extra.items() if k in accepted}
    return klass(**cfg_kwargs, **extra, **kwargs)


def _component_packages() -> list[str]:
    """``"package.*"`` patterns for qexp and every package that registered a component."""
    load_plugins()
    roots = {c.cls.__module__.split(".", 1)[0] for c in registry.components.components()} | {"qexp"}
    return [f"{root}.*" for root in sorted(roots)]


def _accepted_kwargs(func: Callable) -> set[str] | None:
    """Names ``func`` accepts as keywords; None when it takes ``**kwargs`` (accepts anything)."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n, p in sig.parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def _named_params(func: Callable) -> set[str]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return set()
    return {n for n, p in sig.parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def auto_filter_kwargs(func: Callable, warning: bool = True) -> Callable:
    """Wrap ``func`` so keyword arguments it does not accept are dropped (with a warning)."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        accepted = _accepted_kwargs(func)
        if accepted is not None:
            dropped = [k for k in kwargs if k not in accepted]
            if dropped and warning:
                import warnings
                warnings.warn(f"{getattr(func, '__qualname__', func)} does not accept {dropped}; they are ignored",
                              stacklevel=2)
            kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        return func(*args, **kwargs)
    return wrapper


# ---- placeholders ---------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"^<[^<>]+>$")


def get_item_from_obj(config: Any, name_path: str) -> Any:
    """Follow a dotted path with numeric list indices: ``"dataset.kwargs.segments.train.0"``."""
    cur = config
    for part in name_path.split("."):
        if isinstance(cur, dict):
            cur = cur[part]
        elif isinstance(cur, (list, tuple)):
            cur = cur[int(part)]
        else:
            cur = getattr(cur, part)
    return cur


def fill_placeholder(config: Any, config_extend: dict[str, Any]) -> Any:
    """Replace whole-string placeholders in place: keys of ``config_extend`` (``"<MODEL>"``) by their objects,
    and ``"<a.b.0>"`` by the value at that path of ``config`` itself. Returns ``config``."""
    for k in config_extend:
        if not _PLACEHOLDER.match(k):
            raise ConfigError(f"placeholder {k!r} must look like '<NAME>'")
    queue: list[Any] = [config]
    while queue:
        node = queue.pop(0)
        items: Iterable = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in list(items):
            if isinstance(value, str) and _PLACEHOLDER.match(value):
                if value in config_extend:
                    node[key] = config_extend[value]
                else:
                    try:
                        node[key] = get_item_from_obj(config, value[1:-1])
                    except (KeyError, IndexError, ValueError, AttributeError, TypeError):
                        pass  # Qlib keeps unresolved strings as they are
            elif isinstance(value, (dict, list)):
                queue.append(value)
    return config


def find_placeholders(config: Any, path: str = "") -> list[tuple[str, str]]:
    """``(key path, placeholder)`` for every whole-string ``<...>`` value left in ``config``."""
    out = []
    if isinstance(config, dict):
        for k, v in config.items():
            out += find_placeholders(v, f"{path}.{k}" if path else str(k))
    elif isinstance(config, list):
        for i, v in enumerate(config):
            out += find_placeholders(v, f"{path}.{i}" if path else str(i))
    elif isinstance(config, str) and _PLACEHOLDER.match(config):
        out.append((path, config))
    return out


# ---- dict helpers ---------------------------------------------------------------------------------
def flatten_dict(d: dict, parent_key: Any = "", sep: str = ".") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; with ``sep=FLATTEN_TUPLE`` keys are tuples. Lists stay values."""
    items: list[tuple[Any, Any]] = []
    for k, v in d.items():
        if sep == FLATTEN_TUPLE:
            new_key = (parent_key + (k,)) if parent_key else (k,)
        else:
            new_key = f"{parent_key}{sep}{k}" if parent_key else k
        if isinstance(v, dict) and v:
            items.extend(flatten_dict(v, new_key, sep=sep).items())
        else:
            items.append((new_key, v))
    return dict(items)


def update_config(base_config: dict, ext_config: dict | list[dict]) -> dict:
    """Deep-merge ``ext_config`` into a copy of ``base_config``; a value ``"__DROP__"`` deletes the key."""
    base = copy.deepcopy(base_config)
    for ext in ext_config if isinstance(ext_config, list) else [ext_config]:
        _merge(base, ext)
    return base


def _merge(base: dict, ext: dict) -> None:
    for k, v in ext.items():
        if isinstance(v, str) and v == S_DROP:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


def deepcopy_basic_type(obj: Any) -> Any:
    """Copy dicts, lists and tuples; share everything else (Qlib's helper)."""
    if isinstance(obj, dict):
        return {k: deepcopy_basic_type(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [deepcopy_basic_type(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(deepcopy_basic_type(v) for v in obj)
    return obj


def set_by_path(config: dict, dotted: str, value: Any) -> None:
    """Set ``config["a"]["b"][0] = value`` from ``"a.b.0"``, creating dicts as needed."""
    parts = dotted.split(".")
    cur: Any = config
    for part in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[int(part)]
            continue
        if part not in cur or not isinstance(cur[part], (dict, list)):
            cur[part] = {}
        cur = cur[part]
    last = parts[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
