"""The PyTorch zoo on the shared loop: MLP, GRU, LSTM, Transformer (IC on the planted signal), Localformer,
TCN, GeneralPTNN, KRNN, Sandwich, SFM (GATs, HIST: test_torch_zoo_graph.py); both dataset kinds, Qlib's names, save/load in a new process, early stopping, bad input."""
from __future__ import annotations

import logging
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from qexp import R
from qexp_models import torch_models as tm

from .conftest import (
    FRAME_SEGMENTS,
    FrameDataset,
    assert_same_predictions_in_subprocess,
    assert_test_index,
    fake_valid_losses,
    fit_in_one_run,
    predict_saved_in_subprocess,
    random_frame,
    test_ic,
)

CPU = {"GPU": -1, "seed": 0}
# tiny networks that still learn the synthetic market's signal in a few epochs (one thread, a few seconds)
IC_MODELS = {  # name: (class, kwargs, dataset fixture)
    "GRU": (tm.GRU, {"d_feat": 6, "hidden_size": 16, "n_epochs": 3, "batch_size": 256, "lr": 2e-3}, "ds360"),
    "LSTM": (tm.LSTM, {"d_feat": 6, "hidden_size": 16, "n_epochs": 3, "batch_size": 256, "lr": 2e-3}, "ds360"),
    # Qlib's MLP benchmark is on Alpha158; on Alpha360's 360 raw lags a small MLP learns the signal less surely
    "DNNModelPytorch": (tm.DNNModelPytorch, {"pt_model_kwargs": {"input_dim": 158, "layers": (64,)}, "max_steps": 300,
                                             "eval_steps": 50, "batch_size": 1024, "optimizer": "adam", "lr": 2e-3},
                        "ds158_norm"),
}


@pytest.fixture(scope="module")
def fitted_ic(request, tmp_path_factory):
    """The IC models fitted inside one run and saved there: ({name: (model, dataset)}, store uri, run id)."""
    uri = tmp_path_factory.mktemp("zoo") / "runs"
    models, rid = fit_in_one_run(IC_MODELS, request, uri, "zoo", **CPU)
    return models, uri, rid


@pytest.mark.slow  # Qlib's encoder layers have 2048 feed-forward units whatever d_model is
def test_transformer_ic_is_clearly_positive_on_the_planted_signal(ds360) -> None:
    from qexp_data.dataset import DatasetH
    # half a year of training rows (the same handler): the encoder's cost is in its rows x 60 steps
    short = DatasetH(ds360.handler, {"train": ("2017-01-01", "2017-06-30"), "valid": ("2017-07-01", "2017-12-31"),
                                     "test": ds360.segments["test"]})
    model = tm.TransformerModel(d_feat=6, d_model=8, num_layers=1, n_epochs=2, batch_size=256, lr=1e-3, **CPU)
    pred = model.fit(short).predict(short)
    assert_test_index(pred, short)
    ic = test_ic(pred, short)
    assert ic > 0.02, f"TransformerModel: test IC {ic:.4f}"


# ---- signal and prediction ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(IC_MODELS))
def test_ic_is_clearly_positive_on_the_planted_signal(fitted_ic, name) -> None:
    model, ds = fitted_ic[0][name]
    pred = model.predict(ds)
    assert_test_index(pred, ds)
    ic = test_ic(pred, ds)
    assert ic > 0.02, f"{name}: test IC {ic:.4f}"
    assert model.input_kind == "DatasetH" and model.fitted


def test_round_trip_in_a_new_process_gives_identical_predictions(fitted_ic, tmp_path) -> None:
    models, uri, rid = fitted_ic
    assert_same_predictions_in_subprocess(models, uri, rid, tmp_path)


def test_pickle_holds_cpu_numpy_weights(fitted_ic) -> None:
    for name in ("GRU", "DNNModelPytorch"):
        model, ds = fitted_ic[0][name]
        clone = pickle.loads(pickle.dumps(model))
        assert clone.net is None and clone.fitted
        assert all(isinstance(v, np.ndarray) for v in clone.net_state.values())
        pd.testing.assert_series_equal(clone.predict(ds), model.predict(ds))


