"""XGBModel, CatBoostModel and DEnsembleModel on the synthetic market's Alpha158: IC on the planted signal,
early stopping at the best iteration, per-iteration metrics in the recorder, the same predictions as the
library called directly, a save/load round trip in a new process, and clear errors for bad input."""
from __future__ import annotations

import sys
import tempfile
import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

import qexp
from qexp import MissingExtraError, R
from qexp_models.catboost_model import CatBoostModel
from qexp_models.double_ensemble import DEnsembleModel
from qexp_models.xgb import XGBModel

from .conftest import (
    FRAME_SEGMENTS,
    LGB_PARAMS,
    FrameDataset,
    assert_test_index,
    predict_in_subprocess,
    random_frame,
    test_ic,
)

ROUNDS = 300
STOP = 20
# small trees and a low learning rate suit the small market (as LGB_PARAMS); one thread: the machine is shared
XGB_PARAMS = {"eta": 0.02, "max_depth": 3, "min_child_weight": 50, "colsample_bytree": 0.5, "nthread": 1, "seed": 0}
CB_PARAMS = {"learning_rate": 0.03, "max_depth": 4, "thread_count": 1, "random_seed": 0}
DE_PARAMS = {"num_models": 3, "decay": 0.5, "epochs": 40, "sub_weights": [1, 0.5, 0.5], **LGB_PARAMS}


def _learn(ds, seg):
    df = ds.prepare(seg, col_set=["feature", "label"], data_key="learn")
    return df["feature"].to_numpy(), df["label"].to_numpy()[:, 0]


def _test_x(ds):
    return ds.prepare("test", col_set="feature", data_key="infer").to_numpy()


def _fit_in_run(make, ds, exp: str, **fit_kwargs):
    uri = tempfile.mkdtemp(prefix=f"qexp-{exp}-")
    qexp.init(uri=uri)
    evals: dict = {}
    with R.start(experiment_name=exp):
        model = make().fit(ds, verbose_eval=0, evals_result=evals, **fit_kwargs)
        rec = R.get_recorder()
    return model, rec, evals, uri


@pytest.fixture(scope="module")
def xgb_fit(ds158):
    return _fit_in_run(lambda: XGBModel(**XGB_PARAMS), ds158, "xgb", num_boost_round=ROUNDS,
                       early_stopping_rounds=STOP)


@pytest.fixture(scope="module")
def cb_fit(ds158):
    return _fit_in_run(lambda: CatBoostModel(**CB_PARAMS), ds158, "catboost", num_boost_round=ROUNDS,
                       early_stopping_rounds=STOP)


@pytest.fixture(scope="module")
def de_fit(ds158):
    return _fit_in_run(lambda: DEnsembleModel(**DE_PARAMS), ds158, "dense")


FITS = ["xgb_fit", "cb_fit", "de_fit"]


@pytest.mark.parametrize("fit", FITS)
def test_fit_predict_has_test_index_and_positive_ic(fit, ds158, request) -> None:
    model = request.getfixturevalue(fit)[0]
    pred = model.predict(ds158)
    assert_test_index(pred, ds158)
    ic = test_ic(pred, ds158)
    assert ic > 0.015, f"{type(model).__name__} test IC {ic:.4f}"


@pytest.mark.parametrize("fit", FITS)
def test_round_trip_in_a_new_process_predicts_identically(fit, ds158, tmp_path, request) -> None:
    model, _, _, uri = request.getfixturevalue(fit)
    qexp.init(uri=uri)
    with R.start(experiment_name="save"):
        R.save_objects(**{"params.pkl": model})
        rid = R.get_recorder().id
    loaded = predict_in_subprocess(uri, rid, ds158, tmp_path)
    pd.testing.assert_series_equal(loaded, model.predict(ds158))


# ---- XGBoost ------------------------------------------------------------------------------------------
def test_xgb_early_stopping_keeps_the_best_iteration(xgb_fit, ds158) -> None:
    model, _, evals, _ = xgb_fit
    valid = evals["valid"]
    best = model.best_iteration
    assert 1 <= best < ROUNDS - STOP
    assert len(valid) == best + 1 + STOP and int(np.argmin(valid)) == best
    assert model.model.num_boosted_rounds() == best + 1


