"""Processors: Qlib's learn/infer transforms (``qlib/data/dataset/processor.py``) with the same formulas.

A processor is fitted on a frame (``fit(df)``; the fit-window processors use only rows in
``[fit_start_time, fit_end_time]``) and then applied (``proc(df) -> df``; it may change ``df`` in place, the
handler copies first unless :meth:`Processor.readonly`). Cross-sectional processors work per datetime with
vectorised ``groupby(...).transform``, never a Python loop over days.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from qexp.ext import ConfigError

from .frame import fetch_df_by_index, get_group_columns, to_timestamp
from .serial import Serializable

EPS = 1e-12
# MAD -> standard deviation of a normal distribution
MAD_TO_STD = 1.4826
# Qlib's CSRankNorm scale (close to sqrt(12) = 3.4641, which makes the uniform rank unit-variance)
RANK_SCALE = 3.46


class Processor(Serializable):
    """Base class: ``fit(df)`` learns statistics, ``__call__(df)`` transforms."""

    def fit(self, df: pd.DataFrame | None = None) -> None:
        """Learn what the transform needs (most processors need nothing)."""

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(df)")

    def is_for_infer(self) -> bool:
        """False for processors that only make sense on learning data (they drop rows by label)."""
        return True

    def readonly(self) -> bool:
        """True when ``__call__`` never changes its input, so the handler can skip a defensive copy."""
        return False

    def config(self, recursive: bool = False, **kwargs: Any) -> None:
        """Also accepts ``fit_start_time`` / ``fit_end_time`` for processors that have them."""
        for key in ("fit_start_time", "fit_end_time"):
            if key in kwargs:
                value = kwargs.pop(key)
                if hasattr(self, key):
                    setattr(self, key, value)
        super().config(recursive=recursive, **kwargs)

    def __repr__(self) -> str:
        public = {k: v for k, v in self.__dict__.items() if not k.startswith("_") and not _is_fitted_attr(k)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in public.items())})"


def _is_fitted_attr(name: str) -> bool:
    return name in {"mean_train", "std_train", "min_val", "max_val", "ignore", "cols"}


def _columns_block(df: pd.DataFrame, cols: pd.Index) -> np.ndarray:
    """A writable copy of ``df[cols]`` laid out column-major: shape ``(n_cols, n_rows)``, C-contiguous.

    pandas stores a frame's block as ``(n_cols, n_rows)``, so this is one memcpy (or one row gather) of it,
    and per-column statistics and broadcasts then run over contiguous memory; float32 is kept when every
    selected column is float32.
    """
    pos = df.columns.get_indexer(cols)
    dtypes = df.dtypes.iloc[pos]
    dtype = np.float32 if all(dt == np.float32 for dt in dtypes) else np.float64
    if len(set(df.dtypes)) == 1:
        full_t = df.to_numpy(dtype=dtype).T  # a view of the single block when no cast is needed
        if len(pos) == df.shape[1] and (pos == np.arange(df.shape[1])).all():
            return np.array(full_t, dtype=dtype, order="C", copy=True)
        return np.take(full_t, pos, axis=0)
    return np.array(df.iloc[:, pos].to_numpy(dtype=dtype).T, dtype=dtype, order="C", copy=True)


def _assign(df: pd.DataFrame, cols: pd.Index, block: np.ndarray) -> pd.DataFrame:
    """``df[cols] = block.T`` for a column-major ``block``; when ``cols`` is every column the block becomes
    the new frame's storage without a copy."""
    if len(cols) == len(df.columns) and cols.equals(df.columns):
        return pd.DataFrame(block.T, index=df.index, columns=df.columns, copy=False)
    # replace the columns (not .loc, which would try to keep the old dtype)
    df[cols] = block.T
    return df


def _assign_frame(df: pd.DataFrame, cols: pd.Index, values: pd.DataFrame) -> pd.DataFrame:
    """``df[cols] = values`` for a result frame of pandas group statistics (computed in float64); stored as
    float32 when the inputs were float32: the frames are large and the raw data carries float32 precision."""
    out = values.to_numpy()
    if out.dtype == np.float64 and all(dt == np.float32 for dt in df.dtypes.loc[cols]):
        out = out.astype(np.float32)
    return _assign(df, cols, np.ascontiguousarray(out.T))


def _datetime_groupby(frame: pd.DataFrame) -> Any:
    if "datetime" not in (frame.index.names or []):
        raise KeyError("cross-sectional processors need a 'datetime' index level; the index levels are "
                       f"{list(frame.index.names)}")
    return frame.groupby(level="datetime", sort=False, group_keys=False)


def _fit_frame(df: pd.DataFrame, start: Any, end: Any) -> pd.DataFrame:
    out = fetch_df_by_index(df, slice(to_timestamp(start), to_timestamp(end)), level="datetime")
    if len(out) == 0:
        raise ValueError(f"no rows in the fit window [{start}, {end}]; the data spans "
                         f"{_span(df)}. Set fit_start_time/fit_end_time inside the data range.")
    return out