@pytest.mark.parametrize("cls, kwargs", [
    (tm.TCN, {"d_feat": 6, "n_chans": 8, "num_layers": 2, "kernel_size": 3, "batch_size": 512}),
    (tm.GeneralPTNN, {"pt_model_uri": "qlib.contrib.model.pytorch_nn.Net",
                      "pt_model_kwargs": {"input_dim": 360, "layers": (16,)}, "batch_size": 512}),
    (tm.GeneralPTNN, {"pt_model_uri": "qlib.contrib.model.pytorch_gru.GRUModel",
                      "pt_model_kwargs": {"d_feat": 6, "hidden_size": 8, "num_layers": 1}, "batch_size": 512}),
    (tm.KRNN, {"fea_dim": 6, "cnn_dim": 8, "rnn_dim": 8, "rnn_dups": 2, "rnn_layers": 1, "batch_size": 512}),
    (tm.Sandwich, {"fea_dim": 6, "cnn_dim_1": 8, "cnn_dim_2": 8, "rnn_dim_1": 4, "rnn_dim_2": 4, "rnn_dups": 2,
                   "rnn_layers": 1, "batch_size": 512}),
    (tm.SFM, {"d_feat": 6, "hidden_size": 8, "freq_dim": 4, "output_dim": 4, "optimizer": "adam", "batch_size": 512}),
], ids=["TCN", "GeneralPTNN-MLP", "GeneralPTNN-GRU", "KRNN", "Sandwich", "SFM"])
def test_other_nets_fit_and_predict_on_alpha360(ds360, cls, kwargs) -> None:
    model = cls(**kwargs, n_epochs=1, **CPU).fit(ds360)
    assert len(model.epoch_seconds) == 1
    assert_test_index(model.predict(ds360), ds360)


@pytest.mark.parametrize("cls, kwargs", [
    (tm.GRU, {"d_feat": 20, "hidden_size": 8, "num_layers": 1}),
    (tm.LSTM, {"d_feat": 20, "hidden_size": 8, "num_layers": 1}),
    pytest.param(tm.TransformerModel, {"d_feat": 20, "d_model": 8, "num_layers": 1}, marks=pytest.mark.slow),
    pytest.param(tm.LocalformerModel, {"d_feat": 20, "d_model": 8, "num_layers": 1}, marks=pytest.mark.slow),
    (tm.TCN, {"d_feat": 20, "n_chans": 8, "num_layers": 2, "kernel_size": 3}),
    (tm.GeneralPTNN, {"pt_model_kwargs": {"d_feat": 20, "hidden_size": 8, "num_layers": 1}}),
    (tm.GeneralPTNN, {"pt_model_uri": "qlib.contrib.model.pytorch_alstm_ts.ALSTMModel",
                      "pt_model_kwargs": {"d_feat": 20, "hidden_size": 8, "num_layers": 1}}),
], ids=["GRU", "LSTM", "Transformer", "Localformer", "TCN", "GeneralPTNN", "GeneralPTNN-ALSTM"])
def test_ts_variants_predict_every_test_window(ts158, cls, kwargs) -> None:
    model = cls(**kwargs, n_epochs=1, batch_size=1024, **CPU).fit(ts158)
    assert model.input_kind == "TSDatasetH"
    pred = model.predict(ts158)
    sampler = ts158.prepare("test", col_set=["feature", "label"], data_key="infer")
    assert pred.index.equals(sampler.get_index())
    assert np.isfinite(pred.to_numpy()).all()


