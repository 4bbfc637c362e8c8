"""Entry point of qexp_redis: the ``redis://`` (and ``rediss://``) cache store."""
from __future__ import annotations

from typing import Any

from qexp import hookimpl


@hookimpl
def register_cache_stores(register: Any) -> None:
    from .store import make_redis_store
    register(["redis", "rediss"], make_redis_store,
             description="Redis: lease locks, single-flight builds, small entries in Redis, frames on shared disk")
