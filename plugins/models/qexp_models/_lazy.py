"""Lazy imports of the heavy libraries, so ``import qexp_models`` (and plugin registration) needs neither
LightGBM nor torch; a missing one is a clear error at the first fit or predict."""
from __future__ import annotations

from types import ModuleType

from qexp import MissingExtraError


def _require(module: str, model: str, extra: str) -> ModuleType:
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{model} needs {module}, which is not installed: pip install \"qexp[{extra}]\" "
                                f"({type(exc).__name__}: {exc})") from exc


def lightgbm(model: str = "LGBModel") -> ModuleType:
    """The ``lightgbm`` module, or :class:`qexp.MissingExtraError` naming the extra to install."""
    return _require("lightgbm", model, "lightgbm")


def torch(model: str = "ALSTM") -> ModuleType:
    """The ``torch`` module, or :class:`qexp.MissingExtraError` naming the extra to install."""
    return _require("torch", model, "torch")
