"""Record templates on a real file-backed recorder, with a small hand-made market passed as a quote frame."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import qexp
from qexp import ConfigError, QexpError, R
from qexp_records import (
    MissingArtifactError,
    MultiSegRecord,
    PortAnaRecord,
    SigAnaRecord,
    SignalMseRecord,
    SignalRecord,
)

RISK_KEYS = ["mean", "std", "annualized_return", "information_ratio", "max_drawdown"]


def _market(n_days=40, n_inst=12, seed=0):
    """A random market with an index IDX, a label (return from T+1 to T+2) and predictions that are a noisy
    copy of the label."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_days)
    codes = [f"S{i:02d}" for i in range(n_inst)]
    idx = pd.MultiIndex.from_product([dates, codes], names=["datetime", "instrument"])
    ret = pd.Series(rng.normal(0, 0.02, len(idx)), index=idx)
    close = (1 + ret).groupby(level="instrument").cumprod() * 10
    q = pd.DataFrame({"$close": close, "$factor": 1.0, "$change": ret})
    bench = q["$close"].groupby(level="datetime").mean()
    bq = pd.DataFrame({"$close": bench.to_numpy(), "$factor": 1.0, "$change": 0.0},
                      index=pd.MultiIndex.from_product([dates, ["IDX"]], names=["datetime", "instrument"]))
    q = pd.concat([q, bq]).sort_index().astype("float32")
    c = q["$close"].drop("IDX", level="instrument")
    fwd = c.groupby(level="instrument").shift(-2) / c.groupby(level="instrument").shift(-1) - 1
    label = fwd.to_frame("LABEL0")
    pred = (fwd + rng.normal(0, 0.02, len(fwd))).to_frame("score")
    return q, pred, label


