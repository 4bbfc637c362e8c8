"""LGBModel on the synthetic market's Alpha158: IC, early stopping, recorder metrics, equivalence with
lightgbm.train, fine-tuning, a save/load round trip in a new process, and bad input."""
from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from qexp import R
from qexp_models.lgb import LGBModel

from .conftest import (
    FRAME_SEGMENTS,
    LGB_PARAMS,
    FrameDataset,
    assert_test_index,
    predict_in_subprocess,
    random_frame,
    test_ic,
)

ROUNDS = 200
STOP = 20


@pytest.fixture(scope="module")
def fitted(ds158):
    """One fit inside a run, shared by the tests that only read it: (model, recorder, evals_result)."""
    import tempfile

    import qexp
    uri = tempfile.mkdtemp(prefix="qexp-lgb-")
    qexp.init(uri=uri)
    evals: dict = {}
    with R.start(experiment_name="lgb"):
        model = LGBModel(num_boost_round=ROUNDS, early_stopping_rounds=STOP, **LGB_PARAMS)
        model.fit(ds158, verbose_eval=0, evals_result=evals)
        rec = R.get_recorder()
    return model, rec, evals, uri


def test_fit_predict_has_test_index_and_positive_ic(fitted, ds158) -> None:
    model, _, _, _ = fitted
    pred = model.predict(ds158)
    assert_test_index(pred, ds158)
    ic = test_ic(pred, ds158)
    assert ic > 0.01, f"test IC {ic:.4f}"


def test_early_stopping_stops_and_predicts_at_best_iteration(fitted, ds158) -> None:
    model, _, evals, _ = fitted
    best = model.model.best_iteration
    assert 1 <= best < ROUNDS
    n_iter = len(evals["valid"]["l2"])
    assert n_iter == best + STOP  # stopped STOP rounds after the best valid l2
    assert np.argmin(evals["valid"]["l2"]) + 1 == best
    x = ds158.prepare("test", col_set="feature", data_key="infer").to_numpy()
    np.testing.assert_array_equal(model.predict(ds158).to_numpy(), model.model.predict(x, num_iteration=best))
    assert model.model.current_iteration() == best  # lightgbm.train keeps the trees up to the best one


def test_per_iteration_metrics_are_in_the_recorder(fitted) -> None:
    _, rec, evals, _ = fitted
    for key, values in (("l2.train", evals["train"]["l2"]), ("l2.valid", evals["valid"]["l2"])):
        hist = rec.get_metric_history(key)
        assert hist["step"].tolist() == list(range(len(values)))
        np.testing.assert_allclose(hist["value"].to_numpy(), values)
        assert (hist["timestamp"].diff().dropna() >= 0).all()
    assert evals["train"]["l2"][-1] < evals["train"]["l2"][0]


def test_metrics_are_written_in_one_batch(ds158, runs, monkeypatch) -> None:
    with R.start(experiment_name="lgb-batch"):
        rec = R.get_recorder()
        writes: list[int] = []
        original = type(rec)._log_metrics
        monkeypatch.setattr(type(rec), "_log_metrics", lambda self, batch: (writes.append(len(batch)),
                                                                            original(self, batch))[1])
        model = LGBModel(num_boost_round=30, early_stopping_rounds=5, **LGB_PARAMS)
        model.fit(ds158, verbose_eval=0)
    n = model.model.current_iteration()
    assert writes == [2 * n]


def test_no_run_active_logs_nothing_and_still_fits(ds158) -> None:
    assert not R.has_active()
    model = LGBModel(num_boost_round=5, **LGB_PARAMS).fit(ds158, verbose_eval=0)
    assert model.model.current_iteration() == 5


