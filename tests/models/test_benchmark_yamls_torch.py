"""Every PyTorch benchmark config under examples/benchmarks (GRU, LSTM, MLP, Transformer, Localformer, TCN,
GeneralPtNN, GATs, KRNN, Sandwich, SFM, HIST, TabNet, ADARNN, ADD, TCTS, IGMTF): `qexp run --dry-run` as shipped
(warning about a pretrained model file that does not exist yet), and one epoch for real on a tiny synthetic
market (20 stocks x ~300 days) with the dates moved onto it and the networks shrunk. GATs and IGMTF run from
the LSTM run's saved model (`model_path: run:<id>`), and their missing Qlib model file is a clear error at
fit. The `_ts` configs (TSDatasetH) run through SigAnaRecord too."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

import qexp
from qexp import R
from qexp.cli.main import get_cli

from .yaml_runs import assert_headline_metrics, finished_run, market_args, run_cli

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("GRU", "LSTM", "MLP", "Transformer", "Localformer", "TCN", "GeneralPtNN", "GATs", "KRNN", "Sandwich", "HIST", "SFM",
           "TabNet", "ADARNN", "ADD", "TCTS", "IGMTF")
PRETRAINED = ("GATs", "HIST", "IGMTF")  # they need an earlier run's base model
CONFIGS = sorted(p for f in FOLDERS for p in (REPO / "examples" / "benchmarks" / f).glob("*.yaml"))
IDS = [f"{p.parent.name}/{p.name}" for p in CONFIGS]

HANDLER = "task.dataset.kwargs.handler.kwargs"
BACKTEST = "task.record.2.kwargs.config.backtest"
STRATEGY = "task.record.2.kwargs.config.strategy.kwargs"
MODEL = "task.model.kwargs"
TINY = [
    f"{HANDLER}.start_time=2019-01-01", f"{HANDLER}.end_time=2020-03-31",
    f"{HANDLER}.fit_start_time=2019-01-01", f"{HANDLER}.fit_end_time=2019-08-31",
    "task.dataset.kwargs.segments.train=[2019-01-01, 2019-08-31]",
    "task.dataset.kwargs.segments.valid=[2019-09-01, 2019-11-30]",
    "task.dataset.kwargs.segments.test=[2019-12-01, 2020-03-31]",
    f"{BACKTEST}.start_time=2019-12-01", f"{BACKTEST}.end_time=2020-03-31",
    f"{STRATEGY}.topk=5", f"{STRATEGY}.n_drop=1",
]
# one epoch of a small network per config (Qlib's sizes are for a GPU); GPU -1 keeps the CPU without a warning
SHRINK = {
    "GRU": ["n_epochs=1", "hidden_size=8", "num_layers=1", "GPU=-1"],
    "LSTM": ["n_epochs=1", "hidden_size=8", "num_layers=1", "GPU=-1"],
    "MLP": ["max_steps=20", "batch_size=512", "GPU=-1"],
    "Transformer": ["n_epochs=1", "d_model=8", "num_layers=1", "batch_size=1024", "GPU=-1"],
    "Localformer": ["n_epochs=1", "d_model=8", "num_layers=1", "batch_size=1024", "GPU=-1"],
    "TCN": ["n_epochs=1", "n_chans=8", "num_layers=2", "GPU=-1"],
    "GeneralPtNN": ["n_epochs=1", "GPU=-1"],
    "GATs": ["n_epochs=1", "hidden_size=8", "num_layers=1", "GPU=-1"],
    "KRNN": ["n_epochs=1", "rnn_layers=1", "GPU=-1"],
    "Sandwich": ["n_epochs=1", "rnn_layers=1", "GPU=-1"],
    "SFM": ["n_epochs=1", "hidden_size=8", "freq_dim=4", "output_dim=4", "GPU=-1"],
    "HIST": ["n_epochs=1", "hidden_size=8", "num_layers=2", "GPU=-1"],
    "TabNet": ["n_epochs=1", "pretrain_n_epochs=1", "out_dim=8", "n_d=8", "n_a=8", "n_steps=2", "vbs=256",
               "batch_size=1024", "GPU=-1"],
    "ADARNN": ["n_epochs=1", "hidden_size=8", "num_layers=1", "GPU=-1"],
    "ADD": ["n_epochs=1", "hidden_size=8", "num_layers=1", "GPU=-1"],
    # two trainings at most: the retraining below lowest_valid_performance runs, briefly
    "TCTS": ["n_epochs=1", "hidden_size=8", "num_layers=1", "steps=1", "max_attempts=2", "GPU=-1"],
    "IGMTF": ["n_epochs=1", "hidden_size=8", "num_layers=2", "GPU=-1"],
}
GENERAL_GRU = [f"{MODEL}.pt_model_kwargs.hidden_size=8", f"{MODEL}.pt_model_kwargs.num_layers=1"]
TABNET_PRETRAIN = ["task.dataset.kwargs.segments.pretrain=[2019-01-01, 2019-08-31]",
                   "task.dataset.kwargs.segments.pretrain_validation=[2019-09-01, 2019-11-30]"]



def test_the_configs_are_all_here() -> None:
    counts = {f: len([p for p in CONFIGS if p.parent.name == f]) for f in FOLDERS}
    assert counts == {"GRU": 2, "LSTM": 2, "MLP": 4, "Transformer": 2, "Localformer": 2, "TCN": 2,
                      "GeneralPtNN": 3, "GATs": 2, "KRNN": 1, "Sandwich": 1, "HIST": 1, "SFM": 1,
                      "TabNet": 2, "ADARNN": 1, "ADD": 1, "TCTS": 1, "IGMTF": 1}


def _args(config: Path, store: Path, market: Path, extra: Sequence[str] = ()) -> list[str]:
    sets = TINY + [f"{MODEL}.{s}" for s in SHRINK[config.parent.name]] + list(extra)
    if config.parent.name == "GeneralPtNN" and "gru.yaml" in config.name:
        sets += GENERAL_GRU
    if config.parent.name == "TabNet":  # its pretraining segments, as Qlib's: the train and valid dates
        sets += TABNET_PRETRAIN
    return market_args(store, market, sets)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_dry_run_as_shipped(config, shared_cache, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QEXP_CACHE_DIR", str(shared_cache))
    r = run_cli(str(config), "--dry-run", "--uri", str(tmp_path / "runs"))
    if "csi500" in config.name:
        # Qlib's cn_data folder is not on this machine: a clear error naming it and how to make one
        assert r.exit_code != 0 and "qlib_init.provider_uri" in r.output and "cn_data" in r.output, r.output
        return
    assert r.exit_code == 0, r.output
    assert "config OK" in r.output
    # every argument of Qlib's config is one the model takes (a _ts subclass passes them on via **kwargs)
    assert "unknown argument" not in r.output and "TS:" not in r.output, r.output
    if "model_path:" in config.read_text():  # Qlib's base model file: an earlier run writes it
        assert "warning: task.model.kwargs: " in r.output and "model_path 'benchmarks/LSTM/" in r.output, r.output
        assert "does not exist" in r.output and "(see the warnings above)" in r.output


CSI500 = [c for c in CONFIGS if "csi500" in c.name]


@pytest.mark.parametrize("config", CSI500, ids=[c.name for c in CSI500])
def test_csi500_copies_dry_run_on_the_tiny_market(config, tiny_market, tmp_path) -> None:
    """Qlib's csi500 copies keep cn_data; on a market that has csi300 their model and records check out."""
    args = _args(config, tmp_path / "runs", tiny_market, [f"{HANDLER}.instruments=csi300",
                                                          f"{BACKTEST}.benchmark=SH000300"])
    r = run_cli(str(config), "--dry-run", *args)
    assert r.exit_code == 0 and "config OK" in r.output, r.output
    warned = sorted(line.split("'")[1] for line in r.output.splitlines() if "unknown argument" in line)
    # Qlib's Alpha360 csi500 MLP config names two arguments no DNNModelPytorch takes (Qlib's raises TypeError)
    assert warned == (["lr_decay", "lr_decay_steps"] if "Alpha360" in config.name else []), r.output


