"""Signal quality metrics (Qlib's ``qlib.contrib.eva.alpha``), vectorised over dates.

``calc_ic`` gives per-date Pearson (IC) and Spearman (Rank IC) correlations on pairwise-complete rows, as
``Series.corr`` does; ``calc_long_short_return`` gives per-date top-minus-bottom quantile returns. They avoid
a pandas ``groupby.apply`` per date, which dominated SigAnaRecord's time.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from qexp import QexpError

__all__ = ["calc_ic", "calc_long_short_return", "align_pred_label"]


def align_pred_label(pred: pd.Series, label: pd.Series, date_col: str = "datetime") -> pd.DataFrame:
    """Join ``pred`` and ``label`` on their index (outer, as ``pd.DataFrame({...})`` does) into columns
    ``pred``/``label``; the index must have a ``date_col`` level."""
    for name, s in (("pred", pred), ("label", label)):
        if not isinstance(s, pd.Series):
            raise QexpError(f"{name} must be a pandas Series indexed by (datetime, instrument), "
                            f"got {type(s).__name__}")
        if date_col not in (s.index.names or []):
            raise QexpError(f"{name} index has levels {list(s.index.names)}; it needs a {date_col!r} level")
        if s.index.has_duplicates:
            dup = s.index[s.index.duplicated()][:3].tolist()
            raise QexpError(f"{name} has duplicated index entries, e.g. {dup}; keep one row per "
                            f"(datetime, instrument)")
    df = pd.DataFrame({"pred": pred.astype("float64"), "label": label.astype("float64")})
    return df


def _date_codes(df: pd.DataFrame, date_col: str) -> tuple[np.ndarray, pd.Index]:
    codes, uniques = pd.factorize(df.index.get_level_values(date_col), sort=True)
    return codes, pd.Index(uniques, name=date_col)


def _group_pearson(g: np.ndarray, x: np.ndarray, y: np.ndarray, n_groups: int) -> np.ndarray:
    """Pearson correlation of x and y within each group, on rows where both are finite."""
    ok = ~(np.isnan(x) | np.isnan(y))
    g, x, y = g[ok], x[ok], y[ok]
    n = np.bincount(g, minlength=n_groups).astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = np.bincount(g, x, n_groups) / n
        my = np.bincount(g, y, n_groups) / n
        dx = x - mx[g]
        dy = y - my[g]
        sxy = np.bincount(g, dx * dy, n_groups)
        sxx = np.bincount(g, dx * dx, n_groups)
        syy = np.bincount(g, dy * dy, n_groups)
        r = sxy / np.sqrt(sxx * syy)
    # fewer than 2 points or a constant side give NaN, as pandas does
    r[(n < 2) | (sxx <= 0) | (syy <= 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def _group_rank(g: np.ndarray, x: np.ndarray, n_groups: int) -> np.ndarray:
    """Average ranks (1-based, ties averaged) of x within each group; every x must be finite."""
    order = np.lexsort((x, g))
    gs, xs = g[order], x[order]
    n = len(xs)
    # a new run starts where the group or the value changes; ties share the mean of their positions
    new_run = np.ones(n, dtype=bool)
    if n > 1:
        new_run[1:] = (gs[1:] != gs[:-1]) | (xs[1:] != xs[:-1])
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.append(run_start, n))
    group_start = np.zeros(n_groups, dtype=np.int64)
    counts = np.bincount(gs, minlength=n_groups)
    group_start[1:] = np.cumsum(counts)[:-1]
    pos_in_group = run_start - group_start[gs[run_start]]
    avg_rank = pos_in_group + (run_len + 1) / 2.0
    ranks = np.empty(n, dtype="float64")
    ranks[order] = avg_rank[run_id]
    return ranks


def calc_ic(pred: pd.Series, label: pd.Series, date_col: str = "datetime",
            dropna: bool = False) -> tuple[pd.Series, pd.Series]:
    """Per-date IC (Pearson) and Rank IC (Spearman, average ranks for ties) of ``pred`` against ``label``.

    Rows where either is NaN are left out of that date's correlation. Dates with fewer than two complete
    rows, or a constant side, give NaN (dropped when ``dropna``).
    """
    df = align_pred_label(pred, label, date_col)
    g, dates = _date_codes(df, date_col)
    x, y = df["pred"].to_numpy(), df["label"].to_numpy()
    ic = _group_pearson(g, x, y, len(dates))
    ok = ~(np.isnan(x) | np.isnan(y))
    rx = _group_rank(g[ok], x[ok], len(dates))
    ry = _group_rank(g[ok], y[ok], len(dates))
    ric = _group_pearson(g[ok], rx, ry, len(dates))
    ic_s, ric_s = pd.Series(ic, index=dates), pd.Series(ric, index=dates)
    if dropna:
        return ic_s.dropna(), ric_s.dropna()
    return ic_s, ric_s


def calc_long_short_return(pred: pd.Series, label: pd.Series, date_col: str = "datetime", quantile: float = 0.2,
                           dropna: bool = False) -> tuple[pd.Series, pd.Series]:
    """Per date: ``(mean label of the top k by pred - mean label of the bottom k) / 2`` and the mean label.

    ``k = int(n * quantile)`` with ``n`` the rows of that date (NaN preds count in ``n`` but are never picked,
    like ``DataFrame.nlargest``); equal preds keep their row order, as ``nlargest(keep="first")`` does.
    """
    if not 0 < quantile <= 0.5:
        raise QexpError(f"quantile must be in (0, 0.5], got {quantile}")
    df = align_pred_label(pred, label, date_col)
    if dropna:
        df = df.dropna()
    g, dates = _date_codes(df, date_col)
    ng = len(dates)
    x, y = df["pred"].to_numpy(), df["label"].to_numpy()
    n = np.bincount(g, minlength=ng)
    k = (n * quantile).astype(np.int64)
    pos = np.arange(len(x))
    nan_x = np.isnan(x)

    def side_mean(sign: float) -> np.ndarray:
        # sort by date, NaN preds last, then by pred (desc for the top, asc for the bottom), then row order
        order = np.lexsort((pos, np.where(nan_x, 0.0, -sign * x), nan_x, g))
        gs = g[order]
        starts = np.zeros(ng, dtype=np.int64)
        starts[1:] = np.cumsum(n)[:-1]
        rank = np.arange(len(order)) - starts[gs]
        pick = (rank < k[gs]) & ~nan_x[order]
        yy = y[order]
        pick &= ~np.isnan(yy)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(gs[pick], yy[pick], ng) / np.bincount(gs[pick], minlength=ng)

    long_r = side_mean(1.0)
    short_r = side_mean(-1.0)
    ok = ~np.isnan(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.bincount(g[ok], y[ok], ng) / np.bincount(g[ok], minlength=ng)
    return pd.Series((long_r - short_r) / 2, index=dates), pd.Series(avg, index=dates)