def test_gru_fast_cpu_path_matches_nn_gru() -> None:
    from qexp_models.nets.rnn import GRUModel
    torch.manual_seed(0)
    net = GRUModel(d_feat=6, hidden_size=16, num_layers=2).eval()
    x = torch.randn(7, 60, 6)
    with torch.no_grad():
        fast = net(x)
        net.fast_cpu_gru = False
        plain = net(x)
    np.testing.assert_allclose(fast.numpy(), plain.numpy(), rtol=1e-5, atol=1e-6)
    assert set(net.state_dict()) >= {"rnn.weight_ih_l0", "fc_out.weight"}  # Qlib's names


def test_flat_input_is_reshaped_as_qlib_does() -> None:
    from qexp_models.nets.rnn import LSTMModel
    torch.manual_seed(0)
    net = LSTMModel(d_feat=6, hidden_size=8, num_layers=1).eval()
    flat = torch.randn(3, 360)
    with torch.no_grad():
        np.testing.assert_array_equal(net(flat).numpy(), net(flat.view(3, 6, 60).permute(0, 2, 1)).numpy())


# ---- the loop -------------------------------------------------------------------------------------------
def _frame_ds(n_feat: int = 12) -> FrameDataset:
    return FrameDataset(random_frame(n_days=60, n_inst=8, n_feat=n_feat), FRAME_SEGMENTS)


def test_epoch_metrics_reach_the_recorder_and_the_log(runs, caplog) -> None:
    evals: dict = {}
    with caplog.at_level(logging.INFO, logger="qexp.models"):
        with R.start(experiment_name="zoo-log"):
            model = tm.GRU(d_feat=2, hidden_size=8, n_epochs=3, **CPU).fit(_frame_ds(), evals_result=evals)
            rec = R.get_recorder()
    for key in ("train_loss", "valid_loss", "train_score", "valid_score"):
        assert rec.get_metric_history(key)["step"].tolist() == [0, 1, 2], key
    np.testing.assert_allclose(rec.get_metric_history("valid_score")["value"], evals["valid"])
    lines = [r.getMessage() for r in caplog.records if r.name == "qexp.models"]
    assert any(line.startswith("GRU epoch 2: train loss ") and "valid loss" in line for line in lines), lines
    assert model.best_epoch == int(np.argmax(evals["valid"]))