@pytest.mark.slow
@pytest.mark.parametrize("config", [c for c in CONFIGS if c.parent.name not in PRETRAINED and c not in CSI500],
                         ids=[i for c, i in zip(CONFIGS, IDS) if c.parent.name not in PRETRAINED and c not in CSI500])
def test_one_epoch_on_the_tiny_market(config, tiny_market, tmp_path) -> None:
    store = tmp_path / "runs"
    r = run_cli(str(config), *_args(config, store, tiny_market))
    assert r.exit_code == 0, r.output
    rec = finished_run(store)
    metrics = rec.list_metrics()
    assert_headline_metrics(metrics)
    assert rec.get_metric_history("valid_loss")["step"].tolist() == [0]
    model = rec.load_object("params.pkl")
    assert model.fitted and model.net is None


def _lstm_base_run(dataset: str, store: Path, market: Path):
    """Qlib's pipeline starts with the LSTM config: its run (two layers, as the graph models' base) in
    ``store``, whose saved model the next config names as ``model_path: run:<id>``."""
    lstm = REPO / "examples" / "benchmarks" / "LSTM" / f"workflow_config_lstm_{dataset}.yaml"
    r = run_cli(str(lstm), *_args(lstm, store, market, [f"{MODEL}.num_layers=2"]))
    assert r.exit_code == 0, r.output
    return finished_run(store)


