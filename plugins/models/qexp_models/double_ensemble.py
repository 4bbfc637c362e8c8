"""``DEnsembleModel``: DoubleEnsemble (Zhang et al., ICDM 2020), as Qlib's
``qlib.contrib.model.double_ensemble.DEnsembleModel``: ``num_models`` LightGBM sub-models, each trained on
re-weighted samples (SR) and a sampled feature subset (FS) decided from the ensemble so far.

After sub-model k (1-based) is trained on the train rows:

- **Sample re-weighting.** ``h1`` = percentile rank of each sample's negated ensemble loss (easy samples
  rank high); ``h2`` = percentile rank of ``l_end / l_start``, where ``l_start``/``l_end`` average the
  per-iteration loss ranks over the first/last 10% of sub-model k's boosting iterations (samples whose loss
  does not fall rank high). ``h = alpha1*h1 + alpha2*h2`` is cut into ``bins_sr`` equal-width bins and each
  sample gets ``1 / (decay**k * mean h of its bin + 0.1)``.
- **Feature selection.** For each feature, its train column is permuted and the equal-weight average of the
  sub-models predicts again; ``g = mean(loss_perm - loss) / (std(loss_perm - loss) + 1e-7)``. The ``g`` values
  are cut into ``bins_fs`` equal-width bins; from the i-th non-empty bin (largest ``g`` first) a share
  ``sample_ratios[i]`` of its features is drawn without replacement.

The prediction is the ``sub_weights``-weighted mean of the sub-models. Each sub-model's per-iteration metrics
go to the active recorder as ``<metric>.<train|valid>.sub<k>`` (``l2.valid.sub1``) with ``step`` = iteration.

Differences from Qlib, on purpose: ``decay=None`` means no decay (1.0; Qlib fails on ``None ** k``); a
sub-model's features keep the dataset's column order (Qlib's come out of a ``set``, so their order, and with
it LightGBM's column sampling, changes with the string hash seed); the permutations and feature draws use a
generator seeded by LightGBM's ``seed`` parameter when given (else drawn from numpy's global generator, which
Qlib uses directly); a dataset without ``valid`` trains without early stopping (with a warning).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd

from qexp.ext import Model, require_extra

from ._checks import check_positive_int
from ._data import infer_features, not_fitted
from ._log import log_points
from .gbdt_common import iteration_times, learn_segments, metric_points

logger = logging.getLogger("qexp.models")

BASE_MODELS = ("gbm",)
LOSSES = ("mse",)
_SEED_KEYS = ("seed", "random_seed", "random_state")


def _lightgbm() -> Any:
    return require_extra("lightgbm", "lightgbm", "DEnsembleModel")


class DEnsembleModel(Model):
    """DoubleEnsemble of LightGBM sub-models on a DatasetH.

    Args:
        base_model: ``"gbm"`` (LightGBM; the only kind, as in Qlib).
        loss: ``"mse"``; LightGBM's objective and the loss SR and FS measure.
        num_models: how many sub-models.
        enable_sr, enable_fs: sample re-weighting / feature selection between sub-models.
        alpha1, alpha2: weights of the loss rank and the loss-curve rank in SR.
        bins_sr, bins_fs: bins of SR's h values and FS's g values.
        decay: SR's decay per sub-model (None: 1.0).
        sample_ratios: FS's share of features kept per bin, largest g first (``bins_fs`` values;
            default ``[0.8, 0.7, 0.6, 0.5, 0.4]``).
        sub_weights: the sub-models' weights in the prediction (``num_models`` values; default all 1).
        epochs: boosting rounds of each sub-model.
        early_stopping_rounds: stop a sub-model when ``valid`` has not improved for this many rounds.
        **kwargs: LightGBM parameters (``learning_rate``, ``num_leaves``, ``num_threads``, ...).
    """

    def __init__(self, base_model: str = "gbm", loss: str = "mse", num_models: int = 6, enable_sr: bool = True,
                 enable_fs: bool = True, alpha1: float = 1.0, alpha2: float = 1.0, bins_sr: int = 10,
                 bins_fs: int = 5, decay: float | None = None, sample_ratios: Sequence[float] | None = None,
                 sub_weights: Sequence[float] | None = None, epochs: int = 100,
                 early_stopping_rounds: int | None = None, **kwargs: Any):
        name = "DEnsembleModel"
        if base_model not in BASE_MODELS:
            raise ValueError(f"{name}: unknown base_model {base_model!r}; use 'gbm' (LightGBM sub-models, the only "
                             f"kind Qlib implements)")
        if loss not in LOSSES:
            raise ValueError(f"{name}: unknown loss {loss!r}; use 'mse' (the loss its sample re-weighting and "
                             f"feature selection measure)")
        self.base_model = base_model
        self.loss = loss
        check_positive_int(name, num_models=num_models, bins_sr=bins_sr, bins_fs=bins_fs, epochs=epochs)
        self.num_models = int(num_models)
        self.enable_sr = bool(enable_sr)
        self.enable_fs = bool(enable_fs)
        self.alpha1 = float(alpha1)
        self.alpha2 = float(alpha2)
        self.bins_sr, self.bins_fs = int(bins_sr), int(bins_fs)
        if decay is not None and (not isinstance(decay, (int, float)) or decay <= 0):
            raise ValueError(f"{name}: decay must be a positive number (or None for no decay), got {decay!r}")
        self.decay = decay
        ratios = [0.8, 0.7, 0.6, 0.5, 0.4] if sample_ratios is None else [float(r) for r in sample_ratios]
        if len(ratios) != self.bins_fs:
            raise ValueError(f"{name}: sample_ratios has {len(ratios)} values but bins_fs is {self.bins_fs}; give "
                             f"one share per bin")
        if not all(0 < r <= 1 for r in ratios):
            raise ValueError(f"{name}: sample_ratios must lie in (0, 1], got {ratios}")
        self.sample_ratios = ratios
        weights = [1.0] * self.num_models if sub_weights is None else [float(w) for w in sub_weights]
        if len(weights) != self.num_models:
            raise ValueError(f"{name}: sub_weights has {len(weights)} values but num_models is {self.num_models}; "
                             f"give one weight per sub-model")
        if sum(weights) <= 0 or min(weights) < 0:
            raise ValueError(f"{name}: sub_weights must be >= 0 with a positive sum, got {weights}")
        self.sub_weights = weights
        self.epochs = int(epochs)
        if early_stopping_rounds:
            check_positive_int(name, early_stopping_rounds=early_stopping_rounds)
        self.early_stopping_rounds = int(early_stopping_rounds) if early_stopping_rounds else None
        self.params: dict[str, Any] = {"objective": loss, **kwargs}
        self.params.setdefault("verbosity", -1)
        self.ensemble: list[Any] = []          # lightgbm Boosters
        self.sub_features: list[pd.Index] = []  # each sub-model's feature names

    @classmethod
    def check_kwargs(cls, kwargs: dict[str, Any]) -> list[str]:
        """The ``**kwargs`` are LightGBM parameters: LGBModel's check flags a misspelt one."""
        from .lgb import LGBModel
        return LGBModel.check_kwargs(kwargs)

    # ---- training ----------------------------------------------------------------------------
    def fit(self, dataset: Any, reweighter: Any = None, verbose_eval: int = 20,
            evals_result: dict | None = None) -> DEnsembleModel:
        """Train the sub-models one after another on ``train`` (early-stopping on ``valid`` when
        ``early_stopping_rounds`` is set). ``evals_result`` receives each sub-model's LightGBM metrics under
        ``"sub1"``, ``"sub2"``, ...; a ``reweighter``'s weights multiply SR's."""
        lgb = _lightgbm()
        seg = learn_segments(dataset, "DEnsembleModel", reweighter, self.epochs)
        n, n_feat = seg.x_train.shape
        names = pd.Index(seg.feature_names)
        rng = self._rng()
        weights = np.ones(n)
        cols = np.arange(n_feat)
        ensemble_sum = np.zeros(n)
        self.ensemble, self.sub_features = [], []
        models: list[tuple[Any, np.ndarray]] = []
        for k in range(self.num_models):
            logger.info("DEnsembleModel: training sub-model %d/%d on %d features", k + 1, self.num_models, len(cols))
            w = weights if seg.w_train is None else weights * seg.w_train
            booster, evals = self._train_sub(lgb, seg, w, cols, verbose_eval, k + 1)
            self.ensemble.append(booster)
            self.sub_features.append(names[cols])
            models.append((booster, cols))
            if evals_result is not None:
                evals_result[f"sub{k + 1}"] = evals
            if k + 1 == self.num_models:
                break
            x_k = _columns(seg.x_train, cols)
            ensemble_sum += self.sub_weights[k] * booster.predict(x_k)
            ensemble = ensemble_sum / sum(self.sub_weights[: k + 1])
            loss = (seg.y_train - ensemble) ** 2
            if self.enable_sr:
                weights = self._sample_reweight(_loss_curve_ranks(booster, x_k, seg.y_train), loss, k + 1)
            if self.enable_fs:
                cols = self._feature_selection(seg.x_train, seg.y_train, loss, models, rng)
        return self

    def _train_sub(self, lgb: Any, seg: Any, weights: np.ndarray, cols: np.ndarray, verbose_eval: int,
                   k: int) -> tuple[Any, dict]:
        dtrain = lgb.Dataset(_columns(seg.x_train, cols), label=seg.y_train, weight=weights)
        sets, set_names = [dtrain], ["train"]
        if seg.x_valid is not None:
            sets.append(lgb.Dataset(_columns(seg.x_valid, cols), label=seg.y_valid, weight=seg.w_valid))
            set_names.append("valid")
        evals: dict = {}
        times: list[int] = []
        callbacks = [lgb.log_evaluation(period=verbose_eval), lgb.record_evaluation(evals),
                     iteration_times("lightgbm", times)]
        if self.early_stopping_rounds and len(sets) > 1:
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=verbose_eval > 0))
        booster = lgb.train(self.params, dtrain, num_boost_round=self.epochs, valid_sets=sets,
                            valid_names=set_names, callbacks=callbacks)
        log_points(metric_points(evals, times, suffix=f".sub{k}"))
        return booster, evals

    def _rng(self) -> np.random.Generator:
        seed = next((self.params[k] for k in _SEED_KEYS if self.params.get(k) is not None), None)
        return np.random.default_rng(int(seed) if seed is not None else int(np.random.randint(0, 2**31 - 1)))

    def _sample_reweight(self, curve_ranks: tuple[np.ndarray, np.ndarray], loss: np.ndarray,
                         k_th: int) -> np.ndarray:
        """SR: per-sample weights for sub-model ``k_th + 1`` (``k_th`` sub-models trained so far)."""
        l_start, l_end = curve_ranks
        h1 = _pct_rank(-loss)
        h2 = _pct_rank(l_end / l_start)
        h = self.alpha1 * h1 + self.alpha2 * h2
        bins = np.asarray(pd.cut(h, self.bins_sr, labels=False))
        counts = np.bincount(bins, minlength=self.bins_sr)
        h_avg = np.bincount(bins, weights=h, minlength=self.bins_sr) / np.maximum(counts, 1)
        decay = 1.0 if self.decay is None else float(self.decay)
        return 1.0 / (decay ** k_th * h_avg[bins] + 0.1)

    def _feature_selection(self, x: np.ndarray, y: np.ndarray, loss: np.ndarray,
                           models: list[tuple[Any, np.ndarray]], rng: np.random.Generator) -> np.ndarray:
        """FS: the column positions of the next sub-model's features."""
        n_feat = x.shape[1]
        m = len(models)
        # each sub-model's train matrix and prediction; a permuted column changes only the sub-models using it
        mats = [_columns(x, cols).copy() if len(cols) < n_feat else x.copy() for _, cols in models]
        base = [booster.predict(mat) for (booster, _), mat in zip(models, mats)]
        where = [{int(c): j for j, c in enumerate(cols)} for _, cols in models]
        g = np.zeros(n_feat)
        for f in range(n_feat):
            shuffled = rng.permutation(x[:, f])
            pred = np.zeros(len(y))
            for i, (booster, _) in enumerate(models):
                j = where[i].get(f)
                if j is None:
                    pred += base[i] / m
                    continue
                mats[i][:, j] = shuffled
                pred += booster.predict(mats[i]) / m
                mats[i][:, j] = x[:, f]
            diff = (y - pred) ** 2 - loss
            g[f] = np.mean(diff) / (np.std(diff) + 1e-7)
        g = np.nan_to_num(g, nan=0.0)
        bins = np.asarray(pd.cut(g, self.bins_fs, labels=False))
        chosen: list[int] = []
        for i_b, b in enumerate(sorted(set(bins.tolist()), reverse=True)):
            members = np.flatnonzero(bins == b)
            size = int(np.ceil(self.sample_ratios[i_b] * len(members)))
            chosen += rng.choice(members, size=size, replace=False).tolist()
        return np.array(sorted(chosen), dtype=int)

    # ---- prediction --------------------------------------------------------------------------
    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        """The ``sub_weights``-weighted mean of the sub-models' scores on ``segment``'s infer rows."""
        if not self.ensemble:
            raise not_fitted("DEnsembleModel")
        x = infer_features(dataset, segment, "DEnsembleModel")
        pred = np.zeros(len(x))
        for booster, feats, weight in zip(self.ensemble, self.sub_features, self.sub_weights):
            pos = x.columns.get_indexer(feats)
            if (pos < 0).any():
                missing = [str(c) for c in feats[pos < 0][:5]]
                raise ValueError(f"DEnsembleModel: '{segment}' lacks the feature(s) {missing} the model was fitted "
                                 f"on; predict with the dataset it was fitted on")
            pred += weight * booster.predict(_columns(x.to_numpy(), pos))
        return pd.Series(pred / sum(self.sub_weights), index=x.index)

    def predict_sub(self, submodel: Any, df_data: pd.DataFrame, features: pd.Index) -> pd.Series:
        """One sub-model's scores on a frame with a ``feature`` column group (Qlib's helper)."""
        x = df_data["feature"].loc[:, features]
        return pd.Series(submodel.predict(x.to_numpy()), index=x.index)

    def get_feature_importance(self, *args: Any, **kwargs: Any) -> pd.Series:
        """Feature importance summed over the sub-models, each scaled by its weight, largest first."""
        if not self.ensemble:
            raise not_fitted("DEnsembleModel")
        parts = [pd.Series(b.feature_importance(*args, **kwargs), index=feats) * w
                 for b, feats, w in zip(self.ensemble, self.sub_features, self.sub_weights)]
        return pd.concat(parts, axis=1, sort=False).sum(axis=1).sort_values(ascending=False)