def test_early_stopping_restores_the_best_epoch(monkeypatch, tmp_path) -> None:
    ds = _frame_ds()
    snapshots = fake_valid_losses(monkeypatch, ds, [0.9, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    evals: dict = {}
    model = tm.LSTM(d_feat=2, hidden_size=8, n_epochs=50, early_stop=3, **CPU)
    model.fit(ds, evals_result=evals, save_path=str(tmp_path / "best.pt"))
    assert len(evals["valid"]) == 5 and model.best_epoch == 1 and model.best_score == -0.5
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k
    saved = torch.load(tmp_path / "best.pt")
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in saved)


def test_mlp_trains_qlib_steps_and_evaluates_every_eval_steps() -> None:
    evals: dict = {}
    model = tm.DNNModelPytorch(pt_model_kwargs={"input_dim": 12, "layers": (8,)}, max_steps=45, eval_steps=20,
                               early_stop_rounds=10, batch_size=64, **CPU).fit(_frame_ds(), evals_result=evals)
    assert len(evals["valid"]) == 3  # steps 20, 40, 45
    assert model.best_step == min((model.best_epoch + 1) * 20, 45)


def test_same_seed_same_predictions_and_the_global_rng_is_untouched() -> None:
    ds = _frame_ds()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = tm.TransformerModel(d_feat=2, d_model=8, num_layers=1, n_epochs=2, batch_size=64, **CPU).fit(ds)
    assert torch.equal(torch.rand(3), expected)
    b = tm.TransformerModel(d_feat=2, d_model=8, num_layers=1, n_epochs=2, batch_size=64, **CPU).fit(ds)
    np.testing.assert_array_equal(a.predict(ds).to_numpy(), b.predict(ds).to_numpy())


def test_reweighter_weights_the_training_loss() -> None:
    class Half:
        def reweight(self, data):
            return np.full(len(data), 0.5)

    ds = _frame_ds()
    weighted = tm.GRU(d_feat=2, hidden_size=8, n_epochs=1, optimizer="gd", **CPU).fit(ds, reweighter=Half())
    plain = tm.GRU(d_feat=2, hidden_size=8, n_epochs=1, optimizer="gd", **CPU).fit(ds)
    assert not np.array_equal(weighted.predict(ds).to_numpy(), plain.predict(ds).to_numpy())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback when CUDA is missing")
def test_gpu_requested_without_cuda_warns_and_uses_cpu() -> None:
    with pytest.warns(UserWarning, match="GPU=0 was requested but CUDA is not available; using the CPU"):
        model = tm.GRU(d_feat=2, hidden_size=8, n_epochs=1, GPU=0, seed=0).fit(_frame_ds())
    assert next(model.net.parameters()).device.type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tm.GRU(d_feat=2, hidden_size=8, n_epochs=1, GPU=-1, seed=0).fit(_frame_ds())


# ---- names ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, expected", [
    ("qlib.contrib.model.pytorch_gru.GRU", tm.GRU), ("qlib.contrib.model.pytorch_gru_ts.GRU", tm.GRU),
    ("qlib.contrib.model.pytorch_lstm_ts.LSTM", tm.LSTM), ("qlib.contrib.model.pytorch_nn.DNNModelPytorch",
                                                           tm.DNNModelPytorch),
    ("qlib.contrib.model.pytorch_transformer.TransformerModel", tm.TransformerModel),
    ("qlib.contrib.model.pytorch_transformer_ts.TransformerModel", tm.TransformerModelTS),
    ("qlib.contrib.model.pytorch_localformer_ts.LocalformerModel", tm.LocalformerModelTS),
    ("qlib.contrib.model.pytorch_tcn.TCN", tm.TCN), ("qlib.contrib.model.pytorch_tcn_ts.TCN", tm.TCNTS),
    ("qlib.contrib.model.pytorch_general_nn.GeneralPTNN", tm.GeneralPTNN),
    ("qlib.contrib.model.pytorch_sfm.SFM", tm.SFM), ("qlib.contrib.model.pytorch_krnn.KRNN", tm.KRNN), ("qlib.contrib.model.pytorch_sandwich.Sandwich", tm.Sandwich),
])
def test_qlib_module_paths_resolve(path, expected) -> None:
    from qexp.ext import init_instance_by_config
    module_path, _, name = path.rpartition(".")
    assert type(init_instance_by_config({"class": name, "module_path": module_path})) is expected


def test_ts_defaults_differ_where_qlib_s_do() -> None:
    assert tm.TransformerModel().batch_size == 2048 and tm.TransformerModelTS().batch_size == 8192
    assert (tm.TCN().num_layers, tm.TCN().lr) == (5, 1e-4) and (tm.TCNTS().num_layers, tm.TCNTS().lr) == (2, 1e-3)


@pytest.mark.parametrize("uri, cls_name", [("qlib.contrib.model.pytorch_nn.Net", "Net"),
                                           ("qlib.contrib.model.pytorch_gru_ts.GRUModel", "GRUModel"),
                                           ("qlib.contrib.model.pytorch_lstm.LSTMModel", "LSTMModel"),
                                           ("torch.nn.Linear", "Linear")])
def test_pt_model_uri_resolves(uri, cls_name) -> None:
    from qexp_models.nets import resolve_network
    assert resolve_network(uri).__name__ == cls_name


