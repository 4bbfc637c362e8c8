"""Numeric kernels of the expression operators, vectorised over an instruments x days panel.

Layout: a panel is a float64 array of shape ``(I, W)``: one row per instrument, one column per calendar
day. The first ``pad`` columns are NaN padding and every instrument row is NaN outside its loaded series
("absent" days, ``Frame.absent``). Flattening the C-ordered panel gives one long series in which every
instrument is preceded by at least ``pad >= N - 1`` NaNs, so a single pandas rolling call over it never
mixes two instruments and skips the padding exactly as Qlib's per-instrument ``rolling(N, min_periods=1)``
skips the short history at a series start. Ops whose result depends on positions within the window
(IdxMax, WMA, Ref(x, 0), expanding windows) use the per-instrument first loaded column instead.

Every float array a kernel returns is NaN on absent days; comparisons return bool arrays, which are
converted (absent -> NaN) before they enter arithmetic or windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import numpy as np
import pandas as pd

Value = Union[np.ndarray, float, int, bool]


@dataclass
class Frame:
    """Where each instrument's loaded series lies in the panel (one evaluation context)."""
    first: np.ndarray   # (I,) first loaded column per instrument (> last when nothing is loaded)
    last: np.ndarray    # (I,) last loaded column
    absent: np.ndarray  # (I, W) bool: True outside [first, last]
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.first), self.width)


def mask(out: np.ndarray, fr: Frame) -> np.ndarray:
    np.putmask(out, fr.absent, np.nan)
    return out


def as_float(x: Value, fr: Frame) -> np.ndarray:
    """A float64 panel with NaN on absent days, from a panel, a bool panel or a scalar."""
    if isinstance(x, np.ndarray):
        if x.dtype == np.float64:
            return x
        return mask(x.astype(np.float64), fr)
    return mask(np.full(fr.shape, float(x)), fr)


def as_bool(x: Value) -> Value:
    """Truth values as numpy gives them: non-zero is True and NaN counts as True (as in Qlib's If)."""
    if isinstance(x, np.ndarray):
        return x if x.dtype == bool else x.astype(bool)
    return bool(x)


# ---------------------------------------------------------------------------------------------- element-wise
_UFUNC = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.true_divide, "Power": np.power,
          "Greater": np.maximum, "Less": np.minimum, "Gt": np.greater, "Ge": np.greater_equal,
          "Lt": np.less, "Le": np.less_equal, "Eq": np.equal, "Ne": np.not_equal}
_BOOL_OK = {"Add", "Mul", "Greater", "Less"}   # numpy keeps these on bool inputs (logical or/and/max/min)
_COMPARE = {"Gt", "Ge", "Lt", "Le", "Eq", "Ne"}


def _is_bool(x: Value) -> bool:
    return (isinstance(x, np.ndarray) and x.dtype == bool) or isinstance(x, (bool, np.bool_))


def pair(op: str, a: Value, b: Value, fr: Frame) -> Value:
    """Add, Sub, ..., Greater, Less, comparisons, And, Or (NaN compares as False)."""
    if op in ("And", "Or"):
        f = np.logical_and if op == "And" else np.logical_or
        return f(as_bool(a), as_bool(b))
    a_arr, b_arr = isinstance(a, np.ndarray), isinstance(b, np.ndarray)
    if op in _COMPARE:
        with np.errstate(invalid="ignore"):
            return _UFUNC[op](a, b)
    if not (_is_bool(a) and _is_bool(b) and op in _BOOL_OK):
        a = as_float(a, fr) if isinstance(a, np.ndarray) and a.dtype == bool else a
        b = as_float(b, fr) if isinstance(b, np.ndarray) and b.dtype == bool else b
    with np.errstate(all="ignore"):
        out = _UFUNC[op](a, b)
    if not (a_arr or b_arr):
        return out.item() if isinstance(out, np.generic) else out
    if op == "Power":  # 1**NaN and NaN**0 are 1: keep absent days NaN
        out = mask(np.asarray(out, dtype=np.float64), fr)
    return out


