"""What the gradient-boosting models share: the learn matrices of train/valid (XGBoost, CatBoost,
DoubleEnsemble), the per-iteration metric points and their timestamps for the recorder (LightGBM too),
Qlib's evals_result shape, and one clear line for what a library refuses."""
from __future__ import annotations

import re
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


def qlib_evals_shape(evals_result: dict) -> None:
    """In place, as Qlib's XGBModel/CatBoostModel leave it: ``evals_result["train"/"valid"]`` = the list of
    the first metric (``{"train": [...], "valid": [...]}``) instead of the library's ``{metric: [...]}``."""
    for key in ("train", "valid"):
        metrics = evals_result.get(key)
        if isinstance(metrics, dict) and metrics:
            evals_result[key] = list(next(iter(metrics.values())))


def iteration_times(library: str, out: list[int]) -> Any:
    """A training callback of ``library`` (``"lightgbm"``, ``"xgboost"``, ``"catboost"``) that appends the
    wall-clock time (ms) at the end of each iteration to ``out``: the timestamps of the metric points."""
    def stamp() -> None:
        out.append(int(time.time() * 1000))

    if library == "lightgbm":
        def callback(env: Any) -> None:
            stamp()
        callback.order = 25  # type: ignore[attr-defined]  # after record_evaluation (20), before early stopping (30)
        return callback
    if library == "xgboost":
        import xgboost

        class XGBTimes(xgboost.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                stamp()
                return False  # go on training
        return XGBTimes()
    if library == "catboost":
        class CatBoostTimes:
            def after_iteration(self, info: Any) -> bool:
                stamp()
                return True  # go on training
        return CatBoostTimes()
    raise ValueError(f"iteration_times: unknown library {library!r}")


# words of a library's error about the data it was given (not about its parameters)
_DATA_WORDS = ("inf", "infinity", "nan", "input data", "label", "too large")


def is_data_problem(message: str) -> bool:
    """Whether a library's error message is about the data (``inf``, NaN labels, shapes), not parameters."""
    words = set(re.findall(r"[a-z]+", message.lower()))
    return any((w in words) if " " not in w else (w in message.lower()) for w in _DATA_WORDS)


def rejected(model: str, library: str, exc: BaseException) -> ValueError:
    """A library's error as one clear line (its messages span many lines of C++ context): a data problem
    says so and names the fix, anything else points at the model kwargs."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("[bt]")]
    lines = [ln for ln in lines if ln.lower() != "stack trace:"]
    msg = next((ln for ln in lines if "unknown" in ln.lower() or "invalid" in ln.lower()), lines[0] if lines else "")
    msg = re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*(Check failed: \w+:\s*)?", "", msg)  # xgboost's [time] file:line:
    if is_data_problem(msg):
        return ValueError(f"{model}: {library} refused the data: {msg} (check the dataset's features and labels)")
    return ValueError(f"{model}: {library} rejected the parameters: {msg} (check the model kwargs in the config)")