# Qlib's networks with Qlib's pt_model_kwargs (KRNN/Sandwich take a device); flat rows: 12 columns = 2 x 6 steps
QLIB_NETS = {
    "pytorch_alstm.ALSTMModel": {"d_feat": 2, "hidden_size": 8, "num_layers": 1, "dropout": 0.0, "rnn_type": "GRU"},
    "pytorch_alstm_ts.ALSTMModel": {"d_feat": 2, "hidden_size": 8, "num_layers": 1, "rnn_type": "LSTM"},
    "pytorch_sfm.SFM_Model": {"d_feat": 2, "output_dim": 4, "freq_dim": 3, "hidden_size": 8, "dropout_W": 0.0,
                              "dropout_U": 0.0, "device": "cpu"},
    "pytorch_krnn.KRNNModel": {"fea_dim": 2, "cnn_dim": 4, "cnn_kernel_size": 3, "rnn_dim": 4, "rnn_dups": 2,
                               "rnn_layers": 1, "dropout": 0.0, "device": "cpu"},
    "pytorch_sandwich.SandwichModel": {"fea_dim": 2, "cnn_dim_1": 4, "cnn_dim_2": 4, "cnn_kernel_size": 3,
                                       "rnn_dim_1": 4, "rnn_dim_2": 4, "rnn_dups": 2, "rnn_layers": 1,
                                       "dropout": 0.0, "device": "cpu"},
}


@pytest.mark.parametrize("uri", list(QLIB_NETS))
def test_general_nn_runs_qlib_s_other_networks(uri) -> None:
    ds = _frame_ds()
    model = tm.GeneralPTNN(pt_model_uri=f"qlib.contrib.model.{uri}", pt_model_kwargs=QLIB_NETS[uri], n_epochs=1,
                           batch_size=64, **CPU).fit(ds)
    pred = model.predict(ds)
    assert len(pred) == len(ds.prepare("test")) and np.isfinite(pred.to_numpy()).all()
    # flat rows are read as time-ordered steps, the same as the [B, T, F] windows
    net = model.net.eval()
    flat = torch.randn(3, 12)
    with torch.no_grad():
        np.testing.assert_allclose(net(flat).numpy(), net(flat.view(3, 2, 6).permute(0, 2, 1)).numpy(), rtol=1e-6)


def test_krnn_network_with_a_feature_count_that_does_not_divide_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="pt_model_kwargs.fea_dim=5 does not divide the 12 feature columns"):
        tm.GeneralPTNN(pt_model_uri="qlib.contrib.model.pytorch_krnn.KRNNModel",
                       pt_model_kwargs={**QLIB_NETS["pytorch_krnn.KRNNModel"], "fea_dim": 5}, n_epochs=1,
                       **CPU).fit(_frame_ds())