class _Model:
    def __init__(self, pred):
        self.pred = pred

    def predict(self, dataset, segment="test"):
        if segment == "test":
            return self.pred["score"]
        return self.pred["score"].iloc[: len(self.pred) // 2]


class _Dataset:
    def __init__(self, label):
        self.label = label

    def prepare(self, segments, col_set="feature", data_key="infer"):
        assert col_set == "label" and data_key == "raw"
        return self.label if segments == "test" else self.label.iloc[: len(self.label) // 2]


def _config(q, topk=4, n_drop=1, **bt):
    return {"strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                         "kwargs": {"signal": "<PRED>", "topk": topk, "n_drop": n_drop}},
            "executor": {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                         "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}},
            "backtest": {"start_time": None, "end_time": None, "account": 1e6, "benchmark": "IDX", "quote": q,
                         "exchange_kwargs": {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005,
                                             "close_cost": 0.0015, "min_cost": 5}, **bt}}


@pytest.fixture
def store(tmp_path):
    qexp.init(uri=str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def market():
    return _market()


def test_all_three_records_write_every_artifact_and_metric(store, market):
    q, pred, label = market
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        SignalRecord(_Model(pred), _Dataset(label), rec).generate()
        SigAnaRecord(rec, ana_long_short=True).generate()
        PortAnaRecord(rec, _config(q)).generate()
    arts = set(rec.list_artifacts(recursive=True))
    expected = {"pred.pkl", "label.pkl", "sig_analysis/ic.pkl", "sig_analysis/ric.pkl",
                "sig_analysis/long_short_r.pkl", "sig_analysis/long_avg_r.pkl", "sig_analysis/ic.png",
                "portfolio_analysis/report_normal_1day.pkl", "portfolio_analysis/positions_normal_1day.pkl",
                "portfolio_analysis/port_analysis_1day.pkl", "portfolio_analysis/indicator_analysis_1day.pkl",
                "portfolio_analysis/indicators_normal_1day.pkl", "portfolio_analysis/report_1day.png"}
    assert expected <= arts
    metrics = rec.list_metrics()
    keys = ["IC", "ICIR", "Rank IC", "Rank ICIR", "Long-Short Ann Return", "Long-Short Ann Sharpe",
            "Long-Avg Ann Return", "Long-Avg Ann Sharpe", "1day.ffr", "1day.pa", "1day.pos"]
    keys += [f"1day.excess_return_{k}_cost.{m}" for k in ("without", "with") for m in RISK_KEYS]
    for k in keys:
        assert k in metrics and math.isfinite(metrics[k]), k
    # predictions built from the label are informative
    assert metrics["IC"] > 0.3
    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    assert list(report.columns) == ["account", "return", "total_turnover", "turnover", "total_cost", "cost",
                                    "value", "cash", "bench"]
    # default range: first prediction date .. the trading day before the last one
    dates = pred.index.get_level_values("datetime").unique()
    assert report.index[0] == dates[0] and report.index[-1] == dates[-2]
    pa = rec.load_object("portfolio_analysis/port_analysis_1day.pkl")
    exp = (report["return"] - report["bench"] - report["cost"])
    assert pa.loc[("excess_return_with_cost", "mean"), "risk"] == pytest.approx(exp.mean())
    assert metrics["1day.excess_return_with_cost.annualized_return"] == pytest.approx(exp.mean() * 238)
    ic = rec.load_object("sig_analysis/ic.pkl")
    assert metrics["ICIR"] == pytest.approx(ic.mean() / ic.std())


def test_port_ana_default_config_is_qlibs(monkeypatch):
    from qexp import data_api
    monkeypatch.setitem(data_api._global, "region", "cn")
    rec = PortAnaRecord(recorder=object())
    assert rec.strategy_config == {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                                   "kwargs": {"signal": "<PRED>", "topk": 50, "n_drop": 5}}
    assert rec.backtest_config["exchange_kwargs"] == {"limit_threshold": 0.095, "deal_price": "close",
                                                      "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5}
    assert rec.backtest_config["benchmark"] == "SH000300" and rec.backtest_config["account"] == 100000000
    assert rec.executor_config["kwargs"] == {"time_per_step": "day", "generate_portfolio_metrics": True}
    assert rec.risk_analysis_freq == ["1day"] and rec.indicator_analysis_freq == ["1day"]


def test_port_ana_default_config_for_us_has_no_limit():
    cfg = PortAnaRecord(recorder=object(), config=None)
    from qexp_records import default_port_analysis_config
    us = default_port_analysis_config("us")
    assert us["backtest"]["exchange_kwargs"]["limit_threshold"] is None
    assert us["backtest"]["benchmark"] == "^gspc"
    assert us["strategy"] == cfg.strategy_config


def test_missing_dependency_is_a_clear_error(store, market):
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        with pytest.raises(MissingArtifactError, match=r"pred\.pkl.*SignalRecord"):
            SigAnaRecord(rec).generate()
        with pytest.raises(MissingArtifactError, match=r"pred\.pkl"):
            PortAnaRecord(rec, _config(market[0])).generate()
        # the backtest needs only the predictions; the signal analysis also needs the label
        rec.save_objects(**{"pred.pkl": market[1]})
        PortAnaRecord(rec, _config(market[0])).generate()
        with pytest.raises(MissingArtifactError, match=r"label\.pkl"):
            SigAnaRecord(rec).generate()


def test_check_and_load_fallback(store, market):
    q, pred, label = market
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        sig = SigAnaRecord(rec)
        with pytest.raises(MissingArtifactError):
            sig.check(include_self=False, parents=True)
        SignalRecord(_Model(pred), _Dataset(label), rec).generate()
        sig.check(include_self=False, parents=True)
        with pytest.raises(MissingArtifactError, match=r"sig_analysis/ic\.pkl"):
            sig.check(include_self=True, parents=False)
        # load() looks in sig_analysis/ first, then in the dependency's (root) path
        pd.testing.assert_frame_equal(sig.load("pred.pkl"), pred)
        with pytest.raises(MissingArtifactError):
            sig.load("pred.pkl", parents=False)
        sig.generate()
        sig.check(include_self=True, parents=True)
        assert sig.list() == ["ic.pkl", "ric.pkl"]


def test_skip_existing(store, market, monkeypatch):
    q, pred, label = market
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        SignalRecord(_Model(pred), _Dataset(label), rec).generate()
        calls = []
        orig = SigAnaRecord._generate

        def spy(self, *a, **k):
            calls.append(1)
            return orig(self, *a, **k)

        monkeypatch.setattr(SigAnaRecord, "_generate", spy)
        SigAnaRecord(rec, skip_existing=True).generate()      # nothing there yet: runs
        assert SigAnaRecord(rec, skip_existing=True).generate() is None
        SigAnaRecord(rec, skip_existing=False).generate()
        assert len(calls) == 2
        PortAnaRecord(rec, _config(q)).generate()
        assert PortAnaRecord(rec, _config(q), skip_existing=True).generate() is None


def test_signal_mse_and_multi_seg(store, market):
    q, pred, label = market
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        SignalRecord(_Model(pred), _Dataset(label), rec).generate()
        SignalMseRecord(rec).generate()
        both = pd.concat([pred["score"], label["LABEL0"]], axis=1).dropna()
        mse = float(((both.iloc[:, 0] - both.iloc[:, 1]) ** 2).mean())
        assert rec.load_object("sig_analysis/mse.pkl") == pytest.approx(mse)
        assert rec.list_metrics()["RMSE"] == pytest.approx(np.sqrt(mse))
        res = MultiSegRecord(_Model(pred), _Dataset(label), rec).generate({"valid": "valid", "test": "test"},
                                                                         save=True)
        assert set(res) == {"valid", "test"}
        saved = rec.load_object("results-test.pkl")
        assert saved["mean-IC"] == pytest.approx(res["test"]["all-IC"].mean())


def test_records_resolve_from_qlib_configs(store, market):
    from qexp.config import init_instance_by_config
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        for cls, path in ((SignalRecord, "qlib.workflow.record_temp"), (SigAnaRecord, "qlib.workflow.record_temp"),
                          (PortAnaRecord, "qlib.workflow.record_temp"),
                          (SignalMseRecord, "qlib.contrib.workflow.record_temp")):
            obj = init_instance_by_config({"class": cls.__name__, "module_path": path, "kwargs": {}},
                                          recorder=rec)
            assert type(obj) is cls
    res = init_instance_by_config({"func": "risk_analysis", "module_path": "qlib.contrib.evaluate",
                                   "kwargs": {"r": pd.Series([0.01, 0.02])}})
    assert res.loc["mean", "risk"] == pytest.approx(0.015)


# ---- bad input -------------------------------------------------------------------------------------
def test_duplicated_predictions_are_an_error(store, market):
    q, pred, _ = market
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pd.concat([pred, pred.iloc[:3]])})
        with pytest.raises(QexpError, match="duplicated"):
            PortAnaRecord(rec, _config(q)).generate()


def test_unknown_benchmark_is_an_error(store, market):
    q, pred, _ = market
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pred})
        with pytest.raises(QexpError, match="benchmark.*NOPE"):
            PortAnaRecord(rec, _config(q, benchmark="NOPE")).generate()


def test_backtest_range_outside_the_data_is_an_error(store, market):
    q, pred, _ = market
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pred})
        with pytest.raises(ConfigError, match="outside the data"):
            PortAnaRecord(rec, _config(q, start_time="2025-01-01", end_time="2025-06-01")).generate()