def _span(df: pd.DataFrame) -> str:
    try:
        dt = df.index.get_level_values("datetime")
        return f"{dt.min().date()}..{dt.max().date()}" if len(dt) else "no rows"
    except (KeyError, AttributeError):
        return "an unknown range"


class DropnaProcessor(Processor):
    """Drop rows with a NaN in any column of ``fields_group`` (all columns when None)."""

    def __init__(self, fields_group: str | None = None):
        self.fields_group = fields_group

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.dropna(subset=get_group_columns(df, self.fields_group))

    def readonly(self) -> bool:
        return True


class DropnaLabel(DropnaProcessor):
    """Drop rows whose label is NaN; for learning data only."""

    def __init__(self, fields_group: str = "label"):
        super().__init__(fields_group=fields_group)

    def is_for_infer(self) -> bool:
        return False


class DropCol(Processor):
    """Drop the columns named in ``col_list`` (matched on the last column level)."""

    def __init__(self, col_list: Sequence[str] = ()):
        self.col_list = list(col_list)

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        names = df.columns.get_level_values(-1) if isinstance(df.columns, pd.MultiIndex) else df.columns
        return df.loc[:, ~names.isin(self.col_list)]

    def readonly(self) -> bool:
        return True


class FilterCol(Processor):
    """Keep the columns of ``fields_group`` named in ``col_list``, plus every column outside the group.

    The original column order is kept (not the order of ``col_list``).
    """

    def __init__(self, fields_group: str = "feature", col_list: Sequence[str] = ()):
        self.fields_group = fields_group
        self.col_list = list(col_list)

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        group_cols = get_group_columns(df, self.fields_group)
        names = df.columns.get_level_values(-1)
        group_names = group_cols.get_level_values(-1)
        # Qlib matches on names: keep names outside the group, plus the listed ones
        keep = set(names.difference(group_names)) | set(self.col_list)
        return df.loc[:, names.isin(list(keep))]

    def readonly(self) -> bool:
        return True


class TanhProcess(Processor):
    """``tanh(x - 1)`` on every column whose name does not contain ``LABEL`` (denoising)."""

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        names = df.columns.get_level_values(-1).astype(str)
        cols = df.columns[~names.str.contains("LABEL")]
        x = _columns_block(df, cols)
        x -= 1
        return _assign(df, cols, np.tanh(x, out=x))


class ProcessInf(Processor):
    """Replace ``±inf`` by the mean of that column's finite values on the same datetime."""

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        has_inf = np.isinf(df.to_numpy()).any(axis=0) if len(set(df.dtypes)) == 1 \
            else np.array([np.isinf(df.iloc[:, i].to_numpy()).any() for i in range(df.shape[1])])
        if not has_inf.any():
            return df
        cols = df.columns[has_inf]
        block = _columns_block(df, cols)
        inf = np.isinf(block)
        # mean over the date's non-inf, non-NaN values (NaN when there is none)
        finite = pd.DataFrame(np.where(inf, np.nan, block).T, index=df.index, columns=cols, copy=False)
        means = _datetime_groupby(finite).transform("mean").to_numpy().T
        block[inf] = means[inf]
        return _assign(df, cols, block)


class Fillna(Processor):
    """``fillna(fill_value)`` on ``fields_group`` (all columns when None; Qlib's Alpha360 default fills the
    label too)."""

    def __init__(self, fields_group: str | None = None, fill_value: float = 0):
        self.fields_group = fields_group
        self.fill_value = fill_value

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = get_group_columns(df, self.fields_group)
        block = _columns_block(df, cols)
        np.copyto(block, np.asarray(self.fill_value, dtype=block.dtype), where=np.isnan(block))
        return _assign(df, cols, block)


class CSZFillna(Processor):
    """Per datetime, fill NaN with that date's column mean."""

    def __init__(self, fields_group: str | None = None):
        self.fields_group = fields_group

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = get_group_columns(df, self.fields_group)
        sub = df.loc[:, cols]
        means = _datetime_groupby(sub).transform("mean")
        return _assign_frame(df, cols, sub.fillna(means))


class _FitWindowProcessor(Processor):
    """A processor fitted on rows in ``[fit_start_time, fit_end_time]`` (Qlib injects both from the handler)."""

    def __init__(self, fit_start_time: Any, fit_end_time: Any, fields_group: str | None = None):
        self.fit_start_time = to_timestamp(fit_start_time)
        self.fit_end_time = to_timestamp(fit_end_time)
        self.fields_group = fields_group

    def _fit_values(self, df: pd.DataFrame) -> np.ndarray:
        """The fit window's values of the group, column-major ``(n_cols, n_rows)``."""
        frame = _fit_frame(df, self.fit_start_time, self.fit_end_time)
        self.cols = get_group_columns(frame, self.fields_group)
        return _columns_block(frame, self.cols)

    def _require_fitted(self) -> None:
        if not hasattr(self, "cols"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(df) before transforming "
                               "(the handler does this when it is built)")


