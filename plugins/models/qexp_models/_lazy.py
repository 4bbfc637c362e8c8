"""Lazy imports of the heavy libraries, so ``import qexp_models`` (and plugin registration) needs neither
LightGBM nor torch; a missing one is a clear error at the first fit or predict (``qexp.ext.require_extra``)."""
from __future__ import annotations

from types import ModuleType

from qexp.ext import require_extra


def lightgbm(model: str = "LGBModel") -> ModuleType:
    """The ``lightgbm`` module, or :class:`qexp.MissingExtraError` naming the extra to install."""
    return require_extra("lightgbm", "lightgbm", model)


def torch(model: str = "ALSTM") -> ModuleType:
    """The ``torch`` module, or :class:`qexp.MissingExtraError` naming the extra to install."""
    return require_extra("torch", "torch", model)
