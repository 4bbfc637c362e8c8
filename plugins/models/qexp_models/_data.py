"""What the models need from a dataset, through its public ``prepare`` contract only (models never import
the data plugin): segment checks, learn matrices with clear errors, and infer features."""
from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

# DataHandlerLP's data keys (Qlib's DK_L / DK_I): models learn on processed "learn" data and predict on
# "infer" data, whose rows are never dropped by learn-only processors such as DropnaLabel.
DK_L = "learn"
DK_I = "infer"


class LearnData(NamedTuple):
    """A segment's learn data as matrices: ``x`` [N, F], ``y`` [N], and the frame it came from."""

    x: np.ndarray
    y: np.ndarray
    frame: pd.DataFrame


def segment_names(dataset: Any) -> list[str] | None:
    """The dataset's segment names (``DatasetH.segments``), or None when the dataset does not say."""
    segments = getattr(dataset, "segments", None)
    if isinstance(segments, dict):
        return list(segments)
    return None


def has_segment(dataset: Any, segment: str) -> bool:
    names = segment_names(dataset)
    return names is None or segment in names


def require_segment(dataset: Any, segment: str | Any, model: str) -> None:
    """A clear error when a named segment is missing (Qlib fails with an opaque NotImplementedError)."""
    if not isinstance(segment, str):
        return  # a slice or index of dates: prepare() checks it
    names = segment_names(dataset)
    if names is not None and segment not in names:
        raise ValueError(f"{model} needs a '{segment}' segment, but the dataset has only "
                         f"{', '.join(repr(n) for n in names) or 'none'}; add it under dataset.kwargs.segments, "
                         f"e.g. {segment}: [2013-01-01, 2015-12-31]")


def learn_data(dataset: Any, segment: str, model: str, reweighter: Any = None,
               drop_nan_labels: bool = True) -> tuple[LearnData, np.ndarray | None]:
    """Features and the single label of ``segment``'s learn data, and the reweighter's weights.

    Rows with a NaN label are dropped (with a warning) unless ``drop_nan_labels`` is False: Qlib's configs
    drop them with ``DropnaLabel``; without it they would poison the loss.
    """
    require_segment(dataset, segment, model)
    df = dataset.prepare(segment, col_set=["feature", "label"], data_key=DK_L)
    check_frame(df, segment, model)
    y = label_vector(df, segment, model)
    if drop_nan_labels:
        keep = ~np.isnan(y)
        if not keep.all():
            warnings.warn(f"{model}: dropped {int((~keep).sum())} of {len(y)} rows of '{segment}' whose label is "
                          f"NaN (add DropnaLabel to the handler's learn_processors to drop them there)",
                          stacklevel=3)
            df = df[keep]
            y = y[keep]
    weights = None
    if reweighter is not None:
        if not hasattr(reweighter, "reweight"):
            raise TypeError(f"{model}: reweighter must have a reweight(df) method returning one weight per row, "
                            f"got {type(reweighter).__name__}")
        weights = np.asarray(reweighter.reweight(df), dtype=np.float64).reshape(-1)
        if len(weights) != len(df):
            raise ValueError(f"{model}: the reweighter returned {len(weights)} weights for {len(df)} rows of "
                             f"'{segment}'")
    return LearnData(df["feature"].to_numpy(), y, df), weights


def check_frame(df: Any, segment: str, model: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{model}: dataset.prepare('{segment}') returned {type(df).__name__}, not a DataFrame; "
                        f"use a DatasetH (a TSDatasetH gives windows, which {model} does not take)")
    if df.empty:
        raise ValueError(f"{model}: the '{segment}' segment has no rows; check the dataset's segments and the "
                         f"handler's start_time/end_time and instruments")
    groups = set(df.columns.get_level_values(0)) if isinstance(df.columns, pd.MultiIndex) else set()
    missing = {"feature", "label"} - groups
    if missing:
        raise ValueError(f"{model}: the '{segment}' data has no {' or '.join(sorted(missing))} columns; the "
                         f"handler must provide a label (e.g. Alpha158's default label)")


def label_vector(df: pd.DataFrame, segment: str, model: str) -> np.ndarray:
    """The one label column as a float64 vector; several labels or all-NaN labels are clear errors."""
    label = df["label"]
    if label.shape[1] != 1:
        raise ValueError(f"{model} trains on one label, but '{segment}' has {label.shape[1]}: "
                         f"{', '.join(map(str, label.columns))}")
    y = label.iloc[:, 0].to_numpy(dtype=np.float64)
    if np.isnan(y).all():
        raise ValueError(f"{model}: every label in '{segment}' is NaN ({len(y)} rows); the label expression "
                         f"needs future prices, so the segment may end too late for the data, or the label "
                         f"expression is wrong")
    return y


def infer_features(dataset: Any, segment: Any, model: str, n_fitted: int | None = None) -> pd.DataFrame:
    """The feature frame of ``segment``'s infer data; every row of the segment is kept.

    ``n_fitted`` (when given and not 0): the number of features the model was fitted on; a segment with
    another number is a clear error rather than a library's shape error or silently wrong scores.
    """
    require_segment(dataset, segment, model)
    x = dataset.prepare(segment, col_set="feature", data_key=DK_I)
    if not isinstance(x, pd.DataFrame):
        raise TypeError(f"{model}: dataset.prepare({segment!r}) returned {type(x).__name__}, not a DataFrame")
    if x.empty:
        raise ValueError(f"{model}: the '{segment}' segment has no rows to predict; check the dataset's segments")
    if n_fitted and x.shape[1] != n_fitted:
        raise ValueError(f"{model} was fitted on {n_fitted} features but '{segment}' has {x.shape[1]}; predict "
                         f"with the dataset it was fitted on")
    return x


def not_fitted(model: str) -> ValueError:
    return ValueError(f"{model} is not fitted yet: call fit(dataset) first (or load a fitted model with "
                      f"recorder.load_object('params.pkl'))")
