"""Page tokens of ``search_records``: opaque to callers, an offset plus a fingerprint of the search inside.

A token only continues the search that produced it: the same experiments, filter and order. Anything else
(a token from another search, or text that is no token) is a clear :class:`PageTokenError`, never a wrong
page. Backends with native tokens (MLflow) use their own, with a prefix of their choosing.
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Iterable

from .exceptions import FilterSyntaxError

MAX_OFFSET = 2 ** 63
"""Offsets of page tokens are below this (SQL's 64-bit integers); a token beyond is refused."""


class PageTokenError(FilterSyntaxError):
    """A ``page_token`` that does not continue this search."""


def search_key(experiment_ids: Iterable[str] | None, clauses: list[Any], orders: list[Any]) -> str:
    """A short fingerprint of a search (experiments, clauses and order)."""
    ids = None if experiment_ids is None else sorted(str(e) for e in experiment_ids)
    raw = json.dumps([ids, [repr(c) for c in clauses], [repr(o) for o in orders]])
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def offset_token(offset: int, key: str) -> str:
    """The token of the page starting at row ``offset`` of the search ``key``."""
    return base64.urlsafe_b64encode(json.dumps({"o": int(offset), "q": key}).encode()).decode().rstrip("=")


def token_offset(token: str | None, key: str) -> int:
    """The row offset a token stands for (0 without a token); :class:`PageTokenError` for a foreign one."""
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, owner = int(data["o"]), data["q"]
    except (ValueError, KeyError, TypeError):
        raise PageTokenError(f"page_token {token[:40]!r} is not a page token of this store; start from the "
                             f"first page (no page_token)") from None
    if not 0 <= offset < MAX_OFFSET:  # a forged offset: SQLite's OFFSET overflows, MLflow refuses it
        raise PageTokenError(f"page_token {token[:40]!r} is not a page token of this store (offset out of range); "
                             f"start from the first page (no page_token)")
    if owner != key:
        raise PageTokenError("page_token belongs to another search (its experiments, filter or order differ); "
                             "pass the same search again, or start from the first page (no page_token)")
    return offset
