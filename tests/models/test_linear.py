"""LinearModel: each estimator against its definition (and scikit-learn when installed), NaN rows, IC on
the synthetic market, a round trip in a new process, and bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qexp import R
from qexp_models.linear import LinearModel, lasso_cd

from .conftest import FRAME_SEGMENTS, FrameDataset, assert_test_index, predict_in_subprocess, random_frame, test_ic


def _train_xy(ds, include_valid=False):
    segs = ["train", "valid"] if include_valid else ["train"]
    df = pd.concat([ds.prepare(s, col_set=["feature", "label"], data_key="learn") for s in segs]).dropna()
    return df["feature"].to_numpy(np.float64), df["label"].to_numpy(np.float64)[:, 0]


@pytest.fixture(scope="module")
def frame_ds():
    frame = random_frame(n_days=120, n_inst=10, n_feat=5, seed=1)
    frame.iloc[:, :5] += 0.3  # features with non-zero means make the intercept matter
    return FrameDataset(frame, FRAME_SEGMENTS)


def test_ols_on_the_synthetic_market(ds158_norm) -> None:
    model = LinearModel().fit(ds158_norm)
    pred = model.predict(ds158_norm)
    assert_test_index(pred, ds158_norm)
    ic = test_ic(pred, ds158_norm)
    assert ic > 0.01, f"test IC {ic:.4f}"
    x, y = _train_xy(ds158_norm)
    np.testing.assert_allclose(model.coef_, np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-6, atol=1e-10)
    assert model.intercept_ == 0.0


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_ols_and_ridge_solve_their_normal_equations(frame_ds, fit_intercept) -> None:
    x, y = _train_xy(frame_ds)
    xa = np.c_[x, np.ones(len(x))] if fit_intercept else x
    ols = LinearModel("ols", fit_intercept=fit_intercept).fit(frame_ds)
    beta = np.linalg.solve(xa.T @ xa, xa.T @ y)
    np.testing.assert_allclose(np.r_[ols.coef_, ols.intercept_] if fit_intercept else ols.coef_, beta, rtol=1e-8)
    alpha = 50.0
    ridge = LinearModel("ridge", alpha=alpha, fit_intercept=fit_intercept).fit(frame_ds)
    # ridge: gradient of ||y - Xw - b||^2 + alpha ||w||^2 is zero, and the intercept is not penalised
    resid = y - x @ ridge.coef_ - ridge.intercept_
    np.testing.assert_allclose(-2 * x.T @ resid + 2 * alpha * ridge.coef_, 0, atol=1e-6)
    if fit_intercept:
        assert abs(resid.sum()) < 1e-6
    assert np.linalg.norm(ridge.coef_) < np.linalg.norm(ols.coef_)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_lasso_meets_its_optimality_conditions(frame_ds, fit_intercept) -> None:
    x, y = _train_xy(frame_ds)
    alpha = 0.03
    model = LinearModel("lasso", alpha=alpha, fit_intercept=fit_intercept).fit(frame_ds)
    model_tight = LinearModel("lasso", alpha=alpha, fit_intercept=fit_intercept)
    model_tight.lasso_tol = 1e-10
    model_tight.fit(frame_ds)
    w = model_tight.coef_
    # KKT of 1/(2n)||y - Xw - b||^2 + alpha|w|_1: X'r/n = alpha*sign(w) where w != 0, |X'r/n| <= alpha elsewhere
    grad = x.T @ (y - x @ w - model_tight.intercept_) / len(y)
    nz = w != 0
    assert nz.any() and (~nz).any(), w  # this alpha keeps some features and drops others
    np.testing.assert_allclose(grad[nz], alpha * np.sign(w[nz]), atol=1e-7)
    assert (np.abs(grad[~nz]) <= alpha + 1e-9).all()
    np.testing.assert_allclose(model.coef_, w, atol=1e-3)  # the default tolerance is close to the optimum


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_matches_scikit_learn(frame_ds, fit_intercept) -> None:
    sk = pytest.importorskip("sklearn.linear_model")
    x, y = _train_xy(frame_ds)
    cases = [("ols", 0.0, sk.LinearRegression(fit_intercept=fit_intercept)),
             ("ridge", 30.0, sk.Ridge(alpha=30.0, fit_intercept=fit_intercept)),
             ("lasso", 0.01, sk.Lasso(alpha=0.01, fit_intercept=fit_intercept, tol=1e-10, max_iter=100000))]
    for est, alpha, ref in cases:
        model = LinearModel(est, alpha=alpha, fit_intercept=fit_intercept)
        model.lasso_tol = 1e-10
        model.fit(frame_ds)
        ref.fit(x, y)
        np.testing.assert_allclose(model.coef_, ref.coef_, atol=1e-6, err_msg=est)
        np.testing.assert_allclose(model.intercept_, ref.intercept_, atol=1e-6, err_msg=est)


def test_nnls_coefficients_are_non_negative(frame_ds) -> None:
    from scipy.optimize import nnls
    x, y = _train_xy(frame_ds)
    model = LinearModel("nnls", fit_intercept=True).fit(frame_ds)
    assert (model.coef_ >= 0).all() and model.intercept_ >= 0
    ref = nnls(np.c_[x, np.ones(len(x))], y)[0]
    np.testing.assert_allclose(np.r_[model.coef_, model.intercept_], ref, atol=1e-10)
    ols = LinearModel("ols", fit_intercept=True).fit(frame_ds)
    assert (ols.coef_ < 0).any()  # the constraint binds on this data


def test_reweighter_weights_the_squared_errors(frame_ds) -> None:
    class Reweighter:
        def reweight(self, df):
            return np.where(df.index.get_level_values("instrument") == "S0", 5.0, 1.0)

    x, y = _train_xy(frame_ds)
    w = np.where(frame_ds.prepare("train", col_set=["feature", "label"], data_key="learn").dropna()
                 .index.get_level_values("instrument") == "S0", 5.0, 1.0)
    model = LinearModel("ols").fit(frame_ds, reweighter=Reweighter())
    np.testing.assert_allclose(model.coef_, np.linalg.solve(x.T @ (x * w[:, None]), x.T @ (w * y)), rtol=1e-8)


def test_rows_with_nan_are_dropped_and_predicted_as_nan(frame_ds) -> None:
    frame = frame_ds.frame.copy()
    frame.iloc[3, 1] = np.nan      # a NaN feature in train
    frame.iloc[7, -1] = np.nan     # a NaN label in train
    with_nan = LinearModel().fit(FrameDataset(frame, FRAME_SEGMENTS))
    clean = LinearModel().fit(FrameDataset(frame.drop(frame.index[[3, 7]]), FRAME_SEGMENTS))
    np.testing.assert_allclose(with_nan.coef_, clean.coef_, rtol=1e-10)
    test_frame = frame.copy()
    first_test_row = np.flatnonzero(test_frame.index.get_level_values("datetime") >= "2020-03-06")[0]
    test_frame.iloc[first_test_row, 0] = np.nan
    pred = with_nan.predict(FrameDataset(test_frame, FRAME_SEGMENTS))
    assert np.isnan(pred.iloc[0]) and np.isfinite(pred.iloc[1:]).all()


def test_include_valid(frame_ds) -> None:
    model = LinearModel(include_valid=True).fit(frame_ds)
    x, y = _train_xy(frame_ds, include_valid=True)
    np.testing.assert_allclose(model.coef_, np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-8)
    no_valid = FrameDataset(frame_ds.frame, {"train": FRAME_SEGMENTS["train"], "test": FRAME_SEGMENTS["test"]})
    with pytest.warns(UserWarning, match="no 'valid' segment"):
        LinearModel(include_valid=True).fit(no_valid)


def test_lasso_cd_warns_when_it_does_not_converge() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 30))
    x[:, 1] = x[:, 0] + 1e-3 * rng.standard_normal(200)  # near-collinear columns converge slowly
    y = x[:, 0] + rng.standard_normal(200)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        lasso_cd(x.T @ x / 200, x.T @ y / 200, float(y @ y) / 200, 1e-4, max_iter=2, tol=1e-12)


def test_round_trip_in_a_new_process(ds158_norm, runs, tmp_path) -> None:
    model = LinearModel("ridge", alpha=10.0).fit(ds158_norm)
    with R.start(experiment_name="linear"):
        R.save_objects(**{"params.pkl": model})
        rid = R.get_recorder().id
    pd.testing.assert_series_equal(predict_in_subprocess(runs, rid, ds158_norm, tmp_path),
                                   model.predict(ds158_norm))


# ---- bad input ----------------------------------------------------------------------------------------
def test_unknown_estimator() -> None:
    with pytest.raises(ValueError, match="unknown estimator 'svm'"):
        LinearModel("svm")


def test_alpha_only_for_ridge_and_lasso() -> None:
    with pytest.raises(ValueError, match="only applies to 'ridge' and 'lasso'"):
        LinearModel("ols", alpha=1.0)


def test_no_train_segment(frame_ds) -> None:
    with pytest.raises(ValueError, match="needs a 'train' segment"):
        LinearModel().fit(FrameDataset(frame_ds.frame, {"test": FRAME_SEGMENTS["test"]}))


def test_all_nan_labels(frame_ds) -> None:
    frame = frame_ds.frame.copy()
    frame[("label", "LABEL0")] = np.nan
    with pytest.raises(ValueError, match="every label in 'train' is NaN"):
        LinearModel().fit(FrameDataset(frame, FRAME_SEGMENTS))


def test_every_row_has_a_nan_feature(frame_ds) -> None:
    frame = frame_ds.frame.copy()
    frame[("feature", "F0")] = np.nan
    with pytest.raises(ValueError, match="every training row has a NaN feature or label"):
        LinearModel().fit(FrameDataset(frame, FRAME_SEGMENTS))


def test_predict_before_fit(frame_ds) -> None:
    with pytest.raises(ValueError, match="not fitted yet"):
        LinearModel().predict(frame_ds)