def test_xgb_same_predictions_as_xgboost_train(xgb_fit, ds158) -> None:
    import xgboost as xgb
    model = xgb_fit[0]
    (xt, yt), (xv, yv) = _learn(ds158, "train"), _learn(ds158, "valid")
    dtrain = xgb.DMatrix(xt, label=yt)
    booster = xgb.train(XGB_PARAMS, dtrain, num_boost_round=ROUNDS, evals=[(dtrain, "train"),
                        (xgb.DMatrix(xv, label=yv), "valid")], early_stopping_rounds=STOP, verbose_eval=False)
    assert booster.best_iteration == model.best_iteration
    direct = booster.predict(xgb.DMatrix(_test_x(ds158)), iteration_range=(0, booster.best_iteration + 1))
    np.testing.assert_array_equal(model.predict(ds158).to_numpy(), direct)


def test_xgb_per_iteration_metrics_are_in_the_recorder(xgb_fit) -> None:
    _, rec, evals, _ = xgb_fit
    for key, values in (("rmse.train", evals["train"]), ("rmse.valid", evals["valid"])):
        hist = rec.get_metric_history(key)
        assert hist["step"].tolist() == list(range(len(values)))
        np.testing.assert_allclose(hist["value"].to_numpy(), values)
        assert (hist["timestamp"].diff().dropna() >= 0).all()


def test_xgb_feature_importance_names_features(xgb_fit, ds158) -> None:
    imp = xgb_fit[0].get_feature_importance()
    assert len(imp) > 0 and set(imp.index) <= set(ds158.prepare("test", col_set="feature").columns)


def test_xgb_n_estimators_is_dropped_and_loss_maps_to_objective() -> None:
    model = XGBModel(loss="mse", n_estimators=647, eta=0.1)
    assert model._params == {"objective": "reg:squarederror", "eta": 0.1}


# ---- CatBoost -----------------------------------------------------------------------------------------
def test_catboost_early_stopping_keeps_the_best_iteration(cb_fit) -> None:
    model, _, evals, _ = cb_fit
    valid = evals["valid"]
    best = model.model.get_best_iteration()
    assert 1 <= best < ROUNDS - STOP
    assert len(valid) == best + 1 + STOP and int(np.argmin(valid)) == best
    assert model.model.tree_count_ == best + 1


def test_catboost_same_predictions_as_catboost(cb_fit, ds158) -> None:
    from catboost import CatBoost, Pool
    model = cb_fit[0]
    (xt, yt), (xv, yv) = _learn(ds158, "train"), _learn(ds158, "valid")
    direct = CatBoost({"loss_function": "RMSE", **CB_PARAMS, "iterations": ROUNDS, "early_stopping_rounds": STOP,
                       "verbose": False, "task_type": "CPU", "allow_writing_files": False})
    direct.fit(Pool(xt, label=yt), eval_set=Pool(xv, label=yv), use_best_model=True)
    np.testing.assert_array_equal(model.predict(ds158).to_numpy(), direct.predict(_test_x(ds158)))


def test_catboost_per_iteration_metrics_are_in_the_recorder(cb_fit) -> None:
    _, rec, evals, _ = cb_fit
    for key, values in (("RMSE.train", evals["train"]), ("RMSE.valid", evals["valid"])):
        hist = rec.get_metric_history(key)
        assert hist["step"].tolist() == list(range(len(values)))
        np.testing.assert_allclose(hist["value"].to_numpy(), values)


