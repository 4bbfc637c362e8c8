"""Build components from Qlib-style configs through core's ``init_instance_by_config``.

Names resolve through the component registry first (plugins register Qlib's module paths), then
``default_module``: this plugin's own module for the kind of object, so a bare ``"ZScoreNorm"`` works even
when the registry has not been filled (for example in a bare ``python -c`` without ``qexp.init``).
"""
from __future__ import annotations

from typing import Any

from qexp.ext import get_callable_kwargs, init_instance_by_config


def build(config: Any, where: str = "config", accept_types: type | tuple = (),
          default_module: Any = None, **kwargs: Any) -> Any:
    """An object from an instance (kept when it matches ``accept_types``), a ``{"class": ...}`` dict or a name."""
    if accept_types and isinstance(config, accept_types):
        return config
    if callable(config) and not isinstance(config, type) and not accept_types:
        return config
    return init_instance_by_config(config, default_module=default_module, accept_types=accept_types,
                                   where=where, **kwargs)


def class_and_kwargs(config: Any, default_module: Any = None, where: str = "config") -> tuple[Any, dict]:
    """``(class, kwargs)`` of a config without building it."""
    return get_callable_kwargs(config, default_module, where)
