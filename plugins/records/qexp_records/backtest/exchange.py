"""The exchange: prices, tradability, lot rounding and order costs, as Qlib's ``qlib.backtest.exchange``.

Quotes are pivoted once into ``dates x instruments`` float64 arrays (float32 data widens exactly), so each
trading day reads rows of arrays instead of doing pandas look-ups per order.

Rules (Qlib's, see the reference, section 7):

- suspended: ``$close`` is NaN on the day, or the instrument has no quote at all;
- limits: ``$change >= limit`` blocks buys, ``$change <= -limit`` blocks sells; a suspended day blocks both;
  a pair of expressions ``(buy_limit_expr, sell_limit_expr)`` gives the flags directly;
- rounding: ``floor((amount * factor + 0.1) / unit) * unit / factor``, ``amount`` in adjusted shares, so lots
  are whole ``unit`` real shares; it is off when any ``$factor`` is NaN where ``$close`` exists;
- cost: ``max(value * rate, min_cost)``, zero when the dealt value is at most 1e-5.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from qexp import ConfigError

from .market import MarketSource, level_indexer, make_source, to_timestamp
from .position import ArrayPosition, isclose

__all__ = ["Exchange", "OrderDir", "DealResult", "REGION_DEFAULT", "region_defaults"]


class OrderDir:
    SELL = 0
    BUY = 1


class _RegionDefault:
    """Marks an exchange setting left out, to be filled from the region (cn or us)."""

    def __repr__(self) -> str:
        return "REGION_DEFAULT"


REGION_DEFAULT: Any = _RegionDefault()

# Qlib's region settings (qlib/config.py): China trades in lots of 100 shares with a 9.5% daily limit;
# the US trades single shares without limits.
_REGIONS: dict[str, dict[str, Any]] = {
    "cn": {"trade_unit": 100, "limit_threshold": 0.095, "deal_price": "close"},
    "us": {"trade_unit": 1, "limit_threshold": None, "deal_price": "close"},
    "tw": {"trade_unit": 1000, "limit_threshold": 0.1, "deal_price": "close"}}  # Qlib's REG_TW


INIT_KEYS = ("trade_unit", "limit_threshold", "deal_price")
_init_defaults: dict[str, Any] = {}
"""What ``qexp.init`` gave of :data:`INIT_KEYS` (Qlib's ``C.trade_unit`` / ``C.limit_threshold`` /
``C.deal_price``, which ``qlib.init`` keyword arguments override over the region's values)."""


def set_init_defaults(settings: dict[str, Any]) -> list[str]:
    """Take ``trade_unit``, ``limit_threshold`` and ``deal_price`` from ``qexp.init``'s settings (absent keys:
    the region's values again); returns the keys taken."""
    _init_defaults.clear()
    _init_defaults.update({k: settings[k] for k in INIT_KEYS if k in settings})
    return list(_init_defaults)


def region_defaults(region: str | None = None) -> dict[str, Any]:
    """``trade_unit``, ``limit_threshold`` and ``deal_price`` for ``region`` (the active one when None), with
    what ``qexp.init`` set of them (as Qlib's ``qlib.init(trade_unit=...)`` sets ``C.trade_unit``)."""
    if region is None:
        from qexp.ext import get_region
        region = get_region()
    if region not in _REGIONS:
        raise ConfigError(f"unknown region {region!r}; use one of {', '.join(_REGIONS)}")
    return {**_REGIONS[region], **_init_defaults}


@dataclass
class DealResult:
    """The outcome of one order: the dealt amount (adjusted shares), its value, its cost and the price."""

    deal_amount: float
    trade_val: float
    cost: float
    price: float


def _price_field(p: str) -> str:
    p = str(p).strip()
    return p if p.startswith("$") else "$" + p


class Exchange:
    """Prices and trading rules for the instruments ``codes`` between ``start_time`` and ``end_time``.

    ``quote`` is a frame indexed ``(datetime, instrument)`` (tests, custom data) or None to read the active
    data provider. Settings left out (``limit_threshold``, ``trade_unit``, ``deal_price``) take the values
    ``qexp.init`` gave, else the region's; passing ``None`` explicitly turns limits or lot rounding off (Qlib
    cannot turn them off).
    """

    def __init__(self, freq: str = "day", start_time: Any = None, end_time: Any = None,
                 codes: str | Sequence[str] = "all", deal_price: Any = REGION_DEFAULT,
                 limit_threshold: Any = REGION_DEFAULT, volume_threshold: Any = None, open_cost: float = 0.0015,
                 close_cost: float = 0.0025, min_cost: float = 5.0, impact_cost: float = 0.0,
                 trade_unit: Any = REGION_DEFAULT, quote: pd.DataFrame | MarketSource | None = None,
                 region: str | None = None, **kwargs: Any):
        if kwargs:
            raise ConfigError(f"Exchange got unknown setting(s) {', '.join(sorted(kwargs))}; supported: freq, "
                              f"start_time, end_time, codes, deal_price, limit_threshold, open_cost, close_cost, "
                              f"min_cost, impact_cost, trade_unit, quote, region")
        if str(freq) not in ("day", "1day", "1d"):
            raise ConfigError(f"Exchange freq {freq!r} is not supported; only daily data ('day') is")
        if volume_threshold is not None:
            raise ConfigError("volume_threshold is not supported by this exchange; remove it from exchange_kwargs")
        defaults = region_defaults(region)
        deal_price = defaults["deal_price"] if deal_price is REGION_DEFAULT or deal_price is None else deal_price
        self.limit_threshold = defaults["limit_threshold"] if limit_threshold is REGION_DEFAULT else limit_threshold
        self.trade_unit = defaults["trade_unit"] if trade_unit is REGION_DEFAULT else trade_unit
        if isinstance(deal_price, str):
            self.buy_price_field = self.sell_price_field = _price_field(deal_price)
        elif isinstance(deal_price, (tuple, list)) and len(deal_price) == 2:
            self.buy_price_field, self.sell_price_field = (_price_field(p) for p in deal_price)
        else:
            raise ConfigError(f"deal_price must be a field name ('close', '$open', 'vwap') or a (buy, sell) pair, "
                              f"got {deal_price!r}")
        for name, v in (("open_cost", open_cost), ("close_cost", close_cost), ("min_cost", min_cost),
                        ("impact_cost", impact_cost)):
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a non-negative number, got {v!r}")
        if self.trade_unit is not None and (not isinstance(self.trade_unit, (int, float)) or self.trade_unit <= 0):
            raise ConfigError(f"trade_unit must be a positive number or None, got {self.trade_unit!r}")
        self.open_cost, self.close_cost = float(open_cost), float(close_cost)
        self.min_cost, self.impact_cost = float(min_cost), float(impact_cost)
        self.source = make_source(quote)
        self._load(start_time, end_time, codes)

    # ---- loading ------------------------------------------------------------------------------
    def _limit_fields(self) -> list[str]:
        lt = self.limit_threshold
        if lt is None:
            return []
        if isinstance(lt, (tuple, list)):
            if len(lt) != 2 or not all(isinstance(x, str) for x in lt):
                raise ConfigError(f"limit_threshold as a pair must be (buy_limit_expression, "
                                  f"sell_limit_expression), got {lt!r}")
            return list(lt)
        if isinstance(lt, (int, float)) and not isinstance(lt, bool):
            return ["$change"]
        raise ConfigError(f"limit_threshold must be a number (0.095), a pair of expressions or None, got {lt!r}")

    def _load(self, start_time: Any, end_time: Any, codes: str | Sequence[str]) -> None:
        cal = self.source.calendar()
        start, end = to_timestamp(start_time), to_timestamp(end_time)
        lo = cal[0] if start is None else start
        hi = cal[-1] if end is None else end
        self.dates = cal[(cal >= lo) & (cal <= hi)]
        if len(self.dates) == 0:
            raise ConfigError(f"no trading days between {lo.date()} and {hi.date()} in {self.source.describe()} "
                              f"(it covers {cal[0].date()} to {cal[-1].date()})")
        if isinstance(codes, str):
            if codes != "all":
                raise ConfigError(f"codes must be 'all' or a list of instruments, got {codes!r}")
            codes = self.source.all_instruments()
        self.codes = np.array(sorted({str(c) for c in codes}), dtype=object)
        self.code_index = pd.Index(self.codes)

        price_fields = list(dict.fromkeys(["$close", self.buy_price_field, self.sell_price_field]))
        fields = list(dict.fromkeys(price_fields + self._limit_fields()
                                    + (["$volume"] if self.impact_cost else [])))
        # $factor is optional: without it trading falls back to adjusted prices, as Qlib does. One read with it
        # first (reads are the slow part); only a source that lacks it is read again without it.
        with_factor = list(dict.fromkeys(fields + ["$factor"]))
        try:
            df = self.source.features(list(self.codes), with_factor, self.dates[0], self.dates[-1])
            arrays = self._pivot(df, with_factor)
        except Exception as exc:
            if "factor" not in str(exc):
                raise
            df = self.source.features(list(self.codes), fields, self.dates[0], self.dates[-1])
            arrays = self._pivot(df, fields)
            arrays["$factor"] = np.full((len(self.dates), len(self.codes)), np.nan)
        factor = arrays["$factor"]

        close = arrays["$close"]
        self.close = close
        self.suspended = np.isnan(close)
        self.buy_price = self._deal_price(arrays[self.buy_price_field], close)
        self.sell_price = self._deal_price(arrays[self.sell_price_field], close)
        self.factor = factor
        self.volume = arrays.get("$volume")
        self.trade_w_adj_price = bool((np.isnan(factor) & ~self.suspended).any())
        if self.trade_w_adj_price and self.trade_unit is not None:
            warnings.warn(f"$factor is missing where $close exists in {self.source.describe()}: orders use "
                          f"adjusted prices and trade_unit {self.trade_unit} is not applied", stacklevel=3)

        lt = self.limit_threshold
        if lt is None:
            limit_buy = np.zeros_like(self.suspended)
            limit_sell = np.zeros_like(self.suspended)
        elif isinstance(lt, (tuple, list)):
            # a NaN flag counts as limited, as pandas' astype(bool) does in Qlib
            limit_buy = np.where(np.isnan(arrays[lt[0]]), True, arrays[lt[0]] != 0)
            limit_sell = np.where(np.isnan(arrays[lt[1]]), True, arrays[lt[1]] != 0)
        else:
            change = arrays["$change"]
            with np.errstate(invalid="ignore"):
                limit_buy = change >= float(lt)
                limit_sell = change <= -float(lt)
        self.limit_buy = limit_buy | self.suspended
        self.limit_sell = limit_sell | self.suspended
        self.limit_any = self.limit_buy | self.limit_sell

    def _pivot(self, df: pd.DataFrame, fields: list[str]) -> dict[str, np.ndarray]:
        out = {f: np.full((len(self.dates), len(self.codes)), np.nan) for f in fields}
        if len(df) == 0:
            return out
        names = list(df.index.names)
        dl, il = (0, 1) if names[0] != "instrument" else (1, 0)
        di = level_indexer(df.index, dl, self.dates)
        ci = level_indexer(df.index, il, self.code_index)
        ok = (di >= 0) & (ci >= 0)
        di, ci = di[ok], ci[ok]
        for f in fields:
            if f not in df.columns:
                raise ConfigError(f"{self.source.describe()} returned no column {f!r}")
            out[f][di, ci] = df[f].to_numpy(dtype="float64", na_value=np.nan)[ok]
        return out

    @staticmethod
    def _deal_price(price: np.ndarray, close: np.ndarray) -> np.ndarray:
        # a missing or non-positive deal price falls back to the close (Qlib's get_deal_price)
        bad = np.isnan(price) | (price <= 1e-08)
        return np.where(bad, close, price)

    # ---- queries ------------------------------------------------------------------------------
    def tradable(self, t: int, direction: int | None = None) -> np.ndarray:
        """Instruments that can trade on day ``t``; ``direction=None`` means neither limit may be hit."""
        if direction is None:
            return ~self.limit_any[t]
        return ~(self.limit_buy[t] if direction == OrderDir.BUY else self.limit_sell[t])

    def is_tradable(self, t: int, i: int, direction: int | None = None) -> bool:
        if direction is None:
            return not self.limit_any[t, i]
        return not (self.limit_buy[t, i] if direction == OrderDir.BUY else self.limit_sell[t, i])

    def round_amount(self, amount: float, factor: float) -> float:
        """Round ``amount`` (adjusted shares) down to whole lots of ``trade_unit`` real shares."""
        if not self.trade_w_adj_price and self.trade_unit is not None and not np.isnan(factor):
            # +0.1 absorbs float error when the amount is already a whole lot
            return (amount * factor + 0.1) // self.trade_unit * self.trade_unit / factor
        return amount

    def _max_buy_amount(self, price: float, cash: float, cost_ratio: float) -> float:
        if cash < self.min_cost:
            return 0.0
        # above this cash the proportional fee exceeds min_cost
        critical = self.min_cost / cost_ratio + self.min_cost if cost_ratio > 0 else np.inf
        if cash >= critical:
            return cash / (1 + cost_ratio) / price
        return (cash - self.min_cost) / price

    def deal(self, t: int, i: int, direction: int, amount: float, position: ArrayPosition) -> DealResult:
        """Execute an order on day ``t`` against ``position`` (updated in place), as Qlib's ``deal_order``."""
        if not self.is_tradable(t, i, direction):
            return DealResult(0.0, 0.0, 0.0, np.nan)
        price = float(self.buy_price[t, i] if direction == OrderDir.BUY else self.sell_price[t, i])
        factor = float(self.factor[t, i])
        deal_amount = float(amount)
        adj = self.impact_cost
        if adj and self.volume is not None:
            total = self.volume[t, i] * price
            if total and not np.isnan(total):
                adj = self.impact_cost * (deal_amount * price / total) ** 2
        if direction == OrderDir.SELL:
            ratio = self.close_cost + adj
            current = position.amount[i] if position.held[i] else 0.0
            if not isclose(deal_amount, float(current)):
                # a partial sell is rounded; selling everything is not, so no odd lot is left behind
                deal_amount = self.round_amount(min(current, deal_amount), factor)
            if position.cash + deal_amount * price < max(deal_amount * price * ratio, self.min_cost):
                deal_amount = 0.0
        else:
            ratio = self.open_cost + adj
            cash = position.cash
            val = deal_amount * price
            if cash < max(val * ratio, self.min_cost):
                deal_amount = 0.0
            elif cash < val + max(val * ratio, self.min_cost):
                deal_amount = self.round_amount(min(self._max_buy_amount(price, cash, ratio), deal_amount), factor)
            else:
                deal_amount = self.round_amount(deal_amount, factor)
        trade_val = deal_amount * price
        cost = max(trade_val * ratio, self.min_cost)
        if trade_val <= 1e-5:
            # nothing dealt: no cost, and the position is left untouched
            return DealResult(deal_amount, trade_val, 0.0, price)
        if direction == OrderDir.BUY:
            position.buy(i, trade_val, cost, price)
        else:
            position.sell(i, trade_val, cost, price)
        return DealResult(deal_amount, trade_val, cost, price)