def test_catboost_writes_no_catboost_info(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CatBoostModel(thread_count=1).fit(FrameDataset(random_frame(), FRAME_SEGMENTS), num_boost_round=5,
                                          verbose_eval=0)
    assert list(tmp_path.iterdir()) == []


# ---- DoubleEnsemble -----------------------------------------------------------------------------------
def test_de_trains_sub_models_on_selected_features(de_fit, ds158) -> None:
    model, rec, evals, _ = de_fit
    n_feat = ds158.prepare("test", col_set="feature").shape[1]
    assert len(model.ensemble) == 3 and list(evals) == ["sub1", "sub2", "sub3"]
    assert len(model.sub_features[0]) == n_feat
    for feats in model.sub_features[1:]:
        # from five bins the shares 0.8 .. 0.4 (rounded up) are kept: between 40% and 80% of the features
        assert 0.4 * n_feat <= len(feats) < n_feat
        assert list(feats) == [c for c in model.sub_features[0] if c in set(feats)]  # the dataset's order
    for k in (1, 2, 3):
        hist = rec.get_metric_history(f"l2.valid.sub{k}")
        assert hist["step"].tolist() == list(range(DE_PARAMS["epochs"]))
        np.testing.assert_allclose(hist["value"].to_numpy(), evals[f"sub{k}"]["valid"]["l2"])


def test_de_prediction_is_the_weighted_mean_of_the_sub_models(de_fit, ds158) -> None:
    model = de_fit[0]
    x = ds158.prepare("test", col_set="feature", data_key="infer")
    subs = [b.predict(x.loc[:, f].to_numpy()) for b, f in zip(model.ensemble, model.sub_features)]
    expected = (subs[0] * 1 + subs[1] * 0.5 + subs[2] * 0.5) / 2.0
    np.testing.assert_allclose(model.predict(ds158).to_numpy(), expected, rtol=1e-12)


def test_de_with_one_model_and_no_sr_fs_is_lightgbm(ds158) -> None:
    model = DEnsembleModel(num_models=1, enable_sr=False, enable_fs=False, epochs=30, **LGB_PARAMS)
    model.fit(ds158, verbose_eval=0)
    (xt, yt), (xv, yv) = _learn(ds158, "train"), _learn(ds158, "valid")
    dtrain = lgb.Dataset(xt, label=yt, weight=np.ones(len(yt)))
    booster = lgb.train({"objective": "mse", "verbosity": -1, **LGB_PARAMS}, dtrain, num_boost_round=30,
                        valid_sets=[dtrain, lgb.Dataset(xv, label=yv)], valid_names=["train", "valid"])
    np.testing.assert_array_equal(model.predict(ds158).to_numpy(), booster.predict(_test_x(ds158)))


def test_de_is_reproducible_with_a_seed() -> None:
    ds = FrameDataset(random_frame(n_days=120, n_inst=10, n_feat=10), FRAME_SEGMENTS)
    kw = dict(num_models=3, decay=0.5, epochs=10, num_threads=1, min_data_in_leaf=5, seed=3)
    a, b = DEnsembleModel(**kw).fit(ds, verbose_eval=0), DEnsembleModel(**kw).fit(ds, verbose_eval=0)
    assert [list(f) for f in a.sub_features] == [list(f) for f in b.sub_features]
    pd.testing.assert_series_equal(a.predict(ds), b.predict(ds))


def test_de_early_stopping_keeps_the_best_iteration_of_each_sub_model(ds158) -> None:
    evals: dict = {}
    model = DEnsembleModel(num_models=2, epochs=400, early_stopping_rounds=10, decay=0.5, sub_weights=[1, 1],
                           **LGB_PARAMS)
    model.fit(ds158, verbose_eval=0, evals_result=evals)
    for booster, k in zip(model.ensemble, ("sub1", "sub2")):
        valid = evals[k]["valid"]["l2"]
        assert len(valid) < 400
        assert booster.current_iteration() == int(np.argmin(valid)) + 1 == len(valid) - 10


def test_de_sample_reweighting_matches_the_formula() -> None:
    """SR against a direct pandas computation of the rule (rank, bin, 1 / (decay^k h_avg + 0.1))."""
    rng = np.random.default_rng(0)
    n = 500
    start, end, loss = rng.random(n) + 0.1, rng.random(n) + 0.1, rng.random(n)
    model = DEnsembleModel(num_models=2, sub_weights=[1, 1], decay=0.5, bins_sr=10, alpha1=1.0, alpha2=2.0)
    got = model._sample_reweight((start, end), loss, 2)
    h = pd.DataFrame({"h": 1.0 * pd.Series(-loss).rank(pct=True) + 2.0 * pd.Series(end / start).rank(pct=True)})
    h["bin"] = pd.cut(h["h"], 10)
    avg = h.groupby("bin", observed=True)["h"].transform("mean")
    np.testing.assert_allclose(got, 1.0 / (0.5 ** 2 * avg.to_numpy() + 0.1))
    assert got[np.argmax(h["h"])] < got[np.argmin(h["h"])]  # easy, noisy samples weigh less


def test_de_feature_selection_keeps_the_informative_features() -> None:
    """A label made of F0 and F1 only: permuting them hurts most, so they fall in the top bin (ratio 1.0)."""
    rng = np.random.default_rng(1)
    frame = random_frame(n_days=150, n_inst=20, n_feat=8)
    x = frame["feature"].to_numpy()
    frame[("label", "LABEL0")] = (x[:, 0] - x[:, 1] + 0.1 * rng.standard_normal(len(x))).astype(np.float32)
    model = DEnsembleModel(num_models=2, sub_weights=[1, 1], decay=0.5, epochs=30, sample_ratios=[1.0, 0.5, 0.5,
                           0.5, 0.5], num_threads=1, min_data_in_leaf=5, seed=0)
    model.fit(FrameDataset(frame, FRAME_SEGMENTS), verbose_eval=0)
    assert {"F0", "F1"} <= set(model.sub_features[1]) and len(model.sub_features[1]) < 8


# ---- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: XGBModel(loss="mae"), "XGBModel: unknown loss 'mae'"),
    (lambda: XGBModel(loss="mse", objective="reg:squarederror"), "either loss or objective"),
    (lambda: CatBoostModel(loss="MAE"), r"CatBoostModel: unknown loss 'MAE'; use one of 'RMSE', 'Logloss'"),
    (lambda: DEnsembleModel(loss="huber"), "DEnsembleModel: unknown loss 'huber'"),
    (lambda: DEnsembleModel(base_model="mlp"), "unknown base_model 'mlp'"),
    (lambda: DEnsembleModel(bins_fs=3), "sample_ratios has 5 values but bins_fs is 3"),
    (lambda: DEnsembleModel(num_models=2, sub_weights=[1, 2, 3]), "sub_weights has 3 values but num_models is 2"),
    (lambda: DEnsembleModel(num_models=0), "num_models must be a positive integer, got 0"),
    (lambda: XGBModel(num_boost_round=2.5), "XGBModel: num_boost_round must be a positive integer, got 2.5"),
    (lambda: CatBoostModel(early_stopping_rounds=True), "early_stopping_rounds must be a positive integer"),
    (lambda: DEnsembleModel(decay=-1), "decay must be a positive number"),
])
def test_bad_arguments(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_xgb_unknown_objective_is_one_clear_line() -> None:
    with pytest.raises(ValueError, match=r"XGBModel: xgboost rejected the parameters: .*nosuch") as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            XGBModel(objective="reg:nosuch", nthread=1).fit(FrameDataset(random_frame(), FRAME_SEGMENTS),
                                                             num_boost_round=3, verbose_eval=0)
    assert "\n" not in str(info.value)


def _inf_frame():
    frame = random_frame()
    frame.iloc[[3, 7], 1] = np.inf
    return frame


def test_xgb_inf_features_are_one_clear_line_naming_the_fixes() -> None:
    with pytest.raises(ValueError) as info:
        XGBModel(nthread=1).fit(FrameDataset(_inf_frame(), FRAME_SEGMENTS), num_boost_round=3, verbose_eval=0)
    msg = str(info.value)
    assert "\n" not in msg and "XGBoostError" not in msg and "Stack trace" not in msg, msg
    assert msg.startswith("XGBModel: the 'train' features hold 2 inf value(s)"), msg
    assert "ProcessInf" in msg and "missing: .inf" in msg and "model kwargs in the config" not in msg


def test_xgb_missing_inf_reads_inf_as_missing() -> None:
    ds = FrameDataset(_inf_frame(), FRAME_SEGMENTS)
    model = XGBModel(nthread=1, missing=np.inf).fit(ds, num_boost_round=3, verbose_eval=0)
    assert "missing" not in model._params  # a DMatrix setting, not one of xgboost.train's parameters
    assert np.isfinite(model.predict(ds).to_numpy()).all()


def test_library_errors_about_data_do_not_blame_the_kwargs() -> None:
    from qexp_models.gbdt_common import rejected
    data = rejected("XGBModel", "xgboost", Exception("[10:11:12] /src/data.cc:9: Check failed: valid: Label "
                                                     "contains NaN, infinity or a value too large.\nStack trace:\n"
                                                     "  [bt] (0) libxgboost.so"))
    assert str(data) == ("XGBModel: xgboost refused the data: Label contains NaN, infinity or a value too large. "
                         "(check the dataset's features and labels)")
    params = rejected("XGBModel", "xgboost", Exception("Invalid Parameter format for max_depth expect int"))
    assert "rejected the parameters" in str(params) and "model kwargs" in str(params)


def test_evals_result_has_qlib_s_shape(xgb_fit, cb_fit) -> None:
    # Qlib's XGBModel/CatBoostModel replace each set's {metric: values} by the first metric's values
    for _, _, evals, _ in (xgb_fit, cb_fit):
        assert set(evals) == {"train", "valid"}
        assert all(isinstance(v, list) and v and all(isinstance(x, float) for x in v) for v in evals.values())
        assert len(evals["train"]) == len(evals["valid"])
    assert evals["valid"] == cb_fit[0].model.get_evals_result()["validation"]["RMSE"]


def test_catboost_bad_parameter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="CatBoostModel: catboost rejected the parameters"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            CatBoostModel(grow_policy="Sideways", thread_count=1).fit(FrameDataset(random_frame(), FRAME_SEGMENTS),
                                                                     num_boost_round=3, verbose_eval=0)


@pytest.mark.parametrize("cls", [XGBModel, CatBoostModel, DEnsembleModel])
def test_predict_before_fit(cls) -> None:
    with pytest.raises(ValueError, match="not fitted yet"):
        cls().predict(FrameDataset(random_frame(), FRAME_SEGMENTS))


@pytest.mark.parametrize("cls, kwargs", [(XGBModel, {"nthread": 1}), (CatBoostModel, {"thread_count": 1}),
                                         (DEnsembleModel, {"num_models": 1, "epochs": 3, "num_threads": 1})])
def test_dataset_without_train_segment(cls, kwargs) -> None:
    ds = FrameDataset(random_frame(), {"valid": FRAME_SEGMENTS["valid"], "test": FRAME_SEGMENTS["test"]})
    with pytest.raises(ValueError, match="needs a 'train' segment"):
        cls(**kwargs).fit(ds)


@pytest.mark.parametrize("cls, kwargs", [(XGBModel, {"nthread": 1}), (CatBoostModel, {"thread_count": 1}),
                                         (DEnsembleModel, {"num_models": 1, "epochs": 3, "num_threads": 1,
                                                           "min_data_in_leaf": 5})])
def test_without_valid_segment_trains_with_a_warning(cls, kwargs) -> None:
    ds = FrameDataset(random_frame(), {"train": FRAME_SEGMENTS["train"], "test": FRAME_SEGMENTS["test"]})
    fit_kw = {} if cls is DEnsembleModel else {"num_boost_round": 4}
    with pytest.warns(UserWarning, match="no 'valid' segment"):
        model = cls(**kwargs).fit(ds, verbose_eval=0, **fit_kw)
    assert len(model.predict(ds)) == len(ds.prepare("test", col_set="feature"))


def test_catboost_logloss_needs_binary_labels() -> None:
    with pytest.raises(ValueError, match="needs 0/1 labels"):
        CatBoostModel(loss="Logloss").fit(FrameDataset(random_frame(), FRAME_SEGMENTS))


@pytest.mark.parametrize("cls, module, extra", [(XGBModel, "xgboost", "xgboost"),
                                                (CatBoostModel, "catboost", "catboost"),
                                                (DEnsembleModel, "lightgbm", "lightgbm")])
def test_missing_library_names_the_extra(cls, module, extra, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=rf'pip install "qexp\[{extra}\]"'):
        cls().fit(FrameDataset(random_frame(), FRAME_SEGMENTS))


@pytest.mark.parametrize("library", ["lightgbm", "xgboost", "catboost"])
def test_one_timestamp_callback_per_library_stamps_every_iteration(library) -> None:
    from qexp_models.gbdt_common import iteration_times
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((200, 3)), rng.standard_normal(200)
    times: list[int] = []
    callback = iteration_times(library, times)
    if library == "lightgbm":
        lgb.train({"verbosity": -1, "num_threads": 1}, lgb.Dataset(x, y), num_boost_round=7, callbacks=[callback])
    elif library == "xgboost":
        import xgboost as xgb
        xgb.train({"nthread": 1}, xgb.DMatrix(x, label=y), num_boost_round=7, callbacks=[callback])
    else:
        from catboost import CatBoost
        CatBoost({"iterations": 7, "thread_count": 1, "verbose": False, "allow_writing_files": False}).fit(
            x, y, callbacks=[callback])
    assert len(times) == 7 and times == sorted(times)
