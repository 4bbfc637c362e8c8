"""The daily backtest loop (Qlib's ``backtest`` with a ``SimulatorExecutor``), its account report and indicators.

Each trading day T: the strategy decides from the scores of T-1, the orders execute serially (sells first)
against the account at T's deal prices, then held instruments are revalued at T's close (suspended ones keep
their last price), holding counts grow by one, and a report row is written:

``return = (V_T - V_{T-1} + cost_T) / V_{T-1}`` (gross of cost), ``cost = cost_T / V_{T-1}``,
``turnover = traded value_T / V_{T-1}``, ``V_{-1}`` = the initial cash.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from qexp import ConfigError, QexpError

from .exchange import Exchange, OrderDir
from .market import MarketSource, make_source, to_timestamp
from .position import ArrayPosition, Position
from .strategy import BaseStrategy

__all__ = ["SimulatorExecutor", "backtest", "benchmark_returns", "upgrade_backtest_config", "REPORT_COLUMNS",
           "INDICATOR_COLUMNS"]

REPORT_COLUMNS = ["account", "return", "total_turnover", "turnover", "total_cost", "cost", "value", "cash", "bench"]
INDICATOR_COLUMNS = ["ffr", "pa", "pos", "deal_amount", "value", "count"]


class SimulatorExecutor:
    """Qlib's executor settings; only a daily, serial executor with portfolio metrics is simulated."""

    def __init__(self, time_per_step: str = "day", generate_portfolio_metrics: bool = False, verbose: bool = False,
                 indicator_config: dict | None = None, trade_type: str = "serial", track_data: bool = False,
                 **kwargs: Any):
        if kwargs:
            raise ConfigError(f"SimulatorExecutor got unknown argument(s) {', '.join(sorted(kwargs))}; it takes "
                              f"time_per_step, generate_portfolio_metrics, verbose, indicator_config, trade_type")
        if str(time_per_step) not in ("day", "1day", "1d"):
            raise ConfigError(f"SimulatorExecutor time_per_step {time_per_step!r} is not supported: only 'day' is "
                              f"(nested or intraday executors are not implemented)")
        if trade_type != "serial":
            raise ConfigError(f"SimulatorExecutor trade_type {trade_type!r} is not supported; use 'serial'")
        self.time_per_step = "day"
        self.freq = "1day"
        self.generate_portfolio_metrics = bool(generate_portfolio_metrics)
        self.verbose = bool(verbose)
        self.indicator_config = dict(indicator_config or {})


# the keyword arguments of backtest() a config's "backtest" block may set (strategy and executor have their own)
BACKTEST_KEYS = ("start_time", "end_time", "account", "benchmark", "exchange_kwargs", "pos_type", "quote")
# Qlib's pre-0.8 configs put the exchange's settings at the top of "backtest" (its old backtest passed them on
# to the exchange) and had a verbose flag, which Qlib's later PortAnaRecord rejects with a TypeError
OLD_EXCHANGE_KEYS = ("deal_price", "limit_threshold", "volume_threshold", "open_cost", "close_cost", "min_cost",
                     "impact_cost", "trade_unit")


def upgrade_backtest_config(config: dict, where: str = "backtest") -> tuple[dict, list[str]]:
    """A "backtest" block in the current form, and notices of what changed: Qlib's pre-0.8 top-level exchange
    settings move into ``exchange_kwargs`` and ``verbose`` is dropped. An unknown key is a ConfigError."""
    out = dict(config)
    notices = []
    if "verbose" in out:
        out.pop("verbose")
        notices.append(f"{where}.verbose (Qlib's pre-0.8 backtest form) is dropped: the backtest logs its results")
    old = [k for k in OLD_EXCHANGE_KEYS if k in out]
    if old:
        exchange = dict(out.get("exchange_kwargs") or {})
        twice = [k for k in old if k in exchange and exchange[k] != out[k]]
        if twice:
            raise ConfigError(f"{where} sets {', '.join(twice)} both at its top level (Qlib's pre-0.8 form) and in "
                              f"exchange_kwargs, with different values; keep the one in exchange_kwargs")
        for k in old:
            exchange[k] = out.pop(k)
        out["exchange_kwargs"] = exchange
        notices.append(f"{where}: {', '.join(old)} (Qlib's pre-0.8 backtest form) are read as exchange_kwargs")
    unknown = [k for k in out if k not in BACKTEST_KEYS]
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; it takes "
                          f"{', '.join(BACKTEST_KEYS)} (the exchange's settings such as deal_price or open_cost go "
                          f"in exchange_kwargs)")
    return out, notices


def _build(config: Any, accept: type, where: str) -> Any:
    from qexp.ext import init_instance_by_config
    return init_instance_by_config(config, accept_types=accept, where=where)


