"""Online serving on the task layer (``qlib.workflow.online``): strategies choose which models are online,
the manager runs routines (or simulates them day by day) and prepares signals, updaters extend predictions."""
from __future__ import annotations

from .manager import OnlineManager
from .strategy import OnlineStrategy, RollingStrategy
from .update import DSBasedUpdater, LabelUpdater, PredUpdater, RecordUpdater, RMDLoader
from .utils import OnlineTool, OnlineToolR

__all__ = ["OnlineManager", "OnlineStrategy", "RollingStrategy", "OnlineTool", "OnlineToolR", "RMDLoader",
           "RecordUpdater", "DSBasedUpdater", "PredUpdater", "LabelUpdater"]
