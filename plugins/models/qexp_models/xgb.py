"""``XGBModel``: XGBoost gradient boosting, as Qlib's ``qlib.contrib.model.xgboost.XGBModel``.

``XGBModel(**params)`` passes ``params`` to ``xgboost.train``; ``fit`` trains on the learn data of ``train``
with ``evals=[train, valid]`` (xgboost early-stops on the last one, ``valid``) and logs each iteration's eval
metrics to the active recorder as ``<metric>.train`` / ``<metric>.valid`` (``rmse.valid``) with ``step`` =
iteration. Differences from Qlib, on purpose:

- After early stopping the booster keeps the trees up to the best iteration (Qlib's predicts with all
  trees, the ``early_stopping_rounds`` after the best included), as LGBModel and xgboost's scikit-learn API do.
- ``n_estimators`` (a scikit-learn name that ``xgboost.train`` ignores with a warning) is dropped with a log
  line: ``num_boost_round`` sets the rounds, as in Qlib.
- ``loss: mse|binary`` is accepted as LGBModel's shorthand for ``objective``; anything else is a clear error.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from qexp.ext import ModelFT, require_extra

from ._checks import check_positive_int
from ._data import infer_features, not_fitted
from ._log import log_points
from .gbdt_common import iteration_times, learn_segments, metric_points, qlib_evals_shape, rejected

logger = logging.getLogger("qexp.models")

LOSS_OBJECTIVES = {"mse": "reg:squarederror", "binary": "binary:logistic"}


def _xgboost() -> Any:
    return require_extra("xgboost", "xgboost", "XGBModel")


class XGBModel(ModelFT):
    """XGBoost on a DatasetH.

    Args:
        num_boost_round, early_stopping_rounds: defaults of ``fit``'s arguments (as LGBModel's; Qlib's
            XGBModel has them on ``fit`` only, so a config can now set them).
        **kwargs: ``xgboost.train`` parameters (``eta``, ``max_depth``, ``subsample``, ``colsample_bytree``,
            ``eval_metric``, ``nthread``, ``objective``, ...).
    """

    def __init__(self, num_boost_round: int = 1000, early_stopping_rounds: int = 50, **kwargs: Any):
        check_positive_int("XGBModel", num_boost_round=num_boost_round, early_stopping_rounds=early_stopping_rounds)
        self.num_boost_round, self.early_stopping_rounds = int(num_boost_round), int(early_stopping_rounds)
        params = dict(kwargs)
        # the DMatrix's value for "missing" (xgboost.train ignores it): .inf reads inf features as missing
        self.missing: float | None = params.pop("missing", None)
        loss = params.pop("loss", None)
        if loss is not None:
            if loss not in LOSS_OBJECTIVES:
                raise ValueError(f"XGBModel: unknown loss {loss!r}; use one of {', '.join(map(repr, LOSS_OBJECTIVES))}"
                                 f" or set xgboost's objective (e.g. objective: reg:squarederror)")
            if "objective" in params:
                raise ValueError("XGBModel: give either loss or objective, not both")
            params["objective"] = LOSS_OBJECTIVES[loss]
        if "n_estimators" in params:
            logger.info("XGBModel: n_estimators=%s is a scikit-learn name that xgboost.train does not use; "
                        "fit's num_boost_round sets the rounds (as in Qlib)", params.pop("n_estimators"))
        self._params: dict[str, Any] = params
        self.model: Any = None  # xgboost.Booster once fitted (it pickles as its model bytes)
        self.best_iteration: int | None = None
        self.feature_names: list[str] = []

    def fit(self, dataset: Any, num_boost_round: int | None = None,
            early_stopping_rounds: int | None = None, verbose_eval: int = 20, evals_result: dict | None = None,
            reweighter: Any = None, **kwargs: Any) -> XGBModel:
        """Train on ``train``, early-stopping on ``valid`` when the dataset has one.

        ``evals_result`` (a dict) receives the first eval metric's value per iteration, ``{"train": [...],
        "valid": [...]}``, as Qlib's; ``kwargs`` go to ``xgboost.train``.
        """
        xgb = _xgboost()
        num_boost_round = self.num_boost_round if num_boost_round is None else num_boost_round
        early_stopping_rounds = self.early_stopping_rounds if early_stopping_rounds is None else early_stopping_rounds
        seg = learn_segments(dataset, "XGBModel", reweighter, num_boost_round)
        self.feature_names = seg.feature_names
        dtrain = self._dmatrix(xgb, seg.x_train, "train", label=seg.y_train, weight=seg.w_train)
        evals = [(dtrain, "train")]
        if seg.x_valid is not None:
            evals.append((self._dmatrix(xgb, seg.x_valid, "valid", label=seg.y_valid, weight=seg.w_valid), "valid"))
        evals_result = {} if evals_result is None else evals_result
        times: list[int] = []
        callbacks = list(kwargs.pop("callbacks", None) or []) + [iteration_times("xgboost", times)]
        try:
            booster = xgb.train(self._params, dtrain, num_boost_round=num_boost_round, evals=evals,
                                early_stopping_rounds=early_stopping_rounds if len(evals) > 1 else None,
                                verbose_eval=verbose_eval if verbose_eval else False, evals_result=evals_result,
                                callbacks=callbacks, **kwargs)
        except xgb.core.XGBoostError as exc:
            raise rejected("XGBModel", "xgboost", exc) from None
        best = getattr(booster, "best_iteration", None) if len(evals) > 1 else None
        if best is not None and best + 1 < booster.num_boosted_rounds():
            booster = booster[: best + 1]  # keep the trees up to the best valid score
        self.best_iteration = best
        self.model = booster
        log_points(metric_points(evals_result, times))
        qlib_evals_shape(evals_result)
        return self

    def _dmatrix(self, xgb: Any, x: np.ndarray, segment: Any, **kwargs: Any) -> Any:
        """``x`` as a DMatrix; inf features (which xgboost refuses unless ``missing`` is inf) are one clear
        line naming the fixes."""
        missing = getattr(self, "missing", None)  # absent from models pickled before it existed
        try:
            return xgb.DMatrix(x, missing=np.nan if missing is None else missing, **kwargs)
        except xgb.core.XGBoostError as exc:
            if "inf" in str(exc):
                n = int(np.isinf(x).sum())
                raise ValueError(f"XGBModel: the '{segment}' features hold {n} inf value(s), which xgboost refuses; "
                                 f"replace them in the handler (infer_processors: ProcessInf, as Qlib's configs "
                                 f"do) or set missing: .inf in the model kwargs to read inf as missing") from None
            raise rejected("XGBModel", "xgboost", exc) from None

    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        """Scores of ``segment``'s infer rows."""
        if self.model is None:
            raise not_fitted("XGBModel")
        xgb = _xgboost()
        x = infer_features(dataset, segment, "XGBModel", n_fitted=len(self.feature_names))
        return pd.Series(self.model.predict(self._dmatrix(xgb, x.to_numpy(), segment)), index=x.index)

    def finetune(self, dataset: Any, num_boost_round: int = 10, verbose_eval: int = 20,
                 reweighter: Any = None) -> XGBModel:
        """Add ``num_boost_round`` trees trained on ``train`` to the fitted ones."""
        if self.model is None:
            raise not_fitted("XGBModel")
        xgb = _xgboost()
        seg = learn_segments(dataset, "XGBModel", reweighter)
        dtrain = self._dmatrix(xgb, seg.x_train, "train", label=seg.y_train, weight=seg.w_train)
        self.model = xgb.train(self._params, dtrain, num_boost_round=num_boost_round, evals=[(dtrain, "train")],
                               verbose_eval=verbose_eval if verbose_eval else False, xgb_model=self.model)
        return self

    def get_feature_importance(self, importance_type: str = "weight") -> pd.Series:
        """Feature importance by feature name, largest first (xgboost's ``get_score``)."""
        if self.model is None:
            raise not_fitted("XGBModel")
        score = self.model.get_score(importance_type=importance_type)
        names = {f"f{i}": n for i, n in enumerate(self.feature_names)}
        return pd.Series({names.get(k, k): v for k, v in score.items()}, dtype=float).sort_values(ascending=False)

