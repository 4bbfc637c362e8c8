"""Every XGBoost, CatBoost and DoubleEnsemble benchmark config under examples/benchmarks: `qexp run --dry-run`
as shipped, and a real run on a tiny synthetic market (20 stocks x ~300 days) with the dates moved onto it and
the boosting rounds cut (DoubleEnsemble: two sub-models of 4 rounds). Also the multi-frequency configs:
the per-group frequency and instrument-processor pieces run on daily data, and minute data is a clear error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import qexp
from qexp import R
from qexp.cli.main import get_cli

from .yaml_runs import assert_headline_metrics, finished_run, market_args, run_cli

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("XGBoost", "CatBoost", "DoubleEnsemble")
CONFIGS = sorted(p for f in FOLDERS for p in (REPO / "examples" / "benchmarks" / f).glob("*.yaml"))
IDS = [p.name for p in CONFIGS]

HANDLER = "task.dataset.kwargs.handler.kwargs"
BACKTEST = "task.record.2.kwargs.config.backtest"
STRATEGY = "task.record.2.kwargs.config.strategy.kwargs"
TINY = [
    f"{HANDLER}.start_time=2019-01-01", f"{HANDLER}.end_time=2020-03-31",
    f"{HANDLER}.fit_start_time=2019-01-01", f"{HANDLER}.fit_end_time=2019-08-31",
    f"{HANDLER}.instruments=csi300",  # the csi500 configs: the tiny market has csi300 only
    "task.dataset.kwargs.segments.train=[2019-01-01, 2019-08-31]",
    "task.dataset.kwargs.segments.valid=[2019-09-01, 2019-11-30]",
    "task.dataset.kwargs.segments.test=[2019-12-01, 2020-03-31]",
    f"{BACKTEST}.start_time=2019-12-01", f"{BACKTEST}.end_time=2020-03-31", f"{BACKTEST}.benchmark=SH000300",
    f"{STRATEGY}.topk=5", f"{STRATEGY}.n_drop=1",
]


def test_the_configs_are_all_here() -> None:
    assert [p.name for p in CONFIGS if p.parent.name == "XGBoost"] == [
        "workflow_config_xgboost_Alpha158.yaml", "workflow_config_xgboost_Alpha360.yaml"]
    assert len([p for p in CONFIGS if p.parent.name == "CatBoost"]) == 4
    assert len([p for p in CONFIGS if p.parent.name == "DoubleEnsemble"]) == 5


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_dry_run_as_shipped(config, shared_cache, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QEXP_CACHE_DIR", str(shared_cache))
    r = run_cli(str(config), "--dry-run", "--uri", str(tmp_path / "runs"))
    if "csi500" in config.name:
        # Qlib's cn_data folder is not on this machine: a clear error naming it and how to make one
        assert r.exit_code != 0 and "qlib_init.provider_uri" in r.output and "cn_data" in r.output, r.output
    else:
        assert r.exit_code == 0, r.output
        assert "config OK" in r.output


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_dry_run_on_the_tiny_market(config, tiny_market, tmp_path) -> None:
    r = run_cli(str(config), "--dry-run", *market_args(tmp_path / "runs", tiny_market, TINY))
    assert r.exit_code == 0, r.output
    assert "unknown argument" not in r.output and "warning: task.model" not in r.output, r.output


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_runs_on_the_tiny_market(config, tiny_market, tmp_path) -> None:
    store = tmp_path / "runs"
    quick = list(TINY)
    if config.parent.name == "DoubleEnsemble":  # two sub-models still re-weight samples and select features once
        weights = "[1, 1]" if "early_stop" in config.name else "[1, 0.2]"
        quick += ["task.model.kwargs.epochs=4", "task.model.kwargs.num_models=2", "task.model.kwargs.num_threads=1",
                  f"task.model.kwargs.sub_weights={weights}",
                  # Qlib's L1/L2 penalties suit 300 stocks; on 13 they leave every tree a single leaf
                  "task.model.kwargs.lambda_l1=1", "task.model.kwargs.lambda_l2=1"]
    else:
        quick += ["task.model.kwargs.num_boost_round=15"]
    r = run_cli(str(config), *market_args(store, tiny_market, quick))
    assert r.exit_code == 0, r.output
    rec = finished_run(store)
    metrics = rec.list_metrics()
    assert_headline_metrics(metrics)
    model = rec.load_object("params.pkl")
    assert type(model).__name__ == {"XGBoost": "XGBModel", "CatBoost": "CatBoostModel",
                                    "DoubleEnsemble": "DEnsembleModel"}[config.parent.name]
    # the model's per-iteration metrics are in the run
    valid_keys = [k for k in metrics if ".valid" in k]
    assert valid_keys and all(len(rec.get_metric_history(k)) >= 1 for k in valid_keys)
    if "qlib.contrib.strategy.strategy" in config.read_text():
        # Qlib's pre-0.8 form, as shipped: its top-level open_cost/close_cost reach the exchange
        orders = rec.load_object("portfolio_analysis/orders_normal_1day.pkl")
        dealt = orders[orders["trade_val"] > 1e-5]
        rate = dealt["direction"].map({"BUY": 0.0005, "SELL": 0.0015})
        assert len(dealt) and np.allclose(dealt["cost"], np.maximum(dealt["trade_val"] * rate, 5)), dealt
        log = Path(rec.download_artifact("logs/run.log")).read_text()
        assert "PortAnaRecord config backtest.verbose (Qlib's pre-0.8 backtest form) is dropped" in log


# ---- multi-frequency configs (Qlib's LightGBM multi_freq YAMLs) ----------------------------------------
PROCESSOR = '''
import datetime


class Resample1minProcessor:
    """Qlib's example processor: keep one minute of each day and date it by the day."""

    def __init__(self, hour, minute):
        self.hour, self.minute = hour, minute

    def __call__(self, df, *args, **kwargs):
        df = df.loc[df.index.time == datetime.time(self.hour, self.minute)]
        df.index = df.index.normalize()
        return df


