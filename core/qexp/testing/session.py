"""Test helpers for the qexp session: end what a test left open."""
from __future__ import annotations

from ..api import R, _stack
from ..session import clear_mirrors


def reset_session() -> None:
    """End every run left open (FINISHED), empty this thread's stack of active runs and remove the mirrors
    installed by ``qexp.init(mirrors=...)``: call it after each test that uses ``R``."""
    try:
        R._end_all_open("FINISHED")
    finally:
        _stack.set(())
        clear_mirrors()
