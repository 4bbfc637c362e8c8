"""Buffered metric points reach the store within a bounded time: one daemon thread per process, awake only
while some run holds buffered points, writes out every buffer older than ``QEXP_METRIC_FLUSH_INTERVAL``
seconds (default 1). Bursts still go out in batches (a full buffer is written by the recorder itself, and
points logged within one interval share one write); a last point does not wait for the next log call or
for the heartbeat, so a reader following the run (``qexp ui``) sees it about a second later.
"""
from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

DEFAULT_INTERVAL = 1.0


def flush_interval() -> float:
    """Seconds a metric point may wait in a buffer (``QEXP_METRIC_FLUSH_INTERVAL``, default 1)."""
    try:
        return max(0.05, float(os.environ.get("QEXP_METRIC_FLUSH_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


class Flusher:
    """The flush thread of this process. Recorders call :meth:`add` when their buffer becomes non-empty and
    answer ``pending_age()`` (seconds their oldest buffered point has waited, 0 when none) and ``flush()``."""

    def __init__(self) -> None:
        self._runs: weakref.WeakSet[Any] = weakref.WeakSet()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, recorder: Any) -> None:
        with self._cond:
            if self._pid != os.getpid():  # forked: the parent's thread does not exist here
                self._runs, self._thread, self._pid = weakref.WeakSet(), None, os.getpid()
            self._runs.add(recorder)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="qexp-metric-flush", daemon=True)
                self._thread.start()
            self._cond.notify()

    def discard(self, recorder: Any) -> None:
        with self._cond:
            self._runs.discard(recorder)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not len(self._runs):
                    self._cond.wait()  # nothing buffered: sleep until a recorder buffers a point
                runs = list(self._runs)
            interval = flush_interval()
            time.sleep(interval / 10)
            for rec in runs:
                try:
                    age = rec.pending_age()
                    if age >= interval:
                        rec.flush()
                except Exception:  # noqa: BLE001 - the run may have been deleted; its owner sees errors
                    pass
            with self._cond:
                for rec in runs:  # an empty buffer leaves the set; the next buffered point adds it again
                    try:
                        if rec.pending_age() == 0:
                            self._runs.discard(rec)
                    except Exception:  # noqa: BLE001
                        self._runs.discard(rec)


FLUSHER = Flusher()


def _after_fork_in_child() -> None:
    FLUSHER._cond = threading.Condition()
    FLUSHER._runs = weakref.WeakSet()
    FLUSHER._thread = None
    FLUSHER._pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)
