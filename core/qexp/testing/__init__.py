"""Testing kit for plugin authors: the backend conformance suite and session helpers (needs pytest).

``from qexp.testing import BackendConformance`` and subclass it in a test module with a ``store_uri``
fixture; see :mod:`qexp.testing.conformance`. Nothing here is imported by ``import qexp``.
"""
from __future__ import annotations

from .conformance import BackendConformance
from .session import reset_session

__all__ = ["BackendConformance", "reset_session"]