class AddOne:
    """A processor that works on daily data: shifts every feature by one."""

    def __call__(self, df, *args, **kwargs):
        return df + 1.0
'''


def _multi_freq_config(tmp_path: Path, market: Path, feature_freq: str, processor: dict) -> Path:
    """Qlib's workflow_config_lightgbm_Alpha158_multi_freq.yaml, on the tiny market."""
    import yaml
    (tmp_path / "features_sample.py").write_text(PROCESSOR)
    config = {
        "qlib_init": {"provider_uri": {"day": str(market), "1min": str(tmp_path / "cn_data_1min")}, "region": "cn"},
        "task": {
            "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
                      "kwargs": {"loss": "mse", "num_boost_round": 5, "num_threads": 1}},
            "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {
                "handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler", "kwargs": {
                    "start_time": "2019-01-01", "end_time": "2020-03-31 15:00:00",
                    "fit_start_time": "2019-01-01", "fit_end_time": "2019-08-31", "instruments": "csi300",
                    "freq": {"label": "day", "feature": feature_freq},
                    "inst_processors": {"feature": [processor]}}},
                "segments": {"train": ["2019-01-01", "2019-08-31"], "valid": ["2019-09-01", "2019-11-30"],
                             "test": ["2019-12-01", "2020-03-31"]}}},
            "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp", "kwargs": {}}],
        },
    }
    path = tmp_path / "multi_freq.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_multi_freq_config_with_minute_features_is_a_clear_error(tiny_market, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # Qlib resolves module_path: features_sample.py from the working directory
    processor = {"class": "Resample1minProcessor", "module_path": "features_sample.py",
                 "kwargs": {"hour": 14, "minute": 56}}
    config = _multi_freq_config(tmp_path, tiny_market, "1min", processor)
    r = CliRunner().invoke(get_cli(), ["run", str(config), "--uri", str(tmp_path / "runs")])
    assert r.exit_code != 0
    assert "'1min'" in r.output and "daily" in r.output, r.output


def test_multi_freq_pieces_run_on_daily_data(tiny_market, tmp_path, monkeypatch) -> None:
    """A per-group freq dict and instrument processors from a local .py file, all on daily data."""
    monkeypatch.chdir(tmp_path)
    processor = {"class": "AddOne", "module_path": "features_sample.py"}
    config = _multi_freq_config(tmp_path, tiny_market, "day", processor)
    store = tmp_path / "runs"
    r = CliRunner().invoke(get_cli(), ["run", str(config), "--uri", str(store)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    qexp.init(uri=str(store))
    rec = R.get_recorder(recorder_id=R.search_records()["run_id"].iloc[0])
    assert rec.status == "FINISHED" and "pred.pkl" in rec.list_artifacts()
