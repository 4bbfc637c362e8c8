"""ALSTM on both dataset kinds (Alpha360 DatasetH, Alpha158-20 TSDatasetH) with tiny sizes: Qlib's network and
reshape, determinism, recorder metrics, early stopping, device choice, pickling, and bad input."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from qexp import R
from qexp_models.alstm import ALSTM
from qexp_models.alstm_net import ALSTMNet, flat_to_steps

from .conftest import FRAME_SEGMENTS, FrameDataset, assert_test_index, predict_in_subprocess, random_frame

TINY = {"hidden_size": 8, "num_layers": 1, "n_epochs": 2, "batch_size": 1024, "seed": 0, "GPU": -1}


@pytest.fixture(scope="module")
def flat_fit(ds360):
    """A tiny ALSTM fitted on Alpha360 inside a run: (model, recorder, evals_result, store uri)."""
    import tempfile

    import qexp
    uri = tempfile.mkdtemp(prefix="qexp-alstm-")
    qexp.init(uri=uri)
    evals: dict = {}
    with R.start(experiment_name="alstm"):
        model = ALSTM(d_feat=6, **TINY).fit(ds360, evals_result=evals)
        rec = R.get_recorder()
    return model, rec, evals, uri


# ---- network --------------------------------------------------------------------------------------------
def _qlib_forward(net: ALSTMNet, flat: torch.Tensor, d_feat: int) -> torch.Tensor:
    """Qlib's ALSTMModel.forward, written out: the reshape happens inside the forward pass there."""
    inputs = flat.view(len(flat), d_feat, -1).permute(0, 2, 1)
    rnn_out, _ = net.rnn(net.net(inputs))
    att = torch.sum(torch.mul(rnn_out, net.att_net(rnn_out)), dim=1)
    return net.fc_out(torch.cat((rnn_out[:, -1, :], att), dim=1))[..., 0]


def test_network_matches_qlib_forward_and_state_dict_names() -> None:
    torch.manual_seed(0)
    net = ALSTMNet(d_feat=6, hidden_size=16, num_layers=2).eval()
    flat = torch.randn(5, 360)
    with torch.no_grad():
        np.testing.assert_allclose(net(flat_to_steps(flat, 6)).numpy(), _qlib_forward(net, flat, 6).numpy(),
                                   rtol=1e-6, atol=1e-7)
    qlib_keys = {"net.fc_in.weight", "net.fc_in.bias", "fc_out.weight", "fc_out.bias", "att_net.att_fc_in.weight",
                 "att_net.att_fc_in.bias", "att_net.att_fc_out.weight"}
    qlib_keys |= {f"rnn.{w}_{k}_l{i}" for w in ("weight", "bias") for k in ("ih", "hh") for i in (0, 1)}
    assert set(net.state_dict()) == qlib_keys
    assert isinstance(net.rnn, torch.nn.GRU) and isinstance(ALSTMNet(rnn_type="lstm").rnn, torch.nn.LSTM)


def test_alpha360_columns_become_steps_oldest_first() -> None:
    from qexp_models._windows import flat_steps
    x = np.arange(2 * 360, dtype=np.float32).reshape(2, 360)  # columns CLOSE59..CLOSE0, OPEN59..., VOLUME0
    steps = flat_steps(x, 6, "train", "ALSTM")
    assert steps.shape == (2, 60, 6) and steps.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(steps[0, 0], [0, 60, 120, 180, 240, 300])      # lag 59 of each block
    np.testing.assert_array_equal(steps[0, -1], [59, 119, 179, 239, 299, 359])   # today's values


# ---- DatasetH (Alpha360) ----------------------------------------------------------------------------------
def test_flat_fit_predicts_the_test_rows(flat_fit, ds360) -> None:
    model, _, evals, _ = flat_fit
    assert model.input_kind == "DatasetH" and model.fitted
    assert_test_index(model.predict(ds360), ds360)
    assert len(evals["train"]) == len(evals["valid"]) == 2
    assert model.best_epoch == int(np.argmax(evals["valid"])) and model.best_score == max(evals["valid"])


def test_flat_fit_logs_losses_and_scores_per_epoch(flat_fit) -> None:
    _, rec, evals, _ = flat_fit
    for key in ("train_loss", "valid_loss", "train_score", "valid_score"):
        hist = rec.get_metric_history(key)
        assert hist["step"].tolist() == [0, 1], key
    np.testing.assert_allclose(rec.get_metric_history("valid_score")["value"], evals["valid"])
    np.testing.assert_allclose(rec.get_metric_history("valid_loss")["value"], -np.asarray(evals["valid"]))
    assert (rec.get_metric_history("train_loss")["value"] > 0).all()


def test_same_seed_gives_identical_predictions(flat_fit, ds360) -> None:
    model, _, _, _ = flat_fit
    again = ALSTM(d_feat=6, **TINY).fit(ds360)
    np.testing.assert_array_equal(again.predict(ds360).to_numpy(), model.predict(ds360).to_numpy())
    other = ALSTM(d_feat=6, **{**TINY, "seed": 1}).fit(ds360)
    assert not np.array_equal(other.predict(ds360).to_numpy(), model.predict(ds360).to_numpy())


