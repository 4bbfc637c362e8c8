"""A daily, vectorised re-implementation of Qlib's backtest (``qlib.backtest``): exchange, strategy, engine."""
from __future__ import annotations

from .engine import INDICATOR_COLUMNS, REPORT_COLUMNS, SimulatorExecutor, backtest, benchmark_returns
from .exchange import REGION_DEFAULT, DealResult, Exchange, OrderDir, region_defaults
from .market import FrameSource, MarketSource, ProviderSource
from .position import ArrayPosition, Position
from .strategy import BaseStrategy, Order, TopkDropoutStrategy, rank_order

__all__ = ["backtest", "benchmark_returns", "SimulatorExecutor", "Exchange", "OrderDir", "DealResult",
           "REGION_DEFAULT", "region_defaults", "MarketSource", "FrameSource", "ProviderSource", "Position",
           "ArrayPosition", "BaseStrategy", "TopkDropoutStrategy", "Order", "rank_order", "REPORT_COLUMNS",
           "INDICATOR_COLUMNS"]