class MinMaxNorm(_FitWindowProcessor):
    """``(x - min) / (max - min)`` with min/max from the fit window; constant columns are left as they are."""

    def fit(self, df: pd.DataFrame | None = None) -> None:
        x = self._fit_values(df)
        self.min_val = np.nanmin(x, axis=1)
        self.max_val = np.nanmax(x, axis=1)
        self.ignore = self.min_val == self.max_val
        # identity on ignored columns: (x - 0) / (1 - 0)
        self.min_val[self.ignore] = 0
        self.max_val[self.ignore] = 1

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        self._require_fitted()
        x = _columns_block(df, self.cols)
        x -= self.min_val[:, None]
        x /= (self.max_val - self.min_val)[:, None]
        return _assign(df, self.cols, x)


class ZScoreNorm(_FitWindowProcessor):
    """``(x - mean) / std`` with ``nanmean``/``nanstd`` (ddof=0) from the fit window; std==0 columns untouched."""

    def fit(self, df: pd.DataFrame | None = None) -> None:
        x = self._fit_values(df)
        self.mean_train = np.nanmean(x, axis=1)
        self.std_train = np.nanstd(x, axis=1)
        self.ignore = self.std_train == 0
        self.std_train[self.ignore] = 1
        self.mean_train[self.ignore] = 0

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        self._require_fitted()
        x = _columns_block(df, self.cols)
        x -= self.mean_train[:, None]
        x /= self.std_train[:, None]
        return _assign(df, self.cols, x)


class RobustZScoreNorm(_FitWindowProcessor):
    """``(x - median) / ((median|x - median| + 1e-12) * 1.4826)``, fitted on the fit window, then clipped to
    ``[-3, 3]`` when ``clip_outlier``. NaN stays NaN."""

    def __init__(self, fit_start_time: Any, fit_end_time: Any, fields_group: str | None = None,
                 clip_outlier: bool = True):
        super().__init__(fit_start_time, fit_end_time, fields_group)
        self.clip_outlier = clip_outlier

    def fit(self, df: pd.DataFrame | None = None) -> None:
        x = self._fit_values(df)
        self.mean_train = np.nanmedian(x, axis=1)
        x -= self.mean_train[:, None]
        self.std_train = np.nanmedian(np.abs(x, out=x), axis=1)
        self.std_train += EPS
        self.std_train *= MAD_TO_STD

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        self._require_fitted()
        x = _columns_block(df, self.cols)
        x -= self.mean_train[:, None]
        x /= self.std_train[:, None]
        if self.clip_outlier:
            np.clip(x, -3, 3, out=x)
        return _assign(df, self.cols, x)


class CSZScoreNorm(Processor):
    """Per datetime: ``(x - mean) / std`` (pandas std, ddof=1), or with ``method="robust"``
    ``clip((x - median) / (MAD * 1.4826), -3, 3)``."""

    METHODS = ("zscore", "robust")

    def __init__(self, fields_group: str | list[str] | None = None, method: str = "zscore"):
        if method not in self.METHODS:
            raise ConfigError(f"CSZScoreNorm method must be one of {list(self.METHODS)}, got {method!r}")
        self.fields_group = fields_group
        self.method = method

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        groups = self.fields_group if isinstance(self.fields_group, list) else [self.fields_group]
        for group in groups:
            cols = get_group_columns(df, group)
            sub = df.loc[:, cols]
            gb = _datetime_groupby(sub)
            if self.method == "zscore":
                out = (sub - gb.transform("mean")) / gb.transform("std")
            else:
                centred = sub - gb.transform("median")
                mad = _datetime_groupby(centred.abs()).transform("median")
                out = (centred / mad / MAD_TO_STD).clip(-3, 3)
            df = _assign_frame(df, cols, out)
        return df


class CSRankNorm(Processor):
    """Per datetime: ``(rank(pct=True) - 0.5) * 3.46`` (average ties, NaN excluded and kept)."""

    def __init__(self, fields_group: str | None = None):
        self.fields_group = fields_group

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = get_group_columns(df, self.fields_group)
        ranks = _datetime_groupby(df.loc[:, cols]).rank(pct=True)
        ranks -= 0.5
        ranks *= RANK_SCALE
        return _assign_frame(df, cols, ranks)


PROCESSORS: tuple[type[Processor], ...] = (
    DropnaProcessor, DropnaLabel, DropCol, FilterCol, TanhProcess, ProcessInf, Fillna, CSZFillna,
    MinMaxNorm, ZScoreNorm, RobustZScoreNorm, CSZScoreNorm, CSRankNorm,
)