def test_same_predictions_as_lightgbm_train(fitted, ds158) -> None:
    model, _, _, _ = fitted
    mats = {}
    for seg in ("train", "valid"):
        df = ds158.prepare(seg, col_set=["feature", "label"], data_key="learn")
        mats[seg] = lgb.Dataset(df["feature"].values, label=df["label"].values[:, 0])
    params = {"objective": "mse", "verbosity": -1, **LGB_PARAMS}
    booster = lgb.train(params, mats["train"], num_boost_round=ROUNDS, valid_sets=[mats["train"], mats["valid"]],
                        valid_names=["train", "valid"], callbacks=[lgb.early_stopping(STOP, verbose=False)])
    x = ds158.prepare("test", col_set="feature", data_key="infer").values
    assert booster.best_iteration == model.model.best_iteration
    np.testing.assert_array_equal(model.predict(ds158).to_numpy(), booster.predict(x))


def test_without_valid_segment_trains_all_rounds_with_a_warning(ds158) -> None:
    from qexp_data.dataset import DatasetH
    no_valid = DatasetH(ds158.handler, {"train": ds158.segments["train"], "test": ds158.segments["test"]})
    with pytest.warns(UserWarning, match="no 'valid' segment"):
        model = LGBModel(num_boost_round=12, **LGB_PARAMS).fit(no_valid, verbose_eval=0)
    assert model.model.current_iteration() == 12
    assert_test_index(model.predict(no_valid), ds158)


def test_finetune_adds_rounds_from_the_best_iteration(fitted, ds158) -> None:
    import copy
    model = copy.deepcopy(fitted[0])
    best = fitted[0].model.best_iteration
    assert model.model.current_iteration() == best
    before = model.predict(ds158)
    model.finetune(ds158, num_boost_round=5, verbose_eval=0)
    assert model.model.current_iteration() == best + 5
    after = model.predict(ds158)
    assert after.index.equals(before.index) and not np.allclose(after, before)


def test_round_trip_in_a_new_process_predicts_identically(fitted, ds158, tmp_path) -> None:
    model, _, _, uri = fitted
    import qexp
    qexp.init(uri=uri)
    with R.start(experiment_name="lgb-save"):
        R.save_objects(**{"params.pkl": model})
        rid = R.get_recorder().id
    loaded = predict_in_subprocess(uri, rid, ds158, tmp_path)
    pd.testing.assert_series_equal(loaded, model.predict(ds158))


def test_binary_loss_on_binary_labels() -> None:
    frame = random_frame()
    frame[("label", "LABEL0")] = (frame[("label", "LABEL0")] > 0).astype(np.float32)
    ds = FrameDataset(frame, FRAME_SEGMENTS)
    model = LGBModel(loss="binary", num_boost_round=20, num_threads=1, min_data_in_leaf=5)
    model.fit(ds, verbose_eval=0)
    pred = model.predict(ds)
    assert ((pred > 0) & (pred < 1)).all()


# ---- bad input ----------------------------------------------------------------------------------------
def test_unknown_loss() -> None:
    with pytest.raises(ValueError, match="unknown loss 'mae'.*'mse', 'binary'"):
        LGBModel(loss="mae")


def test_dataset_without_train_segment() -> None:
    ds = FrameDataset(random_frame(), {"valid": FRAME_SEGMENTS["valid"], "test": FRAME_SEGMENTS["test"]})
    with pytest.raises(ValueError, match="needs a 'train' segment.*'valid', 'test'"):
        LGBModel().fit(ds)


def test_all_nan_labels() -> None:
    frame = random_frame()
    frame[("label", "LABEL0")] = np.nan
    with pytest.raises(ValueError, match="every label in 'train' is NaN"):
        LGBModel(num_threads=1).fit(FrameDataset(frame, FRAME_SEGMENTS))


def test_some_nan_labels_are_dropped_with_a_warning() -> None:
    frame = random_frame()
    frame.iloc[:5, -1] = np.nan
    with pytest.warns(UserWarning, match="dropped 5 of .* label is NaN"):
        LGBModel(num_boost_round=3, num_threads=1, min_data_in_leaf=5).fit(FrameDataset(frame, FRAME_SEGMENTS),
                                                                           verbose_eval=0)