def test_unknown_strategy_class_is_an_error(store, market):
    q, pred, _ = market
    cfg = _config(q)
    cfg["strategy"]["class"] = "TopkDropoutStrategyX"
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pred})
        with pytest.raises(ConfigError, match="TopkDropoutStrategyX"):
            PortAnaRecord(rec, cfg).generate()


def test_bad_record_settings_are_errors():
    with pytest.raises(ConfigError, match="generate_portfolio_metrics"):
        PortAnaRecord(object(), {"strategy": {}, "executor": {"class": "SimulatorExecutor", "kwargs": {}}})
    with pytest.raises(ConfigError, match="unknown key"):
        PortAnaRecord(object(), {"strategy": {}, "backtst": {}})
    with pytest.raises(ConfigError, match="risk_analysis_freq"):
        PortAnaRecord(object(), risk_analysis_freq="week")
    from qexp_records.backtest import TopkDropoutStrategy
    with pytest.raises(ConfigError, match="not filled"):
        TopkDropoutStrategy(signal="<PRED>", topk=5, n_drop=1)


# ---- CLI ---------------------------------------------------------------------------------------------
def test_runs_report_cli(store, market):
    from click.testing import CliRunner

    from qexp.cli.main import get_cli
    q, pred, label = market
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        SignalRecord(_Model(pred), _Dataset(label), rec).generate()
        SigAnaRecord(rec).generate()
        PortAnaRecord(rec, _config(q)).generate()
    cli = get_cli()
    runner = CliRunner()
    out = runner.invoke(cli, ["runs", "report", rec.id, "--uri", str(store), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)  # stderr holds the "store: ..." header
    assert data["signal"]["IC"] == pytest.approx(rec.list_metrics()["IC"])
    assert set(data["portfolio"]["1day"]) == set(RISK_KEYS)
    assert set(data["portfolio"]["1day"]["max_drawdown"]) == {"with_cost", "without_cost"}
    for art in ("sig_analysis/ic.png", "portfolio_analysis/report_1day.png"):
        path = data["pictures"][art]
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    out = runner.invoke(cli, ["runs", "report", rec.id, "--uri", str(store)])
    assert out.exit_code == 0, out.output
    assert "Rank ICIR" in out.output and "information_ratio" in out.output and "report_1day.png" in out.output
    out = runner.invoke(cli, ["runs", "report", "no-such-run", "--uri", str(store)])
    assert out.exit_code != 0 and "no-such-run" in out.output


def test_sig_ana_with_a_label_passed_in_needs_no_label_artifact(store, market):
    q, pred, label = market
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pred})
        SigAnaRecord(rec).generate(label=label)
        assert rec.list_metrics()["IC"] > 0.3


