"""Sequence inputs for the RNN models, from either dataset kind, as ``[N, steps, d_feat]`` float32 arrays.

- A ``DatasetH`` gives a frame of flat features (Alpha360: 6 blocks of 60 lags); they are reshaped as Qlib
  does, ``x.reshape(N, d_feat, -1).transpose(0, 2, 1)``.
- A ``TSDatasetH`` gives a sampler of ``[steps, F + 1]`` windows whose last column is the label; windows are
  read in chunks (whole index arrays, no Python work per sample), padding is forward- then
  backward-filled along time (Qlib's ``fillna_type="ffill+bfill"``), and the label is the last step's.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ._data import check_frame, label_vector, require_segment

FLAT, TS = "DatasetH", "TSDatasetH"
_CHUNK = 32768  # windows read per sampler call: bounds the temporary memory, keeps calls few


class Steps(NamedTuple):
    x: np.ndarray            # [N, T, d_feat] float32, C-contiguous
    y: np.ndarray | None     # [N] float32 labels (NaN allowed), None when not asked for
    index: pd.Index          # (datetime, instrument) of each row
    kind: str                # FLAT or TS


def is_sampler(obj: Any) -> bool:
    """A TSDatasetH sampler (windows by integer index) rather than a DatasetH frame."""
    return not isinstance(obj, pd.DataFrame) and hasattr(obj, "get_index") and hasattr(obj, "__getitem__")


def load(dataset: Any, segment: Any, d_feat: int, data_key: str, with_label: bool, model: str) -> Steps:
    """The ``[N, T, d_feat]`` inputs (and labels) of ``segment``, whichever dataset kind gives them."""
    require_segment(dataset, segment, model)
    col_set: Any = ["feature", "label"]
    data = dataset.prepare(segment, col_set=col_set, data_key=data_key)
    if is_sampler(data):
        return _from_sampler(data, segment, d_feat, with_label, model)
    if not with_label:
        # the infer data of a test segment may lack labels entirely; ask for features only
        data = dataset.prepare(segment, col_set="feature", data_key=data_key)
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"{model}: dataset.prepare({segment!r}) returned {type(data).__name__}")
        if data.empty:
            raise ValueError(f"{model}: the '{segment}' segment has no rows; check the dataset's segments")
        return Steps(flat_steps(data.to_numpy(dtype=np.float32), d_feat, segment, model), None, data.index, FLAT)
    check_frame(data, str(segment), model)
    y = label_vector(data, str(segment), model).astype(np.float32)
    x = flat_steps(data["feature"].to_numpy(dtype=np.float32), d_feat, segment, model)
    return Steps(x, y, data.index, FLAT)


def flat_steps(x: np.ndarray, d_feat: int, segment: Any, model: str) -> np.ndarray:
    """Qlib's reshape of flat features to ``[N, T, d_feat]``; a clear error when ``d_feat`` does not divide."""
    n, f = x.shape
    if f == 0 or f % d_feat:
        raise ValueError(f"{model}: d_feat={d_feat} does not divide the {f} feature columns of '{segment}'. "
                         f"With a DatasetH the features are read as d_feat blocks of equal length (Alpha360: "
                         f"d_feat=6, 6 blocks of 60 lags); set d_feat to the number of blocks")
    return np.ascontiguousarray(x.reshape(n, d_feat, f // d_feat).transpose(0, 2, 1))


def _from_sampler(sampler: Any, segment: Any, d_feat: int, with_label: bool, model: str) -> Steps:
    n = len(sampler)
    if n == 0 or getattr(sampler, "empty", False):
        raise ValueError(f"{model}: the '{segment}' segment has no windows; check the dataset's segments")
    first = np.asarray(sampler[np.arange(min(n, 1))], dtype=np.float32)
    if first.ndim != 3 or first.shape[2] < 2:
        raise ValueError(f"{model}: the TSDatasetH sampler of '{segment}' gave windows of shape {first.shape[1:]}; "
                         f"expected [step_len, features + label]")
    steps, cols = first.shape[1], first.shape[2]
    n_feat = cols - 1
    if n_feat != d_feat:
        raise ValueError(f"{model}: d_feat={d_feat} but the TSDatasetH windows of '{segment}' have {n_feat} "
                         f"features per step; set d_feat={n_feat}")
    # Qlib's _ts models read windows with padding rows replaced by the nearest real row of the stock;
    # a sampler without config() gets the same fill on values instead
    fill_values = not hasattr(sampler, "config")
    if not fill_values:
        sampler.config(fillna_type="ffill+bfill")
    x = np.empty((n, steps, n_feat), dtype=np.float32)
    y = np.empty(n, dtype=np.float32)
    for start in range(0, n, _CHUNK):
        idx = np.arange(start, min(n, start + _CHUNK))
        raw = np.asarray(sampler[idx], dtype=np.float32)
        y[idx] = raw[:, -1, -1]  # the label before filling: a missing label must stay missing
        x[idx] = ffill_bfill(raw[:, :, :-1]) if fill_values else raw[:, :, :-1]
    index = sampler.get_index()
    if with_label and np.isnan(y).all():
        raise ValueError(f"{model}: every label in '{segment}' is NaN ({n} windows); the label expression needs "
                         f"future prices, so the segment may end too late for the data")
    return Steps(x, y if with_label else None, index, TS)


def ffill_bfill(w: np.ndarray) -> np.ndarray:
    """Fill NaN along the time axis of ``[B, T, C]`` windows: forward, then backward (Qlib's 'ffill+bfill')."""
    mask = np.isnan(w)
    if not mask.any():
        return w
    t = np.arange(w.shape[1])[None, :, None]
    # index of the last valid step at or before t; 0 where there is none yet (bfill handles those)
    idx = np.maximum.accumulate(np.where(mask, 0, t), axis=1)
    w = np.take_along_axis(w, idx, axis=1)
    mask = np.isnan(w)
    if mask.any():
        rev = w[:, ::-1]
        idx = np.maximum.accumulate(np.where(np.isnan(rev), 0, t), axis=1)
        w = np.take_along_axis(rev, idx, axis=1)[:, ::-1]
    return np.ascontiguousarray(w)
