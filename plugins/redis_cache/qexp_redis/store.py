"""``redis://[:password@]host:port/db``: a cache store shared by processes on several machines.

* **Locks** are leases: a redis-py lock (token, ``SET NX PX``, Lua release) with a TTL (``lock_ttl=``, default
  60 s) that a daemon thread renews every third of it while the holder lives. A killed holder stops renewing,
  so its lock frees itself within the TTL -- never a manual ``redis-cli del`` as with Qlib's locks.
* **Single-flight builds**: :meth:`CacheStore.get_or_create_frame` on these locks -- N workers asking for the
  same dataset, one computes, the others wait on the lock and read what it wrote.
* **Small entries** (a data folder's calendars and instrument lists, which the data plugin reads through the
  active store keyed by the file's path, size and mtime; per-instrument expression series of
  ``DiskExpressionCache``; anything up to ``max_value_mb=``, default 64) live in Redis: raw array bytes under
  ``…:blob:<key>`` and a JSON header (dtypes, shapes, CRC32) in the hash ``…:meta:<key>``; never pickled.
* **Frames** (a whole Alpha158 frame) live on shared disk (``dir=``, default ``$QEXP_CACHE_DIR/datasets``: give
  a folder every machine mounts), with only their metadata, LRU rank and lock in Redis.
* **Size cap** (``max_gb=``, default ``QEXP_CACHE_MAX_GB`` or 5): least recently used entries (the sorted set
  ``…:lru``) are evicted after writes; the total is kept in ``…:bytes``.
* **Redis unreachable** (at start or mid-run): one warning, then this process uses file locks and the disk
  store in ``dir`` for the rest of its life; results are the same.

Keys: ``<prefix>:v1:{meta,blob,lock}:<key>``, ``<prefix>:v1:lru``, ``<prefix>:v1:bytes`` (``prefix=``,
default ``qexp``).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np
import pandas as pd

from qexp.ext import (
    CacheEntryError,
    CacheLock,
    CacheStore,
    cache_base_dir,
    create_by_scheme,
    decode_arrays,
    default_max_bytes,
    encode_arrays,
    mask_uri,
    require_extra,
)

from .lease import LeaseLock, LockRenewer

log = logging.getLogger("qexp.redis")

DEFAULT_LOCK_TTL_S = 60.0
DEFAULT_MAX_VALUE_MB = 64.0
BATCH = 1000

_PUT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[5])
  return 0
end
if ARGV[6] == '1' then redis.call('SET', KEYS[2], ARGV[7]) end
redis.call('HSET', KEYS[1], 'nbytes', ARGV[1], 'created', ARGV[2], 'location', ARGV[3], 'header', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[5])
redis.call('INCRBY', KEYS[4], ARGV[1])
return 1
"""
_DELETE = """
local n = redis.call('HGET', KEYS[1], 'nbytes')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if n then
  redis.call('DECRBY', KEYS[4], n)
  return tonumber(n)
end
return -1
"""


