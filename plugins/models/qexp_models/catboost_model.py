"""``CatBoostModel``: CatBoost gradient boosting, as Qlib's ``qlib.contrib.model.catboost_model.CatBoostModel``.

``CatBoostModel(loss="RMSE", **params)`` trains ``catboost.CatBoost({"loss_function": loss, **params})`` on the
learn data of ``train`` with ``valid`` as the eval set and ``use_best_model=True`` (the model keeps the trees
up to the best valid score). On a machine with a CUDA GPU CatBoost trains there (``task_type="GPU"``), as in
Qlib, unless ``task_type`` is given. Each iteration's metrics go to the active recorder as
``<metric>.train`` / ``<metric>.valid`` (``RMSE.valid``) with ``step`` = iteration. Differences from Qlib,
on purpose: ``evals_result`` is filled (Qlib's fit rebinds it, so the caller's dict stays empty), and
CatBoost writes no ``catboost_info`` folder into the working directory unless ``train_dir`` or
``allow_writing_files`` is given, and ``bootstrap_type: Poisson`` (which Qlib's benchmark configs ask for and
CatBoost has on GPUs only) trains on a CPU as ``Bernoulli`` at the same ``subsample`` rate, with a warning.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any

import pandas as pd

from qexp.ext import Model, require_extra

from ._checks import check_positive_int
from ._data import infer_features, not_fitted
from ._log import log_points
from .gbdt_common import iteration_times, learn_segments, metric_points, qlib_evals_shape, rejected

LOSSES = ("RMSE", "Logloss")
_SET_NAMES = {"learn": "train", "validation": "valid"}


def _catboost() -> Any:
    return require_extra("catboost", "catboost", "CatBoostModel")


class CatBoostModel(Model):
    """CatBoost on a DatasetH.

    Args:
        loss: ``"RMSE"`` (regression) or ``"Logloss"`` (0/1 labels); CatBoost's ``loss_function``.
        num_boost_round, early_stopping_rounds: defaults of ``fit``'s arguments (as LGBModel's; Qlib's
            CatBoostModel has them on ``fit`` only, so a config can now set them).
        **kwargs: CatBoost parameters (``learning_rate``, ``max_depth``, ``subsample``, ``thread_count``,
            ``grow_policy``, ``bootstrap_type``, ...).
    """

    def __init__(self, loss: str = "RMSE", num_boost_round: int = 1000, early_stopping_rounds: int = 50,
                 **kwargs: Any):
        if loss not in LOSSES:
            raise ValueError(f"CatBoostModel: unknown loss {loss!r}; use one of {', '.join(map(repr, LOSSES))}")
        self.loss = loss
        check_positive_int("CatBoostModel", num_boost_round=num_boost_round,
                           early_stopping_rounds=early_stopping_rounds)
        self.num_boost_round, self.early_stopping_rounds = int(num_boost_round), int(early_stopping_rounds)
        self._params: dict[str, Any] = {"loss_function": loss, **kwargs}
        self.model: Any = None  # catboost.CatBoost once fitted
        self.feature_names: list[str] = []

    def fit(self, dataset: Any, num_boost_round: int | None = None,
            early_stopping_rounds: int | None = None, verbose_eval: int = 20, evals_result: dict | None = None,
            reweighter: Any = None, **kwargs: Any) -> CatBoostModel:
        """Train on ``train``, early-stopping on ``valid`` when the dataset has one.

        ``evals_result`` (a dict) receives the first metric's value per iteration, ``{"train": [...], "valid":
        [...]}`` (the shape Qlib's fit builds); ``kwargs`` go to ``CatBoost.fit``.
        """
        cb = _catboost()
        num_boost_round = self.num_boost_round if num_boost_round is None else num_boost_round
        early_stopping_rounds = self.early_stopping_rounds if early_stopping_rounds is None else early_stopping_rounds
        seg = learn_segments(dataset, "CatBoostModel", reweighter, num_boost_round)
        if self.loss == "Logloss":
            _check_binary(seg.y_train, "train")
        self.feature_names = seg.feature_names
        train = cb.Pool(seg.x_train, label=seg.y_train, weight=seg.w_train, feature_names=seg.feature_names)
        valid = None if seg.x_valid is None else cb.Pool(seg.x_valid, label=seg.y_valid, weight=seg.w_valid,
                                                         feature_names=seg.feature_names)
        params = {**self._params, "iterations": num_boost_round, "verbose_eval": verbose_eval}
        if valid is not None:
            params["early_stopping_rounds"] = early_stopping_rounds
        if "task_type" not in params:
            params["task_type"] = "GPU" if _gpu_count() > 0 else "CPU"
        if params["task_type"] == "CPU" and str(params.get("bootstrap_type", "")).lower() == "poisson":
            # Qlib's benchmark configs ask for Poisson, which CatBoost has on GPUs only; Bernoulli samples
            # rows at the same subsample rate on the CPU
            warnings.warn("CatBoostModel: bootstrap_type Poisson runs on a GPU only; training on the CPU with "
                          "bootstrap_type Bernoulli at the same subsample rate", stacklevel=2)
            params["bootstrap_type"] = "Bernoulli"
        if "train_dir" not in params:
            params.setdefault("allow_writing_files", False)
        times: list[int] = []
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if params["task_type"] == "CPU":  # CatBoost takes Python callbacks on the CPU only
            callbacks.append(iteration_times("catboost", times))
        try:
            model = cb.CatBoost(params)
            model.fit(train, eval_set=valid, use_best_model=valid is not None, callbacks=callbacks or None, **kwargs)
        except cb.CatBoostError as exc:
            raise rejected("CatBoostModel", "catboost", exc) from None
        self.model = model
        result = {_SET_NAMES.get(k, k): dict(v) for k, v in model.get_evals_result().items()}
        log_points(metric_points(result, times))
        if evals_result is not None:
            evals_result.update(result)
            qlib_evals_shape(evals_result)
        return self

    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        """Scores of ``segment``'s infer rows (raw formula values, as Qlib)."""
        if self.model is None:
            raise not_fitted("CatBoostModel")
        x = infer_features(dataset, segment, "CatBoostModel", n_fitted=len(self.feature_names))
        return pd.Series(self.model.predict(x.to_numpy()), index=x.index)

    def get_feature_importance(self, *args: Any, **kwargs: Any) -> pd.Series:
        """Feature importance by feature name, largest first (CatBoost's ``get_feature_importance``)."""
        if self.model is None:
            raise not_fitted("CatBoostModel")
        imp = self.model.get_feature_importance(*args, **kwargs)
        return pd.Series(imp, index=self.feature_names or None).sort_values(ascending=False)


@functools.lru_cache(maxsize=1)
def _gpu_count() -> int:
    """CUDA devices CatBoost sees; asked once per process (CatBoost prints a CUDA error line each time it
    looks on a machine without a driver)."""
    from catboost.utils import get_gpu_device_count
    return int(get_gpu_device_count())


def _check_binary(y: Any, segment: str) -> None:
    import numpy as np
    values = np.unique(y)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"CatBoostModel(loss='Logloss') needs 0/1 labels, but '{segment}' has labels such as "
                         f"{values[:5].tolist()}; use loss='RMSE' or a binary label expression")
