"""Predictions turned into per-trading-day score rows, with the one-day lag applied.

The trade on day T uses the scores dated in ``[T-1, T)`` (T-1 being the previous trading day of the data
calendar), as Qlib's ``get_step_time(step, shift=1)``. The first backtest day therefore trades only when the
predictions include the trading day before the backtest starts; when they start on the first backtest day
(the default of PortAnaRecord) nothing trades on day one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from qexp import QexpError

from .market import level_indexer

__all__ = ["SignalMatrix", "to_score_series", "build_signal_matrix"]


def to_score_series(signal: object, what: str = "signal") -> pd.Series:
    """The first column of a prediction frame (or the Series itself), indexed ``(datetime, instrument)``.

    Duplicated ``(datetime, instrument)`` entries are an error: which one to trade on would be arbitrary.
    """
    if isinstance(signal, pd.DataFrame):
        if signal.shape[1] == 0:
            raise QexpError(f"{what} is a DataFrame without columns; it needs a score column")
        s = signal.iloc[:, 0]
    elif isinstance(signal, pd.Series):
        s = signal
    else:
        raise QexpError(f"{what} must be a pandas Series or DataFrame of scores indexed by (datetime, instrument), "
                        f"got {type(signal).__name__}. In a PortAnaRecord config use signal: '<PRED>'")
    if s.index.nlevels != 2:
        raise QexpError(f"{what} must be indexed by (datetime, instrument); its index has {s.index.nlevels} level(s)")
    names = list(s.index.names)
    if names == ["instrument", "datetime"]:
        s = s.swaplevel()
    elif names != ["datetime", "instrument"]:
        if not pd.api.types.is_datetime64_any_dtype(s.index.get_level_values(0)):
            s = s.swaplevel()
        s = s.rename_axis(["datetime", "instrument"])
    if s.index.has_duplicates:
        dup = s.index[s.index.duplicated()].unique()[:3].tolist()
        raise QexpError(f"{what} has {int(s.index.duplicated().sum())} duplicated (datetime, instrument) entries, "
                        f"e.g. {dup}; keep one score per instrument and day (e.g. "
                        f"pred[~pred.index.duplicated(keep='last')])")
    try:
        s = pd.to_numeric(s).astype("float64")
    except (TypeError, ValueError) as exc:
        raise QexpError(f"{what} scores must be numbers: {exc}") from exc
    return s


@dataclass
class SignalMatrix:
    """Scores per backtest day (rows) and instrument (columns, the exchange's order)."""

    score: np.ndarray       # float64, NaN where the instrument has no (or a NaN) score
    present: np.ndarray     # bool: the instrument appears in that day's predictions
    has_signal: np.ndarray  # bool per day: any prediction at all in the window (else no trading)


def build_signal_matrix(signal: pd.Series, calendar: pd.DatetimeIndex, start_pos: int, n_days: int,
                        codes: pd.Index) -> SignalMatrix:
    """Map each prediction dated ``d`` to the day that trades on it: the first calendar day after ``d``.

    ``calendar`` is the full data calendar, ``start_pos`` the position of the first backtest day in it.
    Several prediction dates falling in one window keep, per instrument, the last non-NaN score (as Qlib's
    ``resam_ts_data(method="last")``).
    """
    n_inst = len(codes)
    score = np.full((n_days, n_inst), np.nan)
    present = np.zeros((n_days, n_inst), dtype=bool)
    dates = pd.DatetimeIndex(signal.index.get_level_values(0))
    step = np.searchsorted(calendar.values, dates.values, side="right") - start_pos
    inst = level_indexer(signal.index, 1, codes)
    ok = (step >= 0) & (step < n_days) & (inst >= 0)
    step, inst = step[ok], inst[ok]
    values = signal.to_numpy()[ok]
    present[step, inst] = True
    # the latest non-NaN score of a window wins (numpy does not promise which of repeated indices is written)
    order = np.argsort(dates.values[ok], kind="stable")
    o = order[~np.isnan(values[order])][::-1]
    _, first = np.unique(step[o] * n_inst + inst[o], return_index=True)
    o = o[first]
    score[step[o], inst[o]] = values[o]
    return SignalMatrix(score=score, present=present, has_signal=np.asarray(present.any(axis=1)))
