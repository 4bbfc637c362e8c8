"""TRAModel (Temporal Routing Adaptor) on MTSDatasetH: fit/predict on the synthetic market, the router, the
memory, pretraining, save/load in a new process, early stopping, Qlib's logdir files and init_state, bad input."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import qexp
from qexp import R
from qexp_models.nets import tra as nets
from qexp_models.tra import TRAModel

from .conftest import SEGMENTS, SELECTED_20, SPAN, _provider, predict_in_subprocess, test_ic

NORM = [{"class": "FilterCol", "kwargs": {"fields_group": "feature", "col_list": SELECTED_20}},
        {"class": "RobustZScoreNorm", "kwargs": {"fields_group": "feature", "clip_outlier": True}},
        {"class": "Fillna", "kwargs": {"fields_group": "feature"}}]
LABEL = ["Ref($close, -2) / Ref($close, -1) - 1"]  # Qlib's TRA configs: horizon 2
# a tiny LSTM backbone and a 3-state TRA head, as Qlib's Alpha158 TRA config but small
MODEL = {"input_size": 20, "hidden_size": 8, "num_layers": 1, "rnn_arch": "LSTM"}
HEAD = {"num_states": 3, "hidden_size": 4, "tau": 1.0, "src_info": "LR_TPE"}
FAST = {"GPU": -1, "seed": 0, "lr": 2e-3, "max_steps_per_epoch": 20}


@pytest.fixture(scope="module")
def handler(synth_dir) -> Any:
    from qexp_data.alpha import Alpha158
    with _provider(synth_dir):
        return Alpha158(**SPAN, infer_processors=NORM, label=LABEL,
                        learn_processors=[{"class": "CSRankNorm", "kwargs": {"fields_group": "label"}}])


def mts(handler: Any, **kwargs: Any) -> Any:
    from qexp_data.mts_dataset import MTSDatasetH
    args = {"seq_len": 10, "num_states": 3, "batch_size": 512, "drop_last": True}
    args.update(kwargs)
    return MTSDatasetH(handler, dict(SEGMENTS), **args)


@pytest.fixture(scope="module")
def ds(handler) -> Any:
    return mts(handler)


@pytest.fixture(scope="module")
def fitted(ds, tmp_path_factory):
    """A router TRA after pretraining, fitted inside a run and saved there: (model, evals, uri, run id)."""
    uri = tmp_path_factory.mktemp("tra") / "runs"
    qexp.init(uri=str(uri))
    evals: dict = {}
    with R.start(experiment_name="tra"):
        model = TRAModel(MODEL, HEAD, n_epochs=2, early_stop=5, pretrain=True, transport_method="router", lamb=1.0,
                         rho=0.99, alpha=0.5, **FAST).fit(ds, evals_result=evals)
        R.save_objects(**{"params.pkl": model})
        rid = R.get_recorder().id
    return model, evals, uri, rid


def test_fit_and_predict_on_the_synthetic_market(fitted, ds) -> None:
    model, evals, uri, rid = fitted
    assert ds.horizon == 2
    pred = model.predict(ds)
    test = ds.handler.fetch(slice(*SEGMENTS["test"]), col_set="label", data_key="learn")
    assert isinstance(pred, pd.Series) and list(pred.index.names) == ["datetime", "instrument"]
    assert pred.index.equals(test.index) and np.isfinite(pred.to_numpy()).all()
    assert test_ic(pred, ds) > 0.0
    # Qlib's frame: the routed score is one of the predictors' scores, picked by the router's argmax
    frame = model.predict_frame(ds)
    scores, probs = frame[[f"score_{k}" for k in range(3)]].to_numpy(), frame[[f"prob_{k}" for k in range(3)]]
    np.testing.assert_allclose(frame["score"], scores[np.arange(len(frame)), probs.to_numpy().argmax(axis=1)])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # both phases in evals_result and in the run
    assert len(evals["pretrain_valid"]) == 2 and len(evals["valid"]) == 2
    qexp.init(uri=str(uri))
    rec = R.get_recorder(recorder_id=rid)
    for key in ("pretrain_valid_score", "valid_score", "train_score", "valid_loss"):
        assert rec.get_metric_history(key)["step"].tolist() == [0, 1], key
    np.testing.assert_allclose(rec.get_metric_history("valid_score")["value"], evals["valid"])
    assert model.best_epoch == int(np.argmax(evals["valid"])) and model.pretrain_best_epoch is not None


def test_round_trip_in_a_new_process_gives_identical_predictions(fitted, ds, tmp_path) -> None:
    model, _, uri, rid = fitted
    local = model.predict(ds)
    # an earlier pass left other numbers in the memory: predictions must not depend on it
    ds.prepare("valid").clear_memory()
    pd.testing.assert_series_equal(model.predict(ds), local)
    pd.testing.assert_series_equal(predict_in_subprocess(uri, rid, ds, tmp_path), local)


def test_memory_holds_each_predictors_normalised_loss(fitted, ds) -> None:
    model = fitted[0]
    frame = model.predict_frame(ds)
    memory = ds.prepare("test")._store.memory
    rows = ds.prepare("test")
    idx = rows.restore_index(rows.rows).swaplevel()
    mem = pd.DataFrame(memory[rows.rows], index=idx).reindex(frame.index)
    loss = (frame[[f"score_{k}" for k in range(3)]].to_numpy() - frame[["label"]].to_numpy()) ** 2
    norm = (loss - loss.min(axis=1, keepdims=True)) / (np.ptp(loss, axis=1, keepdims=True) + 1e-12)
    ok = frame["label"].notna().to_numpy()
    np.testing.assert_allclose(mem.to_numpy()[ok], norm[ok], atol=1e-4)


def test_early_stopping_restores_the_best_epoch(ds, monkeypatch) -> None:
    ics = iter([0.01, 0.05, 0.03, 0.02, 0.01, 0.0])
    real = TRAModel._evaluate
    snapshots = []

    def fake(self, torch_, net, t, replicas):
        loss, ic = real(self, torch_, net, t, replicas)
        if t.name != "valid":
            return loss, ic
        snapshots.append({k: v.clone() for k, v in net.state_dict().items()})
        return loss, next(ics)

    monkeypatch.setattr(TRAModel, "_evaluate", fake)
    evals: dict = {}
    model = TRAModel(MODEL, HEAD, n_epochs=50, early_stop=3, transport_method="router", **FAST)
    model.fit(ds, evals_result=evals)
    assert evals["valid"] == [0.01, 0.05, 0.03, 0.02, 0.01] and model.best_epoch == 1 and model.best_score == 0.05
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k


def test_smooth_steps_scores_the_mean_of_the_last_rounds(ds, monkeypatch) -> None:
    raw = []
    real = TRAModel._train_round

    def spy(self, *args):
        out = real(self, *args)
        raw.append({k: v.clone() for k, v in self._raw_state.items()})
        return out

    monkeypatch.setattr(TRAModel, "_train_round", spy)
    model = TRAModel(MODEL, HEAD, n_epochs=3, early_stop=10, smooth_steps=2, **FAST).fit(ds)
    best = model.best_epoch
    assert best is not None and len(raw) == 3
    expected = raw[0] if best == 0 else {k: (raw[best - 1][k] + raw[best][k]) / 2 for k in raw[0]}
    for k, v in model.net.state_dict().items():
        torch.testing.assert_close(v, expected[k])


def test_transformer_backbone_daily_memory_and_oracle(handler) -> None:
    daily = mts(handler, memory_mode="daily", batch_size=-5, n_samples=30, drop_last=False)
    model = TRAModel({"input_size": 20, "hidden_size": 8, "num_layers": 1, "num_heads": 2}, {**HEAD, "src_info": "TPE"},
                     model_type="Transformer", n_epochs=1, transport_method="oracle", memory_mode="daily", **FAST)
    pred = model.fit(daily).predict(daily)
    assert np.isfinite(pred.to_numpy()).all() and len(pred) == daily.prepare("test").n_rows
    assert daily.prepare("test")._store.memory.shape == (daily.prepare("test")._store.n_days, 3)
    # one state, no router: the mean of the predictors (here the one), no memory needed
    single = TRAModel(MODEL, {"num_states": 1}, n_epochs=1, **FAST).fit(mts(handler, num_states=0))
    assert single.predict_frame(mts(handler, num_states=0)).columns.tolist() == ["score", "label", "score_0"]


def test_logdir_files_and_init_state(ds, tmp_path) -> None:
    logdir = tmp_path / "out"
    model = TRAModel(MODEL, HEAD, n_epochs=1, transport_method="router", logdir=str(logdir), **FAST).fit(ds)
    names = {p.name for p in logdir.iterdir()}
    assert {"logs.csv", "model.bin", "info.json", "test_pred.pkl", "valid_prob.pkl"} <= names
    info = json.loads((logdir / "info.json").read_text())
    assert info["config"]["transport_method"] == "router" and math.isfinite(info["metrics"]["test"]["IC"])
    saved = torch.load(logdir / "model.bin")
    assert set(saved) == {"model", "tra"} and "rnn.weight_ih_l0" in saved["model"] and "predictors.weight" in saved["tra"]
    # Qlib's model.bin as init_state: the same weights, so the same predictions before any training
    again = TRAModel(MODEL, HEAD, init_state=str(logdir / "model.bin"), transport_method="router", GPU=-1)
    net = again._new_net()
    again._init_net(torch, net)
    for k, v in model.net.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    with pytest.raises(FileNotFoundError, match="init_state .* does not exist"):
        TRAModel(MODEL, HEAD, init_state=str(tmp_path / "nope.bin"), n_epochs=1, **FAST).fit(ds)


def test_sinkhorn_and_transport() -> None:
    torch.manual_seed(0)
    q = torch.rand(6, 3)
    p = nets.sinkhorn(-q, n_iters=50)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(6))
    torch.testing.assert_close(p.sum(dim=0), torch.full((3,), 2.0), rtol=1e-3, atol=1e-3)  # balanced states
    np.testing.assert_array_equal(nets.minmax_norm(torch.tensor([[1.0, 3.0, 2.0], [2.0, 2.0, 2.0]])).numpy(),
                                  [[0.0, 1.0, 0.5], [1.0, 1.0, 1.0]])
    preds = torch.tensor([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    label = torch.tensor([1.0, float("nan"), 0.8])
    hist = torch.zeros(1, 2)
    # daily: one day of three samples (one without a label): the day's mean loss per predictor (0.52 and
    # 0.32, normalised to 1 and 0); the router's argmax (predictor 0) predicts, loss = its MSE
    loss, pred, L, P = nets.transport(preds, label, None, torch.tensor([[0.9, 0.1]]), hist, [3], "router", 1.0,
                                      training=False)
    np.testing.assert_allclose(L.numpy(), [[1.0, 0.0]])
    np.testing.assert_allclose(pred.numpy(), [0.0, 0.5, 1.0])
    assert float(loss) == pytest.approx(0.52)
    # per sample, oracle: the plan weights each sample's predictors towards its lower loss
    loss, pred, L, P = nets.transport(preds, label, None, None, torch.zeros(3, 2), None, "oracle", 1.0,
                                      training=True)
    np.testing.assert_allclose(L.numpy(), [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert P[0, 1] > P[0, 0] and P[2, 0] > P[2, 1]
    torch.testing.assert_close(pred, (preds * P).sum(dim=1))


@pytest.mark.parametrize("make, match", [
    (lambda: TRAModel(MODEL, {"num_states": 0}), "num_states must be an integer >= 1"),
    (lambda: TRAModel(MODEL, {**HEAD, "src_info": "XY"}), "unknown tra_config.src_info 'XY'"),
    (lambda: TRAModel(MODEL, HEAD, model_type="CNN"), "unknown model_type 'CNN'"),
    (lambda: TRAModel(MODEL, {"num_states": 1}, transport_method="router"), "needs tra_config.num_states > 1"),
    (lambda: TRAModel(MODEL, HEAD, transport_method="sinkhorn"), "unknown transport_method 'sinkhorn'"),
    (lambda: TRAModel(MODEL, HEAD, memory_mode="daily"), "src_info must be 'TPE'"),
    (lambda: TRAModel(MODEL, {**HEAD, "states": 3}), "unknown tra_config key"),
    (lambda: TRAModel({**MODEL, "rnn_arch": "CNN"}, HEAD), "unknown model_config.rnn_arch 'CNN'"),
    (lambda: TRAModel(MODEL, {**HEAD, "tau": 0}), "tau must be a number > 0"),
    (lambda: TRAModel(MODEL, HEAD, alpha=2.0), "alpha must be in"),
])
def test_bad_arguments(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_datasets(ds, handler, ds360) -> None:
    with pytest.raises(ValueError, match="input_size=6 but the dataset gives 20 features per step"):
        TRAModel({**MODEL, "input_size": 6}, HEAD, n_epochs=1, **FAST).fit(ds)
    with pytest.raises(TypeError, match="TRAModel takes an MTSDatasetH"):
        TRAModel(MODEL, HEAD, n_epochs=1, **FAST).fit(ds360)
    with pytest.raises(ValueError, match="tra_config.num_states=3 but the dataset keeps 0 memory states"):
        TRAModel(MODEL, HEAD, n_epochs=1, transport_method="router", **FAST).fit(mts(handler, num_states=0))
    with pytest.raises(ValueError, match="TRAModel is not fitted yet"):
        TRAModel(MODEL, HEAD).predict(ds)


def test_qlib_module_path_resolves() -> None:
    from qexp.ext import init_instance_by_config
    model = init_instance_by_config({"class": "TRAModel", "module_path": "qlib.contrib.model.pytorch_tra",
                                     "kwargs": {"model_config": MODEL, "tra_config": HEAD}})
    assert type(model) is TRAModel and model.transport_method == "none" and model.n_epochs == 500
