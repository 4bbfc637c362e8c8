"""``LGBModel``: LightGBM gradient boosting, as Qlib's ``qlib.contrib.model.gbdt.LGBModel``.

It trains on the learn data of ``train``, early-stops on ``valid`` (LightGBM skips the train set when it
checks early stopping), predicts at the best iteration, and logs every iteration's eval metrics to the
active recorder as ``l2.train`` / ``l2.valid`` with ``step`` = iteration, in one batched write (inside
``qexp.ext.live_step_metrics``, where a sweep's pruner listens, one write per iteration as it ends, so that a
pruned fit stops at that iteration).
"""
from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from qexp.ext import ModelFT, live_step_metrics_wanted, preparation_cache

from . import _lazy
from ._data import has_segment, infer_features, learn_data, not_fitted, require_segment
from ._log import active_recorder, log_points
from .gbdt_common import iteration_times, metric_points

LOSSES = ("mse", "binary")
DEFAULT_METRIC = {"mse": "l2", "binary": "binary_logloss"}
"""LightGBM's eval metric for each loss when ``metric`` is not given."""
METRIC_ALIASES = {"mean_squared_error": "l2", "mse": "l2", "regression": "l2", "regression_l2": "l2", "l2": "l2",
                  "l2_root": "rmse", "root_mean_squared_error": "rmse", "mean_absolute_error": "l1", "mae": "l1",
                  "regression_l1": "l1", "binary": "binary_logloss"}
"""LightGBM's metric aliases -> the name it reports (and qexp logs)."""