def _run_after(store: Path, base):
    """The run of ``store`` made after ``base``."""
    qexp.init(uri=str(store))
    runs = R.search_records()
    return runs, R.get_recorder(recorder_id=next(i for i in runs["run_id"] if i != base.id))


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["Alpha158", "Alpha360"])
def test_gats_from_the_lstm_run(dataset, tiny_market, tmp_path) -> None:
    """Qlib's pipeline: the LSTM config first, then GATs starting from that run's model."""
    gats = REPO / "examples" / "benchmarks" / "GATs" / f"workflow_config_gats_{dataset}.yaml"
    # GATs' base model has Qlib's two layers: the LSTM keeps them too
    store = tmp_path / "runs"
    base = _lstm_base_run(dataset, store, tiny_market)
    # the shipped model_path (Qlib's file) does not exist here: a clear error, not a silent random start
    r = CliRunner().invoke(get_cli(), ["run", str(gats), *_args(gats, tmp_path / "missing", tiny_market,
                                                                [f"{MODEL}.num_layers=2"])])
    assert r.exit_code != 0 and "does not exist" in r.output and "run:<run id>" in r.output, r.output
    r = run_cli(str(gats), *_args(gats, store, tiny_market, [f"{MODEL}.num_layers=2",
                                                           f"{MODEL}.model_path=run:{base.id}"]))
    assert r.exit_code == 0, r.output
    runs, rec = _run_after(store, base)
    assert runs["status"].tolist() == ["FINISHED", "FINISHED"]
    model = rec.load_object("params.pkl")
    assert "rnn.weight_ih_l0" in model.base_keys and "fc_out.weight" in model.base_keys
    assert math.isfinite(rec.list_metrics()["IC"])


@pytest.mark.slow
def test_hist_from_the_lstm_run_with_user_concepts(tiny_market, tmp_path) -> None:
    import numpy as np
    hist = REPO / "examples" / "benchmarks" / "HIST" / "workflow_config_hist_Alpha360.yaml"
    store = tmp_path / "runs"
    base = _lstm_base_run("Alpha360", store, tiny_market)
    # the shipped concept files are Qlib's CSI300 ones, not here: a clear error, nothing downloaded
    r = CliRunner().invoke(get_cli(), ["run", str(hist), *_args(hist, tmp_path / "missing", tiny_market,
                                                                [f"{MODEL}.model_path=run:{base.id}"])])
    assert r.exit_code != 0 and "stock2concept" in r.output and "nothing is downloaded" in r.output, r.output
    instruments = sorted({line.split()[0] for line in (tiny_market / "instruments" / "all.txt").read_text().splitlines()})
    rng = np.random.default_rng(0)
    np.save(tmp_path / "s2c.npy", (rng.random((len(instruments), 5)) < 0.3).astype(np.float32))
    np.save(tmp_path / "index.npy", {code: i for i, code in enumerate(instruments)})
    r = run_cli(str(hist), *_args(hist, store, tiny_market, [f"{MODEL}.model_path=run:{base.id}",
                                                           f"{MODEL}.stock2concept={tmp_path / 's2c.npy'}",
                                                           f"{MODEL}.stock_index={tmp_path / 'index.npy'}"]))
    assert r.exit_code == 0, r.output
    _, rec = _run_after(store, base)
    assert rec.load_object("params.pkl").base_keys and math.isfinite(rec.list_metrics()["IC"])


@pytest.mark.slow
def test_igmtf_from_the_lstm_run(tiny_market, tmp_path) -> None:
    """Qlib's pipeline: the LSTM config, then IGMTF starting from that run's model; the shipped model_path
    (Qlib's file) is a clear error at fit."""
    igmtf = REPO / "examples" / "benchmarks" / "IGMTF" / "workflow_config_igmtf_Alpha360.yaml"
    store = tmp_path / "runs"
    base = _lstm_base_run("Alpha360", store, tiny_market)
    r = CliRunner().invoke(get_cli(), ["run", str(igmtf), *_args(igmtf, tmp_path / "missing", tiny_market)])
    assert r.exit_code != 0 and "does not exist" in r.output and "run:<run id>" in r.output, r.output
    r = run_cli(str(igmtf), *_args(igmtf, store, tiny_market, [f"{MODEL}.model_path=run:{base.id}"]))
    assert r.exit_code == 0, r.output
    runs, rec = _run_after(store, base)
    assert runs["status"].tolist() == ["FINISHED", "FINISHED"]
    model = rec.load_object("params.pkl")
    assert "rnn.weight_ih_l0" in model.base_keys and "fc_out.weight" not in model.base_keys
    assert math.isfinite(rec.list_metrics()["IC"])
