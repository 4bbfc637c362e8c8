"""One daemon thread per process that writes out metrics a recorder has held for a while, so a reader
following the run (``qexp ui``) sees a point about a second after it was logged, and a process that logs a
few points and then computes for an hour (or is killed) loses at most one interval of them.

Full batches are written at once by the recorder itself, and points logged within one interval share one
write; this only bounds how long the stragglers wait. The thread sleeps while nothing is buffered.
"""
from __future__ import annotations

import atexit
import os
import threading
import time
import warnings
import weakref
from typing import Any

DEFAULT_INTERVAL = 1.0


def flush_interval() -> float:
    """Seconds a metric may wait in the buffer: ``QEXP_MLFLOW_FLUSH_INTERVAL``, else
    ``QEXP_METRIC_FLUSH_INTERVAL`` (every backend's setting), default 1."""
    raw = os.environ.get("QEXP_MLFLOW_FLUSH_INTERVAL") or os.environ.get("QEXP_METRIC_FLUSH_INTERVAL")
    try:
        return max(0.05, float(raw)) if raw else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


class Flusher:
    def __init__(self) -> None:
        self._recorders: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set when a recorder buffers its first value
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._warned: set[str] = set()
        self._atexit = False

    def add(self, recorder: Any) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked child: the parent's thread does not exist here
                self._recorders = weakref.WeakSet()
                self._thread = None
                self._pid = os.getpid()
                self._atexit = False
            self._recorders.add(recorder)
            if not self._atexit:
                # a recorder written to and never ended (a finished run fetched by id) keeps its points
                atexit.register(self.flush_all)
                self._atexit = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="qexp-mlflow-flush", daemon=True)
                self._thread.start()
        self._wake.set()

    def flush_all(self) -> None:
        """Write every recorder's buffered points (at interpreter exit)."""
        with self._lock:
            recorders = list(self._recorders)
        for rec in recorders:
            try:
                rec.flush()
            except Exception as exc:
                warnings.warn(f"qexp: metrics of MLflow run {rec.id} could not be written at exit: "
                              f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)

    def discard(self, recorder: Any) -> None:
        with self._lock:
            self._recorders.discard(recorder)

    def _loop(self) -> None:
        while True:
            self._wake.wait()  # asleep while no recorder holds buffered values
            interval = flush_interval()
            time.sleep(interval / 10)
            with self._lock:
                recorders = list(self._recorders)
            if not any(rec.pending_age() > 0 for rec in recorders):
                self._wake.clear()
                if not any(rec.pending_age() > 0 for rec in recorders):  # none buffered meanwhile
                    continue
                self._wake.set()
            for rec in recorders:
                if rec.pending_age() < interval:
                    continue
                try:
                    rec.flush()
                except Exception as exc:  # kept in the buffer; end_run will raise it if it persists
                    if rec.id not in self._warned:
                        self._warned.add(rec.id)
                        warnings.warn(f"qexp: background write of metrics for MLflow run {rec.id} failed "
                                      f"({type(exc).__name__}: {exc}); will retry", RuntimeWarning, stacklevel=2)


FLUSHER = Flusher()
