"""The seam between data and its users: the active data provider and region.

The data plugin sets the provider when ``qexp.init(provider_uri=..., region=...)`` runs; records and
models reach market data only through :func:`get_provider`, so plugins never import each other.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import pandas as pd

from .exceptions import QexpError


@runtime_checkable
class DataProvider(Protocol):
    """What a data provider offers. Times are inclusive; ``freq`` is ``"day"``."""

    uri: str

    def calendar(self, start_time: Any = None, end_time: Any = None, freq: str = "day",
                 future: bool = False) -> pd.DatetimeIndex:
        """Trading days between the bounds."""

    def list_instruments(self, instruments: Any = "all", start_time: Any = None, end_time: Any = None,
                         as_list: bool = False) -> Any:
        """Instruments of a market name (or a list of codes): ``{code: [(start, end), ...]}`` or a list."""

    def features(self, instruments: Any, fields: Sequence[str], start_time: Any = None, end_time: Any = None,
                 freq: str = "day") -> pd.DataFrame:
        """Expression values: index ``(datetime, instrument)`` sorted, one float32 column per field."""


_global: dict[str, Any] = {"provider": None, "region": "cn"}

REGION_CN = "cn"
REGION_US = "us"


def set_provider(provider: DataProvider | None, region: str | None = None) -> None:
    """Make ``provider`` the process-wide data provider (called by the data plugin's init hook)."""
    _global["provider"] = provider
    if region is not None:
        _global["region"] = region


def get_provider() -> DataProvider:
    """The active data provider; a clear error when ``qexp.init(provider_uri=...)`` has not run."""
    provider = _global["provider"]
    if provider is None:
        raise QexpError("No data provider is set. Call qexp.init(provider_uri=...) with a Qlib-format data "
                        "folder (create one with `qexp data synth --out DIR` or "
                        "`qexp data import-csv SRC --out DIR`), or run qexp.init() with no provider_uri to use "
                        "the built-in synthetic market.")
    return provider


def has_provider() -> bool:
    return _global["provider"] is not None


def get_region() -> str:
    """The region set by ``qexp.init(region=...)``: ``"cn"`` (default) or ``"us"``."""
    return _global["region"]
