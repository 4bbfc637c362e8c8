"""Qlib's in-process memory cache ``H``: LRU units for calendars (``"c"``), instrument lists (``"i"``) and raw
feature series (``"f"``), sized by ``mem_cache_size_limit`` in entries (``mem_cache_limit_type="length"``) or in
bytes (``"sizeof"``); calendars expire after ``mem_cache_expire`` seconds, so a data folder updated by another
process is seen again. ``qexp.init(clear_mem_cache=True)`` (the default, as in Qlib) empties it.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

DEFAULTS = {"mem_cache_size_limit": 500, "mem_cache_limit_type": "length", "mem_cache_expire": 3600.0}


def _sizeof(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes) + 112
    if isinstance(value, tuple):
        return sys.getsizeof(value) + sum(_sizeof(v) for v in value)
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(_sizeof(k) + _sizeof(v) for k, v in value.items())
    if isinstance(value, list):
        return sys.getsizeof(value) + sum(_sizeof(v) for v in value)
    nbytes = getattr(value, "nbytes", None)  # pandas indexes
    if isinstance(nbytes, int):
        return nbytes + 112
    return sys.getsizeof(value)


class MemCacheUnit:
    """One LRU unit: at most ``limit`` entries ('length') or bytes ('sizeof'); 0 keeps nothing."""

    def __init__(self, limit: int, limit_type: str) -> None:
        if limit_type not in ("length", "sizeof"):
            raise ValueError(f"limit_type must be length or sizeof, got {limit_type!r}")
        self.limit = int(limit)
        self.limit_type = limit_type
        self._od: OrderedDict[Any, tuple[Any, int, float]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _cost(self, value: Any) -> int:
        return 1 if self.limit_type == "length" else _sizeof(value)

    @property
    def size(self) -> int:
        """Entries ('length') or bytes ('sizeof') held."""
        return self._size

    def __len__(self) -> int:
        return len(self._od)

    def __contains__(self, key: Any) -> bool:
        return key in self._od

    def get(self, key: Any, expire: float | None = None) -> Any:
        """The value, or None when missing or older than ``expire`` seconds (then it is dropped)."""
        with self._lock:
            item = self._od.get(key)
            if item is None:
                self.misses += 1
                return None
            value, cost, born = item
            if expire is not None and time.monotonic() - born > expire:
                del self._od[key]
                self._size -= cost
                self.misses += 1
                return None
            self._od.move_to_end(key)
            self.hits += 1
            return value

    def set(self, key: Any, value: Any) -> None:
        cost = self._cost(value)
        with self._lock:
            old = self._od.pop(key, None)
            if old is not None:
                self._size -= old[1]
            if cost > self.limit:
                return  # larger than the whole unit: not kept (Qlib's behaviour for limit 0 too)
            self._od[key] = (value, cost, time.monotonic())
            self._size += cost
            while self._size > self.limit and self._od:
                _, (_, c, _) = self._od.popitem(last=False)
                self._size -= c

    def clear(self) -> None:
        with self._lock:
            self._od.clear()
            self._size = 0


class MemCache:
    """``H``: ``H["c"]`` calendars, ``H["i"]`` instruments, ``H["f"]`` raw feature series."""

    def __init__(self, mem_cache_size_limit: int = 500, limit_type: str = "length", expire: float = 3600.0) -> None:
        self.configure(mem_cache_size_limit, limit_type, expire)

    def configure(self, mem_cache_size_limit: int, limit_type: str, expire: float) -> None:
        self.size_limit = int(mem_cache_size_limit)
        self.limit_type = limit_type
        self.expire = float(expire)
        self.units = {k: MemCacheUnit(self.size_limit, limit_type) for k in ("c", "i", "f")}

    def __getitem__(self, key: str) -> MemCacheUnit:
        return self.units[key]

    def clear(self) -> None:
        for unit in self.units.values():
            unit.clear()


H = MemCache(500, "length", 3600.0)  # Qlib's defaults (DEFAULTS)


def configure(settings: dict[str, Any]) -> None:
    """Apply ``mem_cache_size_limit`` / ``mem_cache_limit_type`` / ``mem_cache_expire`` / ``clear_mem_cache``.

    The units are rebuilt (emptied) when a limit changes; otherwise they are emptied only when
    ``clear_mem_cache`` is true (the default)."""
    limit = settings.get("mem_cache_size_limit", DEFAULTS["mem_cache_size_limit"])
    kind = settings.get("mem_cache_limit_type", DEFAULTS["mem_cache_limit_type"])
    expire = settings.get("mem_cache_expire", DEFAULTS["mem_cache_expire"])
    if (int(limit), kind) != (H.size_limit, H.limit_type):
        H.configure(limit, kind, expire)
    else:
        H.expire = float(expire)
        if settings.get("clear_mem_cache", True):
            H.clear()
