"""GATs: one day's stocks per batch, Qlib's attention, and the pretrained base model from Qlib's model_path file,
a pickled model or a qexp run (``run:<id>``); a missing file warns when built and fails clearly at fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from qexp import R
from qexp_models import torch_models as tm
from qexp_models.graph_models import GATs, GATsTS

from .conftest import FRAME_SEGMENTS, FrameDataset, assert_test_index, random_frame

CPU = {"GPU": -1, "seed": 0}


def _ds() -> FrameDataset:
    return FrameDataset(random_frame(n_days=60, n_inst=12, n_feat=12), FRAME_SEGMENTS)


def test_attention_equals_qlib_s_pair_formulation() -> None:
    from qexp_models.nets.gats import GATModel
    torch.manual_seed(0)
    net = GATModel(d_feat=6, hidden_size=8, num_layers=1).eval()
    hidden = torch.randn(5, 8)
    # Qlib's cal_attention, written out: every (i, j) pair concatenated, scored by a, softmax over j
    x = net.transformation(hidden)
    e_x = x.expand(5, 5, 8)
    pairs = torch.cat((e_x, e_x.transpose(0, 1)), 2).view(-1, 16)
    qlib = torch.softmax(net.leaky_relu(net.a.t().mm(pairs.t()).view(5, 5)), dim=1)
    with torch.no_grad():
        np.testing.assert_allclose(net.attention(hidden).numpy(), qlib.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_batches_are_whole_days(monkeypatch) -> None:
    from qexp_models.nets.gats import GATModel
    ds = _ds()
    seen = []
    real = GATModel.forward

    def spy(self, x):
        if self.training:
            seen.append(len(x))
        return real(self, x)

    monkeypatch.setattr(GATModel, "forward", spy)
    GATs(d_feat=2, hidden_size=8, num_layers=1, n_epochs=1, **CPU).fit(ds)
    n_train_days = ds.prepare("train").index.get_level_values("datetime").nunique()
    assert len(seen) == n_train_days and set(seen) == {12}


def test_gats_on_alpha360_and_on_windows(ds360, ts158) -> None:
    model = GATs(d_feat=6, hidden_size=8, num_layers=1, n_epochs=1, **CPU).fit(ds360)
    assert_test_index(model.predict(ds360), ds360)
    ts = GATsTS(hidden_size=8, num_layers=1, n_epochs=1, **CPU).fit(ts158)
    pred = ts.predict(ts158)
    assert pred.index.equals(ts158.prepare("test", col_set=["feature", "label"], data_key="infer").get_index())


def test_starts_from_a_qexp_run(runs) -> None:
    ds = _ds()
    with R.start(experiment_name="base"):
        base = tm.LSTM(d_feat=2, hidden_size=8, num_layers=2, n_epochs=1, **CPU).fit(ds)
        R.save_objects(**{"params.pkl": base})
        rid = R.get_recorder().id
    seen = {}
    real = GATs._init_net

    def spy(self, torch_, net):
        real(self, torch_, net)
        seen.update({k: v.clone() for k, v in net.state_dict().items()})

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GATs, "_init_net", spy)
        model = GATs(d_feat=2, hidden_size=8, base_model="LSTM", model_path=f"run:{rid}", n_epochs=1, **CPU).fit(ds)
    assert set(model.base_keys) == {k for k in base.net.state_dict()}
    for k, v in base.net.state_dict().items():
        assert torch.equal(seen[k], v), k  # training started from the base model's weights


def test_starts_from_a_qlib_state_dict_file(tmp_path) -> None:
    from qexp_models.nets.rnn import GRUModel
    torch.manual_seed(1)
    qlib_base = GRUModel(d_feat=2, hidden_size=8, num_layers=2)  # Qlib's GRUModel has the same names
    torch.save(qlib_base.state_dict(), tmp_path / "model_gru.pkl")
    model = GATs(d_feat=2, hidden_size=8, model_path=str(tmp_path / "model_gru.pkl"), n_epochs=1, **CPU).fit(_ds())
    assert "rnn.weight_hh_l1" in model.base_keys and "fc_out.bias" in model.base_keys


def test_a_pickled_qexp_model_file_loads_and_a_hostile_pickle_is_refused(tmp_path) -> None:
    import os
    import pickle
    base = tm.LSTM(d_feat=2, hidden_size=8, num_layers=2, n_epochs=1, **CPU).fit(_ds())
    (tmp_path / "base.pkl").write_bytes(pickle.dumps(base))
    model = GATs(d_feat=2, hidden_size=8, base_model="LSTM", model_path=str(tmp_path / "base.pkl"), n_epochs=1,
                 **CPU).fit(_ds())
    assert set(model.base_keys) == set(base.net.state_dict())

    class Hostile:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Hostile()))
    with pytest.raises(ValueError, match="neither a torch state_dict nor a pickled qexp model"):
        GATs(d_feat=2, hidden_size=8, model_path=str(tmp_path / "evil.pkl"), n_epochs=1, **CPU).fit(_ds())
    assert not (tmp_path / "ran").exists()


def test_missing_file_warns_when_built_and_fails_at_fit(tmp_path) -> None:
    path = str(tmp_path / "benchmarks" / "LSTM" / "model_lstm_csi300.pkl")
    with pytest.warns(UserWarning, match="does not exist.*fit will fail until it exists"):
        model = GATs(d_feat=2, hidden_size=8, base_model="LSTM", model_path=path, **CPU)
    assert GATs.dry_run_warnings({"model_path": path})
    assert GATs.dry_run_warnings({"model_path": "run:abc"}) == [] and GATs.dry_run_warnings({}) == []
    with pytest.raises(FileNotFoundError, match="does not exist.*run:<run id>"):
        model.fit(_ds())


def test_base_model_that_does_not_fit_is_a_clear_error(tmp_path) -> None:
    from qexp_models.nets.rnn import LSTMModel
    torch.save(LSTMModel(d_feat=2, hidden_size=16).state_dict(), tmp_path / "big.pkl")
    with pytest.raises(ValueError, match=r"base model does not fit the network.*shapes differ: rnn.weight_ih_l0 \(64, 2\) vs \(32, 2\)"):
        GATs(d_feat=2, hidden_size=8, base_model="LSTM", model_path=str(tmp_path / "big.pkl"), n_epochs=1,
             **CPU).fit(_ds())
    with pytest.raises(ValueError, match="cannot load the base model of run 'nope'"):
        GATs(d_feat=2, hidden_size=8, model_path="run:nope", n_epochs=1, **CPU).fit(_ds())


def test_bad_base_model_name() -> None:
    with pytest.raises(ValueError, match="GATs: unknown base_model 'TCN'"):
        GATs(base_model="TCN")


def test_unsorted_days_are_refused() -> None:
    frame = random_frame(n_days=60, n_inst=4, n_feat=4).sample(frac=1.0, random_state=0)
    with pytest.raises(ValueError, match="sorted by date"):
        GATs(d_feat=2, hidden_size=4, n_epochs=1, **CPU).fit(FrameDataset(frame, FRAME_SEGMENTS))


# ---- HIST -----------------------------------------------------------------------------------------------
@pytest.fixture
def concept_files(tmp_path):
    """A concept matrix for 10 of the 12 stocks of _ds() (S10 and S11 unlisted) and its stock index."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "s2c.npy", (rng.random((10, 4)) < 0.4).astype(np.float32))
    np.save(tmp_path / "index.npy", {f"S{i}": i for i in range(10)})
    return str(tmp_path / "s2c.npy"), str(tmp_path / "index.npy")