def test_empty_train_segment() -> None:
    ds = FrameDataset(random_frame(), {**FRAME_SEGMENTS, "train": ("1990-01-01", "1990-12-31")})
    with pytest.raises(ValueError, match="'train' segment has no rows"):
        LGBModel().fit(ds)


def test_binary_loss_with_continuous_labels() -> None:
    with pytest.raises(ValueError, match="needs 0/1 labels"):
        LGBModel(loss="binary").fit(FrameDataset(random_frame(), FRAME_SEGMENTS))


def test_predict_before_fit() -> None:
    with pytest.raises(ValueError, match="not fitted yet"):
        LGBModel().predict(FrameDataset(random_frame(), FRAME_SEGMENTS))


def test_predict_with_other_features() -> None:
    model = LGBModel(num_boost_round=3, num_threads=1, min_data_in_leaf=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(FrameDataset(random_frame(n_feat=6), FRAME_SEGMENTS), verbose_eval=0)
    with pytest.raises(ValueError, match="fitted on 6 features but 'test' has 4"):
        model.predict(FrameDataset(random_frame(n_feat=4), FRAME_SEGMENTS))


def test_live_step_metrics_log_each_iteration_as_it_ends_and_change_nothing(ds158, runs, monkeypatch) -> None:
    """Inside qexp.ext.live_step_metrics (a sweep's pruner listens) every iteration is its own write; the
    metrics and the model are those of the batched fit."""
    from qexp.ext import live_step_metrics
    fits = {}
    for mode in ("batch", "live"):
        with R.start(experiment_name=f"lgb-{mode}"):
            rec = R.get_recorder()
            writes: list[int] = []
            original = type(rec)._log_metrics
            monkeypatch.setattr(type(rec), "_log_metrics", lambda self, batch, w=writes, o=original: (
                w.append(len(batch)), o(self, batch))[1])
            model = LGBModel(num_boost_round=30, early_stopping_rounds=5, **LGB_PARAMS)
            if mode == "live":
                with live_step_metrics():
                    model.fit(ds158, verbose_eval=0)
            else:
                model.fit(ds158, verbose_eval=0)
            monkeypatch.setattr(type(rec), "_log_metrics", original)
        fits[mode] = (model, rec, writes)
    (batch, rb, wb), (live, rl, wl) = fits["batch"], fits["live"]
    n = len(rb.get_metric_history("l2.train"))  # iterations run (up to 5 past the best one)
    assert n > 5 and wb == [2 * n] and wl == [2] * n
    for key in ("l2.train", "l2.valid"):
        a, b = rb.get_metric_history(key), rl.get_metric_history(key)
        assert a["step"].tolist() == b["step"].tolist() == list(range(n))
        np.testing.assert_array_equal(a["value"].to_numpy(), b["value"].to_numpy())
    np.testing.assert_array_equal(batch.predict(ds158).to_numpy(), live.predict(ds158).to_numpy())


class _Stop(BaseException):
    pass


def test_a_pruning_listener_stops_the_fit_at_the_iteration_it_pruned(ds158, runs) -> None:
    """As Optuna's LightGBMPruningCallback: a listener that raises while the step is logged ends lgb.train
    there, so a pruned trial trains fewer iterations than num_boost_round."""
    from qexp.ext import hookimpl, live_step_metrics, register_plugin, unregister_plugin

    class Pruner:
        @hookimpl
        def recorder_metrics_logged(self, recorder, metrics, step):
            if step == 4 and "l2.valid" in metrics:
                raise _Stop(step)

    name = register_plugin(Pruner(), name="test-lgb-pruner")
    try:
        with pytest.raises(_Stop):
            with R.start(experiment_name="lgb-pruned"):
                rec = R.get_recorder()
                with live_step_metrics():
                    LGBModel(num_boost_round=ROUNDS, early_stopping_rounds=ROUNDS, **LGB_PARAMS).fit(
                        ds158, verbose_eval=0)
    finally:
        unregister_plugin(name)
    assert rec.get_metric_history("l2.valid")["step"].tolist() == [0, 1, 2, 3, 4]  # 5 of 200 iterations