def benchmark_returns(benchmark: Any, source: MarketSource, dates: pd.DatetimeIndex) -> np.ndarray:
    """Daily benchmark returns on ``dates``.

    ``benchmark`` is an instrument code (or a list, averaged per day) whose return is
    ``$close / Ref($close, 1) - 1`` on the data calendar (Qlib's expression; NaN around missing closes, then 0),
    a Series of returns indexed by date (days it lacks count 0), or None (0 every day).
    """
    if benchmark is None:
        return np.zeros(len(dates))
    if isinstance(benchmark, pd.Series):
        s = benchmark
        if s.index.nlevels > 1:
            s = s.groupby(level=0).mean()
        s = pd.Series(s.to_numpy(dtype="float64"), index=pd.DatetimeIndex(s.index))
        if s.index.has_duplicates:
            raise QexpError("the benchmark return Series has duplicated dates")
        return s.reindex(dates).fillna(0.0).to_numpy()
    codes = [benchmark] if isinstance(benchmark, str) else list(benchmark)
    cal = source.calendar()
    pos0 = int(cal.searchsorted(dates[0]))
    first = cal[max(pos0 - 1, 0)]
    window = cal[(cal >= first) & (cal <= dates[-1])]
    try:
        df = source.features(codes, ["$close"], first, dates[-1])
    except Exception as exc:
        raise QexpError(f"the benchmark {codes} could not be read from {source.describe()}: {exc}. Pass an "
                        f"instrument that exists there, a Series of daily returns, or benchmark=None") from exc
    if len(df) == 0 or df["$close"].notna().sum() == 0:
        raise QexpError(f"the benchmark {codes} has no prices in {source.describe()} between {first.date()} and "
                        f"{dates[-1].date()}. Pass an instrument that exists there (for the synthetic market: "
                        f"'SH000300'), a Series of daily returns, or benchmark=None")
    names = list(df.index.names)
    il = 1 if names[0] != "instrument" else 0
    close = df["$close"].astype("float64").unstack(level=il)
    close.index = pd.DatetimeIndex(close.index)
    close = close.reindex(window)
    ret = (close / close.shift(1) - 1).mean(axis=1)
    return ret.reindex(dates).fillna(0.0).to_numpy()


def backtest(start_time: Any = None, end_time: Any = None, strategy: Any = None, executor: Any = None,
             benchmark: Any = "SH000300", account: float = 1e9, exchange_kwargs: dict | None = None,
             pos_type: str = "Position", quote: pd.DataFrame | MarketSource | None = None
             ) -> tuple[dict[str, tuple[pd.DataFrame, dict]], dict[str, tuple[pd.DataFrame, pd.DataFrame]]]:
    """Run a daily backtest; the shape of the result follows Qlib's ``qlib.backtest.backtest``.

    ``strategy`` and ``executor`` are objects or Qlib configs (``{"class": ..., "module_path": ..., "kwargs":
    ...}``). Prices come from ``quote`` (a frame indexed ``(datetime, instrument)``) or the active data provider.
    Returns ``({"1day": (report, positions)}, {"1day": (indicators, orders)})``: ``report`` has the columns of
    :data:`REPORT_COLUMNS` indexed by datetime, ``positions`` maps each day to a :class:`Position`,
    ``indicators`` has :data:`INDICATOR_COLUMNS`, ``orders`` one row per order.
    """
    if strategy is None:
        raise ConfigError("backtest needs a strategy (an object or a config such as {'class': "
                          "'TopkDropoutStrategy', 'module_path': 'qlib.contrib.strategy', 'kwargs': {...}})")
    strategy = _build(strategy, BaseStrategy, "strategy")
    if not isinstance(strategy, BaseStrategy):
        raise ConfigError(f"strategy must be a qexp strategy such as TopkDropoutStrategy, got "
                          f"{type(strategy).__name__}")
    executor = _build(executor if executor is not None else {"class": "SimulatorExecutor", "kwargs": {
        "time_per_step": "day", "generate_portfolio_metrics": True}}, SimulatorExecutor, "executor")
    if not isinstance(executor, SimulatorExecutor):
        raise ConfigError(f"executor must be a SimulatorExecutor, got {type(executor).__name__}")
    if pos_type != "Position":
        raise ConfigError(f"pos_type {pos_type!r} is not supported; use 'Position'")
    if isinstance(account, dict) or not isinstance(account, (int, float)) or not account > 0:
        raise ConfigError(f"account must be the initial cash as a positive number, got {account!r}")

    source = make_source(quote)
    cal = source.calendar()
    start, end = to_timestamp(start_time), to_timestamp(end_time)
    if start is None or end is None:
        raise ConfigError("backtest needs start_time and end_time")
    if start > end:
        raise ConfigError(f"backtest start_time {start.date()} is after end_time {end.date()}")
    if not ((cal >= start) & (cal <= end)).any():
        raise ConfigError(f"the backtest range {start.date()}..{end.date()} is outside the data, which covers "
                          f"{cal[0].date()}..{cal[-1].date()} in {source.describe()}; choose start_time and "
                          f"end_time inside it")
    if start < cal[0] or end > cal[-1]:
        warnings.warn(f"the backtest range {start.date()}..{end.date()} reaches beyond the data "
                      f"({cal[0].date()}..{cal[-1].date()}); only the days inside it are simulated", stacklevel=2)
    codes = strategy.signal_instruments()
    if not codes:
        raise ConfigError("the strategy has no instruments to trade (its signal is empty)")
    kw = dict(exchange_kwargs or {})
    kw.pop("freq", None)
    for k in ("start_time", "end_time", "codes", "quote"):
        if k in kw:
            raise ConfigError(f"exchange_kwargs must not set {k!r}; the backtest sets it")
    exchange = Exchange(start_time=start, end_time=end, codes=codes, quote=source, **kw)
    dates = exchange.dates
    start_pos = int(cal.searchsorted(dates[0]))
    strategy.bind(exchange, cal, start_pos)
    bench = benchmark_returns(benchmark, source, dates)
    return _simulate(exchange, strategy, float(account), bench, executor)


