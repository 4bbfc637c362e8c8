"""Is the process that owns a RUNNING run still alive? Same host: its pid and start time; other hosts:
the run's heartbeat file, touched by a daemon thread of the owning process."""
from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from typing import Any

from qexp.ext import process_start_ticks

HOST = socket.gethostname()


def heartbeat_interval() -> float:
    return float(os.environ.get("QEXP_HEARTBEAT_INTERVAL", "15"))


def heartbeat_timeout() -> float:
    return float(os.environ.get("QEXP_HEARTBEAT_TIMEOUT", "300"))


def owner_info() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": HOST, "pid_start": process_start_ticks(pid)}


def owner_alive(meta: dict, heartbeat_path: str, meta_path: str | None = None) -> bool:
    pid, host = meta.get("pid"), meta.get("host")
    if pid is None:
        return True  # written by something that does not record owners: cannot judge
    if host == HOST:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        started = meta.get("pid_start")
        now_started = process_start_ticks(int(pid))
        return started is None or now_started is None or started == now_started
    # the heartbeat file appears at the first beat; until then the run's start counts
    for path in (heartbeat_path, meta_path):
        if path is None:
            continue
        try:
            return time.time() - os.path.getmtime(path) < heartbeat_timeout()
        except OSError:
            continue
    return False


class Heartbeat:
    """One daemon thread per process: touches the heartbeat file of each live run and flushes its buffers,
    so a killed process loses at most one interval of metrics."""

    def __init__(self) -> None:
        self._runs: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, recorder: Any) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread does not exist here
                self._runs = weakref.WeakSet()
                self._thread = None
                self._pid = os.getpid()
            self._runs.add(recorder)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="qexp-heartbeat", daemon=True)
                self._thread.start()

    def discard(self, recorder: Any) -> None:
        with self._lock:
            self._runs.discard(recorder)

    def _loop(self) -> None:
        while True:
            time.sleep(heartbeat_interval())
            with self._lock:
                runs = list(self._runs)
            for rec in runs:
                try:
                    rec.flush()
                    rec._touch_heartbeat()
                except Exception:  # the run may have been deleted meanwhile
                    pass


HEARTBEAT = Heartbeat()


def _after_fork_in_child() -> None:
    HEARTBEAT._lock = threading.Lock()
    HEARTBEAT._runs = weakref.WeakSet()
    HEARTBEAT._thread = None
    HEARTBEAT._pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)
