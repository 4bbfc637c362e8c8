"""Trading strategies. ``TopkDropoutStrategy`` follows Qlib's decision rule step by step (reference, section 7).

Ordering rule for equal scores (Qlib leaves it to pandas' unstable sort): instruments are ranked by score
descending, NaN scores last, and equal scores by instrument code ascending. The same inputs therefore always
give the same portfolio.

Two Qlib quirks are fixed: ``n_drop=0`` sells nothing (Qlib's ``list[-0:]`` sells every holding), and with
``only_tradable=True`` asking for the first 0 tradable names returns none (Qlib returns one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qexp import ConfigError

from .exchange import Exchange, OrderDir
from .market import level_values
from .position import ArrayPosition
from .signal import SignalMatrix, build_signal_matrix, to_score_series

__all__ = ["Order", "BaseStrategy", "TopkDropoutStrategy", "rank_order"]


@dataclass
class Order:
    """An order on one instrument (index into the exchange's codes); ``amount`` in adjusted shares."""

    index: int
    amount: float
    direction: int


def rank_order(idx: np.ndarray, score: np.ndarray) -> np.ndarray:
    """``idx`` sorted by score descending, NaN last, ties by instrument position (= code) ascending."""
    if len(idx) == 0:
        return idx
    s = score[idx]
    nan = np.isnan(s)
    return idx[np.lexsort((idx, np.where(nan, 0.0, -s), nan))]


class BaseStrategy:
    """A strategy bound to an exchange before the backtest: it sees the calendar and instrument universe."""

    risk_degree: float = 0.95

    def bind(self, exchange: Exchange, calendar: pd.DatetimeIndex, start_pos: int) -> None:
        raise NotImplementedError

    def signal_instruments(self) -> list[str]:
        """Instruments the strategy may trade (so the exchange can load only those)."""
        return []

    def generate_orders(self, t: int, position: ArrayPosition) -> list[Order]:
        raise NotImplementedError


class TopkDropoutStrategy(BaseStrategy):
    """Hold ``topk`` names by the previous day's score, replacing at most ``n_drop`` of them a day.

    Each day: rank held names and the best non-held ones by score; sell held names in the bottom ``n_drop``
    of that combined list (if held at least ``hold_thresh`` days), then spend ``cash after sells *
    risk_degree / number of names to buy`` on each name to buy, rounded down to lots.
    """

    def __init__(self, *, signal: Any = None, topk: int, n_drop: int, method_sell: str = "bottom",
                 method_buy: str = "top", hold_thresh: int = 1, only_tradable: bool = False,
                 forbid_all_trade_at_limit: bool = True, risk_degree: float = 0.95, seed: int | None = None,
                 model: Any = None, dataset: Any = None, **kwargs: Any):
        if kwargs:
            raise ConfigError(f"TopkDropoutStrategy got unknown argument(s) {', '.join(sorted(kwargs))}; it takes "
                              f"signal, topk, n_drop, method_sell, method_buy, hold_thresh, only_tradable, "
                              f"forbid_all_trade_at_limit, risk_degree, seed")
        if signal is None:
            hint = " (building the signal from model and dataset is not supported)" if model or dataset else ""
            raise ConfigError(f"TopkDropoutStrategy needs signal=<predictions>{hint}; in a PortAnaRecord config "
                              f"write signal: '<PRED>'")
        if isinstance(signal, str):
            raise ConfigError(f"TopkDropoutStrategy signal is the string {signal!r}; it must be predictions "
                              f"(a placeholder such as '<PRED>' was not filled)")
        if not isinstance(topk, (int, np.integer)) or topk <= 0:
            raise ConfigError(f"topk must be a positive integer, got {topk!r}")
        if not isinstance(n_drop, (int, np.integer)) or n_drop < 0:
            raise ConfigError(f"n_drop must be a non-negative integer, got {n_drop!r}")
        if method_sell not in ("bottom", "random"):
            raise ConfigError(f"method_sell must be 'bottom' or 'random', got {method_sell!r}")
        if method_buy not in ("top", "random"):
            raise ConfigError(f"method_buy must be 'top' or 'random', got {method_buy!r}")
        if not 0 < risk_degree <= 1:
            raise ConfigError(f"risk_degree must be in (0, 1], got {risk_degree!r}")
        if isinstance(signal, (list, tuple)) and len(signal) == 2 and hasattr(signal[0], "predict"):
            signal = signal[0].predict(signal[1])  # Qlib's (model, dataset) signal: the model's test scores
        self.signal = to_score_series(signal)
        self.topk, self.n_drop = int(topk), int(n_drop)
        self.method_sell, self.method_buy = method_sell, method_buy
        self.hold_thresh = int(hold_thresh)
        self.only_tradable = bool(only_tradable)
        self.forbid_all_trade_at_limit = bool(forbid_all_trade_at_limit)
        self.risk_degree = float(risk_degree)
        self.rng = np.random.default_rng(seed)
        self._exchange: Exchange | None = None
        self._sig: SignalMatrix | None = None

    def signal_instruments(self) -> list[str]:
        return sorted(str(c) for c in level_values(self.signal.index, 1))

    def signal_dates(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(level_values(self.signal.index, 0)).sort_values()

    def bind(self, exchange: Exchange, calendar: pd.DatetimeIndex, start_pos: int) -> None:
        self._exchange = exchange
        self._sig = build_signal_matrix(self.signal, calendar, start_pos, len(exchange.dates), exchange.code_index)

    # ---- selection helpers (only_tradable keeps the first/last n tradable names) ----------------
    def _first_n(self, ranked: np.ndarray, n: int, tradable: np.ndarray) -> np.ndarray:
        if n <= 0:
            return ranked[:0]
        if self.only_tradable:
            ranked = ranked[tradable[ranked]]
        return ranked[:n]

    def _last_n(self, ranked: np.ndarray, n: int, tradable: np.ndarray) -> np.ndarray:
        if n <= 0:
            return ranked[:0]
        if self.only_tradable:
            ranked = ranked[tradable[ranked]]
        return ranked[-n:]

    def generate_orders(self, t: int, position: ArrayPosition) -> list[Order]:
        ex, sig = self._exchange, self._sig
        if ex is None or sig is None:
            raise RuntimeError("TopkDropoutStrategy.bind(exchange, ...) must run before generate_orders")
        if not sig.has_signal[t]:
            return []  # no prediction for the previous day: no trading at all (Qlib)
        score = sig.score[t]
        any_tradable = ex.tradable(t, None)
        held = position.held_indices()
        last = rank_order(held, score)
        n_today = self.n_drop + self.topk - len(last)
        if self.method_buy == "top":
            candidates = rank_order(np.flatnonzero(sig.present[t] & ~position.held), score)
            today = self._first_n(candidates, n_today, any_tradable)
        else:
            topk_candi = self._first_n(rank_order(np.flatnonzero(sig.present[t]), score), self.topk, any_tradable)
            candi = topk_candi[~position.held[topk_candi]]
            if 0 <= n_today <= len(candi):
                today = self.rng.choice(candi, n_today, replace=False) if n_today else candi[:0]
            else:
                today = candi
        comb = rank_order(np.union1d(last, today).astype(np.int64), score)
        if self.method_sell == "bottom":
            bottom = self._last_n(comb, self.n_drop, any_tradable)
            sell = last[np.isin(last, bottom)]
        else:
            candi = last[any_tradable[last]] if self.only_tradable else last
            if self.n_drop <= len(candi):
                sell = self.rng.choice(candi, self.n_drop, replace=False) if len(last) else candi[:0]
            else:
                sell = candi
        buy = today[: max(0, len(sell) + self.topk - len(last))]

        sell_dir = None if self.forbid_all_trade_at_limit else OrderDir.SELL
        buy_dir = None if self.forbid_all_trade_at_limit else OrderDir.BUY
        sell_set = set(int(i) for i in sell)
        temp = position.copy()
        cash = temp.cash
        orders: list[Order] = []
        for i in held:
            if not ex.is_tradable(t, i, sell_dir) or int(i) not in sell_set:
                continue
            if temp.count[i] < self.hold_thresh:
                continue
            # simulate the sell to know the cash it frees for today's buys
            res = ex.deal(t, int(i), OrderDir.SELL, float(temp.amount[i]), temp)
            orders.append(Order(int(i), float(position.amount[i]), OrderDir.SELL))
            cash += res.trade_val - res.cost
        # the budget per name divides by all names to buy, including those skipped below (Qlib)
        value = cash * self.risk_degree / len(buy) if len(buy) > 0 else 0.0
        for i in buy:
            i = int(i)
            if not ex.is_tradable(t, i, buy_dir):
                continue
            price = ex.buy_price[t, i]
            amount = ex.round_amount(value / price, float(ex.factor[t, i]))
            orders.append(Order(i, amount, OrderDir.BUY))
        return orders
