"""The manager factory beside the backend table: a URI in, an ExpManager out."""
from __future__ import annotations

import os
from typing import Any

from . import registry
from .manager import ExpManager
from .plugins import load_plugins
from .uri import resolve_uri


def create_manager(uri: str | os.PathLike | None = None, default_exp_name: str = "Experiment",
                   **kwargs: Any) -> ExpManager:
    """An ExpManager for ``uri`` (``None``: ``$QEXP_URI``, else ``./qexp_runs``) from the backend registry."""
    load_plugins()
    return registry.backends.create(resolve_uri(uri), default_exp_name=default_exp_name, **kwargs)
