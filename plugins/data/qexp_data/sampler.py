"""``TSDataSampler``: time-series windows over a handler frame without materialising them.

The frame's values are kept once, sorted by (instrument, datetime), with one all-NaN row appended. A
``[n_dates, n_instruments]`` table maps each (date, instrument) to its row (or -1). A sample's window is the
``step_len`` calendar rows ending at its date for its instrument; missing rows (before the data starts,
suspended days, rows dropped by a learn processor) point at the NaN row, after the ``fillna_type`` fill of
the row indices (Qlib's rule: ``"none"``, ``"ffill"`` or ``"ffill+bfill"``). A batch is one fancy-indexing
gather: ``values[index_table[rows, cols]]``.

Sample ``i`` is the ``i``-th row of :meth:`get_index`, the segment's rows sorted by (datetime, instrument).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

FILLNA_TYPES = ("none", "ffill", "ffill+bfill")


def _ffill_indices(ind: np.ndarray) -> np.ndarray:
    """Forward-fill -1 entries along axis 1 with the last valid entry (leading -1 stay)."""
    n = ind.shape[1]
    pos = np.where(ind >= 0, np.arange(n), 0)
    np.maximum.accumulate(pos, axis=1, out=pos)
    return np.take_along_axis(ind, pos, axis=1)


def _bfill_indices(ind: np.ndarray) -> np.ndarray:
    return _ffill_indices(ind[:, ::-1])[:, ::-1]


class TSDataSampler:
    """Windows of ``step_len`` rows for every (datetime, instrument) row of ``data`` in ``[start, end]``.

    ``data`` is indexed ``(datetime, instrument)`` and may start before ``start`` (the history the first
    windows need). ``flt_data`` (one boolean column, same index) keeps only the rows where it is True.
    """

    def __init__(self, data: pd.DataFrame, start: Any, end: Any, step_len: int, fillna_type: str = "none",
                 dtype: Any = np.float32, flt_data: pd.DataFrame | pd.Series | None = None):
        if step_len < 1:
            raise ValueError(f"step_len must be >= 1, got {step_len}")
        if list(data.index.names) != ["datetime", "instrument"]:
            raise ValueError(f"TSDataSampler needs a (datetime, instrument) index, got {list(data.index.names)}")
        self.start = start
        self.end = end
        self.step_len = int(step_len)
        self.fillna_type = fillna_type
        self.columns = data.columns

        index = data.index.remove_unused_levels()
        dt_codes = np.asarray(index.codes[0], dtype=np.int64)
        inst_codes = np.asarray(index.codes[1], dtype=np.int64)
        self.dates = index.levels[0]
        self.instruments = index.levels[1]
        n = len(data)

        # values in (instrument, datetime) order: each instrument's history is one contiguous run of rows
        order = np.lexsort((dt_codes, inst_codes))
        values = data.to_numpy(dtype=dtype if dtype is not None else None)
        self.data_arr = np.empty((n + 1, values.shape[1]), dtype=values.dtype)
        np.take(values, order, axis=0, out=self.data_arr[:n])
        self.data_arr[n] = np.nan
        self.nan_idx = n
        del values

        self.idx_arr = np.full((len(self.dates), len(self.instruments)), -1, dtype=np.int64)
        self.idx_arr[dt_codes[order], inst_codes[order]] = np.arange(n)

        # samples: rows in [start, end] (and where flt_data is True), in (datetime, instrument) order
        lo = 0 if start is None else int(self.dates.searchsorted(pd.Timestamp(start), side="left"))
        hi = len(self.dates) if end is None else int(self.dates.searchsorted(pd.Timestamp(end), side="right"))
        keep = (dt_codes >= lo) & (dt_codes < hi)
        if flt_data is not None:
            flt = flt_data.reindex(data.index)
            flt = flt.iloc[:, 0] if isinstance(flt, pd.DataFrame) else flt
            keep &= flt.fillna(False).to_numpy(dtype=bool)
        rows = np.flatnonzero(keep)
        rows = rows[np.lexsort((inst_codes[rows], dt_codes[rows]))]
        self.sample_rows = dt_codes[rows]
        self.sample_cols = inst_codes[rows]
        self.data_index = data.index[rows]

    # ---- Qlib's interface -----------------------------------------------------------------------
    def get_index(self) -> pd.MultiIndex:
        """The (datetime, instrument) of each sample, in sample order."""
        return self.data_index

    def config(self, **kwargs: Any) -> None:
        """Set attributes, e.g. ``config(fillna_type="ffill+bfill")``."""
        if "fillna_type" in kwargs and kwargs["fillna_type"] not in FILLNA_TYPES:
            raise ValueError(f"fillna_type must be one of {FILLNA_TYPES}, got {kwargs['fillna_type']!r}")
        for k, v in kwargs.items():
            setattr(self, k, v)

    @property
    def empty(self) -> bool:
        return len(self) == 0

    def __len__(self) -> int:
        return len(self.sample_rows)

    def __getitem__(self, idx: Any) -> np.ndarray:
        """``[step_len, n_columns]`` for an int or a ``(datetime, instrument)`` pair; ``[batch, step_len,
        n_columns]`` for a list / array of ints or a slice."""
        if isinstance(idx, (int, np.integer)):
            return self._windows(*self._row_col_of(np.array([idx])))[0]
        if isinstance(idx, tuple):
            return self._windows(*self._row_col_of_pair(idx))[0]
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        if isinstance(idx, (list, np.ndarray)):
            return self._windows(*self._row_col_of(np.asarray(idx, dtype=np.int64)))
        raise TypeError(f"TSDataSampler index must be an int, a (datetime, instrument) pair, a list/array of "
                        f"ints or a slice; got {type(idx).__name__}")

    # ---- internals ------------------------------------------------------------------------------
    def _row_col_of(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"sample index {int(idx[bad][0])} is out of range [0, {n})")
        idx = np.where(idx < 0, idx + n, idx)
        return self.sample_rows[idx], self.sample_cols[idx]

    def _row_col_of_pair(self, pair: tuple) -> tuple[np.ndarray, np.ndarray]:
        date, inst = pair
        i = int(self.dates.searchsorted(pd.Timestamp(date), side="right")) - 1
        if i < 0:
            raise KeyError(f"{date} is before the first date of the data ({self.dates[0]})")
        j = self.instruments.get_indexer([inst])[0]
        if j < 0:
            raise KeyError(f"instrument {inst!r} is not in the data")
        return np.array([i]), np.array([j])

    def _windows(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        offsets = np.arange(-self.step_len + 1, 1)
        win_rows = rows[:, None] + offsets[None, :]
        before_start = win_rows < 0
        ind = self.idx_arr[np.maximum(win_rows, 0), cols[:, None]]
        ind[before_start] = -1
        if self.fillna_type == "ffill":
            ind = _ffill_indices(ind)
        elif self.fillna_type == "ffill+bfill":
            ind = _bfill_indices(_ffill_indices(ind))
        elif self.fillna_type != "none":
            raise ValueError(f"fillna_type must be one of {FILLNA_TYPES}, got {self.fillna_type!r}")
        ind[ind < 0] = self.nan_idx
        return self.data_arr[ind]
