"""One daemon thread per process that writes out metrics a recorder has held for a while, so a process
that logs a few points and then computes for an hour (or is killed) loses at most one interval of them.

Full batches are written at once by the recorder itself; this only handles the stragglers.
"""
from __future__ import annotations

import atexit
import os
import threading
import time
import warnings
import weakref
from typing import Any


def flush_interval() -> float:
    """Seconds a metric may wait in the buffer (``QEXP_MLFLOW_FLUSH_INTERVAL``, default 5)."""
    try:
        return max(0.1, float(os.environ.get("QEXP_MLFLOW_FLUSH_INTERVAL", "5")))
    except ValueError:
        return 5.0


class Flusher:
    def __init__(self) -> None:
        self._recorders: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
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
            interval = flush_interval()
            time.sleep(interval / 2)
            with self._lock:
                recorders = list(self._recorders)
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
