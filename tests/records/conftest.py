"""Tiny hand-made markets for the backtest tests."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import pytest

DATES = pd.bdate_range("2021-03-01", periods=10)


def make_quote(closes: dict[str, Sequence[float]], dates: pd.DatetimeIndex | None = None,
               factor: float | dict[str, float] = 1.0, change: dict[str, Sequence[float]] | None = None,
               opens: dict[str, Sequence[float]] | None = None) -> pd.DataFrame:
    """A quote frame: ``$close`` per instrument (NaN = suspended), ``$change`` = close / previous close - 1
    unless given, ``$factor`` constant per instrument, optional ``$open``."""
    n = len(next(iter(closes.values())))
    dates = DATES[:n] if dates is None else dates
    frames = []
    for code, cl in closes.items():
        cl = pd.Series(np.asarray(cl, dtype="float64"), index=dates)
        ch = (pd.Series(change[code], index=dates) if change and code in change
              else cl / cl.shift(1) - 1)
        f = factor[code] if isinstance(factor, dict) else factor
        df = pd.DataFrame({"$close": cl, "$change": ch, "$factor": np.where(cl.isna(), np.nan, f)}, index=dates)
        if opens is not None:
            df["$open"] = opens[code]
        df["instrument"] = code
        frames.append(df)
    out = pd.concat(frames).rename_axis("datetime").set_index("instrument", append=True).sort_index()
    return out.astype("float32")


def make_pred(scores: dict[int, dict[str, float]], dates: pd.DatetimeIndex | None = None) -> pd.DataFrame:
    """Predictions ``{day index: {code: score}}`` as a ``score`` frame indexed (datetime, instrument)."""
    dates = DATES if dates is None else dates
    rows = [(dates[d], code, s) for d, m in scores.items() for code, s in m.items()]
    df = pd.DataFrame(rows, columns=["datetime", "instrument", "score"]).set_index(["datetime", "instrument"])
    return df.sort_index()


EX_KW = dict(open_cost=0.0005, close_cost=0.0015, min_cost=5.0, trade_unit=100, limit_threshold=0.095,
             deal_price="close")


def run_bt(quote: pd.DataFrame, pred: pd.DataFrame, topk: int, n_drop: int, account: float = 100000.0,
           start: int = 0, end: int | None = None, benchmark=None, strategy_kw: dict | None = None, **ex_kw):
    """Backtest ``pred`` on ``quote`` from day ``start`` to day ``end``; returns (report, positions, orders, ind)."""
    from qexp_records.backtest import SimulatorExecutor, TopkDropoutStrategy, backtest
    dates = pd.DatetimeIndex(quote.index.get_level_values(0).unique())
    kw = {**EX_KW, **ex_kw}
    strat = TopkDropoutStrategy(signal=pred, topk=topk, n_drop=n_drop, **(strategy_kw or {}))
    pf, ind = backtest(dates[start], dates[-1 if end is None else end], strat,
                       SimulatorExecutor(generate_portfolio_metrics=True), benchmark=benchmark, account=account,
                       exchange_kwargs=kw, quote=quote)
    report, positions = pf["1day"]
    indicators, orders = ind["1day"]
    return report, positions, orders, indicators


@pytest.fixture
def quote_flat() -> pd.DataFrame:
    """Four stocks at constant prices 10, 20, 40, 50 for 6 days."""
    return make_quote({"A": [10.0] * 6, "B": [20.0] * 6, "C": [40.0] * 6, "D": [50.0] * 6})