class LGBModel(ModelFT):
    """LightGBM on a DatasetH.

    Args:
        loss: ``"mse"`` (regression) or ``"binary"``; it becomes LightGBM's ``objective``.
        early_stopping_rounds: stop when ``valid`` has not improved for this many iterations.
        num_boost_round: the most boosting iterations.
        **kwargs: LightGBM parameters (``learning_rate``, ``num_leaves``, ``num_threads``, ...).
    """

    def __init__(self, loss: str = "mse", early_stopping_rounds: int = 50, num_boost_round: int = 1000,
                 **kwargs: Any):
        if loss not in LOSSES:
            raise ValueError(f"LGBModel: unknown loss {loss!r}; use one of {', '.join(map(repr, LOSSES))}")
        self.loss = loss
        self.params: dict[str, Any] = {"objective": loss, "verbosity": -1, **kwargs}
        self.early_stopping_rounds = early_stopping_rounds
        self.num_boost_round = num_boost_round
        self.model: Any = None  # lightgbm.Booster once fitted (it pickles as its model text)
        self.feature_names: list[str] = []

    @classmethod
    def check_kwargs(cls, kwargs: dict[str, Any]) -> list[str]:
        """Warnings for ``**kwargs`` that are no LightGBM parameter or alias (LightGBM drops them silently at
        ``verbosity: -1``); ``qexp run --dry-run`` and the run's config check call this."""
        import difflib
        _lazy.lightgbm("LGBModel")
        from lightgbm.basic import _ConfigAliases
        aliases = _ConfigAliases._get_all_param_aliases()
        known = set(aliases) | {a for names in aliases.values() for a in names}
        out = []
        for key in kwargs:
            if key not in known:
                near = difflib.get_close_matches(key, sorted(known), 1)
                out.append(f"{key!r} is not a LightGBM parameter and would be ignored"
                           + (f"; did you mean {near[0]!r}?" if near else ""))
        return out

    @classmethod
    def logged_metrics(cls, kwargs: dict[str, Any]) -> set[str]:
        """The metric keys a fit with these ``kwargs`` logs (``l2.train``, ``l2.valid``, ...): LightGBM's
        eval metrics (``metric``, else the loss's default) on each data set; a sweep checks its metric
        against them before any trial."""
        from lightgbm.basic import _ConfigAliases
        params = {"objective": kwargs.get("loss", "mse"), **kwargs}
        metric: Any = None
        for name in _ConfigAliases.get("metric"):
            if params.get(name) is not None:
                metric = params[name]
        if metric is None:
            metric = DEFAULT_METRIC.get(str(params["objective"]), "l2")
        names = metric if isinstance(metric, (list, tuple)) else str(metric).split(",")
        out = set()
        for m in (str(n).strip() for n in names):
            if m and m not in ("None", "na", "null", "custom"):
                m = METRIC_ALIASES.get(m, m).replace("@", "_")
                out |= {f"{m}.train", f"{m}.valid"}
        return out

    # ---- data --------------------------------------------------------------------------------
    def _datasets(self, dataset: Any, reweighter: Any, segments: tuple[str, ...],
                  reuse: bool = False) -> list[tuple[Any, str]]:
        # a sweep's trials on one dataset (qexp.ext.reuse_preparation) share the binned Datasets while no
        # binning parameter changes, as Optuna's LightGBM tuner does
        cache = preparation_cache() if reuse and reweighter is None else None
        if cache is None:
            return self._build_datasets(dataset, reweighter, segments)
        key = ("LGBModel.Dataset", id(dataset), segments, self.loss, _binning_key(self.params))
        hit = cache.get(key)
        if hit is not None and hit[0] is dataset:
            self.feature_names = list(hit[2])
            return list(hit[1])
        out = self._build_datasets(dataset, reweighter, segments)
        cache[key] = (dataset, out, list(self.feature_names))  # the dataset too: its id stays its own
        return out

    def _build_datasets(self, dataset: Any, reweighter: Any, segments: tuple[str, ...]) -> list[tuple[Any, str]]:
        lgb = _lazy.lightgbm("LGBModel")
        out = []
        for seg in segments:
            data, weights = learn_data(dataset, seg, "LGBModel", reweighter)
            if self.loss == "binary":
                _check_binary(data.y, seg)
            if seg == "train":
                self.feature_names = [str(c) for c in data.frame["feature"].columns]
            # NaN features are kept: LightGBM handles missing values itself, as in Qlib.
            out.append((lgb.Dataset(data.x, label=data.y, weight=weights), seg))
        return out

    # ---- training ----------------------------------------------------------------------------
    def fit(self, dataset: Any, num_boost_round: int | None = None, early_stopping_rounds: int | None = None,
            verbose_eval: int = 20, evals_result: dict | None = None, reweighter: Any = None,
            **kwargs: Any) -> LGBModel:
        """Train on ``train``, early-stopping on ``valid`` when the dataset has one.

        ``evals_result`` (a dict) receives LightGBM's per-iteration metrics; ``kwargs`` go to
        ``lightgbm.train``.
        """
        lgb = _lazy.lightgbm("LGBModel")
        require_segment(dataset, "train", "LGBModel")
        with_valid = has_segment(dataset, "valid")
        segments = ("train", "valid") if with_valid else ("train",)
        # a Dataset built with another init_model's predictions cannot be reused (its raw data is freed)
        ds = self._datasets(dataset, reweighter, segments, reuse="init_model" not in kwargs)
        evals_result = {} if evals_result is None else evals_result
        times: list[int] = []
        callbacks = [lgb.log_evaluation(period=verbose_eval), lgb.record_evaluation(evals_result),
                     iteration_times("lightgbm", times)]
        # a pruner listens (a sweep's trial): each iteration is logged as it ends, so a pruned fit stops there
        # (the listener raises from the logging hook, as Optuna's LightGBMPruningCallback raises TrialPruned)
        live = active_recorder() if live_step_metrics_wanted() else None
        if live is not None:
            callbacks.append(_live_logger(live))
        if with_valid:
            rounds = self.early_stopping_rounds if early_stopping_rounds is None else early_stopping_rounds
            callbacks.append(lgb.early_stopping(rounds, verbose=verbose_eval > 0))
        else:
            warnings.warn("LGBModel: the dataset has no 'valid' segment, so it trains all "
                          f"{num_boost_round or self.num_boost_round} rounds without early stopping; add a "
                          "valid segment to stop early", stacklevel=2)
        self.model = lgb.train(self.params, ds[0][0],
                               num_boost_round=self.num_boost_round if num_boost_round is None else num_boost_round,
                               valid_sets=[d for d, _ in ds], valid_names=[n for _, n in ds],
                               callbacks=callbacks, **kwargs)
        if live is None:
            log_points(metric_points(evals_result, times))
        return self

    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        """Scores of ``segment``'s infer rows, at the best iteration."""
        if self.model is None:
            raise not_fitted("LGBModel")
        x = infer_features(dataset, segment, "LGBModel", n_fitted=len(self.feature_names))
        return pd.Series(self.model.predict(x.to_numpy()), index=x.index)

    def finetune(self, dataset: Any, num_boost_round: int = 10, verbose_eval: int = 20,
                 reweighter: Any = None) -> LGBModel:
        """Add ``num_boost_round`` trees trained on ``train`` to the fitted ones (``lightgbm.train`` keeps
        the trees up to the best iteration, so fine-tuning continues from there)."""
        lgb = _lazy.lightgbm("LGBModel")
        if self.model is None:
            raise not_fitted("LGBModel")
        ((dtrain, _),) = self._datasets(dataset, reweighter, ("train",))
        self.model = lgb.train(self.params, dtrain, num_boost_round=num_boost_round, init_model=self.model,
                               valid_sets=[dtrain], valid_names=["train"],
                               callbacks=[lgb.log_evaluation(period=verbose_eval)])
        return self

    def get_feature_importance(self, *args: Any, **kwargs: Any) -> pd.Series:
        """Feature importance by feature name, largest first (``importance_type="split"|"gain"``)."""
        if self.model is None:
            raise not_fitted("LGBModel")
        imp = self.model.feature_importance(*args, **kwargs)
        names = self.feature_names if len(self.feature_names) == len(imp) else self.model.feature_name()
        return pd.Series(imp, index=names).sort_values(ascending=False)


