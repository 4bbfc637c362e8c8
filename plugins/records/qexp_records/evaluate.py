"""Portfolio analysis formulas (Qlib's ``qlib.contrib.evaluate``): ``risk_analysis`` and ``indicator_analysis``.

Both follow Qlib's code, not its docstrings: the daily annualisation scaler is 238 (the value Qlib's published
benchmark numbers were produced with), and the sum-mode max drawdown is taken on the cumulative sum of returns.
"""
from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd

from qexp import ConfigError

__all__ = ["risk_analysis", "indicator_analysis", "parse_freq", "normalize_freq", "annualization_scaler"]

# Periods per year used to annualise, per base frequency (Qlib's ``cal_risk_analysis_scaler``).
_SCALERS = {"minute": 240 * 238, "day": 238, "week": 50, "month": 12}
_FREQ_ALIASES = {"min": "minute", "minute": "minute", "m": "minute", "day": "day", "d": "day",
                 "week": "week", "w": "week", "month": "month", "mon": "month"}


def parse_freq(freq: str) -> tuple[int, str]:
    """``"day"`` -> ``(1, "day")``, ``"1day"`` -> ``(1, "day")``, ``"5min"`` -> ``(5, "minute")``."""
    m = re.fullmatch(r"\s*(\d*)\s*([A-Za-z]+)\s*", str(freq))
    base = _FREQ_ALIASES.get(m.group(2).lower()) if m else None
    if m is None or base is None:
        raise ConfigError(f"unknown frequency {freq!r}; use e.g. 'day', '1day', 'week', 'month' or '5min'")
    count = int(m.group(1)) if m.group(1) else 1
    if count <= 0:
        raise ConfigError(f"frequency {freq!r} must have a positive count")
    return count, base


def normalize_freq(freq: str) -> str:
    """Qlib's artifact spelling of a frequency: ``"day"`` -> ``"1day"``, ``"5minute"`` -> ``"5min"``."""
    count, base = parse_freq(freq)
    return f"{count}{'min' if base == 'minute' else base}"


def annualization_scaler(freq: str) -> float:
    """Periods per year for ``freq``: 238 for a day, divided by the count (``"2day"`` -> 119)."""
    count, base = parse_freq(freq)
    return _SCALERS[base] / count


def risk_analysis(r: pd.Series, N: float | None = None, freq: str | None = "day",
                  mode: Literal["sum", "product"] = "sum") -> pd.DataFrame:
    """Mean, std, annualised return, information ratio and max drawdown of the return series ``r``.

    ``N`` is the number of periods per year; when None it comes from ``freq`` (238 per year for days).
    ``mode="sum"`` treats returns additively (Qlib's default for portfolio reports); ``"product"``
    compounds them. Returns a one-column frame (column ``risk``) indexed by the five metric names.
    """
    if N is None and freq is None:
        raise ConfigError("risk_analysis needs N (periods per year) or freq (e.g. 'day')")
    if N is None:
        N = annualization_scaler(str(freq))
    r = pd.Series(r, dtype="float64")
    if mode == "sum":
        mean = r.mean()
        std = r.std(ddof=1)
        annualized_return = mean * N
        cum = r.cumsum()
        # the running peak starts at the first cumulative value, not at 0 (as in Qlib)
        max_drawdown = (cum - cum.cummax()).min()
    elif mode == "product":
        curve = (1 + r).cumprod()
        n = len(r)
        final = curve.iloc[-1] if n else np.nan
        mean = final ** (1 / n) - 1 if n else np.nan
        std = np.log(1 + r).std(ddof=1)
        annualized_return = final ** (N / n) - 1 if n else np.nan
        max_drawdown = (curve / curve.cummax() - 1).min()
    else:
        raise ConfigError(f"risk_analysis mode must be 'sum' or 'product', got {mode!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        information_ratio = mean / std * np.sqrt(N)
    data = {"mean": mean, "std": std, "annualized_return": annualized_return,
            "information_ratio": information_ratio, "max_drawdown": max_drawdown}
    return pd.Series({k: float(v) for k, v in data.items()}).to_frame("risk")


_INDICATOR_METHODS = ("mean", "amount_weighted", "value_weighted")


def indicator_analysis(df: pd.DataFrame, method: str = "mean") -> pd.DataFrame:
    """Aggregate daily trade indicators into ``ffr`` (fulfil rate), ``pa`` (price advantage) and ``pos``.

    ``df`` has one row per period with columns ``ffr``, ``pa``, ``pos``, ``count``, ``deal_amount`` and
    ``value``. ``ffr`` and ``pa`` are weighted by ``count`` (``method="mean"``), ``|deal_amount|``
    (``"amount_weighted"``) or ``|value|`` (``"value_weighted"``); ``pos`` is always count-weighted.
    Returns a one-column frame (column ``value``) indexed ``ffr, pa, pos``.
    """
    if method not in _INDICATOR_METHODS:
        raise ConfigError(f"indicator_analysis method {method!r} is not supported; use one of "
                          f"{', '.join(_INDICATOR_METHODS)}")
    missing = [c for c in ("ffr", "pa", "pos", "count", "deal_amount", "value") if c not in df.columns]
    if missing:
        raise ConfigError(f"indicator frame lacks column(s) {', '.join(missing)}; it must come from the backtest's "
                          f"indicators_normal_<freq>.pkl")
    weights = {"mean": df["count"], "amount_weighted": df["deal_amount"].abs(), "value_weighted": df["value"].abs()}
    w = weights[method].astype("float64")
    res = df[["ffr", "pa"]].mul(w, axis=0).sum() / w.sum()
    wc = df["count"].astype("float64")
    res.loc["pos"] = df["pos"].mul(wc).sum() / wc.sum()
    return res.astype("float64").to_frame("value")