_SCALAR_ELEM: dict[str, Callable[[float], Any]] = {"Abs": abs, "Sign": np.sign, "Log": np.log, "Neg": lambda v: -v}


def elem(op: str, x: Value, fr: Frame) -> Value:
    """Abs, Sign, Log, Neg, Not."""
    if op == "Not":
        return np.logical_not(as_bool(x))
    if not isinstance(x, np.ndarray):
        with np.errstate(all="ignore"):
            return _SCALAR_ELEM[op](float(x))
    x = as_float(x, fr)
    with np.errstate(all="ignore"):
        if op == "Abs":
            return np.abs(x)
        if op == "Sign":
            return np.sign(x)
        if op == "Log":
            return np.log(x)
        return np.negative(x)


def if_(c: Value, a: Value, b: Value, fr: Frame) -> Value:
    """``np.where(c, a, b)``; a NaN condition counts as True."""
    c = as_bool(c)
    if not isinstance(c, np.ndarray):
        return a if c else b
    out = np.where(c, a, b)
    return mask(out.astype(np.float64) if out.dtype != np.float64 else out, fr)


# ---------------------------------------------------------------------------------------------- shifts
def ref(x: Value, n: int, fr: Frame) -> np.ndarray:
    """Ref(x, n): n > 0 past, n < 0 future, n == 0 the first loaded value broadcast."""
    x = as_float(x, fr)
    out = np.full_like(x, np.nan)
    if n > 0:
        out[:, n:] = x[:, :-n]
    elif n < 0:
        out[:, :n] = x[:, -n:]
    else:
        first = np.minimum(fr.first, x.shape[1] - 1)
        out[:] = x[np.arange(x.shape[0]), first][:, None]
    return mask(out, fr)


def delta(x: Value, n: int, fr: Frame) -> np.ndarray:
    """x - Ref(x, n); n == 0: x - first loaded value."""
    x = as_float(x, fr)
    with np.errstate(invalid="ignore"):
        return x - ref(x, n, fr)


# ---------------------------------------------------------------------------------------------- windows
def _flat(x: np.ndarray) -> pd.Series:
    return pd.Series(x.reshape(-1), copy=False)


def _unflat(s: pd.Series | np.ndarray, fr: Frame) -> np.ndarray:
    arr = s.to_numpy(dtype=np.float64) if isinstance(s, pd.Series) else s
    return mask(arr.reshape(fr.shape).copy() if not arr.flags.writeable else arr.reshape(fr.shape), fr)


def _columns(x: np.ndarray) -> pd.DataFrame:
    """A days x instruments frame, for the per-instrument (column-wise) expanding and ewm windows."""
    return pd.DataFrame(x.T, copy=False)


_PANDAS_FUNC = {"Mean": "mean", "Sum": "sum", "Std": "std", "Var": "var", "Skew": "skew", "Kurt": "kurt",
                "Max": "max", "Min": "min", "Med": "median", "Count": "count"}


def rolling(op: str, x: Value, n: int | float, fr: Frame) -> np.ndarray:
    """Mean/Sum/Std(ddof=1)/Var/Skew/Kurt/Max/Min/Med/Count with ``min_periods=1`` (NaNs skipped).

    n == 0: expanding from the first loaded day; 0 < n < 1: ``ewm(alpha=n).mean()`` (Qlib's rule for
    every one of these ops).
    """
    x = as_float(x, fr)
    func = _PANDAS_FUNC[op]
    if n == 0:
        return _unflat(getattr(_columns(x).expanding(min_periods=1), func)().to_numpy().T, fr)
    if 0 < n < 1:
        return ewm_alpha(x, float(n), fr)
    return _unflat(getattr(_flat(x).rolling(int(n), min_periods=1), func)(), fr)


def ewm_alpha(x: np.ndarray, alpha: float, fr: Frame) -> np.ndarray:
    return _unflat(_columns(x).ewm(alpha=alpha, min_periods=1).mean().to_numpy().T, fr)


def quantile(x: Value, n: int, q: float, fr: Frame) -> np.ndarray:
    x = as_float(x, fr)
    r = _columns(x).expanding(min_periods=1) if n == 0 else None
    if r is not None:
        return _unflat(r.quantile(q).to_numpy().T, fr)
    return _unflat(_flat(x).rolling(n, min_periods=1).quantile(q), fr)


