"""An example third-party qexp plugin (see ``plugin.py``): the ``OneFeature`` model, the ``TopkExcessRecord``
record template and a ``recorder_ended`` hook that appends each finished run to a journal file."""
from __future__ import annotations

from .model import OneFeature
from .record import TopkExcessRecord

__all__ = ["OneFeature", "TopkExcessRecord"]
