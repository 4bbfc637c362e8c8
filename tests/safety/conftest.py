"""Shared pieces of the safety tests: a tiny synthetic market and a quick workflow config on it."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from qexp.cli.main import get_cli


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory) -> Path:
    """8 stocks (all in csi300) and the SH000300 index, 2018-2019."""
    from qexp_data.synth import SynthParams, write_synth
    dst = tmp_path_factory.mktemp("market") / "synth"
    write_synth(dst, SynthParams(instruments=8, start="2018-01-01", end="2019-12-31", seed=5))
    return dst


def workflow_config(market: Path, model: dict | None = None, benchmark: object = "SH000300") -> dict:
    """A complete Qlib-style workflow (Alpha158, a model, SignalRecord/SigAnaRecord/PortAnaRecord) that trains
    in seconds on :func:`tiny_market`."""
    handler = {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
               "kwargs": {"start_time": "2018-01-01", "end_time": "2019-12-31", "fit_start_time": "2018-01-01",
                          "fit_end_time": "2018-12-31", "instruments": "csi300"}}
    port = {"strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                         "kwargs": {"signal": "<PRED>", "topk": 3, "n_drop": 1}},
            "backtest": {"start_time": "2019-07-01", "end_time": "2019-12-30", "account": 100000000,
                         "benchmark": benchmark,
                         "exchange_kwargs": {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005,
                                             "close_cost": 0.0015, "min_cost": 5}}}
    return {
        "qlib_init": {"provider_uri": str(market), "region": "cn"},
        "task": {
            "model": model or {"class": "LinearModel", "module_path": "qlib.contrib.model.linear",
                               "kwargs": {"estimator": "ridge", "alpha": 1.0}},
            "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset",
                        "kwargs": {"handler": handler,
                                   "segments": {"train": ["2018-01-01", "2018-12-31"],
                                                "valid": ["2019-01-01", "2019-06-30"],
                                                "test": ["2019-07-01", "2019-12-31"]}}},
            "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                        "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
                       {"class": "SigAnaRecord", "module_path": "qlib.workflow.record_temp",
                        "kwargs": {"ana_long_short": False, "ann_scaler": 252}},
                       {"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp",
                        "kwargs": {"config": port}}],
        },
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cli(*args: str, env: dict | None = None, catch: bool = True, input: str | None = None):
    """``qexp ARGS`` in this process; stdout and stderr apart (``.stdout`` / ``.stderr``)."""
    return CliRunner().invoke(get_cli(), list(args), env=env, catch_exceptions=catch, input=input)