class RedisCacheStore(CacheStore):
    """See the module docstring."""

    def __init__(self, uri: str, client: Any = None, **_: Any) -> None:
        """``client``: a ready redis-py client (a ``fakeredis`` one in tests) instead of connecting to ``uri``."""
        redis = require_extra("redis", "redis", "the Redis cache store (redis:// cache URIs)")
        self._redis_mod = redis
        parts = urlsplit(uri)
        query = parse_qs(parts.query)

        def opt(name: str, default: Any) -> Any:
            return query[name][-1] if name in query else default

        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        db_text = (parts.path or "/0").strip("/") or "0"
        try:
            self.db = int(db_text)
        except ValueError:
            raise ValueError(f"cache URI {mask_uri(uri)}: the database {db_text!r} is not a number; use "
                             f"redis://[:password@]host:port/db") from None
        password = unquote(parts.password) if parts.password else None
        self.uri = mask_uri(uri)
        self.prefix = f"{opt('prefix', 'qexp')}:v1"
        self.lock_ttl_s = float(opt("lock_ttl", DEFAULT_LOCK_TTL_S))
        self.max_value_bytes = int(float(opt("max_value_mb", DEFAULT_MAX_VALUE_MB)) * 1024 ** 2)
        if "max_gb" in query:
            gb = float(query["max_gb"][-1])
            self.max_bytes: int | None = None if gb <= 0 else int(gb * 1024 ** 3)
        else:
            self.max_bytes = default_max_bytes()
        self.dir = str(opt("dir", cache_base_dir() / "datasets"))
        # frames and oversized small entries: a disk store on shared storage whose cap is ours (max_gb=0)
        self._disk: CacheStore = create_by_scheme("cache_store", f"disk://{quote(self.dir)}?max_gb=0")
        self._client = client if client is not None else redis.Redis(
            host=self.host, port=self.port, db=self.db, password=password,
            socket_connect_timeout=float(opt("connect_timeout", 2)), socket_timeout=float(opt("timeout", 30)),
            health_check_interval=30)
        self._put = self._client.register_script(_PUT)
        self._del = self._client.register_script(_DELETE)
        self._down = False
        self._down_lock = threading.Lock()
        self._renewer = LockRenewer(self)
        try:
            self._client.ping()
        except redis.exceptions.RedisError as exc:
            self._degrade(exc)

    # -- connection health
    @property
    def degraded(self) -> bool:
        """True once Redis failed: this process then uses file locks and the disk store."""
        return self._down

    def _degrade(self, exc: BaseException) -> None:
        with self._down_lock:
            if self._down:
                return
            self._down = True
        self._warn(f"redis connection failed (host={self.host} port={self.port} db={self.db}): "
                   f"{type(exc).__name__}: {exc}; this process goes on with local file locks and the disk cache "
                   f"in {self.dir}")

    @property
    def _errors(self) -> tuple[type[BaseException], ...]:
        return (self._redis_mod.exceptions.RedisError, OSError)

    def _k(self, kind: str, key: str = "") -> str:
        return f"{self.prefix}:{kind}:{key}" if key else f"{self.prefix}:{kind}"

    def _keys(self, key: str) -> list[str]:
        return [self._k("meta", key), self._k("blob", key), self._k("lru"), self._k("bytes")]

    # -- frames: files on shared disk, metadata and LRU rank in Redis
    def get_frame(self, key: str) -> pd.DataFrame | None:
        df = self._disk.get_frame(key)
        if df is None or self._down:
            return df
        try:
            self._client.zadd(self._k("lru"), {key: time.time()}, xx=True)
            if not self._client.exists(self._k("meta", key)):  # written while Redis was down: index it
                self._register(key, _frame_bytes(self._disk, key), "disk", "")
        except self._errors as exc:
            self._degrade(exc)
        return df

    def put_frame(self, key: str, df: pd.DataFrame) -> bool:
        if not self._disk.put_frame(key, df):
            return False
        if not self._down:
            try:
                self._register(key, _frame_bytes(self._disk, key), "disk", "")
                self.evict(keep=key)
            except self._errors as exc:
                self._degrade(exc)
        return True

    def _register(self, key: str, nbytes: int, location: str, header: bytes | str, blob: bytes | None = None,
                  client: Any = None) -> Any:
        args = [nbytes, time.time(), location, header, key, "1" if blob is not None else "0", blob or b""]
        return self._put(keys=self._keys(key), args=args, client=client)

    # -- small entries: raw bytes + JSON header in Redis (never pickled)
    def get_arrays(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        return self.get_many_arrays([key])[0]

    def get_many_arrays(self, keys: list[str]) -> list[tuple[dict[str, np.ndarray], dict] | None]:
        if self._down:
            return self._disk.get_many_arrays(keys)
        out: list[tuple[dict[str, np.ndarray], dict] | None] = []
        try:
            for a in range(0, len(keys), BATCH):
                part = keys[a:a + BATCH]
                pipe = self._client.pipeline(transaction=False)
                for k in part:
                    pipe.hmget(self._k("meta", k), "location", "header")
                    pipe.get(self._k("blob", k))
                replies = pipe.execute()
                hits = []
                for i, k in enumerate(part):
                    (location, header), blob = replies[2 * i], replies[2 * i + 1]
                    out.append(self._decode(k, location, header, blob))
                    if out[-1] is not None:
                        hits.append(k)
                if hits:
                    self._client.zadd(self._k("lru"), {k: time.time() for k in hits}, xx=True)
        except self._errors as exc:
            self._degrade(exc)
            return self._disk.get_many_arrays(keys)
        return out

    def _decode(self, key: str, location: bytes | None, header: bytes | None, blob: bytes | None
                ) -> tuple[dict[str, np.ndarray], dict] | None:
        if location is None:
            return None
        if location == b"disk":
            return self._disk.get_arrays(key)
        if header is None or blob is None:
            return None
        try:
            return decode_arrays(header, blob)
        except CacheEntryError as exc:
            log.warning("redis cache: entry %s is corrupt (%s); removing it", key, exc)
            self.delete(key)
            return None

    def put_arrays(self, key: str, arrays: dict[str, np.ndarray], meta: dict | None = None) -> bool:
        return self.put_many_arrays([(key, arrays, meta or {})]) == 1

    def put_many_arrays(self, items: Any) -> int:
        items = list(items)
        if self._down:
            return self._disk.put_many_arrays(items)
        stored = 0
        try:
            for a in range(0, len(items), BATCH):
                pipe = self._client.pipeline(transaction=False)
                for key, arrays, meta in items[a:a + BATCH]:
                    header, payload = encode_arrays(arrays, meta)
                    if len(payload) > self.max_value_bytes:  # Redis strings are capped; big values go to disk
                        if self._disk.put_arrays(key, arrays, meta):
                            self._register(key, len(payload), "disk", header, None, client=pipe)
                    else:
                        self._register(key, len(payload), "redis", header, payload, client=pipe)
                    stored += 1
                pipe.execute()
            self.evict()
        except self._errors as exc:
            self._degrade(exc)
            return self._disk.put_many_arrays(items)
        except ValueError as exc:  # an object array: refused, never pickled
            log.warning("redis cache: %s", exc)
        return stored

    # -- locks
    def lock(self, name: str) -> CacheLock:
        return LeaseLock(self, name)

    def delete(self, key: str) -> bool:
        removed = self._disk.delete(key)
        if self._down:
            return removed
        try:
            return self._del(keys=self._keys(key), args=[key]) != -1 or removed
        except self._errors as exc:
            self._degrade(exc)
            return removed

    # -- housekeeping
    def evict(self, keep: str | None = None) -> int:
        """Remove least recently used entries until ``…:bytes`` is under the cap."""
        if self.max_bytes is None or self._down:
            return 0
        removed = 0
        try:
            total = int(self._client.get(self._k("bytes")) or 0)
            while total > self.max_bytes:
                oldest = [k.decode() for k in self._client.zrange(self._k("lru"), 0, 63)]
                oldest = [k for k in oldest if k != keep]
                if not oldest:
                    break
                for key in oldest:
                    location = self._client.hget(self._k("meta", key), "location")
                    n = self._del(keys=self._keys(key), args=[key])
                    if location == b"disk":
                        self._disk.delete(key)
                    if n != -1:
                        removed += 1
                        total -= int(n)
                    if total <= self.max_bytes:
                        break
                total = int(self._client.get(self._k("bytes")) or 0)
        except self._errors as exc:
            self._degrade(exc)
        if removed:
            log.info("redis cache %s: evicted %d least recently used entries to stay under %.2f GB", self.uri,
                     removed, (self.max_bytes or 0) / 1024 ** 3)
        return removed

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri, "kind": "redis", "max_bytes": self.max_bytes, "dir": self.dir,
                               "lock_ttl_s": self.lock_ttl_s}
        disk = self._disk.stats()
        out["disk_entries"] = disk["entries"]
        out["disk_bytes"] = disk["total_bytes"]
        if self._down:
            out["reachable"] = False
            return out
        try:
            out["reachable"] = True
            out["entries"] = int(self._client.zcard(self._k("lru")))
            out["bytes"] = int(self._client.get(self._k("bytes")) or 0)
            out["locks_held"] = sum(1 for _ in self._client.scan_iter(match=self._k("lock", "*"), count=1000))
            out["redis_used_memory_bytes"] = int(self._client.info("memory").get("used_memory", 0))
        except self._errors as exc:
            self._degrade(exc)
            out["reachable"] = False
        return out

    def clear(self) -> int:
        n = 0
        if not self._down:
            try:
                n = int(self._client.zcard(self._k("lru")))
                batch = []
                for k in self._client.scan_iter(match=f"{self.prefix}:*", count=1000):
                    if b":lock:" in k:
                        continue  # a live build keeps its lock; it expires on its own
                    batch.append(k)
                    if len(batch) >= 500:
                        self._client.delete(*batch)
                        batch = []
                if batch:
                    self._client.delete(*batch)
            except self._errors as exc:
                self._degrade(exc)
        return max(n, self._disk.clear())

    def close(self) -> None:
        self._renewer.stop()
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection
            pass

    @property
    def client(self) -> Any:
        """The redis-py client (tests and ``qexp cache stats`` use it)."""
        return self._client

    @property
    def disk(self) -> CacheStore:
        return self._disk


def _frame_bytes(disk: CacheStore, key: str) -> int:
    path = getattr(disk, "frame_path", None)
    if path is None:
        return 0
    from qexp.ext import entry_size
    return entry_size(path(key))


def make_redis_store(uri: str, **kwargs: Any) -> RedisCacheStore:
    return RedisCacheStore(uri, **kwargs)
