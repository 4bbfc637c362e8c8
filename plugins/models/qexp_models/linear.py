"""``LinearModel``: OLS, ridge, lasso or non-negative least squares (Qlib's ``qlib.contrib.model.linear``).

Solved with numpy/scipy directly (no scikit-learn): OLS by ``numpy.linalg.lstsq``, ridge in closed form,
lasso by coordinate descent on the Gram matrix, NNLS by ``scipy.optimize.nnls``. The objectives match
scikit-learn's ``LinearRegression``, ``Ridge`` and ``Lasso``, which Qlib uses:

- ridge: ``||y - Xw||^2 + alpha ||w||^2``
- lasso: ``1 / (2 n) ||y - Xw||^2 + alpha ||w||_1``

With ``fit_intercept`` the intercept is not penalised (the data are centred first); sample weights from a
reweighter weight the squared errors.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from qexp.ext import Model

from ._data import DK_L, check_frame, has_segment, infer_features, label_vector, not_fitted, require_segment

ESTIMATORS = ("ols", "ridge", "lasso", "nnls")


class LinearModel(Model):
    """A linear model ``pred = X @ coef_ + intercept_``.

    Args:
        estimator: ``"ols"``, ``"ridge"``, ``"lasso"`` or ``"nnls"`` (coefficients >= 0).
        alpha: the penalty of ridge and lasso (must be 0 for ols and nnls).
        fit_intercept: fit an intercept (Qlib's benchmark uses False).
        include_valid: train on ``train`` and ``valid`` together.
    """

    OLS, RIDGE, LASSO, NNLS = ESTIMATORS

    def __init__(self, estimator: str = "ols", alpha: float = 0.0, fit_intercept: bool = False,
                 include_valid: bool = False):
        if estimator not in ESTIMATORS:
            raise ValueError(f"LinearModel: unknown estimator {estimator!r}; use one of "
                             f"{', '.join(map(repr, ESTIMATORS))}")
        if alpha != 0 and estimator not in (self.RIDGE, self.LASSO):
            raise ValueError(f"LinearModel: alpha={alpha} only applies to 'ridge' and 'lasso', not {estimator!r}")
        if alpha < 0:
            raise ValueError(f"LinearModel: alpha must be >= 0, got {alpha}")
        self.estimator = estimator
        self.alpha = float(alpha)
        self.fit_intercept = fit_intercept
        self.include_valid = include_valid
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.lasso_max_iter = 1000
        self.lasso_tol = 1e-4

    def fit(self, dataset: Any, reweighter: Any = None) -> LinearModel:
        """Fit on the learn data of ``train`` (and ``valid`` with ``include_valid``), rows with any NaN dropped."""
        require_segment(dataset, "train", "LinearModel")
        frames = [dataset.prepare("train", col_set=["feature", "label"], data_key=DK_L)]
        check_frame(frames[0], "train", "LinearModel")
        if self.include_valid:
            if has_segment(dataset, "valid"):
                frames.append(dataset.prepare("valid", col_set=["feature", "label"], data_key=DK_L))
            else:
                warnings.warn("LinearModel: include_valid=True but the dataset has no 'valid' segment; training "
                              "on 'train' only", stacklevel=2)
        df = pd.concat(frames) if len(frames) > 1 else frames[0]
        label_vector(df, "train", "LinearModel")  # one label, not all NaN: clear errors first
        df = df.dropna()  # as Qlib: a row with any NaN feature or label is left out
        if df.empty:
            raise ValueError("LinearModel: every training row has a NaN feature or label; fill the features "
                             "(e.g. Fillna in infer_processors) or drop NaN columns")
        x = df["feature"].to_numpy(dtype=np.float64)
        y = df["label"].iloc[:, 0].to_numpy(dtype=np.float64)
        w = None
        if reweighter is not None:
            w = np.asarray(reweighter.reweight(df), dtype=np.float64).reshape(-1)
            if len(w) != len(y) or (w < 0).any():
                raise ValueError(f"LinearModel: the reweighter must return {len(y)} non-negative weights")
        if self.estimator == self.NNLS:
            self.coef_, self.intercept_ = _nnls(x, y, w, self.fit_intercept)
        else:
            self.coef_, self.intercept_ = self._fit_centered(x, y, w)
        self.feature_names = [str(c) for c in df["feature"].columns]
        return self

    def _fit_centered(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, float]:
        # Centring removes the intercept from the problem (and keeps it unpenalised), as scikit-learn does.
        x_mean = np.zeros(x.shape[1])
        y_mean = 0.0
        if self.fit_intercept:
            x_mean = np.average(x, axis=0, weights=w)
            y_mean = float(np.average(y, weights=w))
            x = x - x_mean
            y = y - y_mean
        if w is not None:
            sw = np.sqrt(w)
            x = x * sw[:, None]
            y = y * sw
        if self.estimator == self.OLS:
            coef = np.linalg.lstsq(x, y, rcond=None)[0]
        elif self.estimator == self.RIDGE:
            gram = x.T @ x
            gram[np.diag_indices_from(gram)] += self.alpha
            coef = np.linalg.solve(gram, x.T @ y)
        else:
            n = len(y) if w is None else float(w.sum())
            coef = lasso_cd(x.T @ x / n, x.T @ y / n, float(y @ y) / n, self.alpha,
                            max_iter=self.lasso_max_iter, tol=self.lasso_tol)
        return coef, float(y_mean - x_mean @ coef)

    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        """``X @ coef_ + intercept_`` for ``segment``'s infer rows (NaN where a feature is NaN)."""
        if self.coef_ is None:
            raise not_fitted("LinearModel")
        x = infer_features(dataset, segment, "LinearModel", n_fitted=len(self.coef_))
        return pd.Series(x.to_numpy(dtype=np.float64) @ self.coef_ + self.intercept_, index=x.index)


def lasso_cd(gram: np.ndarray, xty: np.ndarray, yty: float, alpha: float, max_iter: int = 1000,
             tol: float = 1e-4) -> np.ndarray:
    """Minimise ``0.5 w'Gw - w'c + alpha |w|_1`` (the lasso, with ``G = X'X/n``, ``c = X'y/n``) by cyclic
    coordinate descent; stops when the duality gap is below ``tol * y'y/n``, as scikit-learn does.

    Working on the Gram matrix makes each sweep O(F^2) whatever the number of rows.
    """
    n_feat = len(xty)
    coef = np.zeros(n_feat)
    grad = np.zeros(n_feat)  # G @ coef, kept up to date
    diag = np.diag(gram).copy()
    gap_tol = tol * yty
    for it in range(max_iter):
        max_step = 0.0
        max_coef = 0.0
        for j in range(n_feat):
            if diag[j] == 0.0:
                continue
            old = coef[j]
            rho = xty[j] - grad[j] + diag[j] * old
            new = np.sign(rho) * max(abs(rho) - alpha, 0.0) / diag[j]
            if new != old:
                grad += gram[:, j] * (new - old)
                coef[j] = new
            max_step = max(max_step, abs(new - old))
            max_coef = max(max_coef, abs(new))
        if max_coef == 0.0 or max_step / max_coef < tol or it == max_iter - 1:
            gap = _lasso_gap(coef, grad, xty, yty, alpha)
            if gap < gap_tol:
                return coef
    warnings.warn(f"LinearModel: lasso did not converge in {max_iter} sweeps (duality gap "
                  f"{_lasso_gap(coef, grad, xty, yty, alpha):.3g} > {gap_tol:.3g}); raise lasso_max_iter or alpha",
                  RuntimeWarning, stacklevel=3)
    return coef


def _lasso_gap(coef: np.ndarray, grad: np.ndarray, xty: np.ndarray, yty: float, alpha: float) -> float:
    # scikit-learn's duality gap (enet_coordinate_descent_gram), in the 1/n-scaled units used here.
    r_norm2 = yty - 2.0 * coef @ xty + coef @ grad
    xtr = xty - grad
    dual_norm = float(np.max(np.abs(xtr))) if len(xtr) else 0.0
    if dual_norm > alpha:
        const = alpha / dual_norm
        gap = 0.5 * r_norm2 * (1.0 + const ** 2)
    else:
        const = 1.0
        gap = r_norm2
    return float(gap + alpha * np.abs(coef).sum() - const * (yty - coef @ xty))


def _nnls(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, fit_intercept: bool) -> tuple[np.ndarray, float]:
    from scipy.optimize import nnls
    if fit_intercept:  # as Qlib: the intercept is one more (non-negative) coefficient
        x = np.c_[x, np.ones(len(x))]
    if w is not None:
        sw = np.sqrt(w)
        x = x * sw[:, None]
        y = y * sw
    coef = nnls(x, y)[0]
    if fit_intercept:
        return coef[:-1], float(coef[-1])
    return coef, 0.0