# ---- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: tm.GRU(loss="mae"), "GRU: unknown loss 'mae'"),
    (lambda: tm.LSTM(metric="ic"), "LSTM: unknown metric 'ic'"),
    (lambda: tm.TransformerModel(optimizer="rmsprop"), "unknown optimizer 'rmsprop'"),
    (lambda: tm.TransformerModel(d_model=10, nhead=3), "d_model=10 must be a multiple of nhead=3"),
    (lambda: tm.DNNModelPytorch(loss="huber"), "DNNModelPytorch: unknown loss 'huber'"),
    (lambda: tm.DNNModelPytorch(scheduler="cosine"), "scheduler must be 'default', None or a callable"),
    (lambda: tm.GRU(batch_size=0), "batch_size must be a positive integer"),
    (lambda: tm.TCN(dropout=1.5), "dropout must be in"),
    (lambda: tm.GeneralPTNN(pt_model_uri="Net"), "pt_model_uri must be 'package.module.Class'"),
])
def test_bad_arguments(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_d_feat_must_divide_the_feature_count(ds360) -> None:
    with pytest.raises(ValueError, match="d_feat=7 does not divide the 360 feature columns"):
        tm.GRU(d_feat=7, n_epochs=1, **CPU).fit(ds360)


def test_mlp_input_dim_must_match_the_features() -> None:
    with pytest.raises(ValueError, match=r"input_dim=360 but the data has 12 features; set input_dim: 12"):
        tm.DNNModelPytorch(**CPU).fit(_frame_ds())


def test_unknown_network_uri_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cannot import 'no_such_pkg.mod'"):
        tm.GeneralPTNN(pt_model_uri="no_such_pkg.mod.Net", n_epochs=1, **CPU).fit(_frame_ds())


def test_mlp_refuses_windows(ts158) -> None:
    with pytest.raises(TypeError, match="DNNModelPytorch takes a DatasetH"):
        tm.DNNModelPytorch(pt_model_kwargs={"input_dim": 20}, **CPU).fit(ts158)


def test_nan_features_and_predict_before_fit() -> None:
    frame = random_frame(n_days=60, n_inst=8, n_feat=12)
    frame.iloc[2, 0] = np.nan
    with pytest.raises(ValueError, match="1 of .* 'train' samples have NaN features.*Fillna"):
        tm.GRU(d_feat=2, n_epochs=1, **CPU).fit(FrameDataset(frame, FRAME_SEGMENTS))
    with pytest.raises(ValueError, match="GRU is not fitted yet"):
        tm.GRU().predict(_frame_ds())


def test_dry_run_hears_of_ignored_arguments() -> None:
    # qexp run --dry-run asks check_kwargs about names a **kwargs catch-all would swallow
    assert tm.GRU.check_kwargs({"n_jobs": 20, "rnn_type": "GRU"}) == ["ignoring unknown argument 'rnn_type'"]
    with pytest.warns(UserWarning, match="GRU: ignoring unknown argument.*rnn_type"):
        tm.GRU(rnn_type="GRU", n_jobs=20)


@pytest.mark.parametrize("cls, qlib_name", [(tm.TCNTS, "TCN"), (tm.TransformerModelTS, "TransformerModel"),
                                            (tm.LocalformerModelTS, "LocalformerModel")])
def test_ts_subclasses_take_every_argument_of_their_base_and_say_qlib_s_name(cls, qlib_name) -> None:
    # the _ts subclasses name only the defaults they change and pass the rest on through **kwargs
    base_args = {"d_feat": 6, "batch_size": 64, "early_stop": 3, "metric": "", "loss": "mse", "optimizer": "adam",
                 "GPU": -1, "seed": 0, "n_epochs": 1, "lr": 1e-3, "n_jobs": 4}
    assert cls.check_kwargs(base_args) == []
    assert cls.check_kwargs({"rnn_type": "GRU"}) == ["ignoring unknown argument 'rnn_type'"]
    assert cls.qlib_name == qlib_name and cls().name == qlib_name
    with pytest.warns(UserWarning, match=f"^{qlib_name}: ignoring unknown argument"):
        cls(rnn_type="GRU")


def test_dry_run_of_a_ts_model_warns_of_nothing_but_unknown_names(tmp_path) -> None:
    from qexp.workflow import check_config
    config = {"task": {"model": {"class": "TCN", "module_path": "qlib.contrib.model.pytorch_tcn_ts",
                                 "kwargs": {"d_feat": 20, "batch_size": 2000, "early_stop": 20, "GPU": 0,
                                            "metric": "loss", "optimizer": "adam", "typo_arg": 1}},
                       "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {}}}}
    _, notes = check_config(config)
    assert notes == ["task.model.kwargs: TCN: ignoring unknown argument 'typo_arg'"], notes


@pytest.mark.parametrize("make", [
    lambda: tm.DNNModelPytorch(pt_model_kwargs={"input_dim": 12, "layers": (8,)}, max_steps=40, eval_steps=20,
                               batch_size=64, **CPU),
    lambda: tm.GeneralPTNN(pt_model_uri="qlib.contrib.model.pytorch_nn.Net",
                           pt_model_kwargs={"input_dim": 12, "layers": (8,)}, n_epochs=2, batch_size=64, **CPU),
], ids=["DNNModelPytorch", "GeneralPTNN"])
def test_mlp_and_general_nn_evals_result_holds_the_losses_as_qlib_s(make, runs) -> None:
    # Qlib's pytorch_nn / pytorch_general_nn append the (positive) losses; its GRU & co. append minus the loss
    evals: dict = {}
    with R.start(experiment_name="evals"):
        make().fit(_frame_ds(), evals_result=evals)
        rec = R.get_recorder()
    assert len(evals["valid"]) == 2 and all(v > 0 for v in evals["train"] + evals["valid"])
    np.testing.assert_allclose(rec.get_metric_history("valid_loss")["value"], evals["valid"])


def test_gru_evals_result_holds_minus_the_loss_as_qlib_s() -> None:
    evals: dict = {}
    tm.GRU(d_feat=2, hidden_size=8, n_epochs=2, **CPU).fit(_frame_ds(), evals_result=evals)
    assert len(evals["valid"]) == 2 and all(v < 0 for v in evals["train"] + evals["valid"])


# ---- Qlib's saved networks ------------------------------------------------------------------------------
class _QlibTCNBlock(torch.nn.Module):
    """A TCN block as Qlib 0.9.7 builds it: torch's old weight_norm hooks on conv1/conv2, which Qlib also puts
    in ``net``, so its state_dict holds ``conv1.weight_g``/``weight_v`` and ``net.0.weight_g``/``weight_v``."""

    def __init__(self, n_in: int, n_out: int, k: int, dilation: int):
        super().__init__()
        from torch.nn.utils import weight_norm  # the API Qlib uses (deprecated in torch 2.1)
        pad = (k - 1) * dilation
        self.pad = pad
        self.conv1 = weight_norm(torch.nn.Conv1d(n_in, n_out, k, padding=pad, dilation=dilation))
        self.conv2 = weight_norm(torch.nn.Conv1d(n_out, n_out, k, padding=pad, dilation=dilation))
        self.net = torch.nn.Sequential(self.conv1, torch.nn.Identity(), torch.nn.ReLU(), torch.nn.Identity(),
                                       self.conv2)
        self.downsample = torch.nn.Conv1d(n_in, n_out, 1) if n_in != n_out else None

    def forward(self, x):
        out = torch.relu(self.conv1(x)[:, :, :-self.pad])
        out = torch.relu(self.conv2(out)[:, :, :-self.pad])
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def test_qlib_s_tcn_state_dict_loads_and_predicts_the_same() -> None:
    from qexp_models.nets.tcn import TCNModel
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        blocks = [_QlibTCNBlock(6, 8, 3, 1), _QlibTCNBlock(8, 8, 3, 2)]
    qlib = torch.nn.Module()
    qlib.tcn = torch.nn.Module()
    qlib.tcn.network = torch.nn.Sequential(*blocks)
    qlib.linear = torch.nn.Linear(8, 1)
    state = qlib.state_dict()
    assert {"tcn.network.0.conv1.weight_g", "tcn.network.0.net.0.weight_v", "tcn.network.1.net.4.weight_g"} <= set(state)
    ours = TCNModel(6, 1, [8, 8], kernel_size=3, dropout=0.0).eval()
    ours.load_state_dict(state)  # strict: every key of Qlib's file is used, none of ours is missing
    x = torch.randn(5, 360)
    with torch.no_grad():
        expected = qlib.linear(qlib.tcn.network(x.reshape(5, 6, 60))[:, :, -1])[:, 0]
        np.testing.assert_array_equal(ours(x).numpy(), expected.numpy())
    again = TCNModel(6, 1, [8, 8], kernel_size=3, dropout=0.0).eval()
    again.load_state_dict(ours.state_dict())  # our own files still load
    with torch.no_grad():
        np.testing.assert_array_equal(again(x).numpy(), ours(x).numpy())


# ---- every registered network: save/load in a new process ----------------------------------------------
def _round_trip_models(concepts: tuple[str, str]) -> dict:
    from qexp_models.graph_models import HIST, GATs, GATsTS
    s2c, index = concepts
    small = {"n_epochs": 2, "batch_size": 64, **CPU}
    daily = {"n_epochs": 2, **CPU}
    return {  # tiny sizes; 12 feature columns = 2 per step x 6 steps
        "GRU": tm.GRU(d_feat=2, hidden_size=4, num_layers=1, **small),
        "LSTM": tm.LSTM(d_feat=2, hidden_size=4, num_layers=1, **small),
        "TransformerModel": tm.TransformerModel(d_feat=2, d_model=4, num_layers=1, **small),
        "TransformerModelTS": tm.TransformerModelTS(d_feat=2, d_model=4, num_layers=1, **small),
        "LocalformerModel": tm.LocalformerModel(d_feat=2, d_model=4, num_layers=1, **small),
        "LocalformerModelTS": tm.LocalformerModelTS(d_feat=2, d_model=4, num_layers=1, **small),
        "TCN": tm.TCN(d_feat=2, n_chans=4, num_layers=2, kernel_size=3, **small),
        "TCNTS": tm.TCNTS(d_feat=2, n_chans=4, kernel_size=3, **small),
        "DNNModelPytorch": tm.DNNModelPytorch(pt_model_kwargs={"input_dim": 12, "layers": (8,)}, max_steps=20,
                                              eval_steps=10, batch_size=64, **CPU),
        "GeneralPTNN": tm.GeneralPTNN(pt_model_uri="qlib.contrib.model.pytorch_gru_ts.GRUModel",
                                      pt_model_kwargs={"d_feat": 2, "hidden_size": 4, "num_layers": 1}, **small),
        "KRNN": tm.KRNN(fea_dim=2, cnn_dim=4, rnn_dim=4, rnn_dups=2, rnn_layers=1, **small),
        "Sandwich": tm.Sandwich(fea_dim=2, cnn_dim_1=4, cnn_dim_2=4, rnn_dim_1=4, rnn_dim_2=4, rnn_dups=2,
                                rnn_layers=1, **small),
        "SFM": tm.SFM(d_feat=2, hidden_size=4, freq_dim=3, output_dim=2, **small),
        "GATs": GATs(d_feat=2, hidden_size=4, num_layers=1, **daily),
        "GATsTS": GATsTS(d_feat=2, hidden_size=4, num_layers=1, **daily),
        "HIST": HIST(d_feat=2, hidden_size=4, num_layers=1, stock2concept=s2c, stock_index=index, **daily),
    }


# registered models whose round trip is tested with their own data elsewhere
ROUND_TRIP_ELSEWHERE = {"ADARNN", "ADD", "TCTS", "IGMTF", "TabnetModel",  # test_torch_zoo_more.py
                        "TRAModel"}                                        # test_tra.py (an MTSDatasetH)


def test_round_trip_covers_every_registered_torch_model() -> None:
    from qexp_models.torch_registry import register_torch_models
    registered: set[str] = set()
    register_torch_models(lambda cls, **kw: registered.add(cls.__name__))
    tested = set(_round_trip_models(("s2c.npy", "index.npy")))
    assert registered - ROUND_TRIP_ELSEWHERE == tested


def test_every_torch_model_round_trips_in_a_new_process(tmp_path, runs) -> None:
    ds = FrameDataset(random_frame(n_days=60, n_inst=8, n_feat=12), FRAME_SEGMENTS)
    s2c, index = tmp_path / "s2c.npy", tmp_path / "index.npy"
    np.save(s2c, (np.random.default_rng(0).random((8, 4)) < 0.4).astype(np.float32))
    np.save(index, {f"S{i}": i for i in range(8)})
    models = _round_trip_models((str(s2c), str(index)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no valid early stop on 2 rounds etc.
        with R.start(experiment_name="round-trip"):
            preds = {name: m.fit(ds).predict(ds) for name, m in models.items()}
            R.save_objects(**{f"{name}.pkl": m for name, m in models.items()})
            rid = R.get_recorder().id
    s2c.unlink()  # HIST's concept matrix travels inside the fitted model
    index.unlink()
    loaded = predict_saved_in_subprocess(runs, rid, ds, tmp_path, list(models))
    for name, pred in preds.items():
        assert np.isfinite(pred.to_numpy()).all(), name
        pd.testing.assert_series_equal(loaded[name], pred, obj=name)
