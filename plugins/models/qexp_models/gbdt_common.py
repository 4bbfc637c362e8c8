"""What the XGBoost, CatBoost and DoubleEnsemble models share: the learn matrices of train/valid, the
per-iteration metric points for the recorder, and one error type for parameters a library rejects."""
from __future__ import annotations

import time
import warnings
from typing import Any, NamedTuple

import numpy as np

from ._data import has_segment, learn_data, require_segment


class Segments(NamedTuple):
    """Learn data of ``train`` (and ``valid`` when the dataset has it) as float32 matrices."""

    x_train: np.ndarray
    y_train: np.ndarray
    w_train: np.ndarray | None
    x_valid: np.ndarray | None
    y_valid: np.ndarray | None
    w_valid: np.ndarray | None
    feature_names: list[str]


def learn_segments(dataset: Any, model: str, reweighter: Any = None, rounds: int | None = None) -> Segments:
    """``train`` and, when present, ``valid``; without ``valid`` a warning says no early stopping happens."""
    require_segment(dataset, "train", model)
    train, w_train = learn_data(dataset, "train", model, reweighter)
    names = [str(c) for c in train.frame["feature"].columns]
    if not has_segment(dataset, "valid"):
        more = f"all {rounds} rounds " if rounds else ""
        warnings.warn(f"{model}: the dataset has no 'valid' segment, so it trains {more}without early stopping; "
                      f"add a valid segment to stop early", stacklevel=3)
        return Segments(_f32(train.x), train.y, w_train, None, None, None, names)
    valid, w_valid = learn_data(dataset, "valid", model, reweighter)
    if valid.x.shape[1] != train.x.shape[1]:
        raise ValueError(f"{model}: 'train' has {train.x.shape[1]} features but 'valid' has {valid.x.shape[1]}")
    return Segments(_f32(train.x), train.y, w_train, _f32(valid.x), valid.y, w_valid, names)


def _f32(x: np.ndarray) -> np.ndarray:
    # the handlers give float32 features; the libraries bin float32 exactly as Qlib's DataFrame input
    return np.ascontiguousarray(x, dtype=np.float32) if x.dtype != np.float32 else np.ascontiguousarray(x)


def metric_points(evals_result: dict, times: list[int], suffix: str = "") -> list[tuple[str, float, int, int]]:
    """``(f"{metric}.{set}{suffix}", value, timestamp_ms, step)`` per iteration; ``@`` becomes ``_`` as in
    Qlib's keys (``ndcg@5.valid`` -> ``ndcg_5.valid``)."""
    now = int(time.time() * 1000)
    points = []
    for set_name, metrics in evals_result.items():
        for metric, values in metrics.items():
            key = f"{metric}.{set_name}{suffix}".replace("@", "_")
            for step, value in enumerate(values):
                points.append((key, float(value), times[step] if step < len(times) else now, step))
    return points


def check_positive_int(value: Any, name: str, model: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{model}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def rejected(model: str, library: str, exc: BaseException) -> ValueError:
    """A library's parameter error as one clear line (its messages span many lines of C++ context)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    msg = next((ln for ln in lines if "unknown" in ln.lower() or "invalid" in ln.lower()), lines[0] if lines else "")
    return ValueError(f"{model}: {library} rejected the parameters: {msg} (check the model kwargs in the config)")