def test_seeded_fit_leaves_the_global_rng_alone(ds360) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ALSTM(d_feat=6, **{**TINY, "n_epochs": 1}).fit(ds360)
    assert torch.equal(torch.rand(3), expected)


def test_round_trip_in_a_new_process(flat_fit, ds360, tmp_path) -> None:
    model, _, _, uri = flat_fit
    import qexp
    qexp.init(uri=uri)
    with R.start(experiment_name="alstm-save"):
        R.save_objects(**{"params.pkl": model})
        rid = R.get_recorder().id
    pd.testing.assert_series_equal(predict_in_subprocess(uri, rid, ds360, tmp_path), model.predict(ds360))


def test_pickle_holds_cpu_numpy_weights(flat_fit, ds360) -> None:
    model, _, _, _ = flat_fit
    clone = pickle.loads(pickle.dumps(model))
    assert clone.net is None and clone.fitted
    assert all(isinstance(v, np.ndarray) for v in clone.net_state.values())
    assert model.net is not None  # pickling does not change the original
    pd.testing.assert_series_equal(clone.predict(ds360), model.predict(ds360))


# ---- TSDatasetH (Alpha158, 20 features, step_len 20) ---------------------------------------------------
def test_ts_fit_predicts_every_test_window(ts158) -> None:
    model = ALSTM(d_feat=20, **TINY).fit(ts158)
    assert model.input_kind == "TSDatasetH"
    pred = model.predict(ts158)
    sampler = ts158.prepare("test", col_set=["feature", "label"], data_key="infer")
    assert pred.index.equals(sampler.get_index())
    assert_test_index(pred, ts158)
    again = ALSTM(d_feat=20, **TINY).fit(ts158)
    np.testing.assert_array_equal(again.predict(ts158).to_numpy(), pred.to_numpy())


def test_ts_model_refuses_a_flat_dataset(ts158, ds360) -> None:
    model = ALSTM(d_feat=20, **{**TINY, "n_epochs": 1}).fit(ts158)
    with pytest.raises(ValueError, match="fitted on a TSDatasetH but predicts on a DatasetH"):
        model.predict(ds360)


def test_ts_windows_match_the_sampler(ts158) -> None:
    from qexp_models._windows import load
    steps = load(ts158, "valid", 20, "learn", True, "ALSTM")
    sampler = ts158.prepare("valid", col_set=["feature", "label"], data_key="learn")
    sampler.config(fillna_type="ffill+bfill")
    rows = np.array([0, 7, len(sampler) - 1])
    np.testing.assert_array_equal(steps.x[rows], sampler[rows][:, :, :-1])
    np.testing.assert_array_equal(steps.y[rows], sampler[rows][:, -1, -1])
    assert steps.x.shape == (len(sampler), 20, 20)


