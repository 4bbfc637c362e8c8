"""The LightGBM Alpha158 workflow on 100 real S&P 500 stocks (skipped when the sample data is absent)."""
from __future__ import annotations

import math
import os
from pathlib import Path

from click.testing import CliRunner

import qexp
from qexp import R
from qexp.cli.main import get_cli

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158_sp500.yaml"


def test_lightgbm_alpha158_on_100_sp500_stocks(sp500_dir, tmp_path):
    subset = tmp_path / "csv"
    subset.mkdir()
    for f in sorted(sp500_dir.glob("*.csv"))[:100]:
        os.symlink(f, subset / f.name)
    data = tmp_path / "sp500"
    r = CliRunner().invoke(get_cli(), ["data", "import-csv", str(subset), "--out", str(data),
                                       "--symbol-col", "Name"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    store = tmp_path / "runs"
    r = CliRunner().invoke(get_cli(), ["run", str(CONFIG), "--uri", str(store),
                                       "--set", f"qlib_init.provider_uri={data}",
                                       "--set", "task.model.kwargs.num_boost_round=100",
                                       "--set", "port_analysis_config.strategy.kwargs.topk=20",
                                       "--set", "task.record.2.kwargs.config.strategy.kwargs.topk=20"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    qexp.init(uri=str(store))
    df = R.search_records()
    assert df["status"].tolist() == ["FINISHED"]
    rec = R.get_recorder(recorder_id=df["run_id"].iloc[0])
    metrics = rec.list_metrics()
    for key in ("IC", "ICIR", "Rank IC", "Rank ICIR", "1day.excess_return_with_cost.annualized_return",
                "1day.excess_return_with_cost.information_ratio", "1day.excess_return_with_cost.max_drawdown"):
        assert math.isfinite(metrics[key]), key
    pred = rec.load_object("pred.pkl")
    assert pred.index.get_level_values("instrument").nunique() > 90
    assert str(pred.index.get_level_values("datetime").min().date()) >= "2017-01-01"
