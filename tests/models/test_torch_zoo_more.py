"""TabnetModel (and its pretraining), ADARNN, ADD, TCTS and IGMTF on the shared loop: fit and predict on the
synthetic market, Qlib's names, save/load in a new process, early stopping, what each adds to the loop, and
bad input."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from qexp import R
from qexp_models import torch_models as tm
from qexp_models.aux_models import ADARNN, ADD, TCTS
from qexp_models.graph_models import IGMTF
from qexp_models.tabnet import TabnetModel
from qexp_models.torch_loop import Segment

from .conftest import (
    FRAME_SEGMENTS,
    NORM_FEATURES,
    RANK_LABEL,
    FrameDataset,
    _dataset,
    assert_same_predictions_in_subprocess,
    assert_test_index,
    fake_valid_losses,
    fit_in_one_run,
    random_frame,
)

CPU = {"GPU": -1, "seed": 0}
PRETRAIN = {"pretrain": ("2020-01-01", "2020-02-14"), "pretrain_validation": ("2020-02-15", "2020-03-05")}
TCTS_LABELS = ["Ref($close, -1) / $close - 1", "Ref($close, -2) / Ref($close, -1) - 1",
               "Ref($close, -3) / Ref($close, -2) - 1"]


def _frame_ds(n_feat: int = 12, n_inst: int = 12, segments: dict | None = None) -> FrameDataset:
    return FrameDataset(random_frame(n_days=60, n_inst=n_inst, n_feat=n_feat), segments or FRAME_SEGMENTS)


def _three_label_ds(n_feat: int = 12) -> FrameDataset:
    frame = random_frame(n_days=60, n_inst=12, n_feat=n_feat)
    rng = np.random.default_rng(1)
    for k in (1, 2):
        frame[("label", f"LABEL{k}")] = (frame[("label", "LABEL0")] + rng.normal(0, 0.1, len(frame))).astype(np.float32)
    return FrameDataset(frame, FRAME_SEGMENTS)


# small versions of each model: (class, kwargs, dataset fixture)
MODELS = {
    "TabnetModel": (TabnetModel, {"d_feat": 360, "out_dim": 8, "n_d": 8, "n_a": 8, "n_steps": 2, "vbs": 256,
                                  "batch_size": 1024, "n_epochs": 2, "pretrain": False}, "ds360"),
    "ADARNN": (ADARNN, {"d_feat": 6, "hidden_size": 8, "num_layers": 2, "pre_epoch": 1, "n_epochs": 2,
                        "batch_size": 1024}, "ds360"),
    "ADD": (ADD, {"d_feat": 6, "hidden_size": 8, "num_layers": 1, "n_epochs": 2, "batch_size": 1024, "metric": "ic"},
            "ds360"),
    "TCTS": (TCTS, {"d_feat": 6, "hidden_size": 8, "num_layers": 1, "output_dim": 3, "target_label": 1,
                    "fore_lr": 1e-3, "weight_lr": 1e-3, "steps": 1, "n_epochs": 2, "batch_size": 1024,
                    "lowest_valid_performance": None}, "ds360_3labels"),
    "IGMTF": (IGMTF, {"d_feat": 6, "hidden_size": 8, "num_layers": 1, "n_epochs": 2, "metric": "ic"}, "ds360"),
}


@pytest.fixture(scope="session")
def ds360_3labels(synth_dir):
    """Alpha360 with TCTS's three labels (returns of the next three days), as Qlib's TCTS config."""
    return _dataset(synth_dir, "Alpha360", infer_processors=NORM_FEATURES, learn_processors=RANK_LABEL,
                    label=TCTS_LABELS)


@pytest.fixture(scope="module")
def fitted(request, tmp_path_factory):
    """Every model fitted on the synthetic market inside one run and saved there: ({name: (model, dataset)},
    store uri, run id)."""
    uri = tmp_path_factory.mktemp("zoo_more") / "runs"
    models, rid = fit_in_one_run(MODELS, request, uri, "zoo-more", **CPU)
    return models, uri, rid


# ---- the synthetic market ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_fit_and_predict_on_the_synthetic_market(fitted, name) -> None:
    model, ds = fitted[0][name]
    assert model.fitted and model.input_kind == "DatasetH" and len(model.epoch_seconds) >= 1
    assert model.best_epoch is not None and np.isfinite(model.best_score)
    assert_test_index(model.predict(ds), ds)


@pytest.mark.slow  # two new Python processes that import torch and load the datasets
def test_round_trip_in_a_new_process_gives_identical_predictions(fitted, tmp_path) -> None:
    models, uri, rid = fitted
    assert_same_predictions_in_subprocess(models, uri, rid, tmp_path)


def test_fitted_models_pickle_no_training_state(fitted) -> None:
    for name, (model, _) in fitted[0].items():
        blob = pickle.dumps(model)
        # weights as numpy arrays only: no tensor, optimizer, data segment or memory of the training rows
        assert b"_rebuild_tensor" not in blob and b"torch.optim" not in blob, name
        clone = pickle.loads(blob)
        assert clone.net is None and all(isinstance(v, np.ndarray) for v in clone.net_state.values()), name
        assert len(blob) < 2 * sum(v.nbytes for v in clone.net_state.values()) + 200_000, (name, len(blob))


@pytest.mark.parametrize("path, expected", [
    ("qlib.contrib.model.pytorch_tabnet.TabnetModel", TabnetModel), ("qlib.contrib.model.pytorch_adarnn.ADARNN", ADARNN),
    ("qlib.contrib.model.pytorch_add.ADD", ADD), ("qlib.contrib.model.pytorch_tcts.TCTS", TCTS),
    ("qlib.contrib.model.pytorch_igmtf.IGMTF", IGMTF),
])
def test_qlib_module_paths_resolve(path, expected) -> None:
    from qexp.ext import init_instance_by_config
    module_path, _, name = path.rpartition(".")
    assert type(init_instance_by_config({"class": name, "module_path": module_path, "kwargs": {"GPU": -1}})) is expected


# ---- early stopping: every model's best round is the one kept ----------------------------------------------
@pytest.mark.parametrize("make, ds", [
    (lambda: TabnetModel(d_feat=12, out_dim=4, n_d=4, n_a=4, n_steps=2, vbs=64, batch_size=64, pretrain=False,
                         n_epochs=50, early_stop=3, **CPU), _frame_ds),
    (lambda: ADARNN(d_feat=2, hidden_size=4, len_seq=6, pre_epoch=2, batch_size=64, n_epochs=50, early_stop=3,
                    **CPU), _frame_ds),
    (lambda: ADD(d_feat=2, hidden_size=4, num_layers=1, batch_size=64, n_epochs=50, early_stop=3, **CPU), _frame_ds),
    (lambda: TCTS(d_feat=2, hidden_size=4, num_layers=1, input_dim=12, output_dim=3, steps=1, batch_size=64,
                  n_epochs=50, early_stop=3, lowest_valid_performance=None, **CPU), _three_label_ds),
    (lambda: IGMTF(d_feat=2, hidden_size=4, num_layers=1, n_epochs=50, early_stop=3, **CPU), _frame_ds),
], ids=["TabnetModel", "ADARNN", "ADD", "TCTS", "IGMTF"])
def test_early_stopping_restores_the_best_epoch(monkeypatch, make, ds) -> None:
    data = ds()
    snapshots = fake_valid_losses(monkeypatch, data, [0.9, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    evals: dict = {}
    model = make().fit(data, evals_result=evals)
    assert len(evals["valid"]) == 5 and model.best_epoch == 1 and model.best_score == -0.5
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k


# ---- TabNet and its pretraining -----------------------------------------------------------------------------
def _tabnet(**kw) -> TabnetModel:
    args = {"d_feat": 12, "out_dim": 4, "n_d": 4, "n_a": 4, "n_steps": 2, "vbs": 64, "batch_size": 64,
            "n_epochs": 2, "pretrain_n_epochs": 3, **CPU}
    return TabnetModel(**{**args, **kw})


def test_tabnet_pretrains_the_encoder_then_fits_from_it(runs, tmp_path, monkeypatch) -> None:
    ds = _frame_ds(segments={**PRETRAIN, **FRAME_SEGMENTS})
    started = {}
    real = TabnetModel._init_net

    def spy(self, torch_, net):
        real(self, torch_, net)
        if self.phase == "finetune":
            started.update({k: v.clone() for k, v in net.model.state_dict().items()})

    monkeypatch.setattr(TabnetModel, "_init_net", spy)
    path = tmp_path / "pretrain" / "best.model"
    with R.start(experiment_name="tabnet"):
        model = _tabnet(pretrain_file=str(path)).fit(ds)
        rec = R.get_recorder()
    saved = torch.load(path)
    assert set(saved) == set(started) and all(torch.equal(saved[k], started[k]) for k in saved)
    assert rec.get_metric_history("pretrain_valid_loss")["step"].tolist() == [0, 1, 2]
    assert rec.get_metric_history("valid_loss")["step"].tolist() == [0, 1]
    assert model.pretrain_best_epoch is not None and len(model.pretrain_evals["valid"]) == 3
    assert all(v > 0 for v in (-np.array(model.pretrain_evals["valid"])))  # reconstruction losses
    assert type(model.net).__name__ == "FinetuneModel" and model.phase == "finetune"
    # pretrain: False with that file starts from it (an earlier pretraining)
    started.clear()
    _tabnet(pretrain=False, pretrain_file=str(path)).fit(ds)
    assert all(torch.equal(saved[k], started[k]) for k in saved)


def test_tabnet_pretraining_needs_its_segments() -> None:
    with pytest.raises(ValueError, match="pretrain=True needs the dataset segments 'pretrain' and "
                                         "'pretrain_validation'.*missing: pretrain, pretrain_validation"):
        _tabnet().fit(_frame_ds())


def test_tabnet_sparsemax_is_a_projection_on_the_simplex() -> None:
    from qexp_models.nets.tabnet import sparsemax
    z = torch.tensor([[3.0, 1.0, 0.2, -1.0], [0.1, 0.1, 0.1, 0.1]], requires_grad=True)
    p = sparsemax(z)
    np.testing.assert_allclose(p.sum(1).detach().numpy(), [1.0, 1.0], rtol=1e-6)
    assert p[0, 0] == 1.0 and (p[0, 1:] == 0).all()  # a clear winner takes all: sparse, unlike softmax
    np.testing.assert_allclose(p[1].detach().numpy(), [0.25] * 4, rtol=1e-6)
    # the gradient of a projection sums to zero over the support
    (p[:, 0] * 2 + p[:, 1]).sum().backward()
    np.testing.assert_allclose(z.grad[1].sum().item(), 0.0, atol=1e-6)
    torch.autograd.gradcheck(sparsemax, (torch.randn(3, 5, dtype=torch.float64, requires_grad=True),))


# ---- ADARNN -------------------------------------------------------------------------------------------------
def test_adarnn_batches_pair_the_periods_of_the_training_days() -> None:
    ds = _frame_ds()
    frame = ds.prepare("train", col_set=["feature", "label"], data_key="learn")
    model = ADARNN(d_feat=2, hidden_size=4, len_seq=6, batch_size=32, n_splits=2, **CPU)
    x = frame["feature"].to_numpy(np.float32).reshape(len(frame), 2, 6).transpose(0, 2, 1)
    seg = Segment(np.ascontiguousarray(x), frame[("label", "LABEL0")].to_numpy(np.float32), frame.index, "DatasetH")
    model._check_input(seg)
    dates = frame.index.get_level_values("datetime")
    split = np.array_split(np.sort(dates.unique()), 2)[1][0]
    tr = type("T", (), {"y": torch.zeros(len(frame))})()
    batches = list(model._batches(torch, tr, torch.Generator().manual_seed(0), 0))
    assert batches and all(len(b) == 64 for b in batches)  # two equal halves, one per period
    for b in batches:
        first, second = dates[b[:32].numpy()], dates[b[32:].numpy()]
        assert (first < split).all() and (second >= split).all()


def test_adarnn_boosting_raises_the_weight_of_steps_whose_distance_grew() -> None:
    model = ADARNN(d_feat=2, hidden_size=4, num_layers=1, len_seq=3, pre_epoch=0, **CPU)
    model._epoch, model._weight_mat = 1, torch.full((1, 3), 1 / 3)
    model._dist_old = torch.tensor([[1.0, 1.0, 1.0]])
    model._dist = torch.tensor([[2.0, 1.0, 0.5]])
    model._after_round(0.0)
    w = model._weight_mat[0]
    assert w[0] > w[1] == w[2] and float(w.sum()) == pytest.approx(1.0)


def test_adarnn_transfer_losses_are_zero_for_equal_domains_and_grow_apart() -> None:
    from qexp_models.nets.adarnn import TRANSFER_LOSSES, transfer_loss
    torch.manual_seed(0)
    s = torch.randn(3, 16, 4)
    for kind in TRANSFER_LOSSES:
        same = transfer_loss(kind, s, s.clone())
        apart = transfer_loss(kind, s, s * torch.linspace(1.5, 3.0, 4) + torch.linspace(0.5, 2.0, 4))
        assert same.shape == (3,) and torch.all(apart > same + 1e-4), kind
        if kind != "pairwise":  # Qlib's pairwise loss is the size of all row-to-row distances, not a divergence
            assert torch.all(same.abs() < 1e-4), kind


# ---- ADD ----------------------------------------------------------------------------------------------------
def test_add_market_regimes_cut_the_training_days_in_thirds(fitted) -> None:
    model, ds = fitted[0]["ADD"]
    raw = ds.prepare("train", col_set="label", data_key="raw").iloc[:, 0]
    daily = raw.groupby(level="datetime").mean()
    lo, hi = daily.quantile([1 / 3, 2 / 3])
    assert model.thresholds == (pytest.approx(lo), pytest.approx(hi))
    seg = model._load(ds, "train", True)
    assert seg.y.shape[1] == 2 and set(np.unique(seg.y[:, 1][~np.isnan(seg.y[:, 1])])) == {0.0, 1.0, 2.0}


def test_add_gradient_reversal_schedule_and_sign() -> None:
    from qexp_models.nets.add import RevGrad
    rev = RevGrad(gamma=0.1, gamma_clip=0.4)
    alphas = []
    for p in range(12):
        rev.set_round(p)
        alphas.append(rev.alpha)
    assert alphas[0] == 0.0 and alphas[1] == pytest.approx(2 / (1 + np.exp(-0.1)) - 1) and max(alphas) == 0.4
    x = torch.ones(3, requires_grad=True)
    rev(x).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -alphas[-1]))


def test_add_starts_both_encoders_from_the_base_model(tmp_path) -> None:
    from qexp_models.nets.rnn import GRUModel
    torch.manual_seed(1)
    base = GRUModel(d_feat=2, hidden_size=4, num_layers=1)
    torch.save(base.state_dict(), tmp_path / "gru.pkl")
    model = ADD(d_feat=2, hidden_size=4, num_layers=1, n_epochs=1, batch_size=64, model_path=str(tmp_path / "gru.pkl"),
                **CPU).fit(_frame_ds())
    assert "enc_excess.weight_ih_l0" in model.base_keys and "enc_market.weight_hh_l0" in model.base_keys
    missing = str(tmp_path / "nope.pkl")
    with pytest.warns(UserWarning, match="does not exist"):
        model = ADD(model_path=missing, **CPU)
    assert ADD.dry_run_warnings({"model_path": missing}) and not ADD.dry_run_warnings({})
    with pytest.raises(FileNotFoundError, match="run:<run id>"):
        model.fit(_frame_ds())


# ---- TCTS ---------------------------------------------------------------------------------------------------
def test_tcts_trains_forecaster_and_scheduler_and_scores_the_target(monkeypatch) -> None:
    ds = _three_label_ds()
    before = {}
    real = TCTS._init_net

    def spy(self, torch_, net):
        real(self, torch_, net)
        before.update({k: v.clone() for k, v in net.state_dict().items()})

    monkeypatch.setattr(TCTS, "_init_net", spy)
    evals: dict = {}
    model = TCTS(d_feat=2, hidden_size=4, num_layers=1, input_dim=12, output_dim=3, target_label=2, steps=2,
                 fore_lr=1e-2, weight_lr=1e-2, batch_size=64, n_epochs=2, lowest_valid_performance=None,
                 **CPU).fit(ds, evals_result=evals)
    after = model.net.state_dict()
    assert not torch.equal(after["fore.fc_out.weight"], before["fore.fc_out.weight"])
    assert not torch.equal(after["weight.mlp.fc_out.weight"], before["weight.mlp.fc_out.weight"])
    valid = ds.prepare("valid", col_set=["feature", "label"], data_key="learn")
    pred = model.predict(FrameDataset(ds.frame, {**FRAME_SEGMENTS, "test": FRAME_SEGMENTS["valid"]}))
    target_mse = float(((pred.to_numpy() - valid[("label", "LABEL2")].to_numpy()) ** 2).mean())
    assert -model.best_score == pytest.approx(target_mse, rel=1e-4)  # the valid loss is the target's
    hard = TCTS(d_feat=2, hidden_size=4, num_layers=1, input_dim=12, output_dim=3, mode="hard", batch_size=64,
                n_epochs=1, lowest_valid_performance=None, **CPU).fit(ds)
    assert hard.fitted


def test_tcts_retrains_until_the_valid_loss_is_low_enough(runs) -> None:
    kw = {"d_feat": 2, "hidden_size": 4, "num_layers": 1, "input_dim": 12, "output_dim": 3, "batch_size": 64,
          "n_epochs": 1, "fore_lr": 1e-3, **CPU}
    with R.start(experiment_name="tcts"):
        with pytest.warns(UserWarning, match="no training of 3 reached lowest_valid_performance=0.001"):
            model = TCTS(lowest_valid_performance=0.001, max_attempts=3, **kw).fit(_three_label_ds())
        rec = R.get_recorder()
    assert model.attempts == 3
    assert {"valid_loss", "retry1_valid_loss", "retry2_valid_loss"} <= set(rec.list_metrics())
    tried = [rec.get_metric_history(k)["value"].min() for k in ("valid_loss", "retry1_valid_loss",
                                                               "retry2_valid_loss")]
    assert -model.best_score == pytest.approx(min(tried))
    assert TCTS(lowest_valid_performance=100.0, **kw).fit(_three_label_ds()).attempts == 1


# ---- IGMTF --------------------------------------------------------------------------------------------------
def test_igmtf_starts_from_a_qexp_run_and_needs_its_train_segment_to_predict(runs) -> None:
    ds = _frame_ds()
    with R.start(experiment_name="base"):
        base = tm.LSTM(d_feat=2, hidden_size=4, num_layers=1, n_epochs=1, **CPU).fit(ds)
        R.save_objects(**{"params.pkl": base})
        rid = R.get_recorder().id
    model = IGMTF(d_feat=2, hidden_size=4, num_layers=1, base_model="LSTM", model_path=f"run:{rid}", n_epochs=1,
                  **CPU).fit(ds)
    assert set(model.base_keys) == {k for k in base.net.state_dict() if k.startswith("rnn.")}
    assert len(model.predict(ds)) == len(ds.prepare("test"))
    no_train = FrameDataset(ds.frame, {"test": FRAME_SEGMENTS["test"]})
    with pytest.raises(ValueError, match="IGMTF predicts from the memory of its training days.*'train' segment"):
        model.predict(no_train)


def test_igmtf_missing_model_path_warns_and_fails_at_fit(tmp_path) -> None:
    path = str(tmp_path / "benchmarks" / "LSTM" / "model_lstm_csi300.pkl")
    with pytest.warns(UserWarning, match="does not exist.*fit will fail"):
        model = IGMTF(d_feat=2, hidden_size=4, model_path=path, **CPU)
    assert IGMTF.dry_run_warnings({"model_path": path})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.fit(_frame_ds())


def test_igmtf_neighbours_come_from_the_most_similar_training_days() -> None:
    from qexp_models.nets.igmtf import IGMTFModel
    torch.manual_seed(0)
    net = IGMTFModel(d_feat=2, hidden_size=4, num_layers=1, k_day=1, n_neighbor=2).eval()
    train = torch.randn(30, 5, 2)
    net.set_memory(train, [(0, 10), (10, 20), (20, 30)])
    rows, days, means = net.memory
    assert rows.shape == (30, 4) and means.shape == (3, 4)
    with torch.no_grad():
        today = train[10:20] + 0.01            # nearly the second training day
        out = net(today)
    assert out.shape == (10,)


# ---- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: TabnetModel(final_out_dim=2), "final_out_dim must be 1"),
    (lambda: TabnetModel(ps=1.5), r"ps .* must be in \(0, 1\)"),
    (lambda: TabnetModel(pretrain_loss="mse"), "unknown pretrain_loss 'mse'"),
    (lambda: TabnetModel(relax=0.5), "relax must be >= 1"),
    (lambda: TabnetModel(loss="mae"), "TabnetModel: unknown loss 'mae'"),
    (lambda: ADARNN(loss_type="adv"), "loss_type 'adv' is not supported"),
    (lambda: ADARNN(loss_type="wasserstein"), "unknown loss_type 'wasserstein'"),
    (lambda: ADARNN(n_splits=1), "n_splits .* must be an integer >= 2"),
    (lambda: ADARNN(metric="auc"), "unknown metric 'auc'"),
    (lambda: ADD(base_model="TCN"), "unknown base_model 'TCN'"),
    (lambda: ADD(mu=-1), "mu must be a number >= 0"),
    (lambda: TCTS(mode="medium"), "unknown mode 'medium'"),
    (lambda: TCTS(target_label=5, output_dim=3), "target_label must be the index of one of the output_dim=3"),
    (lambda: TCTS(weight_optimizer="rmsprop"), "unknown weight_optimizer 'rmsprop'"),
    (lambda: IGMTF(base_model="TCN"), "IGMTF: unknown base_model 'TCN'"),
    (lambda: IGMTF(metric="mse"), "IGMTF: unknown metric 'mse'"),
])
def test_bad_arguments(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make, ds, match", [
    (lambda: TabnetModel(d_feat=158, pretrain=False, **CPU), _frame_ds,
     "d_feat=158 but the data has 12 feature columns; set d_feat: 12"),
    (lambda: ADARNN(d_feat=2, len_seq=60, **CPU), _frame_ds, "len_seq=60 but the inputs have 6 steps; set len_seq: 6"),
    (lambda: ADARNN(d_feat=5, **CPU), _frame_ds, "d_feat=5 does not divide the 12 feature columns"),
    (lambda: TCTS(d_feat=2, input_dim=12, output_dim=5, **CPU), _three_label_ds,
     r"output_dim=5 but the handler gives 3 label\(s\).*set output_dim: 3"),
    (lambda: TCTS(d_feat=2, input_dim=360, output_dim=3, **CPU), _three_label_ds,
     "input_dim=360 but the data has 12 feature columns; set input_dim: 12"),
    (lambda: TCTS(d_feat=5, input_dim=12, output_dim=3, **CPU), _three_label_ds, "d_feat=5 does not divide"),
])
def test_arguments_that_do_not_fit_the_data(make, ds, match) -> None:
    with pytest.raises(ValueError, match=match):
        make().fit(ds())


def test_windows_are_refused_where_qlib_takes_rows(ts158) -> None:
    with pytest.raises(TypeError, match="TabnetModel takes a DatasetH"):
        TabnetModel(d_feat=20, pretrain=False, n_epochs=1, **CPU).fit(ts158)
    with pytest.raises(TypeError, match="TCTS.*use a DatasetH"):
        TCTS(d_feat=20, input_dim=20, output_dim=1, n_epochs=1, **CPU).fit(ts158)


def test_adarnn_and_add_take_windows_too(ts158) -> None:
    for model in (ADARNN(d_feat=20, hidden_size=4, num_layers=1, len_seq=20, pre_epoch=1, n_epochs=1,
                         batch_size=1024, **CPU),
                  ADD(d_feat=20, hidden_size=4, num_layers=1, n_epochs=1, batch_size=1024, **CPU)):
        model.fit(ts158)
        pred = model.predict(ts158)
        assert pred.index.equals(ts158.prepare("test", col_set=["feature", "label"], data_key="infer").get_index())
        assert np.isfinite(pred.to_numpy()).all()
