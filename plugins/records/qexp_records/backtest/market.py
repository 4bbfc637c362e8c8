"""Where the backtest reads prices: the active data provider, or a quote DataFrame given directly.

Both sources answer the same two questions (the trading calendar, and feature values for some instruments)
so the exchange and the benchmark never care which one they talk to. A quote frame lets tests run on tiny
hand-made markets without a data folder.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from qexp import QexpError

__all__ = ["MarketSource", "ProviderSource", "FrameSource", "make_source", "to_timestamp", "level_indexer",
           "level_values"]


def _as_target(values: pd.Index, target: pd.Index) -> pd.Index:
    if isinstance(target, pd.DatetimeIndex):
        return pd.DatetimeIndex(values)
    return pd.Index(np.asarray(values.astype(str), dtype=object))


def level_indexer(index: pd.Index, level: int, target: pd.Index) -> np.ndarray:
    """Position in ``target`` of each row's value at ``level`` (-1 when absent), matching instrument codes as
    strings. Works on the level's few unique values and maps them through the codes, which is much faster than
    converting every row (pandas' arrow strings make that slow)."""
    if isinstance(index, pd.MultiIndex):
        codes = index.codes[level]
        pos = target.get_indexer(_as_target(index.levels[level], target))
        out = pos[codes]
        out[codes < 0] = -1
        return out
    return target.get_indexer(_as_target(index, target))


def level_values(index: pd.Index, level: int) -> pd.Index:
    """The distinct values used at ``level`` (unused MultiIndex levels left out)."""
    if isinstance(index, pd.MultiIndex):
        codes = np.unique(index.codes[level])
        return index.levels[level][codes[codes >= 0]]
    return index.unique()


def to_timestamp(t: Any) -> pd.Timestamp | None:
    if t is None:
        return None
    try:
        return pd.Timestamp(t)
    except (TypeError, ValueError) as exc:
        raise QexpError(f"cannot read {t!r} as a date; use 'YYYY-MM-DD'") from exc


class MarketSource:
    """The calendar and feature values the backtest needs."""

    def calendar(self) -> pd.DatetimeIndex:
        """All trading days of the source, sorted."""
        raise NotImplementedError

    def all_instruments(self) -> list[str]:
        """Every instrument code the source knows (used for ``codes="all"``)."""
        raise NotImplementedError

    def features(self, codes: Sequence[str], fields: Sequence[str], start_time: pd.Timestamp,
                 end_time: pd.Timestamp) -> pd.DataFrame:
        """Values indexed ``(datetime, instrument)``, one column per field (named by the field)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class ProviderSource(MarketSource):
    """The data provider set by ``qexp.init(provider_uri=...)`` (``qexp.data_api.get_provider()``)."""

    def __init__(self, provider: Any = None):
        if provider is None:
            from qexp.ext import get_provider
            provider = get_provider()
        self.provider = provider
        self._calendar: pd.DatetimeIndex | None = None

    def calendar(self) -> pd.DatetimeIndex:
        if self._calendar is None:
            self._calendar = pd.DatetimeIndex(self.provider.calendar(None, None))
        return self._calendar

    def all_instruments(self) -> list[str]:
        return sorted(self.provider.list_instruments("all", as_list=True))

    def features(self, codes: Sequence[str], fields: Sequence[str], start_time: pd.Timestamp,
                 end_time: pd.Timestamp) -> pd.DataFrame:
        return self.provider.features(list(codes), list(fields), start_time, end_time)

    def describe(self) -> str:
        return f"data provider {getattr(self.provider, 'uri', type(self.provider).__name__)!r}"


class FrameSource(MarketSource):
    """A quote DataFrame indexed ``(datetime, instrument)`` (either level order) with columns such as
    ``$close``, ``$open``, ``$factor``, ``$change``, ``$volume``. Its dates form the calendar."""

    def __init__(self, quote: pd.DataFrame):
        if not isinstance(quote, pd.DataFrame) or quote.index.nlevels != 2:
            raise QexpError("a quote must be a DataFrame indexed by (datetime, instrument) with columns like "
                            "'$close', '$factor', '$change'")
        names = list(quote.index.names)
        if set(names) == {"datetime", "instrument"}:
            if names[0] == "instrument":
                quote = quote.swaplevel().sort_index()
        else:
            # positional levels: the one holding timestamps is the date level
            lvl0 = quote.index.get_level_values(0)
            if not pd.api.types.is_datetime64_any_dtype(lvl0):
                quote = quote.swaplevel()
            quote = quote.rename_axis(["datetime", "instrument"])
        if quote.index.has_duplicates:
            dup = quote.index[quote.index.duplicated()][:3].tolist()
            raise QexpError(f"the quote has duplicated (datetime, instrument) rows, e.g. {dup}")
        quote = quote.copy()
        quote.index = quote.index.set_levels(pd.DatetimeIndex(quote.index.levels[0]), level=0)
        self.quote = quote.sort_index()
        self._calendar = pd.DatetimeIndex(self.quote.index.get_level_values(0).unique()).sort_values()

    def calendar(self) -> pd.DatetimeIndex:
        return self._calendar

    def all_instruments(self) -> list[str]:
        return sorted(self.quote.index.get_level_values(1).unique().astype(str))

    def features(self, codes: Sequence[str], fields: Sequence[str], start_time: pd.Timestamp,
                 end_time: pd.Timestamp) -> pd.DataFrame:
        missing = [f for f in fields if f not in self.quote.columns]
        if missing:
            raise QexpError(f"the quote frame has no column(s) {', '.join(map(repr, missing))}; it has "
                            f"{', '.join(map(repr, self.quote.columns))}. Add them, or change the exchange "
                            f"settings that need them (deal_price, limit_threshold, impact_cost)")
        dates = self.quote.index.get_level_values(0)
        wanted = level_indexer(self.quote.index, 1, pd.Index(list(codes), dtype=object)) >= 0
        mask = (dates >= start_time) & (dates <= end_time) & wanted
        return self.quote.loc[mask, list(fields)]

    def describe(self) -> str:
        return "the quote frame"


def make_source(quote: pd.DataFrame | MarketSource | None) -> MarketSource:
    """A source from a quote frame, an existing source, or (None) the active data provider."""
    if quote is None:
        return ProviderSource()
    if isinstance(quote, MarketSource):
        return quote
    return FrameSource(quote)
