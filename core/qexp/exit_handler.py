"""Runs left open end FAILED on an uncaught exception (excepthook) and FINISHED at interpreter exit.

The handlers are given as callables, so this module imports nothing from qexp.
"""
from __future__ import annotations

import atexit
import sys
import threading
from typing import Any, Callable

_installed = False


def install(end_all: Callable[[str], None], end_this_thread: Callable[[str], None]) -> None:
    """Install the hooks once per process: ``end_all(status)`` ends every open run of the process,
    ``end_this_thread(status)`` those of the calling thread only."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = sys.excepthook
    previous_thread = threading.excepthook

    def excepthook(exc_type: Any, exc: Any, tb: Any) -> None:
        end_all("FAILED")
        previous(exc_type, exc, tb)

    def thread_excepthook(args: Any) -> None:
        # only this thread's runs: other threads may still be working
        end_this_thread("FAILED")
        previous_thread(args)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    atexit.register(end_all, "FINISHED")
