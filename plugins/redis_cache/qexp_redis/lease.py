"""Lease locks: a Redis lock with a TTL, renewed by one daemon thread per store while its holder lives.

Qlib's ``redis_lock`` locks never expire, so a crashed process leaves one that must be deleted by hand. Here a
SIGKILLed holder simply stops renewing and its lock expires within ``lock_ttl`` seconds; the next waiter
takes it and builds.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from qexp.ext import CacheLock

log = logging.getLogger("qexp.redis")


class LeaseLock(CacheLock):
    """One key's lock in a :class:`~qexp_redis.store.RedisCacheStore`; a file lock once Redis failed."""

    def __init__(self, store: Any, name: str) -> None:
        self._store = store
        self.name = name
        self._lock: Any = None
        self._fallback: CacheLock | None = None

    def _local(self, timeout: float | None) -> bool:
        self._fallback = self._store.disk.lock(self.name)
        return self._fallback.acquire(timeout)

    def acquire(self, timeout: float | None = None) -> bool:
        store = self._store
        if store.degraded:
            return self._local(timeout)
        self._lock = store.client.lock(store._k("lock", self.name), timeout=store.lock_ttl_s, sleep=0.1,
                                       blocking=True, blocking_timeout=timeout, thread_local=False)
        try:
            ok = bool(self._lock.acquire())
        except store._errors as exc:
            store._degrade(exc)
            self._lock = None
            return self._local(timeout)
        if ok:
            store._renewer.add(self)
        else:
            self._lock = None
        return ok

    def extend(self) -> None:
        """Push the expiry ``lock_ttl`` seconds from now (the renewer calls this)."""
        if self._lock is not None:
            self._lock.extend(self._store.lock_ttl_s, replace_ttl=True)

    def release(self) -> None:
        if self._fallback is not None:
            self._fallback.release()
            self._fallback = None
            return
        lock, self._lock = self._lock, None
        if lock is None:
            return
        store = self._store
        store._renewer.discard(self)
        try:
            lock.release()
        except store._redis_mod.exceptions.LockError:
            log.warning("redis cache: the lease on %s had expired before its release (another process may have "
                        "built the same entry meanwhile)", self.name)
        except store._errors as exc:
            store._degrade(exc)


class LockRenewer:
    """Extends every held lease of one store every third of its TTL, from a daemon thread."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._held: set[LeaseLock] = set()
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, lock: LeaseLock) -> None:
        with self._mutex:
            self._held.add(lock)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="qexp-redis-lease-renewer", daemon=True)
                self._thread.start()

    def discard(self, lock: LeaseLock) -> None:
        with self._mutex:
            self._held.discard(lock)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        store = self._store
        while not self._stop.wait(max(0.05, store.lock_ttl_s / 3)):
            with self._mutex:
                held = list(self._held)
            for lock in held:
                try:
                    lock.extend()
                except store._redis_mod.exceptions.LockError:
                    log.warning("redis cache: lost the lease on %s (it expired before renewal)", lock.name)
                    self.discard(lock)
                except store._errors as exc:
                    store._degrade(exc)
                    self.discard(lock)