def test_hist_fits_predicts_and_carries_its_concepts(concept_files) -> None:
    import pickle

    from qexp_models.graph_models import HIST
    ds = _ds()
    evals: dict = {}
    model = HIST(d_feat=2, hidden_size=8, num_layers=1, n_epochs=2, metric="ic", stock2concept=concept_files[0],
                 stock_index=concept_files[1], **CPU).fit(ds, evals_result=evals)
    assert all(-1 <= s <= 1 for s in evals["valid"])  # the metric is a daily IC
    pred = model.predict(ds)
    assert np.isfinite(pred.to_numpy()).all() and len(pred) == len(ds.prepare("test"))
    clone = pickle.loads(pickle.dumps(model))
    clone.stock2concept = clone.stock_index = "/nowhere.npy"  # the matrix is in the model: no file needed
    np.testing.assert_array_equal(clone.predict(ds).to_numpy(), pred.to_numpy())


def test_hist_concept_files_are_the_user_s(concept_files, tmp_path) -> None:
    from qexp_models.graph_models import HIST
    with pytest.raises(FileNotFoundError, match="stock2concept is not set.*nothing is downloaded"):
        HIST(d_feat=2, hidden_size=8, n_epochs=1, **CPU).fit(_ds())
    missing = str(tmp_path / "benchmarks" / "HIST" / "qlib_csi300_stock2concept.npy")
    with pytest.raises(FileNotFoundError, match="stock2concept '.*qlib_csi300_stock2concept.npy' does not exist"):
        HIST(d_feat=2, hidden_size=8, n_epochs=1, stock2concept=missing, stock_index=concept_files[1],
             **CPU).fit(_ds())
    assert not (tmp_path / "benchmarks").exists()  # nothing was fetched into the named place
    assert len(HIST.dry_run_warnings({"stock2concept": missing, "stock_index": concept_files[1]})) == 1
    np.save(tmp_path / "bad_index.npy", {"S0": 99})
    with pytest.raises(ValueError, match="stock_index rows outside the concept matrix's 10 rows"):
        HIST(d_feat=2, hidden_size=8, n_epochs=1, stock2concept=concept_files[0],
             stock_index=str(tmp_path / "bad_index.npy"), **CPU).fit(_ds())
