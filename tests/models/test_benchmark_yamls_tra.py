"""Qlib's three TRA benchmark configs (examples/benchmarks/TRA: Alpha158 with 20 selected features, Alpha158
with all 158, Alpha360 read as 6 blocks): `qexp run --dry-run` as shipped, and one epoch for real on a tiny
synthetic market (20 stocks x ~300 days) with the dates moved onto it and the networks shrunk."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .test_benchmark_yamls_torch import MODEL, TINY
from .yaml_runs import assert_headline_metrics, finished_run, market_args, run_cli

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "examples" / "benchmarks" / "TRA").glob("*.yaml"))
IDS = [p.name for p in CONFIGS]
# one short epoch of a small network (Qlib's sizes are for a GPU); GPU -1 keeps the CPU without a warning
SHRINK = ["n_epochs=1", "max_steps_per_epoch=3", "model_config.hidden_size=8", "model_config.num_layers=1",
          "tra_config.hidden_size=4", "GPU=-1"]


def test_the_configs_are_all_here() -> None:
    assert IDS == ["workflow_config_tra_Alpha158.yaml", "workflow_config_tra_Alpha158_full.yaml",
                   "workflow_config_tra_Alpha360.yaml"]


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_dry_run_as_shipped(config, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QEXP_CACHE_DIR", str(tmp_path / "cache"))
    r = run_cli(str(config), "--dry-run", "--uri", str(tmp_path / "runs"))
    assert r.exit_code == 0, r.output
    assert "config OK" in r.output


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_one_epoch_on_the_tiny_market(config, tiny_market, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the configs' logdir (output/...) is relative, as in Qlib
    store = tmp_path / "runs"
    r = run_cli(str(config), *market_args(store, tiny_market, TINY + [f"{MODEL}.{s}" for s in SHRINK]))
    assert r.exit_code == 0, r.output
    rec = finished_run(store)
    assert_headline_metrics(rec.list_metrics())
    assert rec.get_metric_history("valid_score")["step"].tolist() == [0]
    assert rec.get_metric_history("test_score")["step"].tolist() == [0]  # eval_test: True
    model = rec.load_object("params.pkl")
    assert model.fitted and model.net is None and model.smooth_steps == 5
    if "Alpha158.yaml" in config.name:  # pretrain: True
        assert rec.get_metric_history("pretrain_valid_score")["step"].tolist() == [0]
    else:  # logdir: output/<dataset>/router
        folder = tmp_path / "output" / config.stem.split("_tra_")[1] / "router"
        assert {"logs.csv", "model.bin", "info.json", "test_pred.pkl"} <= {p.name for p in folder.iterdir()}
    dates = rec.load_object("pred.pkl").index.get_level_values("datetime")  # the test segment of TINY
    assert dates.min() >= pd.Timestamp("2019-12-01") and dates.max() <= pd.Timestamp("2020-03-31")