def _simulate(exchange: Exchange, strategy: BaseStrategy, account: float, bench: np.ndarray,
              executor: SimulatorExecutor) -> tuple[dict, dict]:
    n_days = len(exchange.dates)
    pos = ArrayPosition(len(exchange.codes), account)
    report = np.zeros((n_days, len(REPORT_COLUMNS)))
    indicators = np.full((n_days, len(INDICATOR_COLUMNS)), np.nan)
    positions: dict[pd.Timestamp, Position] = {}
    order_rows: list[tuple] = []
    last_value, total_cost, total_turnover = account, 0.0, 0.0
    close, suspended = exchange.close, exchange.suspended
    day_list = list(exchange.dates)   # indexing a DatetimeIndex per order is slow
    for t in range(n_days):
        day_cost = day_turnover = 0.0
        ffr, n_orders, n_pa, n_pos, deal_sum, value_sum = [], 0, 0, 0, 0.0, 0.0
        for order in strategy.generate_orders(t, pos):
            res = exchange.deal(t, order.index, order.direction, order.amount, pos)
            day_cost += res.cost
            day_turnover += res.trade_val
            n_orders += 1
            if order.amount:
                ffr.append(res.deal_amount / order.amount)
            # one bar per day: the base price of the price advantage is the deal price itself, so pa is 0
            if res.trade_val > 1e-5:
                n_pa += 1
            deal_sum += abs(res.deal_amount)
            value_sum += abs(res.trade_val)
            order_rows.append((day_list[t], exchange.codes[order.index],
                               "BUY" if order.direction == OrderDir.BUY else "SELL", order.amount,
                               res.deal_amount, res.price, res.trade_val, res.cost))
        # bar end: revalue at today's close (suspended keep their last price), then count one more bar held
        upd = pos.held & ~suspended[t]
        pos.price[upd] = close[t, upd]
        pos.count[pos.held] += 1
        total_cost += day_cost
        total_turnover += day_turnover
        stock_value = pos.stock_value()
        value = pos.cash + stock_value
        report[t] = (value, (value - last_value + day_cost) / last_value, total_turnover, day_turnover / last_value,
                     total_cost, day_cost / last_value, stock_value, pos.cash, bench[t])
        last_value = value
        if n_orders:
            indicators[t] = (np.mean(ffr) if ffr else np.nan, 0.0 if n_pa else np.nan,
                             n_pos / n_pa if n_pa else np.nan, deal_sum, value_sum, n_orders)
        else:
            indicators[t, 3:] = (0.0, 0.0, 0)
        positions[day_list[t]] = pos.snapshot(exchange.codes)
    index = pd.DatetimeIndex(exchange.dates, name="datetime")
    report_df = pd.DataFrame(report, index=index, columns=REPORT_COLUMNS)
    ind_df = pd.DataFrame(indicators, index=index, columns=INDICATOR_COLUMNS)
    ind_df["count"] = ind_df["count"].astype("int64")
    orders_df = pd.DataFrame(order_rows, columns=["datetime", "instrument", "direction", "amount", "deal_amount",
                                                  "price", "trade_val", "cost"])
    return {executor.freq: (report_df, positions)}, {executor.freq: (ind_df, orders_df)}