def rank(x: Value, n: int, fr: Frame) -> np.ndarray:
    """Percentile rank of the current value in its window (average ties; NaN if the value is NaN)."""
    x = as_float(x, fr)
    if n == 0:
        return _unflat(_columns(x).expanding(min_periods=1).rank(pct=True).to_numpy().T, fr)
    return _unflat(_flat(x).rolling(n, min_periods=1).rank(pct=True), fr)


def count_valid(x: np.ndarray, n: int) -> np.ndarray:
    """Number of non-NaN values in each trailing window of n columns (n == 0: from column 0)."""
    valid = (~np.isnan(x)).astype(np.int32)
    cs = np.cumsum(valid, axis=1, dtype=np.int64)
    if n == 0 or n >= x.shape[1]:
        return cs.astype(np.float64)
    out = cs.astype(np.float64)
    out[:, n:] -= cs[:, :-n]
    return out


def window_sums(v: np.ndarray, n: int, exact: bool = False) -> np.ndarray:
    """Trailing window sums of n columns, NaN skipped (0 for an all-NaN window); n == 0: running sums.

    ``exact=True`` is for integer-valued inputs, where cumulative sums are exact and fast; float inputs go
    through pandas' compensated rolling sum so long histories do not leak rounding into short windows.
    """
    if exact or n == 0:
        cs = np.cumsum(np.nan_to_num(v, nan=0.0), axis=1)
        if n == 0 or n >= v.shape[1]:
            return cs
        out = cs.copy()
        out[:, n:] -= cs[:, :-n]
        return out
    s = _flat(v).rolling(n, min_periods=1).sum().to_numpy()
    return np.nan_to_num(s, nan=0.0).reshape(v.shape)


