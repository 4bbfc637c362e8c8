"""Early stopping on the shared torch loop, for every network that no other file tests it for: GRU,
Transformer, Localformer, TCN, MLP (DNNModelPytorch), GeneralPTNN, KRNN, Sandwich, SFM, GATs, HIST and the
``_ts`` classes on a TSDatasetH (LSTM: test_torch_zoo.py; TabNet, ADARNN, ADD, TCTS, IGMTF:
test_torch_zoo_more.py; TRA: test_tra.py).

As those tests do, the valid scoring is replaced by a scripted sequence of losses (the train rows are still
scored for real) and the network's weights and valid predictions are snapshotted at each round. The fitted
model must hold the best round's weights, predict what the network predicted at that round, and have
stopped ``early_stop`` rounds after it."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from qexp_data.dataset import TSDatasetH
from qexp_data.handler import DataHandlerLP
from qexp_data.loader import StaticDataLoader
from qexp_models import torch_models as tm
from qexp_models.graph_models import HIST, GATs, GATsTS
from qexp_models.torch_loop import TorchModel

from .conftest import FRAME_SEGMENTS, FrameDataset, random_frame

CPU = {"GPU": -1, "seed": 0}
EARLY_STOP = 3
# best at round 2; round 4 is better than round 3 but not than round 2, so it must not reset the count
SCRIPTED = [0.9, 0.7, 0.5, 0.6, 0.55, 0.8]
BEST = 2
ROUNDS = BEST + EARLY_STOP + 1  # rounds 0..5: three rounds without a better valid loss after round 2
SMALL = {"n_epochs": 50, "early_stop": EARLY_STOP, "batch_size": 64, **CPU}
DAILY = {"n_epochs": 50, "early_stop": EARLY_STOP, **CPU}


def _frame_ds() -> FrameDataset:
    """8 stocks x 60 days, 12 feature columns = 2 per step x 6 steps."""
    return FrameDataset(random_frame(n_days=60, n_inst=8, n_feat=12), FRAME_SEGMENTS)


def _ts_ds() -> TSDatasetH:
    """The same kind of panel with 2 features, read as windows of 6 days."""
    handler = DataHandlerLP(data_loader=StaticDataLoader(random_frame(n_days=60, n_inst=8, n_feat=2)))
    return TSDatasetH(handler=handler, segments=dict(FRAME_SEGMENTS), step_len=6)


def _concepts(tmp_path: Path) -> tuple[str, str]:
    np.save(tmp_path / "s2c.npy", (np.random.default_rng(0).random((8, 4)) < 0.4).astype(np.float32))
    np.save(tmp_path / "index.npy", np.array({f"S{i}": i for i in range(8)}, dtype=object))  # a dict, as np.save of one
    return str(tmp_path / "s2c.npy"), str(tmp_path / "index.npy")


def _hist(tmp_path: Path) -> HIST:
    s2c, index = _concepts(tmp_path)
    return HIST(d_feat=2, hidden_size=4, num_layers=1, stock2concept=s2c, stock_index=index, **DAILY)


GRU_URI = "qlib.contrib.model.pytorch_gru_ts.GRUModel"
# name: (model factory taking a temp folder, dataset factory); each a tiny network on a tiny panel
CASES: dict[str, tuple[Callable[[Path], TorchModel], Callable[[], Any]]] = {
    "GRU": (lambda _: tm.GRU(d_feat=2, hidden_size=4, num_layers=1, **SMALL), _frame_ds),
    "TransformerModel": (lambda _: tm.TransformerModel(d_feat=2, d_model=4, num_layers=1, **SMALL), _frame_ds),
    "LocalformerModel": (lambda _: tm.LocalformerModel(d_feat=2, d_model=4, num_layers=1, **SMALL), _frame_ds),
    "TCN": (lambda _: tm.TCN(d_feat=2, n_chans=4, num_layers=2, kernel_size=3, **SMALL), _frame_ds),
    # the MLP's rounds are eval_steps steps each, and it stops after early_stop_rounds of them
    "DNNModelPytorch": (lambda _: tm.DNNModelPytorch(pt_model_kwargs={"input_dim": 12, "layers": (8,)}, max_steps=500,
                                                     eval_steps=5, early_stop_rounds=EARLY_STOP, batch_size=64, **CPU),
                        _frame_ds),
    "GeneralPTNN": (lambda _: tm.GeneralPTNN(pt_model_uri=GRU_URI, pt_model_kwargs={"d_feat": 2, "hidden_size": 4,
                                                                                    "num_layers": 1}, **SMALL),
                    _frame_ds),
    "KRNN": (lambda _: tm.KRNN(fea_dim=2, cnn_dim=4, rnn_dim=4, rnn_dups=2, rnn_layers=1, **SMALL), _frame_ds),
    "Sandwich": (lambda _: tm.Sandwich(fea_dim=2, cnn_dim_1=4, cnn_dim_2=4, rnn_dim_1=4, rnn_dim_2=4, rnn_dups=2,
                                       rnn_layers=1, **SMALL), _frame_ds),
    "SFM": (lambda _: tm.SFM(d_feat=2, hidden_size=4, freq_dim=3, output_dim=2, **SMALL), _frame_ds),
    "GATs": (lambda _: GATs(d_feat=2, hidden_size=4, num_layers=1, **DAILY), _frame_ds),
    "HIST": (_hist, _frame_ds),
    # the _ts classes (Qlib's _ts defaults) on windows: the TSDatasetH input path of the same loop
    "TransformerModelTS": (lambda _: tm.TransformerModelTS(d_feat=2, d_model=4, num_layers=1, **SMALL), _ts_ds),
    "LocalformerModelTS": (lambda _: tm.LocalformerModelTS(d_feat=2, d_model=4, num_layers=1, **SMALL), _ts_ds),
    "TCNTS": (lambda _: tm.TCNTS(d_feat=2, n_chans=4, kernel_size=3, **SMALL), _ts_ds),
    "GATsTS": (lambda _: GATsTS(d_feat=2, hidden_size=4, num_layers=1, **DAILY), _ts_ds),
}

# registered torch models whose early stopping is tested in another file
ELSEWHERE = {"LSTM",                                          # test_torch_zoo.py
             "TabnetModel", "ADARNN", "ADD", "TCTS", "IGMTF",  # test_torch_zoo_more.py
             "TRAModel"}                                      # test_tra.py


def test_every_registered_torch_model_has_an_early_stopping_test() -> None:
    from qexp_models.torch_registry import register_torch_models
    registered: set[str] = set()
    register_torch_models(lambda cls, **kw: registered.add(cls.__name__))
    assert registered - ELSEWHERE == set(CASES)
    assert ELSEWHERE <= registered


@pytest.mark.parametrize("name", list(CASES))
def test_early_stopping_restores_the_best_epoch(name, monkeypatch, tmp_path) -> None:
    make, make_ds = CASES[name]
    ds = make_ds()
    n_valid = len(ds.prepare("valid", col_set=["feature", "label"], data_key="learn"))
    n_train = len(ds.prepare("train", col_set=["feature", "label"], data_key="learn"))
    assert n_valid != n_train  # the fake below tells the segments apart by their size
    valid_losses = itertools.chain(SCRIPTED, itertools.count(1.0))
    real = TorchModel._evaluate
    weights: list[dict[str, torch.Tensor]] = []
    preds: list[np.ndarray] = []

    def fake(self, torch_, net, t, replicas):
        if len(t.y) != n_valid:
            return real(self, torch_, net, t, replicas)
        weights.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        preds.append(self._predict_tensor(torch_, net, t.x, t.days, replicas).float().numpy().copy())
        loss = next(valid_losses)
        return loss, -loss

    monkeypatch.setattr(TorchModel, "_evaluate", fake)
    evals: dict = {}
    model = make(tmp_path)
    model.fit(ds, evals_result=evals, save_path=str(tmp_path / "best.pt"))

    # stopped early_stop rounds after the best (50 rounds were allowed)
    assert len(weights) == ROUNDS and len(evals["valid"]) == ROUNDS and len(model.epoch_seconds) == ROUNDS
    assert model.best_epoch == BEST and model.best_score == -SCRIPTED[BEST]
    # training went on after the best round, so keeping the last weights would be caught
    assert any(not torch.equal(weights[BEST][k], weights[-1][k]) for k in weights[BEST])
    state = model.net.state_dict()
    assert set(state) == set(weights[BEST])
    for k, v in state.items():
        assert torch.equal(v, weights[BEST][k]), k
    saved = torch.load(tmp_path / "best.pt")
    assert all(torch.equal(saved[k], weights[BEST][k]) for k in state)
    # and the fitted model predicts what the network predicted at the best round
    np.testing.assert_array_equal(model.predict(ds, "valid").to_numpy(), preds[BEST].astype(np.float64))
    assert not np.array_equal(preds[BEST], preds[-1])
    if name == "DNNModelPytorch":
        assert model.best_step == (BEST + 1) * 5
