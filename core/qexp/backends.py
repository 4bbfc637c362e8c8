"""The manager factory beside the backend table: a URI in, an ExpManager out."""
from __future__ import annotations

import inspect
import os
from typing import Any

from . import registry
from .manager import ExpManager
from .plugins import load_plugins
from .uri import resolve_uri


def create_manager(uri: str | os.PathLike | None = None, default_exp_name: str = "Experiment",
                   create: bool = True, **kwargs: Any) -> ExpManager:
    """An ExpManager for ``uri`` (``None``: ``$QEXP_URI``, else ``./qexp_runs``) from the backend registry.

    ``create=False`` is for reads: a backend whose factory takes ``create`` (or ``**kwargs``) raises
    :class:`~qexp.exceptions.StoreNotFoundError` instead of creating a store that does not exist yet.
    """
    load_plugins()
    resolved = resolve_uri(uri)
    entry = registry.backends.get(resolved)
    if not create and _takes_keyword(entry.factory, "create"):
        kwargs["create"] = False
    return entry.factory(resolved, default_exp_name=default_exp_name, **kwargs)


def _takes_keyword(func: Any, name: str) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