# ---- training logic -------------------------------------------------------------------------------------
def test_early_stopping_keeps_the_best_epoch(ds360, monkeypatch, tmp_path) -> None:
    # valid loss is best at epoch 1 and worse afterwards: training stops early_stop epochs later
    valid_losses = iter([0.9, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    real_loss = ALSTM._loss
    snapshots = []

    def fake_loss(self, torch_, net, x, y, *rest):
        if len(y) == self._n_valid:
            snapshots.append({k: v.clone() for k, v in net.state_dict().items()})
            return next(valid_losses)
        return real_loss(self, torch_, net, x, y, *rest)

    monkeypatch.setattr(ALSTM, "_loss", fake_loss)
    model = ALSTM(d_feat=6, **{**TINY, "n_epochs": 50, "early_stop": 3})
    model._n_valid = len(ds360.prepare("valid", col_set=["feature", "label"], data_key="learn"))
    evals: dict = {}
    model.fit(ds360, evals_result=evals, save_path=str(tmp_path / "best.pt"))
    assert len(evals["valid"]) == 5 and model.best_epoch == 1 and model.best_score == -0.5
    assert len(model.epoch_seconds) == 5
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k
    saved = torch.load(tmp_path / "best.pt")
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in saved)


def test_without_valid_trains_all_epochs(ds360) -> None:
    from qexp_data.dataset import DatasetH
    no_valid = DatasetH(ds360.handler, {"train": ds360.segments["train"], "test": ds360.segments["test"]})
    with pytest.warns(UserWarning, match="no 'valid' segment"):
        model = ALSTM(d_feat=6, **{**TINY, "n_epochs": 2, "early_stop": 1}).fit(no_valid)
    assert len(model.epoch_seconds) == 2 and model.best_epoch == 1


def test_last_partial_batch_is_trained(monkeypatch) -> None:
    ds = FrameDataset(random_frame(n_days=60, n_inst=8, n_feat=6), FRAME_SEGMENTS)
    n_train = len(ds.prepare("train", col_set=["feature", "label"], data_key="learn"))
    sizes = []
    real = ALSTMNet.forward

    def spy(self, x):
        if self.training:
            sizes.append(len(x))
        return real(self, x)

    monkeypatch.setattr(ALSTMNet, "forward", spy)
    ALSTM(d_feat=6, **{**TINY, "n_epochs": 1, "batch_size": 100}).fit(ds)
    assert sum(sizes) == n_train and sizes[-1] == n_train % 100 != 0


def test_lstm_and_gd(ds360) -> None:
    model = ALSTM(d_feat=6, **{**TINY, "n_epochs": 1}, rnn_type="LSTM", optimizer="gd").fit(ds360)
    assert isinstance(model.net.rnn, torch.nn.LSTM)
    assert np.isfinite(model.predict(ds360)).all()


# ---- device ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback when CUDA is missing")
def test_gpu_requested_without_cuda_warns_and_uses_cpu() -> None:
    ds = FrameDataset(random_frame(), FRAME_SEGMENTS)
    with pytest.warns(UserWarning, match="GPU=0 was requested but CUDA is not available; using the CPU"):
        model = ALSTM(d_feat=6, **{**TINY, "GPU": 0, "n_epochs": 1}).fit(ds)
    assert next(model.net.parameters()).device.type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ALSTM(d_feat=6, **{**TINY, "GPU": None, "n_epochs": 1}).fit(ds)  # default: silent fallback
        ALSTM(d_feat=6, **{**TINY, "GPU": -1, "n_epochs": 1}).fit(ds)


# ---- bad input ------------------------------------------------------------------------------------------
def test_d_feat_must_divide_the_flat_features(ds360) -> None:
    with pytest.raises(ValueError, match="d_feat=7 does not divide the 360 feature columns"):
        ALSTM(d_feat=7, **TINY).fit(ds360)


def test_d_feat_must_equal_the_window_features(ts158) -> None:
    with pytest.raises(ValueError, match="d_feat=6 but the TSDatasetH windows .* have 20 features per step; set d_feat=20"):
        ALSTM(d_feat=6, **TINY).fit(ts158)


def test_no_train_segment() -> None:
    ds = FrameDataset(random_frame(), {"valid": FRAME_SEGMENTS["valid"]})
    with pytest.raises(ValueError, match="needs a 'train' segment"):
        ALSTM(d_feat=6, **TINY).fit(ds)


def test_all_nan_labels() -> None:
    frame = random_frame()
    frame[("label", "LABEL0")] = np.nan
    with pytest.raises(ValueError, match="every label in 'train' is NaN"):
        ALSTM(d_feat=6, **TINY).fit(FrameDataset(frame, FRAME_SEGMENTS))


def test_nan_features_in_training_data() -> None:
    frame = random_frame()
    frame.iloc[2, 0] = np.nan
    with pytest.raises(ValueError, match="1 of .* 'train' samples have NaN features.*Fillna"):
        ALSTM(d_feat=6, **TINY).fit(FrameDataset(frame, FRAME_SEGMENTS))


@pytest.mark.parametrize("kwargs, match", [({"loss": "mae"}, "unknown loss 'mae'"),
                                           ({"metric": "ic"}, "unknown metric 'ic'"),
                                           ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
                                           ({"rnn_type": "TCN"}, "unknown rnn_type 'TCN'"),
                                           ({"batch_size": 0}, "batch_size must be a positive integer"),
                                           ({"dropout": 1.0}, "dropout must be in")])
def test_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        ALSTM(**kwargs)


def test_reweighter_is_refused() -> None:
    with pytest.raises(ValueError, match="does not support a reweighter"):
        ALSTM(**TINY).fit(FrameDataset(random_frame(), FRAME_SEGMENTS), reweighter=object())


def test_predict_before_fit() -> None:
    with pytest.raises(ValueError, match="not fitted yet"):
        ALSTM().predict(FrameDataset(random_frame(), FRAME_SEGMENTS))


def test_interrupted_training_still_logs_the_epochs_done(runs, monkeypatch) -> None:
    real_loss = ALSTM._loss
    calls = []

    def loss_then_interrupt(self, torch_, net, x, y, *rest):
        calls.append(1)
        if len(calls) == 5:  # train and valid of epochs 0 and 1 scored, then the user presses Ctrl-C
            raise KeyboardInterrupt
        return real_loss(self, torch_, net, x, y, *rest)

    monkeypatch.setattr(ALSTM, "_loss", loss_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with R.start(experiment_name="alstm-interrupted"):
            rec = R.get_recorder()
            ALSTM(d_feat=6, **{**TINY, "n_epochs": 5}).fit(FrameDataset(random_frame(), FRAME_SEGMENTS))
    assert rec.get_metric_history("valid_loss")["step"].tolist() == [0, 1]


def test_nan_loss_in_every_epoch_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(ALSTM, "_loss", lambda self, torch_, net, x, y, *rest: float("nan"))
    with pytest.raises(FloatingPointError, match="valid loss was NaN in every epoch.*lower lr"):
        ALSTM(d_feat=6, **TINY).fit(FrameDataset(random_frame(), FRAME_SEGMENTS))
