"""A deterministic synthetic A-share-like market in Qlib's format, for demos and tests.

What it contains (all from one seeded ``numpy.random.Generator``, so the same parameters give byte-identical
files):

* returns = beta * market + sector loading * sector + alpha + idiosyncratic noise; market, sector and
  idiosyncratic volatilities follow GARCH(1,1) recursions with Student-t shocks (volatility clustering,
  fat tails);
* a persistent latent alpha per stock (AR(1), half-life ~70 days) that shifts expected returns, and leaks
  weakly into past returns (momentum), the position of the close inside the day's range (candle shadows)
  and volume, so Alpha158-style features with a tree model reach a test IC of a few percent;
* raw daily moves capped at +-10% (so the 9.5% limit rule of a cn backtest triggers now and then),
  suspensions (NaN rows), late listings and early delistings;
* fields open/high/low/close/volume/vwap/factor/change with Qlib's conventions: prices are adjusted,
  ``factor`` = adjusted / raw price (constant per stock here), ``$volume * $factor`` = raw shares,
  ``change`` = raw close / previous raw close - 1;
* markets ``all`` and ``csi300`` (the most liquid two thirds of the stocks, at most 300, re-selected every
  June and December, so membership has several spans), and an index ``SH000300`` (cap-weighted over the
  csi300 members, market ``index``) usable as a backtest benchmark.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from .writer import InstrumentData, write_folder

GENERATOR_VERSION = 1
INDEX_CODE = "SH000300"
FIELDS = ("open", "high", "low", "close", "volume", "vwap", "factor", "change")


@dataclass(frozen=True)
class SynthParams:
    instruments: int = 300
    start: str = "2015-01-01"
    end: str = "2020-12-31"
    seed: int = 0

    def folder_name(self) -> str:
        """Cache folder name: changes whenever the data would."""
        return (f"synth-v{GENERATOR_VERSION}-n{self.instruments}-{pd.Timestamp(self.start):%Y%m%d}-"
                f"{pd.Timestamp(self.end):%Y%m%d}-seed{self.seed}")


def trading_calendar(start: str, end: str) -> pd.DatetimeIndex:
    """Weekdays without a cn-like New Year (Jan 1-3) and National Day (Oct 1-7) break."""
    days = pd.bdate_range(start, end)
    closed = ((days.month == 1) & (days.day <= 3)) | ((days.month == 10) & (days.day <= 7))
    return days[~closed]


def codes(n: int) -> list[str]:
    """Qlib-like codes: SH600000, SH600001, ... for the first half, SZ000001, ... for the rest."""
    half = (n + 1) // 2
    return [f"SH{600000 + k}" for k in range(half)] + [f"SZ{1 + k:06d}" for k in range(n - half)]


def _garch(shocks: np.ndarray, base_vol: float, alpha: float = 0.08, beta: float = 0.9) -> np.ndarray:
    """Volatility path of GARCH(1,1) driven by unit shocks (rows = days); vectorised across columns."""
    omega = base_vol ** 2 * (1 - alpha - beta)
    var = np.full(shocks.shape[1:], base_vol ** 2)
    out = np.empty_like(shocks)
    for t in range(shocks.shape[0]):   # the recursion is sequential in time; columns are vectorised
        out[t] = np.sqrt(var)
        var = omega + alpha * var * shocks[t] ** 2 + beta * var
    return out


def _t_shocks(rng: np.random.Generator, shape: tuple[int, ...], df: float = 5.0) -> np.ndarray:
    """Student-t shocks scaled to unit variance."""
    return rng.standard_t(df, size=shape) / np.sqrt(df / (df - 2))


def generate(params: SynthParams) -> tuple[pd.DatetimeIndex, list[InstrumentData], dict[str, dict]]:
    """Calendar, per-instrument series (all fields) and market spans of the synthetic market."""
    rng = np.random.default_rng(params.seed)
    cal = trading_calendar(params.start, params.end)
    T, N = len(cal), params.instruments
    if T < 2 or N < 1:
        raise ValueError(f"The synthetic market needs at least 2 trading days and 1 instrument; got {T} days "
                         f"between {params.start} and {params.end} and {N} instruments.")
    n_sectors = max(1, min(10, N // 10))
    sector = rng.integers(0, n_sectors, N)
    beta = rng.uniform(0.6, 1.4, N)
    sector_load = rng.uniform(0.4, 1.0, N)
    idio_vol = rng.uniform(0.012, 0.025, N)

    # Factor returns with volatility clustering.
    z_m = _t_shocks(rng, (T, 1))
    z_s = _t_shocks(rng, (T, n_sectors))
    z_i = _t_shocks(rng, (T, N))
    market = (_garch(z_m, 0.011) * z_m)[:, 0]
    sectors = _garch(z_s, 0.007) * z_s
    idio_sigma = _garch(z_i, 1.0) * idio_vol[None, :]
    idio = idio_sigma * z_i

    # Persistent latent alpha (stationary AR(1), unit variance): expected return kappa * alpha.
    phi = 0.99
    a0 = rng.standard_normal(N)                       # stationary start: y[-1] ~ N(0, 1)
    alpha, _ = lfilter([np.sqrt(1 - phi ** 2)], [1, -phi], rng.standard_normal((T, N)), axis=0,
                       zi=(phi * a0)[None, :])
    kappa = 0.0012
    ret = (beta[None, :] * market[:, None] + sector_load[None, :] * sectors[:, sector] + idio)
    ret[1:] += kappa * alpha[:-1]
    ret[0] = 0.0
    raw_ret = np.clip(ret, -0.1, 0.1)                     # price limit on raw moves

    price0 = np.exp(rng.uniform(np.log(4), np.log(60), N))
    raw_close = price0[None, :] * np.cumprod(1 + raw_ret, axis=0)
    factor = np.round(np.exp(rng.uniform(0, np.log(3), N)), 4)  # adjusted / raw, constant per stock

    # Intraday bars: open gaps by part of the day's move; shadows leak alpha (closes near the high for
    # positive alpha); everything stays inside the +-10% limit band of the previous close.
    prev = np.vstack([raw_close[:1] / (1 + raw_ret[:1]), raw_close[:-1]])
    gap = np.clip(0.35 * raw_ret + 0.004 * rng.standard_normal((T, N)), -0.1, 0.1)
    raw_open = prev * (1 + gap)
    day_vol = idio_sigma + 0.005
    up = np.abs(rng.standard_normal((T, N))) * day_vol * np.exp(-0.35 * alpha)
    down = np.abs(rng.standard_normal((T, N))) * day_vol * np.exp(0.35 * alpha)
    top = np.maximum(raw_open, raw_close)
    bottom = np.minimum(raw_open, raw_close)
    raw_high = np.minimum(top * (1 + up), prev * 1.1)
    raw_high = np.maximum(raw_high, top)
    raw_low = np.maximum(bottom * (1 - down), prev * 0.9)
    raw_low = np.minimum(raw_low, bottom)
    typical = (raw_high + raw_low + raw_close) / 3
    raw_vwap = np.clip(typical * (1 + 0.002 * rng.standard_normal((T, N))), raw_low, raw_high)

    shares_out = np.exp(rng.uniform(np.log(2e8), np.log(5e9), N))
    turnover = np.exp(np.log(0.01) + 0.6 * np.log(idio_sigma / idio_vol[None, :] + 1e-9)
                      + 0.15 * alpha + 0.35 * rng.standard_normal((T, N)) + 8 * np.abs(raw_ret))
    raw_volume = np.round(shares_out[None, :] * np.minimum(turnover, 0.2) / 100) * 100

    # Listing, delisting and suspensions.
    start_idx = np.zeros(N, dtype=int)
    end_idx = np.full(N, T - 1)
    late = rng.random(N) < 0.15
    start_idx[late] = rng.integers(1, max(2, T // 2), late.sum())
    early = rng.random(N) < 0.05
    end_idx[early] = np.maximum(start_idx[early] + 1, T - 1 - rng.integers(1, max(2, T // 3), early.sum()))
    suspended = np.zeros((T, N), dtype=bool)
    n_episodes = rng.poisson(1.5 * T / 250, N)
    for stock in np.nonzero(n_episodes)[0]:   # a handful of episodes per stock: cheap
        starts = rng.integers(0, T, n_episodes[stock])
        lengths = rng.geometric(0.25, n_episodes[stock])
        for first, ln in zip(starts, lengths):
            suspended[first:first + ln, stock] = True

    # Adjusted values; change on raw closes forward-filled over suspensions (Qlib/Yahoo convention).
    raw_close_obs = np.where(suspended, np.nan, raw_close)
    ffilled = pd.DataFrame(raw_close_obs).ffill().to_numpy()
    change = ffilled / np.vstack([np.full((1, N), np.nan), ffilled[:-1]]) - 1
    fields = {
        "open": raw_open * factor, "high": raw_high * factor, "low": raw_low * factor,
        "close": raw_close * factor, "volume": raw_volume / factor, "vwap": raw_vwap * factor,
        "factor": np.broadcast_to(factor, (T, N)), "change": change,
    }
    code_list = codes(N)
    instruments = []
    for i, code in enumerate(code_list):
        s, e = start_idx[i], end_idx[i]
        vals = {}
        for name in FIELDS:
            col = np.array(fields[name][s:e + 1, i], dtype=np.float64)
            col[suspended[s:e + 1, i]] = np.nan
            if name == "change":
                col[0] = np.nan   # no previous close inside the series at listing
            vals[name] = col
        instruments.append(InstrumentData(code, int(s), vals))

    all_spans = {c: [(cal[start_idx[i]], cal[end_idx[i]])] for i, c in enumerate(code_list)}
    members, index_inst = _csi300(cal, code_list, start_idx, end_idx, raw_close, raw_volume, shares_out,
                                  raw_ret, raw_open / prev - 1, suspended)
    instruments.append(index_inst)
    markets = {"all": all_spans, "csi300": members,
               "index": {INDEX_CODE: [(cal[0], cal[-1])]}}
    return cal, instruments, markets


def _csi300(cal: pd.DatetimeIndex, code_list: list[str], start_idx: np.ndarray, end_idx: np.ndarray,
            raw_close: np.ndarray, raw_volume: np.ndarray, shares_out: np.ndarray, raw_ret: np.ndarray,
            open_gap: np.ndarray, suspended: np.ndarray) -> tuple[dict, InstrumentData]:
    """Membership re-selected each June/December by trailing traded value, and the cap-weighted index."""
    T, N = raw_close.shape
    k = max(1, min(300, (2 * N) // 3))
    listed = (np.arange(T)[:, None] >= start_idx[None, :]) & (np.arange(T)[:, None] <= end_idx[None, :])
    value = pd.DataFrame(np.where(listed & ~suspended, raw_close * raw_volume, 0.0)).rolling(120, min_periods=1)\
        .mean().to_numpy()
    rebalance = [0] + [t for t in range(1, T) if cal[t].month != cal[t - 1].month and cal[t].month in (1, 7)]
    member = np.zeros((T, N), dtype=bool)
    for j, t0 in enumerate(rebalance):
        t1 = rebalance[j + 1] if j + 1 < len(rebalance) else T
        score = np.where(listed[t0] & (end_idx > t0), value[max(t0 - 1, 0)], -1.0)
        chosen = np.argsort(-score, kind="stable")[:k]
        chosen = chosen[score[chosen] >= 0]
        member[t0:t1, chosen] = True
    member &= listed
    spans: dict[str, list] = {}
    for i, code in enumerate(code_list):
        edges = np.diff(np.r_[0, member[:, i].astype(np.int8), 0])
        for a, b in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1):
            spans.setdefault(code, []).append((cal[a], cal[b]))

    # Index: yesterday's cap weights over today's members that trade today.
    cap = raw_close * shares_out[None, :]
    w_prev = np.vstack([cap[:1], cap[:-1]]) * (member & ~suspended)
    w_sum = w_prev.sum(axis=1, keepdims=True)
    w = np.divide(w_prev, w_sum, out=np.zeros_like(w_prev), where=w_sum > 0)
    idx_ret = (w * np.nan_to_num(raw_ret)).sum(axis=1)
    idx_ret[0] = 0.0
    close = 1000.0 * np.cumprod(1 + idx_ret)
    prev = np.r_[close[0], close[:-1]]
    open_ = prev * (1 + (w * np.nan_to_num(open_gap)).sum(axis=1))
    spread = np.abs(idx_ret) * 0.5 + 0.003
    high = np.maximum(open_, close) * (1 + spread / 2)
    low = np.minimum(open_, close) * (1 - spread / 2)
    volume = (raw_volume * member * ~suspended).sum(axis=1)
    change = close / prev - 1
    change[0] = np.nan
    vals = {"open": open_, "high": high, "low": low, "close": close, "volume": volume,
            "vwap": (high + low + close) / 3, "factor": np.ones(T), "change": change}
    return spans, InstrumentData(INDEX_CODE, 0, vals)


def write_synth(dst: str | os.PathLike, params: SynthParams | None = None) -> Path:
    """Generate the market for ``params`` and write it atomically to ``dst``: a new or empty folder, or a data
    folder it replaces; a folder holding anything else is refused (:class:`~qexp_data.atomic.OutputFolderError`)."""
    params = params or SynthParams()
    cal, instruments, markets = generate(params)
    return write_folder(dst, cal, instruments, markets)


def params_dict(params: SynthParams) -> dict:
    return asdict(params)
