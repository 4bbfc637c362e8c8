"""Runs left open end FAILED on an uncaught exception (excepthook) and FINISHED at interpreter exit."""
from __future__ import annotations

import atexit
import sys
import threading

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    previous = sys.excepthook
    previous_thread = threading.excepthook

    def excepthook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        from .api import R
        R._end_all_open("FAILED")
        previous(exc_type, exc, tb)

    def thread_excepthook(args):  # type: ignore[no-untyped-def]
        # only this thread's runs: other threads may still be working
        from .api import R, _stack
        for frame in reversed(_stack.get()):
            R._end_frame(frame, "FAILED")
        previous_thread(args)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook

    def at_exit() -> None:
        from .api import R
        R._end_all_open("FINISHED")

    atexit.register(at_exit)
