"""All three records on predictions over the data plugin's synthetic market (suspensions, limit days, factors,
an SH000300 index), read through the data provider exactly as a real run does."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import qexp
from qexp import R

synth = pytest.importorskip("qexp_data.synth", reason="the data plugin's synthetic market is not available")

START, END = "2020-01-01", "2020-06-30"
RISK = ["mean", "std", "annualized_return", "information_ratio", "max_drawdown"]


@pytest.fixture(scope="module")
def market_dir(tmp_path_factory):
    return synth.write_synth(tmp_path_factory.mktemp("synth") / "cn",
                             synth.SynthParams(instruments=120, start="2019-01-01", end="2020-08-31", seed=1))


@pytest.fixture
def provider(market_dir, tmp_path):
    qexp.init(uri=str(tmp_path / "runs"), provider_uri=str(market_dir), region="cn")
    from qexp.data_api import get_provider
    return get_provider()


class _Model:
    def __init__(self, pred):
        self.pred = pred

    def predict(self, dataset, segment="test"):
        return self.pred


class _Dataset:
    def __init__(self, label):
        self.label = label

    def prepare(self, segments, col_set="feature", data_key="infer"):
        return self.label


def _pred_and_label(provider, seed=0):
    label = provider.features("csi300", ["Ref($close, -2)/Ref($close, -1) - 1"], START, END)
    label.columns = ["LABEL0"]
    rng = np.random.default_rng(seed)
    y = label["LABEL0"].astype("float64")
    # a noisy view of the future return: informative but far from perfect
    pred = (y + rng.normal(0, 2 * np.nanstd(y), len(y))).rename("score")
    return pred.dropna(), label


def test_records_on_the_synthetic_market(provider):
    pred, label = _pred_and_label(provider)
    with R.start(experiment_name="synthetic"):
        rec = R.get_recorder()
        from qexp_records import PortAnaRecord, SigAnaRecord, SignalRecord
        SignalRecord(_Model(pred), _Dataset(label), rec).generate()
        SigAnaRecord(rec, ana_long_short=True).generate()
        PortAnaRecord(rec).generate()     # Qlib's default config: TopkDropout(50, 5), SH000300, cn exchange

    arts = set(rec.list_artifacts(recursive=True))
    for a in ["pred.pkl", "label.pkl", "sig_analysis/ic.pkl", "sig_analysis/ric.pkl", "sig_analysis/long_short_r.pkl",
              "sig_analysis/long_avg_r.pkl", "sig_analysis/ic.png", "portfolio_analysis/report_normal_1day.pkl",
              "portfolio_analysis/positions_normal_1day.pkl", "portfolio_analysis/port_analysis_1day.pkl",
              "portfolio_analysis/indicator_analysis_1day.pkl", "portfolio_analysis/indicators_normal_1day.pkl",
              "portfolio_analysis/report_1day.png"]:
        assert a in arts, a
    metrics = rec.list_metrics()
    keys = ["IC", "ICIR", "Rank IC", "Rank ICIR", "Long-Short Ann Return", "Long-Short Ann Sharpe",
            "Long-Avg Ann Return", "Long-Avg Ann Sharpe", "1day.ffr", "1day.pa", "1day.pos"]
    keys += [f"1day.excess_return_{k}_cost.{m}" for k in ("without", "with") for m in RISK]
    for k in keys:
        assert k in metrics and math.isfinite(metrics[k]), (k, metrics.get(k))
    assert metrics["IC"] > 0.1 and metrics["Long-Short Ann Return"] > 0
    assert metrics["1day.excess_return_with_cost.annualized_return"] < \
        metrics["1day.excess_return_without_cost.annualized_return"]

    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    cal = provider.calendar(START, END)
    assert report.index[0] == cal[0] and report.index[-1] == cal[-2]
    assert report["return"].iloc[0] == 0 and report["bench"].abs().sum() > 0
    assert report.notna().all().all()
    # the benchmark is SH000300's close-to-close return
    idx = provider.features(["SH000300"], ["$close"], cal[0], cal[-2])["$close"].droplevel(1).astype("float64")
    prev = provider.features(["SH000300"], ["$close"], provider.calendar(None, cal[0])[-2], cal[0])
    full = pd.concat([prev["$close"].droplevel(1).astype("float64").iloc[:1], idx])
    np.testing.assert_allclose(report["bench"].to_numpy(), (full / full.shift(1) - 1).iloc[1:].to_numpy())

    # no order on a suspended or limit day; every buy is whole lots of 100 real shares
    orders = rec.load_object("portfolio_analysis/orders_normal_1day.pkl")
    dealt = orders[orders["trade_val"] > 0]
    assert len(dealt) > 100
    q = provider.features(sorted(dealt["instrument"].unique()), ["$close", "$change", "$factor"], cal[0], cal[-1])
    rows = q.reindex(pd.MultiIndex.from_arrays([dealt["datetime"], dealt["instrument"]]))
    assert rows["$close"].notna().all()
    assert (rows["$change"].abs().fillna(0) < 0.095).all()
    is_buy = (dealt["direction"] == "BUY").to_numpy()
    real = dealt["deal_amount"].to_numpy()[is_buy] * rows["$factor"].to_numpy(dtype="float64")[is_buy]
    assert is_buy.sum() > 50 and (real >= 100 - 1e-6).all()
    np.testing.assert_allclose(real / 100, np.round(real / 100), atol=1e-6)

    # the market does have limit days and suspensions among the names the strategy ranked
    full_q = provider.features("csi300", ["$close", "$change"], cal[0], cal[-1])
    assert (full_q["$change"].abs() >= 0.095).any() and full_q["$close"].isna().any()
    positions = rec.load_object("portfolio_analysis/positions_normal_1day.pkl")
    last = positions[report.index[-1]]
    assert len(last.get_stock_list()) >= 45
    assert last.calculate_value() == pytest.approx(report["account"].iloc[-1])


def test_port_ana_on_provider_errors(provider):
    from qexp import ConfigError, QexpError
    from qexp_records import PortAnaRecord, default_port_analysis_config
    pred, _ = _pred_and_label(provider)
    with R.start(experiment_name="synthetic"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pred.to_frame("score")})
        cfg = default_port_analysis_config("cn")
        cfg["backtest"]["benchmark"] = "NOT_AN_INDEX"
        with pytest.raises(QexpError, match="NOT_AN_INDEX"):
            PortAnaRecord(rec, cfg).generate()
        cfg = default_port_analysis_config("cn")
        cfg["backtest"].update(start_time="2030-01-01", end_time="2030-12-31")
        with pytest.raises(ConfigError, match="outside the data"):
            PortAnaRecord(rec, cfg).generate()


class OracleModel:
    """A picklable stand-in model: its predictions are a noisy copy of the dataset's future return."""

    def fit(self, dataset):
        self.fitted = True

    def predict(self, dataset, segment="test"):
        return dataset.pred


