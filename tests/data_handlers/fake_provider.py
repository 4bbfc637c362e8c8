"""A small in-memory data provider implementing ``qexp.data_api.DataProvider`` for handler tests.

Expressions are evaluated per instrument with pandas (``$close`` -> the column, ``Ref``/``Mean``/``Std``/...
as Qlib defines them), so expected values in tests can be computed independently by hand.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd


def _ref(x: pd.Series, n: int) -> pd.Series:
    return x.shift(n)


def _mean(x: pd.Series, n: int) -> pd.Series:
    return x.astype(float).rolling(n, min_periods=1).mean()


def _std(x: pd.Series, n: int) -> pd.Series:
    return x.astype(float).rolling(n, min_periods=1).std()


def _sum(x: pd.Series, n: int) -> pd.Series:
    return x.astype(float).rolling(n, min_periods=1).sum()


NAMESPACE = {
    "Ref": _ref, "Mean": _mean, "Std": _std, "Sum": _sum,
    "Greater": lambda a, b: np.maximum(a, b), "Less": lambda a, b: np.minimum(a, b),
    "Abs": lambda x: x.abs(), "Log": lambda x: np.log(x),
}


class PanelProvider:
    """Serves ``panel`` (index ``(datetime, instrument)``, columns = raw fields without ``$``).

    ``markets`` maps a market name to ``{code: [(start, end), ...]}``; ``"all"`` is every code over its
    whole history. ``calls`` counts ``features`` calls (to see cache hits); ``version`` is returned by
    ``data_version()`` when ``expose_version`` is set.
    """

    def __init__(self, panel: pd.DataFrame, markets: dict | None = None, uri: str = "memory://panel",
                 expose_version: bool = True, blind: bool = False):
        # blind: every expression gets seeded random values (for configs this evaluator cannot compute)
        self.blind = blind
        self.panel = panel.sort_index()
        self.markets = dict(markets or {})
        self.uri = uri
        self.calls = 0
        self.version = 1
        if expose_version:
            self.data_version = lambda: f"{self.version}-{self._digest()}"

    def _digest(self) -> str:
        return hashlib.sha256(pd.util.hash_pandas_object(self.panel).values.tobytes()).hexdigest()[:16]

    # ---- DataProvider -------------------------------------------------------------------------------
    def calendar(self, start_time: Any = None, end_time: Any = None, freq: str = "day",
                 future: bool = False) -> pd.DatetimeIndex:
        cal = self.panel.index.get_level_values("datetime").unique().sort_values()
        lo = 0 if start_time is None else cal.searchsorted(pd.Timestamp(start_time))
        hi = len(cal) if end_time is None else cal.searchsorted(pd.Timestamp(end_time), side="right")
        return cal[lo:hi]

    def _spans(self, market: str) -> dict[str, list]:
        if market == "all":
            out = {}
            for code, part in self.panel.groupby(level="instrument"):
                dt = part.index.get_level_values("datetime")
                out[code] = [(dt.min(), dt.max())]
            return out
        if market not in self.markets:
            raise KeyError(f"unknown market {market!r}")
        return {c: [(pd.Timestamp(s), pd.Timestamp(e)) for s, e in spans] for c, spans in self.markets[market].items()}

    def list_instruments(self, instruments: Any = "all", start_time: Any = None, end_time: Any = None,
                         as_list: bool = False) -> Any:
        spans = self._spans(instruments)
        lo = pd.Timestamp(start_time) if start_time is not None else pd.Timestamp.min
        hi = pd.Timestamp(end_time) if end_time is not None else pd.Timestamp.max
        out = {}
        for code, cs in spans.items():
            kept = [(max(s, lo), min(e, hi)) for s, e in cs if s <= hi and e >= lo]
            if kept:
                out[code] = kept
        return sorted(out) if as_list else out

    def features(self, instruments: Any, fields: Sequence[str], start_time: Any = None, end_time: Any = None,
                 freq: str = "day") -> pd.DataFrame:
        self.calls += 1
        if isinstance(instruments, str):
            spans = self._spans(instruments)
            codes = sorted(spans)
        else:
            spans = None
            codes = sorted(instruments)
        lo = pd.Timestamp(start_time) if start_time is not None else pd.Timestamp.min
        hi = pd.Timestamp(end_time) if end_time is not None else pd.Timestamp.max
        frames = []
        for code in codes:
            if code not in self.panel.index.get_level_values("instrument"):
                continue
            raw = self.panel.xs(code, level="instrument")
            cols = {}
            for field in fields:
                if self.blind:
                    seed = int(hashlib.sha256(f"{field}|{code}".encode()).hexdigest()[:8], 16)
                    vals = np.random.default_rng(seed).normal(size=len(raw))
                    vals[raw["close"].isna().to_numpy()] = np.nan
                    cols[field] = pd.Series(vals, index=raw.index).astype(np.float32)
                    continue
                expr = re.sub(r"\$(\w+)", r'F["\1"]', field)
                val = eval(expr, dict(NAMESPACE), {"F": raw})  # noqa: S307 - test expressions only
                if isinstance(val, (int, float)):
                    val = pd.Series(val, index=raw.index)
                cols[field] = pd.Series(val, index=raw.index).astype(np.float32)
            df = pd.DataFrame(cols, index=raw.index)
            keep = (df.index >= lo) & (df.index <= hi)
            if spans is not None:
                in_span = np.zeros(len(df), dtype=bool)
                for s, e in spans[code]:
                    in_span |= (df.index >= s) & (df.index <= e)
                keep &= in_span
            df = df[keep]
            df.index = pd.MultiIndex.from_arrays([df.index, [code] * len(df)], names=["datetime", "instrument"])
            frames.append(df)
        out = pd.concat(frames).sort_index() if frames else pd.DataFrame(columns=list(fields), dtype=np.float32)
        return out


def make_panel(n_days: int = 40, codes: Sequence[str] = ("AAA", "BBB", "CCC", "DDD"), seed: int = 0,
               start: str = "2020-01-01") -> pd.DataFrame:
    """OHLCV random walks on business days; ``BBB`` starts 10 days late, ``CCC`` has two suspended (NaN) days."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=n_days)
    frames = []
    for k, code in enumerate(codes):
        close = 10 * (1 + k) * np.exp(np.cumsum(rng.normal(0, 0.02, n_days)))
        df = pd.DataFrame({
            "open": close * (1 + rng.normal(0, 0.005, n_days)),
            "high": close * 1.01, "low": close * 0.99, "close": close,
            "volume": rng.integers(1000, 5000, n_days).astype(float),
            "vwap": close * 1.001,
        }, index=dates)
        if code == "BBB":
            df = df.iloc[10:]
        if code == "CCC":
            df.iloc[[15, 16]] = np.nan
        df = df.astype(np.float32)
        df.index = pd.MultiIndex.from_arrays([df.index, [code] * len(df)], names=["datetime", "instrument"])
        frames.append(df)
    return pd.concat(frames).sort_index()