# ---- Qlib's pre-0.8 PortAnaRecord config (DoubleEnsemble / GATs Alpha360 configs as Qlib ships them) ------
def _old_form_config(q):
    return {"strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy.strategy",
                         "kwargs": {"topk": 4, "n_drop": 1}},
            "backtest": {"verbose": False, "limit_threshold": 0.095, "account": 1e6, "benchmark": "IDX",
                         "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5,
                         "quote": q}}


def test_qlib_s_pre_08_backtest_form_backtests_as_the_current_form(store, market, caplog):
    import logging
    q, pred, _ = market
    with R.start(experiment_name="records"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pred})
        with caplog.at_level(logging.INFO, logger="qexp.records"):
            old = PortAnaRecord(rec, _old_form_config(q))
        old_report = old.generate()["report_normal_1day.pkl"]
        new_report = PortAnaRecord(rec, _config(q)).generate()["report_normal_1day.pkl"]
    pd.testing.assert_frame_equal(old_report, new_report)
    notices = [r.getMessage() for r in caplog.records if r.name == "qexp.records"]
    assert any("backtest.verbose (Qlib's pre-0.8 backtest form) is dropped" in m for m in notices), notices
    assert any("deal_price, limit_threshold, open_cost, close_cost, min_cost" in m and "exchange_kwargs" in m
               for m in notices), notices
    assert old.backtest_config["exchange_kwargs"]["open_cost"] == 0.0005 and "verbose" not in old.backtest_config
    assert old.strategy_config["kwargs"]["signal"] == "<PRED>"


def test_unknown_backtest_key_is_a_clear_error_at_build_and_in_the_dry_run():
    with pytest.raises(ConfigError, match=r"backtest has unknown key\(s\) 'verbos'; it takes start_time"):
        PortAnaRecord(object(), {"strategy": {}, "backtest": {"verbos": False}})
    cfg = {"strategy": {"class": "TopkDropoutStrategy", "kwargs": {"topk": 5, "n_drop": 1}},
           "backtest": {"open_cost": 0.001, "exchange_kwargs": {"open_cost": 0.002}}}
    assert PortAnaRecord.dry_run_problems({"config": cfg}) == [
        "PortAnaRecord config backtest sets open_cost both at its top level (Qlib's pre-0.8 form) and in "
        "exchange_kwargs, with different values; keep the one in exchange_kwargs"]
    from qexp.workflow import check_config
    task = {"model": {"class": "LinearModel", "module_path": "qlib.contrib.model.linear"},
            "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {}},
            "record": [{"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp",
                        "kwargs": {"config": {"strategy": cfg["strategy"], "backtest": {"verbose": 1, "shift": 1}}}}]}
    problems, notes = check_config({"task": task})
    assert problems == ["task.record.0.kwargs: PortAnaRecord config backtest has unknown key(s) 'shift'; it takes "
                        "start_time, end_time, account, benchmark, exchange_kwargs, pos_type, quote (the exchange's "
                        "settings such as deal_price or open_cost go in exchange_kwargs)"], problems
    task["record"][0]["kwargs"]["config"]["backtest"].pop("shift")
    problems, notes = check_config({"task": task})
    assert problems == [] and notes == [
        "task.record.0.kwargs: PortAnaRecord config backtest.verbose (Qlib's pre-0.8 backtest form) is dropped: "
        "the backtest logs its results",
        "task.record.0.kwargs: PortAnaRecord config strategy has no signal (Qlib's pre-0.8 form, where the "
        "backtest got the predictions): it trades on <PRED>"], notes
