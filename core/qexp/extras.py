"""Optional dependencies: import one, or say which extra installs it."""
from __future__ import annotations

import importlib
from types import ModuleType

from .exceptions import MissingExtraError


def require_extra(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``what`` needs it and the extra to install.

    ``require_extra("lightgbm", "lightgbm", "LGBModel")`` returns the ``lightgbm`` module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # also when sys.modules[module] is None
        raise MissingExtraError(f"{what} needs the {module.split('.')[0]} package, which is not installed: "
                                f"pip install \"qexp[{extra}]\" ({type(exc).__name__}: {exc})") from exc
