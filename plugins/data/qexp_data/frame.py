"""Row and column selection on handler frames: index ``(datetime, instrument)``, columns ``(group, name)``.

These are Qlib's ``fetch_df_by_index`` / ``fetch_df_by_col`` / ``get_group_columns`` with a fast path: on a
frame sorted by datetime, a datetime range is found by binary search on the index codes and returned as a
positional slice (a view under copy-on-write), not by a MultiIndex ``.loc`` scan.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

CS_ALL = "__all"  # all columns, group level dropped
CS_RAW = "__raw"  # all columns as stored


def to_timestamp(t: Any) -> pd.Timestamp | None:
    """``None`` stays ``None``; anything else becomes a ``pd.Timestamp``."""
    return None if t is None else pd.Timestamp(t)


def level_position(index: pd.Index, level: str | int) -> int:
    """The position of ``level`` in ``index`` (a name or an int)."""
    if isinstance(level, int):
        return level
    names = list(index.names)
    if level not in names:
        raise KeyError(f"index has no level {level!r}; its levels are {names}")
    return names.index(level)


def datetime_bounds(index: pd.MultiIndex, start: Any, end: Any) -> tuple[int, int] | None:
    """Row positions ``[a, b)`` for ``start <= datetime <= end`` when level 0 is datetime and sorted."""
    if not isinstance(index, pd.MultiIndex) or index.names[0] != "datetime":
        return None
    codes = index.codes[0]
    level = index.levels[0]
    if not level.is_monotonic_increasing or len(codes) == 0:
        return None
    # codes are non-decreasing exactly when the frame is sorted by datetime
    if codes[0] > codes[-1]:
        return None
    lo_code = 0 if start is None else level.searchsorted(pd.Timestamp(start), side="left")
    hi_code = len(level) if end is None else level.searchsorted(pd.Timestamp(end), side="right")
    a = int(np.searchsorted(codes, lo_code, side="left"))
    b = int(np.searchsorted(codes, hi_code, side="left"))
    return a, b


def _is_sorted_codes(index: pd.MultiIndex) -> bool:
    codes = index.codes[0]
    return bool(len(codes) < 2 or (np.diff(codes) >= 0).all())


def fetch_df_by_index(df: pd.DataFrame, selector: Any, level: str | int | None = "datetime") -> pd.DataFrame:
    """Rows whose ``level`` matches ``selector`` (a slice is inclusive at both ends, as Qlib's)."""
    if level is None or isinstance(selector, pd.MultiIndex):
        return df.loc[selector]
    if isinstance(selector, slice) and selector == slice(None):
        return df
    pos = level_position(df.index, level)
    if pos == 0 and isinstance(selector, slice) and selector.step is None \
            and isinstance(df.index, pd.MultiIndex) and _is_sorted_codes(df.index):
        bounds = datetime_bounds(df.index, selector.start, selector.stop)
        if bounds is not None:
            return df.iloc[bounds[0]:bounds[1]]
    if not isinstance(df.index, pd.MultiIndex):
        return df.loc[selector]
    idx_slc: list[Any] = [slice(None)] * df.index.nlevels
    idx_slc[pos] = selector
    return df.loc[tuple(idx_slc), :]


def fetch_df_by_col(df: pd.DataFrame, col_set: Any) -> pd.DataFrame:
    """``"__all"``: every column, group level dropped; ``"__raw"``: as stored; a group name: its columns with
    one level; a list of groups: those groups with both levels."""
    if not isinstance(df.columns, pd.MultiIndex) or col_set == CS_RAW:
        return df
    if col_set == CS_ALL:
        return df.droplevel(axis=1, level=0)
    groups = list(dict.fromkeys(df.columns.get_level_values(0)))
    wanted = col_set if isinstance(col_set, (list, tuple)) else [col_set]
    missing = [g for g in wanted if g not in groups]
    if missing:
        raise KeyError(f"column group(s) {missing} not in the data; groups: {groups} "
                       f"(or use '{CS_ALL}' for all columns)")
    return df.loc(axis=1)[col_set]


def get_group_columns(df: pd.DataFrame, group: str | None) -> pd.Index:
    """The columns of ``group`` (with both levels); all columns when ``group`` is None."""
    if group is None:
        return df.columns
    if not isinstance(df.columns, pd.MultiIndex):
        raise KeyError(f"fields_group={group!r} needs (group, name) columns; this frame has one column level")
    mask = df.columns.get_level_values(0) == group
    if not mask.any():
        groups = list(dict.fromkeys(df.columns.get_level_values(0)))
        raise KeyError(f"fields_group {group!r} is not a column group of the data; groups: {groups}")
    return df.columns[mask]