class OracleDataset:
    def __init__(self, pred, label):
        self.pred, self.label = pred, label

    def prepare(self, segments, col_set="feature", data_key="infer"):
        return self.label


def test_task_train_runs_qlib_style_record_configs(provider):
    from qexp.trainer import task_train
    pred, label = _pred_and_label(provider, seed=3)
    port = {"strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                         "kwargs": {"signal": "<PRED>", "topk": 20, "n_drop": 2}},
            "backtest": {"start_time": None, "end_time": None, "account": 100000000, "benchmark": "SH000300",
                         "exchange_kwargs": {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005,
                                             "close_cost": 0.0015, "min_cost": 5}}}
    task = {"model": {"class": OracleModel},
            "dataset": {"class": OracleDataset, "kwargs": {"pred": pred, "label": label}},
            "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                        "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
                       {"class": "SigAnaRecord", "module_path": "qlib.workflow.record_temp",
                        "kwargs": {"ana_long_short": False, "ann_scaler": 252}},
                       {"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp",
                        "kwargs": {"config": port}},
                       {"class": "SignalMseRecord", "module_path": "qlib.contrib.workflow.record_temp"}]}
    rec = task_train(task, experiment_name="workflow")
    metrics = rec.list_metrics()
    for k in ("IC", "Rank ICIR", "MSE", "1day.excess_return_with_cost.annualized_return",
              "1day.excess_return_with_cost.information_ratio", "1day.excess_return_with_cost.max_drawdown"):
        assert math.isfinite(metrics[k]), k
    positions = rec.load_object("portfolio_analysis/positions_normal_1day.pkl")
    counts = [len(p.get_stock_list()) for p in positions.values()]
    # topk names most days; a sell blocked by a limit or a suspension leaves an extra name for a while (Qlib)
    assert np.median(counts) == 20 and max(counts) <= 20 + 2
