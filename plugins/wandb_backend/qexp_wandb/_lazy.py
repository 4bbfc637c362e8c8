"""The one place that imports wandb, so the plugin imports (and ``qexp --help`` runs) without it."""
from __future__ import annotations

from types import ModuleType

from qexp.ext import MissingExtraError

INSTALL_HINT = 'pip install "qexp[wandb]"'


def import_wandb(what: str = "the wandb:// backend") -> ModuleType:
    """Import wandb, or raise :class:`qexp.MissingExtraError` naming the extra to install."""
    try:
        import wandb
    except ImportError as exc:  # also when sys.modules["wandb"] is None
        raise MissingExtraError(f"{what} needs the wandb package, which is not installed: {INSTALL_HINT}") \
            from exc
    return wandb