BINNING_PARAMS = ("max_bin", "max_bin_by_feature", "min_data_in_bin", "bin_construct_sample_cnt",
                  "data_random_seed", "seed", "is_enable_sparse", "enable_bundle", "use_missing", "zero_as_missing",
                  "feature_pre_filter", "categorical_feature", "forcedbins_filename", "linear_tree",
                  "min_data_in_leaf", "min_sum_hessian_in_leaf", "pre_partition", "two_round")
"""Parameters that shape LightGBM's binned Dataset (``min_data_in_leaf`` too: the feature pre-filter uses it)."""


def _binning_key(params: dict[str, Any]) -> tuple:
    """The binning parameters of ``params`` (any alias), as a hashable key."""
    from lightgbm.basic import _ConfigAliases
    names = _ConfigAliases.get(*BINNING_PARAMS)
    return tuple(sorted((k, repr(v)) for k, v in params.items() if k in names))


def _check_binary(y: np.ndarray, segment: str) -> None:
    values = np.unique(y)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"LGBModel(loss='binary') needs 0/1 labels, but '{segment}' has labels such as "
                         f"{values[:5].tolist()}; use loss='mse' or a binary label expression")


def _live_logger(recorder: Any) -> Any:
    """A LightGBM callback logging each iteration's eval results to ``recorder`` as the iteration ends, with
    the keys and steps of :func:`.gbdt_common.metric_points` (it changes nothing in the training)."""
    def callback(env: Any) -> None:
        now = int(time.time() * 1000)
        step = env.iteration - env.begin_iteration
        points = [(f"{item[1]}.{item[0]}".replace("@", "_"), float(item[2]), now, step)
                  for item in env.evaluation_result_list or []]
        if points:
            recorder.log_metric_batch(points)
    callback.order = 26  # type: ignore[attr-defined]  # after the timestamps (25), before early stopping (30)
    return callback
