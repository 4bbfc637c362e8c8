"""The one place that imports wandb, so the plugin imports (and ``qexp --help`` runs) without it."""
from __future__ import annotations

from types import ModuleType

from qexp.ext import require_extra


def import_wandb(what: str = "the wandb:// backend") -> ModuleType:
    """Import wandb, or raise :class:`qexp.MissingExtraError` naming the extra to install."""
    return require_extra("wandb", "wandb", what)
