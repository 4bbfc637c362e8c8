"""Decide online or offline: online only when W&B credentials exist, so nothing blocks on a login prompt."""
from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse

from .uri import normalize_mode

DEFAULT_BASE_URL = "https://api.wandb.ai"


def base_url() -> str:
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def _netrc_paths() -> list[str]:
    if os.environ.get("NETRC"):
        return [os.environ["NETRC"]]
    home = os.path.expanduser("~")
    return [os.path.join(home, ".netrc"), os.path.join(home, "_netrc")]


def has_credentials() -> bool:
    """True when ``WANDB_API_KEY`` is set or a netrc file has an entry for the W&B host (what
    ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY", "").strip():
        return True
    host = urlparse(base_url()).hostname or ""
    for path in _netrc_paths():
        if not os.path.isfile(path):
            continue
        try:
            auth = netrc.netrc(path).authenticators(host)
        except (netrc.NetrcParseError, OSError):
            continue
        if auth and auth[2]:
            return True
    return False


def resolve_mode(requested: str | None) -> str:
    """The URI's ``mode=``, else ``$WANDB_MODE``, else online with credentials and offline without."""
    if requested:
        return requested
    env = os.environ.get("WANDB_MODE", "").strip()
    if env:
        return normalize_mode(env, "$WANDB_MODE")
    return "online" if has_credentials() else "offline"


CREDENTIALS_HINT = ("run `wandb login` (it stores the key in ~/.netrc) or set WANDB_API_KEY "
                    "(and WANDB_BASE_URL for a self-hosted server)")
