"""MultiPassPortAnaRecord on a real backtest over the synthetic market: Qlib's artifact and metric names,
mean and std over the passes, passes that differ only in the shuffled first day, reproducible seeds."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import qexp
from qexp import ConfigError, R

synth = pytest.importorskip("qexp_data.synth", reason="the data plugin's synthetic market is not available")

START, END = "2020-01-01", "2020-04-30"
KINDS = ["excess_return_without_cost", "excess_return_with_cost"]
KEPT = ["annualized_return", "information_ratio"]


@pytest.fixture(scope="module")
def market_dir(tmp_path_factory):
    return synth.write_synth(tmp_path_factory.mktemp("synth") / "cn",
                             synth.SynthParams(instruments=60, start="2019-06-01", end="2020-06-30", seed=2))


@pytest.fixture
def pred(market_dir, tmp_path):
    qexp.init(uri=str(tmp_path / "runs"), provider_uri=str(market_dir), region="cn")
    from qexp.data_api import get_provider
    label = get_provider().features("csi300", ["Ref($close, -2)/Ref($close, -1) - 1"], START, END).iloc[:, 0]
    rng = np.random.default_rng(0)
    y = label.astype("float64")
    return (y + rng.normal(0, 2 * np.nanstd(y), len(y))).rename("score").dropna().to_frame()


def _config(topk: int = 10, n_drop: int = 2) -> dict:
    return {"strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                         "kwargs": {"signal": "<PRED>", "topk": topk, "n_drop": n_drop}},
            "backtest": {"start_time": START, "end_time": "2020-04-29", "account": 100000000,
                         "benchmark": "SH000300",
                         "exchange_kwargs": {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005,
                                             "close_cost": 0.0015, "min_cost": 5}}}


def _run(pred, **kwargs):
    from qexp_records.multipass import MultiPassPortAnaRecord
    with R.start(experiment_name="multipass"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pred})
        MultiPassPortAnaRecord(rec, config=_config(), **kwargs).generate()
    return rec


def test_mean_and_std_over_the_passes(pred) -> None:
    rec = _run(pred, pass_num=4, seed=0)
    summary = rec.load_object("portfolio_analysis/multi_pass_port_analysis_1day.pkl")
    assert list(summary.columns) == ["mean", "std", "mean_std"]
    assert list(summary.index) == [(k, m) for k in KINDS for m in KEPT]
    metrics = rec.list_metrics()
    for kind in KINDS:
        for name in KEPT:
            # every pass's PortAnaRecord metric is in the history, one step per pass
            hist = rec.get_metric_history(f"1day.{kind}.{name}")
            assert hist["step"].tolist() == [0, 1, 2, 3]
            values = hist["value"].to_numpy()
            assert np.unique(values).size == 4  # a different starting portfolio each pass
            mean, std = values.mean(), values.std(ddof=1)
            assert summary.loc[(kind, name), "mean"] == pytest.approx(mean, rel=1e-12)
            assert summary.loc[(kind, name), "std"] == pytest.approx(std, rel=1e-12)
            assert summary.loc[(kind, name), "mean_std"] == pytest.approx(mean / std, rel=1e-12)
            for stat, value in (("mean", mean), ("std", std), ("mean_std", mean / std)):
                assert metrics[f"{stat}.{kind}.{name}"] == pytest.approx(value, rel=1e-12)
    # only the multi-pass analysis is kept, as in Qlib
    arts = set(rec.list_artifacts(recursive=True))
    assert "portfolio_analysis/multi_pass_port_analysis_1day.pkl" in arts
    assert not any(a.startswith("portfolio_analysis/report_normal") or a.endswith(".png") for a in arts)


def test_passes_differ_only_in_the_first_days_portfolio(pred) -> None:
    """Without shuffling every pass is the plain PortAnaRecord backtest (std 0)."""
    from qexp_records import PortAnaRecord
    rec = _run(pred, pass_num=2, shuffle_init_score=False)
    summary = rec.load_object("portfolio_analysis/multi_pass_port_analysis_1day.pkl")
    assert (summary["std"] == 0).all()
    with R.start(experiment_name="plain"):
        plain = R.get_recorder()
        plain.save_objects(**{"pred.pkl": pred})
        PortAnaRecord(plain, config=_config(), plot=False).generate()
    want = plain.list_metrics()
    for kind in KINDS:
        for name in KEPT:
            assert summary.loc[(kind, name), "mean"] == pytest.approx(want[f"1day.{kind}.{name}"], rel=1e-12)


def test_a_seed_makes_the_passes_reproducible(pred) -> None:
    a = _run(pred, pass_num=2, seed=5).load_object("portfolio_analysis/multi_pass_port_analysis_1day.pkl")
    b = _run(pred, pass_num=2, seed=5).load_object("portfolio_analysis/multi_pass_port_analysis_1day.pkl")
    c = _run(pred, pass_num=2, seed=6).load_object("portfolio_analysis/multi_pass_port_analysis_1day.pkl")
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["mean"], c["mean"])
    assert all(math.isfinite(v) for v in a.to_numpy().ravel())


def test_random_init_shuffles_only_the_first_backtest_day(pred, tmp_path) -> None:
    from qexp_records.multipass import MultiPassPortAnaRecord
    with R.start(experiment_name="init"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pred})
        record = MultiPassPortAnaRecord(rec, config=_config(), pass_num=1)
        record.random_init(np.random.default_rng(0))
    signal = record.strategy_config["kwargs"]["signal"]
    dates = pred.index.get_level_values("datetime")
    first = dates.min()
    assert signal.index.equals(pred.index)
    pd.testing.assert_frame_equal(signal[dates > first], pred[dates > first])
    day, orig = signal[dates == first]["score"], pred[dates == first]["score"]
    assert not np.array_equal(day.to_numpy(), orig.to_numpy())
    assert sorted(day.to_numpy()) == sorted(orig.to_numpy())
    assert record.original_strategy["kwargs"]["signal"] == "<PRED>"


def test_resolves_from_a_qlib_config(pred) -> None:
    from qexp.ext import init_instance_by_config
    from qexp_records.multipass import MultiPassPortAnaRecord
    with R.start(experiment_name="resolve"):
        rec = R.get_recorder()
        record = init_instance_by_config({"class": "MultiPassPortAnaRecord",
                                          "module_path": "qlib.workflow.record_temp",
                                          "kwargs": {"recorder": rec, "config": _config(), "pass_num": 3}})
    assert isinstance(record, MultiPassPortAnaRecord) and record.pass_num == 3 and record.shuffle_init_score


@pytest.mark.parametrize("kwargs, match", [
    ({"pass_num": 0}, "pass_num must be an integer >= 1"),
    # (a TopkDropoutStrategy without a signal is Qlib's pre-0.8 form: it trades on <PRED>, see below)
    ({"config": {"strategy": {"class": "MyStrategy", "kwargs": {"topk": 5, "n_drop": 1}}}},
     "kwargs have a signal"),
])
def test_bad_settings_are_clear_errors(kwargs, match, tmp_path) -> None:
    from qexp_records.multipass import MultiPassPortAnaRecord
    qexp.init(uri=str(tmp_path / "runs"))
    with R.start(experiment_name="bad"):
        with pytest.raises(ConfigError, match=match):
            MultiPassPortAnaRecord(R.get_recorder(), **{"config": _config(), **kwargs})


def test_qlib_s_pre_08_strategy_without_a_signal_shuffles_the_predictions(tmp_path) -> None:
    from qexp_records.multipass import MultiPassPortAnaRecord
    qexp.init(uri=str(tmp_path / "runs"))
    old = {"strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy.strategy",
                        "kwargs": {"topk": 5, "n_drop": 1}}}
    with R.start(experiment_name="old-form"):
        record = MultiPassPortAnaRecord(R.get_recorder(), config={**_config(), **old}, pass_num=2)
    assert record.strategy_config["kwargs"]["signal"] == "<PRED>"
