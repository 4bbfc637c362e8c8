"""MLflow's limits on names and values, checked when a value is logged (not later, when a buffered batch
is flushed), and long values kept whole.

A param longer than MLflow's limit (6000 characters in 3.x; Qlib issues #1298/#1317 crashed on it) is
logged truncated, ending in a marker with a hash of the whole value, and the whole value goes to the
artifact ``params/<key>.txt``; tags past their limit likewise go to ``tags/<key>.txt``. The hash keeps
params immutable: two different long values never truncate to the same stored string.
"""
from __future__ import annotations

import hashlib
import posixpath
import re
import warnings

from qexp.ext import QexpError

_VALID_NAME = re.compile(r"^[/\w.\- :]*$")
_MARKER = re.compile(r"\.\.\.\[truncated \d+ chars, sha1 [0-9a-f]{12}; full value in artifact "
                     r"(?P<path>(?:params|tags)/.+\.txt)\]$", re.S)


def value_limits() -> dict[str, int]:
    try:
        from mlflow.utils import validation as v
        return {"param": int(getattr(v, "MAX_PARAM_VAL_LENGTH", 6000)),
                "tag": int(getattr(v, "MAX_TAG_VAL_LENGTH", 8000))}
    except ImportError:  # pragma: no cover
        return {"param": 6000, "tag": 8000}


def is_valid_name(key: str) -> bool:
    """Would MLflow accept ``key`` as a param, metric or tag name?"""
    norm = posixpath.normpath(key)
    return bool(_VALID_NAME.match(key)) and norm == key and norm != "." and not norm.startswith(("..", "/"))


def check_name(key: str, what: str) -> str:
    """Raise a QexpError naming the fix when MLflow would reject ``key``."""
    if not _VALID_NAME.match(key):
        suggestion = re.sub(r"[^/\w.\- :]", "_", key)
        raise QexpError(f"{what} name {key!r} is not accepted by MLflow: names may only contain letters, digits, "
                        f"'_', '-', '.', ' ', ':' and '/'; rename it, e.g. to {suggestion!r}")
    norm = posixpath.normpath(key)
    if norm != key or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise QexpError(f"{what} name {key!r} is not accepted by MLflow: it must not start with '/' nor contain "
                        f"'//', './' or '..' (MLflow treats names as paths); use {norm.lstrip('/')!r}")
    return key


def artifact_for(kind: str, key: str) -> str:
    """Artifact path that holds the whole value of a long param (``kind="params"``) or tag."""
    return f"{kind}/{key}.txt"


def shorten(kind: str, key: str, value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, ending in a marker that names the artifact with the whole."""
    digest = hashlib.sha1(value.encode("utf-8")).hexdigest()[:12]
    marker = f"...[truncated {len(value)} chars, sha1 {digest}; full value in artifact {artifact_for(kind, key)}]"
    return value[:max(0, limit - len(marker))] + marker


def stored_value(kind: str, key: str, value: str, limit: int) -> str:
    """What MLflow stores for ``value``: itself, or the shortened form when it is over ``limit``."""
    return shorten(kind, key, value, limit) if len(value) > limit else value


def warn_long(kind: str, keys: list[str], limit: int, run_id: str | None) -> None:
    if keys:
        warnings.warn(
            f"qexp: {kind[:-1]} value(s) of {', '.join(repr(k) for k in keys)} exceed MLflow's {limit}-character "
            f"limit (run {run_id}); they are logged truncated and stored whole as artifact(s) "
            f"{', '.join(artifact_for(kind, k) for k in keys)}", UserWarning, stacklevel=5)


def split_long(kind: str, values: dict[str, str], limit: int, run_id: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """``(stored values, {key: whole value})``: long values are shortened, with one warning per call."""
    stored = {k: stored_value(kind, k, v, limit) for k, v in values.items()}
    whole = {k: v for k, v in values.items() if len(v) > limit}
    warn_long(kind, list(whole), limit, run_id)
    return stored, whole


def truncated_artifact(value: str) -> str | None:
    """The artifact holding the whole value when ``value`` was shortened by :func:`shorten`, else None."""
    if len(value) < 60 or not value.endswith("]"):
        return None
    m = _MARKER.search(value)
    return m.group("path") if m else None