def mad(x: Value, n: int, fr: Frame) -> np.ndarray:
    """Mean absolute deviation from the window mean, over the window's non-NaN values."""
    x = as_float(x, fr)
    out = np.full_like(x, np.nan)
    with np.errstate(all="ignore"):
        if n == 0:
            # Expanding: the mean changes with every day, so no running-sum shortcut exists; loop over days
            # (vectorised over instruments). Rare in practice.
            for t in range(x.shape[1]):
                w = x[:, :t + 1]
                m = _nanmean(w, axis=1, keepdims=True)
                out[:, t] = _nanmean(np.abs(w - m), axis=1)
            return mask(out, fr)
        win = np.lib.stride_tricks.sliding_window_view(x, n, axis=1)  # (I, W-n+1, n), a view
        step = max(1, int(4e6 // max(1, n * win.shape[1])))            # bound temporaries (~32 MB)
        for i in range(0, x.shape[0], step):
            w = win[i:i + step]
            m = _nanmean(w, axis=2, keepdims=True)
            out[i:i + step, n - 1:] = _nanmean(np.abs(w - m), axis=2)
    return mask(out, fr)


def _nanmean(a: np.ndarray, axis: int, keepdims: bool = False) -> np.ndarray:
    """``np.nanmean`` by the same sums, without its 'Mean of empty slice' warning (all-NaN windows give NaN
    anyway). Silencing that warning needs ``warnings.catch_warnings``, which is not thread-safe, and the
    provider evaluates instrument chunks in threads."""
    valid = ~np.isnan(a)
    total = np.sum(np.where(valid, a, 0.0), axis=axis, keepdims=keepdims)
    count = np.sum(valid, axis=axis, keepdims=keepdims, dtype=np.intp)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


# ---------------------------------------------------------------------------------------------- regression
def _diff(p: np.ndarray, n: int) -> np.ndarray:
    """Trailing n-column window sums from running sums ``p`` (leading zero column); NaN before column n-1
    (padding)."""
    I, W1 = p.shape
    out = np.empty((I, W1 - 1))
    out[:, :n - 1] = np.nan
    np.subtract(p[:, n:], p[:, :W1 - n], out=out[:, n - 1:])
    return out


def _running(v: np.ndarray) -> np.ndarray:
    out = np.zeros((v.shape[0], v.shape[1] + 1))
    np.cumsum(v, axis=1, out=out[:, 1:])
    return out


@dataclass
class FitPrefix:
    """Running sums behind Slope/Rsquare/Resi of one input, shared by all its windows. Positions are panel
    columns c; window sums are re-based to Qlib's x = 1..N (oldest first) exactly, since every x-sum is an
    integer. y is centred per instrument (the fit is invariant to that shift) to keep the sums small."""
    count: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    y1: np.ndarray
    cy: np.ndarray
    y2: np.ndarray
    centre: np.ndarray


def fit_prefix(x: Value, fr: Frame) -> FitPrefix:
    x = as_float(x, fr)
    centre = np.nan_to_num(_nanmean(x, axis=1, keepdims=True))
    valid = ~np.isnan(x)
    y = np.where(valid, x - centre, 0.0)
    cols = np.arange(x.shape[1], dtype=np.float64)[None, :]
    vc = np.where(valid, cols, 0.0)
    return FitPrefix(_running(valid.astype(np.float64)), _running(vc), _running(vc * cols), _running(y),
                     _running(y * cols), _running(y * y), centre)


@dataclass
class Moments:
    """Window sums of the least-squares fit of y on x = 1..N (oldest first), as Qlib's Cython keeps them."""
    n: np.ndarray
    sx: np.ndarray
    sxx: np.ndarray
    sy: np.ndarray
    sxy: np.ndarray
    syy: np.ndarray
    window: int
    centre: np.ndarray


def moments(p: FitPrefix, n: int, fr: Frame) -> Moments:
    W = p.count.shape[1] - 1
    if n == 0:
        # Expanding: positions count from the first loaded day (x = c - first + 1).
        base = (fr.first - 1).astype(np.float64)[:, None]
        cnt, c1, c2 = p.count[:, 1:], p.c1[:, 1:], p.c2[:, 1:]
        sy, cy, y2 = p.y1[:, 1:], p.cy[:, 1:], p.y2[:, 1:]
    else:
        # Window ending at column t: x = c - (t - n), so sums of x and x*y shift by (t - n).
        base = (np.arange(W, dtype=np.float64) - n)[None, :]
        cnt, c1, c2 = _diff(p.count, n), _diff(p.c1, n), _diff(p.c2, n)
        sy, cy, y2 = _diff(p.y1, n), _diff(p.cy, n), _diff(p.y2, n)
    sx = c1 - base * cnt
    sxx = c2 - 2 * base * c1 + base * base * cnt
    sxy = cy - base * sy
    return Moments(cnt, sx, sxx, sy, sxy, y2, n, p.centre)


def _beta(m: Moments) -> np.ndarray:
    """OLS slope; NaN when fewer than two points (x-spread exactly 0: the x-sums are exact integers, so
    the 0/0 of Qlib stays NaN even though the y-sums carry rounding)."""
    den = m.n * m.sxx - m.sx * m.sx
    with np.errstate(all="ignore"):
        b = (m.n * m.sxy - m.sx * m.sy) / den
    b[den == 0] = np.nan
    return b


def slope(m: Moments, fr: Frame) -> np.ndarray:
    return mask(_beta(m), fr)


def rsquare(m: Moments, std: np.ndarray, fr: Frame) -> np.ndarray:
    """r squared; NaN where the window's std is <= 2e-5 (Qlib's np.isclose(std, 0, atol=2e-5) mask)."""
    with np.errstate(all="ignore"):
        den = m.n * m.sxx - m.sx * m.sx
        r = (m.n * m.sxy - m.sx * m.sy) / np.sqrt(den * (m.n * m.syy - m.sy * m.sy))
        out = r * r
        out[den == 0] = np.nan
        out[np.abs(std) <= 2e-5] = np.nan
    return mask(out, fr)


def resi(x: Value, m: Moments, fr: Frame) -> np.ndarray:
    """Residual of the newest point: y_t - (slope * x_t + (mean(y) - slope * mean(x))), x_t = N."""
    x = as_float(x, fr)
    if m.window == 0:
        x_last = (np.arange(x.shape[1])[None, :] - fr.first[:, None] + 1).astype(np.float64)
    else:
        x_last = float(m.window)
    b = _beta(m)
    with np.errstate(all="ignore"):
        out = (x - m.centre) - (b * x_last + (m.sy / m.n - b * m.sx / m.n))
    return mask(out, fr)


# ---------------------------------------------------------------------------------------------- fast windows
@dataclass
class Prefix:
    """Running count of valid values and running sum (NaN as 0), with a leading zero column, so any trailing
    window sum is one subtraction. Shared by every Mean/Sum/Count window of the same input."""
    count: np.ndarray
    total: np.ndarray

    def window(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Count and sum of the trailing n-column window ending at each column (NaN before column n-1,
        which is padding)."""
        return _diff(self.count, n), _diff(self.total, n)


def prefix(x: Value, fr: Frame) -> Prefix:
    x = as_float(x, fr)
    I = x.shape[0]
    valid = ~np.isnan(x)
    count = np.zeros((I, x.shape[1] + 1))
    total = np.zeros((I, x.shape[1] + 1))
    np.cumsum(valid, axis=1, out=count[:, 1:])
    np.cumsum(np.where(valid, x, 0.0), axis=1, out=total[:, 1:])
    return Prefix(count, total)


def window_stat(op: str, p: Prefix, n: int, fr: Frame) -> np.ndarray:
    """Mean, Sum or Count over a trailing window from running sums. A window with no valid value gives
    NaN (Count: 0), as pandas does with ``min_periods=1``. Prefix sums are plain float64 sums: their rounding
    is ~1e-13 relative, far below the float32 output, and an all-zero window still sums to exactly 0."""
    cnt, tot = p.window(n)
    with np.errstate(all="ignore"):
        if op == "Count":
            out = cnt
        elif op == "Sum":
            out = tot
            out[cnt == 0] = np.nan
        else:
            out = np.divide(tot, cnt, out=tot)
    return mask(out, fr)


class ExtTable:
    """Sparse table of block maxima (or minima) over 2**j columns, NaN skipped: Max/Min of any window is
    the max of two overlapping blocks."""

    def __init__(self, x: Value, kind: str, fr: Frame):
        x = as_float(x, fr)
        self.sign = 1.0 if kind == "max" else -1.0
        self.levels = [np.where(np.isnan(x), -np.inf, self.sign * x)]

    def level(self, j: int) -> np.ndarray:
        while len(self.levels) <= j:
            h = 1 << (len(self.levels) - 1)
            prev = self.levels[-1]
            nxt = prev.copy()
            np.maximum(prev[:, :-h], prev[:, h:], out=nxt[:, :-h])
            self.levels.append(nxt)
        return self.levels[j]

    def query(self, n: int, count: np.ndarray, fr: Frame) -> np.ndarray:
        j = int(np.floor(np.log2(n)))
        lv = self.level(j)
        W = lv.shape[1]
        out = np.full(lv.shape, np.nan)
        out[:, n - 1:] = np.maximum(lv[:, :W - n + 1], lv[:, n - (1 << j):W - (1 << j) + 1])
        out *= self.sign
        out[count == 0] = np.nan
        return mask(out, fr)


def quantiles(x: Value, n: int, qs: Sequence[float], fr: Frame) -> dict[float, np.ndarray]:
    """Rolling quantiles (linear interpolation over the window's valid values, as pandas) for several q at
    once from one sort of the windows."""
    x = as_float(x, fr)
    I, W = x.shape
    out = {q: np.full((I, W), np.nan) for q in qs}
    if n == 0:
        frame = _columns(x).expanding(min_periods=1)
        return {q: _unflat(frame.quantile(q).to_numpy().T, fr) for q in qs}
    win = np.lib.stride_tricks.sliding_window_view(x, n, axis=1)
    cnt = count_valid(x, n)[:, n - 1:]
    step = max(1, int(3e6 // max(1, n * win.shape[1])))
    for i in range(0, I, step):
        srt = np.sort(win[i:i + step], axis=2)             # NaNs sort last: valid values come first
        m = cnt[i:i + step]
        for q in qs:
            pos = q * (m - 1)
            lo = np.clip(np.floor(pos), 0, n - 1).astype(np.intp)
            hi = np.clip(lo + 1, 0, n - 1)
            vlo = np.take_along_axis(srt, lo[..., None], axis=2)[..., 0]
            vhi = np.take_along_axis(srt, hi[..., None], axis=2)[..., 0]
            frac = pos - lo
            with np.errstate(all="ignore"):
                val = np.where(frac > 0, vlo + (vhi - vlo) * frac, vlo)
            val[m == 0] = np.nan
            out[q][i:i + step, n - 1:] = val
    return {q: mask(v, fr) for q, v in out.items()}


def ranks(x: Value, windows: Sequence[int], fr: Frame) -> dict[int, np.ndarray]:
    """Percentile rank of the current value in trailing windows of several lengths at once:
    (less + (equal + 1) / 2) / valid count, the average-ties ``rolling(n).rank(pct=True)``; NaN when the
    current value is NaN. One pass over lags 1..max(n)-1 serves every window."""
    x = as_float(x, fr)
    I, W = x.shape
    less = np.zeros((I, W))
    equal = np.zeros((I, W))
    p = prefix(x, fr)
    out: dict[int, np.ndarray] = {}
    todo = sorted(set(windows))
    for k in range(0, max(todo)):
        if k:
            past, cur = x[:, :W - k], x[:, k:]
            less[:, k:] += past < cur
            equal[:, k:] += past == cur
        if k + 1 in todo:
            n = k + 1
            cnt, _ = p.window(n)
            with np.errstate(all="ignore"):
                r = (less + (equal + 2) / 2) / cnt
            r[np.isnan(x)] = np.nan
            out[n] = mask(r, fr)
    return out


# ---------------------------------------------------------------------------------------------- pairs
def pair_rolling(op: str, a: Value, b: Value, n: int, fr: Frame) -> np.ndarray:
    """Cov (ddof=1) or Corr over pairwise-complete rows, ``min_periods=1``."""
    a, b = as_float(a, fr), as_float(b, fr)
    func = "corr" if op == "Corr" else "cov"
    if n == 0:
        res = getattr(_columns(a).expanding(min_periods=1), func)(_columns(b)).to_numpy().T
    else:
        res = getattr(_flat(a).rolling(n, min_periods=1), func)(_flat(b)).to_numpy()
    with np.errstate(all="ignore"):
        return _unflat(np.array(res, dtype=np.float64), fr)


def corr_mask(res: np.ndarray, std_a: np.ndarray, std_b: np.ndarray, fr: Frame) -> np.ndarray:
    """Qlib's Corr: NaN where either input's rolling std is <= 2e-5."""
    res = res.copy()
    res[(np.abs(std_a) <= 2e-5) | (np.abs(std_b) <= 2e-5)] = np.nan
    return res


# ---------------------------------------------------------------------------------------------- positions
class ArgTable:
    """Sparse table of (max, first position of the max) over blocks of 2**j columns, for IdxMax/IdxMin.

    Keys order values the way ``np.argmax`` does: NaN beats everything (argmax returns the first NaN), and
    absent days lose to everything. Ties go to the older column, as argmax returns the first occurrence.
    """

    def __init__(self, x: Value, kind: str, fr: Frame):
        x = as_float(x, fr)
        v = x if kind == "max" else -x
        key = np.where(np.isnan(v), np.inf, v)
        key[fr.absent] = -np.inf
        self.vals = [key]
        self.pos = [np.broadcast_to(np.arange(key.shape[1], dtype=np.int64), key.shape)]
        self.kind = kind

    def level(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        while len(self.vals) <= j:
            h = 1 << (len(self.vals) - 1)
            pv, pp = self.vals[-1], self.pos[-1]
            nv, npos = pv.copy(), np.array(pp)
            right_wins = pv[:, h:] > pv[:, :-h]
            nv[:, :-h] = np.where(right_wins, pv[:, h:], pv[:, :-h])
            npos[:, :-h] = np.where(right_wins, pp[:, h:], pp[:, :-h])
            self.vals.append(nv)
            self.pos.append(npos)
        return self.vals[j], self.pos[j]


def idx_extreme(table: ArgTable, x: Value, n: int, fr: Frame) -> np.ndarray:
    """1-based position of the window's max (IdxMax) or min (IdxMin), counted from the oldest day of the
    (possibly shortened) window; NaN when the window has no valid value."""
    x = as_float(x, fr)
    I, W = x.shape
    cols = np.arange(W, dtype=np.int64)[None, :]
    if n == 0:
        key = table.vals[0]
        run = np.maximum.accumulate(key, axis=1)
        prev = np.full_like(run, -np.inf)
        prev[:, 1:] = run[:, :-1]
        pos = np.maximum.accumulate(np.where(key > prev, cols, -1), axis=1)
        start = fr.first[:, None]
        cnt = count_valid(x, 0)
    else:
        j = int(np.floor(np.log2(n)))
        vals, poss = table.level(j)
        pos = np.zeros((I, W), dtype=np.int64)
        lv, lp = vals[:, :W - n + 1], poss[:, :W - n + 1]
        rv, rp = vals[:, n - (1 << j):W - (1 << j) + 1], poss[:, n - (1 << j):W - (1 << j) + 1]
        pos[:, n - 1:] = np.where(rv > lv, rp, lp)
        start = np.maximum(cols - n + 1, fr.first[:, None])
        cnt = count_valid(x, n)
    pos = np.maximum(pos, start)
    out = (pos - start + 1).astype(np.float64)
    out[cnt == 0] = np.nan
    return mask(out, fr)


# ---------------------------------------------------------------------------------------------- weighted means
def wma(x: Value, n: int, fr: Frame) -> np.ndarray:
    """Qlib's WMA: weights (1..L)/sum over the L rows of the window, then ``np.nanmean(w * x)``, which is
    sum(w * x) / (number of valid values): an extra division that Qlib has and we keep."""
    x = as_float(x, fr)
    W = x.shape[1]
    cols = np.arange(W, dtype=np.float64)[None, :]
    if n == 0:
        length = cols - fr.first[:, None] + 1
    else:
        length = np.minimum(float(n), cols - fr.first[:, None] + 1)
    s = window_sums(x, n)
    scx = window_sums(x * cols, n)
    cnt = count_valid(x, n)
    with np.errstate(all="ignore"):
        weighted = (scx - (cols - length) * s) / (length * (length + 1) / 2)
        out = weighted / cnt
    out[cnt == 0] = np.nan
    return mask(out, fr)


def ema(x: Value, n: int | float, fr: Frame) -> np.ndarray:
    """EMA: int n: ``ewm(span=n).mean()``; 0 < n < 1: ``ewm(alpha=n)``; n == 0: Qlib's expanding variant,
    weights ``a**k`` with ``a = 1 - 2/(1+L)`` (L = days since the first loaded day), normalised, nansum."""
    x = as_float(x, fr)
    if 0 < n < 1:
        return ewm_alpha(x, float(n), fr)
    if n != 0:
        return _unflat(_columns(x).ewm(span=n, min_periods=1).mean().to_numpy().T, fr)
    out = np.full_like(x, np.nan)
    W = x.shape[1]
    filled = np.nan_to_num(x, nan=0.0)
    cnt = count_valid(x, 0)
    # Rows sharing a first loaded day share the weight matrix M[t, s] = a_L**(t-s) / sum_k a_L**k.
    for f in np.unique(fr.first):
        if f >= W:
            continue
        rows = np.nonzero(fr.first == f)[0]
        t = np.arange(W - f)[:, None]
        s = np.arange(W - f)[None, :]
        length = t + 1
        a = 1 - 2 / (1 + length)
        with np.errstate(all="ignore"):
            lag = (t - s).astype(np.float64)
            m = np.where(s <= t, np.power(a, np.where(s <= t, lag, 0.0)), 0.0)
            m /= m.sum(axis=1, keepdims=True)
        out[rows, f:] = filled[rows, f:] @ m.T
    out[cnt == 0] = np.nan
    return mask(out, fr)
