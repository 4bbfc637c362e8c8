"""risk_analysis, indicator_analysis and the signal metrics against direct formulas."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qexp import ConfigError
from qexp_records.evaluate import indicator_analysis, normalize_freq, risk_analysis
from qexp_records.signal_metrics import calc_ic, calc_long_short_return

R = pd.Series([0.01, -0.02, 0.005, 0.03, -0.01, 0.0, 0.015])


def test_risk_analysis_sum_mode_by_hand():
    res = risk_analysis(R, freq="day")["risk"]
    mean = R.sum() / 7
    std = np.sqrt(((R - mean) ** 2).sum() / 6)
    assert res["mean"] == pytest.approx(mean)
    assert res["std"] == pytest.approx(std)
    assert res["annualized_return"] == pytest.approx(mean * 238)
    assert res["information_ratio"] == pytest.approx(mean / std * np.sqrt(238))
    # cumsum: .01 -.01 -.005 .025 .015 .015 .03; worst fall from a running peak: -.01 - .01 = -.02
    assert res["max_drawdown"] == pytest.approx(-0.02)
    assert list(res.index) == ["mean", "std", "annualized_return", "information_ratio", "max_drawdown"]


def test_risk_analysis_drawdown_peak_excludes_the_start():
    # returns only falling: the peak is the first cumulative value, not 0
    res = risk_analysis(pd.Series([-0.01, -0.02]))["risk"]
    assert res["max_drawdown"] == pytest.approx(-0.02)


def test_risk_analysis_product_mode_by_hand():
    res = risk_analysis(R, freq="day", mode="product")["risk"]
    curve = np.cumprod(1 + R.to_numpy())
    assert res["mean"] == pytest.approx(curve[-1] ** (1 / 7) - 1)
    assert res["std"] == pytest.approx(np.std(np.log1p(R.to_numpy()), ddof=1))
    assert res["annualized_return"] == pytest.approx(curve[-1] ** (238 / 7) - 1)
    assert res["information_ratio"] == pytest.approx(res["mean"] / res["std"] * np.sqrt(238))
    assert res["max_drawdown"] == pytest.approx(np.min(curve / np.maximum.accumulate(curve) - 1))


def test_risk_analysis_scalers_and_errors():
    assert risk_analysis(R, freq="week")["risk"]["annualized_return"] == pytest.approx(R.mean() * 50)
    assert risk_analysis(R, freq="month")["risk"]["annualized_return"] == pytest.approx(R.mean() * 12)
    assert risk_analysis(R, N=252, freq=None)["risk"]["annualized_return"] == pytest.approx(R.mean() * 252)
    assert risk_analysis(R, freq="1day")["risk"]["annualized_return"] == pytest.approx(R.mean() * 238)
    assert normalize_freq("day") == "1day" and normalize_freq("5min") == "5min"
    with pytest.raises(ConfigError, match="mode"):
        risk_analysis(R, mode="log")
    with pytest.raises(ConfigError, match="frequency"):
        risk_analysis(R, freq="fortnight")


def test_indicator_analysis_weights():
    df = pd.DataFrame({"ffr": [1.0, 0.5, np.nan], "pa": [0.0, 0.02, np.nan], "pos": [0.0, 1.0, np.nan],
                       "deal_amount": [100.0, 300.0, 0.0], "value": [1000.0, 1000.0, 0.0], "count": [1, 3, 0]})
    mean = indicator_analysis(df)["value"]
    assert mean["ffr"] == pytest.approx((1.0 * 1 + 0.5 * 3) / 4)
    assert mean["pa"] == pytest.approx(0.02 * 3 / 4)
    assert mean["pos"] == pytest.approx(3 / 4)
    amt = indicator_analysis(df, "amount_weighted")["value"]
    assert amt["ffr"] == pytest.approx((100 + 0.5 * 300) / 400)
    assert amt["pos"] == pytest.approx(3 / 4)       # pos is always count-weighted
    val = indicator_analysis(df, "value_weighted")["value"]
    assert val["ffr"] == pytest.approx(0.75)
    with pytest.raises(ConfigError, match="not supported"):
        indicator_analysis(df, "median")


def _panel(seed=0, n_dates=6, n_inst=8, nan_frac=0.1, ties=False):
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=n_dates),
                                      [f"S{i}" for i in range(n_inst)]], names=["datetime", "instrument"])
    pred = pd.Series(rng.normal(size=len(idx)), index=idx)
    label = pd.Series(0.3 * pred.to_numpy() + rng.normal(size=len(idx)), index=idx)
    if ties:
        pred = pred.round(0)
        label = label.round(0)
    pred[rng.random(len(idx)) < nan_frac] = np.nan
    label[rng.random(len(idx)) < nan_frac] = np.nan
    return pred, label


@pytest.mark.parametrize("ties", [False, True])
def test_calc_ic_matches_pandas_corr(ties):
    pred, label = _panel(ties=ties)
    ic, ric = calc_ic(pred, label)
    df = pd.DataFrame({"pred": pred, "label": label})
    g = df.groupby(level="datetime")
    exp_ic = g.apply(lambda x: x["pred"].corr(x["label"]))
    exp_ric = g.apply(lambda x: x["pred"].corr(x["label"], method="spearman"))
    np.testing.assert_allclose(ic.to_numpy(), exp_ic.to_numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ric.to_numpy(), exp_ric.to_numpy(), rtol=1e-10, atol=1e-12)


def test_calc_ic_degenerate_dates_are_nan():
    idx = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=2), ["A", "B", "C"]],
                                     names=["datetime", "instrument"])
    pred = pd.Series([1.0, 1.0, 1.0, 1.0, 2.0, 3.0], index=idx)     # day 0 constant
    label = pd.Series([1.0, 2.0, 3.0, 3.0, 2.0, 1.0], index=idx)
    ic, ric = calc_ic(pred, label)
    assert np.isnan(ic.iloc[0]) and ic.iloc[1] == pytest.approx(-1.0) and ric.iloc[1] == pytest.approx(-1.0)
    assert len(calc_ic(pred, label, dropna=True)[0]) == 1


@pytest.mark.parametrize("ties", [False, True])
def test_long_short_matches_nlargest(ties):
    pred, label = _panel(seed=2, n_dates=5, n_inst=13, ties=ties)
    ls, avg = calc_long_short_return(pred, label)
    df = pd.DataFrame({"pred": pred, "label": label})
    g = df.groupby(level="datetime", group_keys=False)
    k = lambda x: int(len(x) * 0.2)  # noqa: E731
    long_ = g.apply(lambda x: x.nlargest(k(x), columns="pred").label.mean())
    short = g.apply(lambda x: x.nsmallest(k(x), columns="pred").label.mean())
    np.testing.assert_allclose(ls.to_numpy(), ((long_ - short) / 2).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(avg.to_numpy(), g["label"].mean().to_numpy(), rtol=1e-12)


def test_signal_metrics_reject_duplicates():
    pred, label = _panel()
    dup = pd.concat([pred, pred.iloc[:2]])
    with pytest.raises(Exception, match="duplicated"):
        calc_ic(dup, label)