def _columns(x: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``x[:, cols]`` (no copy when ``cols`` is every column in order)."""
    if len(cols) == x.shape[1] and np.array_equal(cols, np.arange(x.shape[1])):
        return x
    return np.ascontiguousarray(x[:, cols])


def _pct_rank(v: np.ndarray) -> np.ndarray:
    """Percentile ranks, ties averaged (pandas ``rank(pct=True)``)."""
    return pd.Series(v).rank(pct=True).to_numpy()


def _loss_curve_ranks(booster: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the mean percentile rank of its loss over the first and over the last 10% (at least one)
    of the sub-model's iterations; the loss after iteration t uses the trees up to t."""
    n_iter = booster.current_iteration()
    part = max(int(n_iter * 0.1), 1)
    head, tail = list(range(part)), list(range(n_iter - part, n_iter))
    ranks: dict[int, np.ndarray] = {}
    acc: np.ndarray | None = None
    last = -2
    for t in sorted(set(head) | set(tail)):
        if acc is not None and t == last + 1:
            acc = acc + booster.predict(x, start_iteration=t, num_iteration=1)
        else:
            acc = booster.predict(x, num_iteration=t + 1)
        last = t
        ranks[t] = _pct_rank((y - acc) ** 2)
    return (np.mean([ranks[t] for t in head], axis=0), np.mean([ranks[t] for t in tail], axis=0))
