"""Processor formulas against direct numpy/pandas computations (reference §5 table)."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from qexp_data.processor import (
    CSRankNorm,
    CSZFillna,
    CSZScoreNorm,
    DropCol,
    DropnaLabel,
    DropnaProcessor,
    Fillna,
    FilterCol,
    MinMaxNorm,
    ProcessInf,
    RobustZScoreNorm,
    TanhProcess,
    ZScoreNorm,
)

DATES = pd.bdate_range("2021-01-04", periods=6)
CODES = ["A", "B", "C", "D", "E"]


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    idx = pd.MultiIndex.from_product([DATES, CODES], names=["datetime", "instrument"])
    n = len(idx)
    df = pd.DataFrame({
        ("feature", "f1"): rng.normal(5, 2, n),
        ("feature", "f2"): rng.standard_t(2, n) * 10,  # heavy tails: RobustZScoreNorm clips
        ("feature", "const"): np.full(n, 3.0),
        ("label", "LABEL0"): rng.normal(0, 0.02, n),
    }, index=idx).astype(np.float32)
    df.iloc[3, 0] = np.nan
    df.iloc[7, 1] = np.nan
    df.iloc[11, 3] = np.nan
    df.iloc[20, 3] = np.nan
    return df


def cols(df, group):
    return [c for c in df.columns if c[0] == group]


def test_zscorenorm_fit_window_ddof0_and_constant_columns(frame):
    p = ZScoreNorm(fit_start_time=DATES[0], fit_end_time=DATES[2])
    p.fit(frame)
    out = p(frame.copy())
    fit = frame.loc[DATES[0]:DATES[2]].to_numpy(dtype=np.float64)
    mu, sd = np.nanmean(fit, axis=0), np.nanstd(fit, axis=0)  # ddof=0
    x = frame.to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):  # the constant column: 0/0, replaced below
        exp = (x - mu) / sd
    exp[:, 2] = x[:, 2]  # std 0: left untouched
    np.testing.assert_allclose(out.to_numpy(dtype=np.float64), exp, rtol=2e-5, atol=2e-6)
    assert np.isnan(out.iloc[3, 0])
    # rows after the fit window use the window's statistics, not their own
    assert abs(np.nanmean(out.loc[DATES[0]:DATES[2]].iloc[:, 0].to_numpy())) < 1e-5
    assert out.dtypes.eq(np.float32).all()


def test_robust_zscore_formula_and_clip(frame):
    p = RobustZScoreNorm(fit_start_time=DATES[0], fit_end_time=DATES[3], fields_group="feature")
    p.fit(frame)
    out = p(frame.copy())
    f = frame[cols(frame, "feature")].to_numpy(dtype=np.float64)
    fit = frame.loc[DATES[0]:DATES[3], cols(frame, "feature")].to_numpy(dtype=np.float64)
    med = np.nanmedian(fit, axis=0)
    sd = (np.nanmedian(np.abs(fit - med), axis=0) + 1e-12) * 1.4826
    exp = np.clip((f - med) / sd, -3, 3)
    got = out[cols(frame, "feature")].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(got, exp, rtol=2e-5, atol=1e-5)
    assert np.nanmax(np.abs(got)) == 3.0  # some value was clipped
    assert np.isnan(got[3, 0]) and np.isnan(got[7, 1])
    # the label group is outside fields_group: unchanged
    pd.testing.assert_series_equal(out[("label", "LABEL0")], frame[("label", "LABEL0")])

    p2 = RobustZScoreNorm(fit_start_time=DATES[0], fit_end_time=DATES[3], fields_group="feature", clip_outlier=False)
    p2.fit(frame)
    got2 = p2(frame.copy())[cols(frame, "feature")].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(got2, (f - med) / sd, rtol=2e-5, atol=1e-5)
    assert np.nanmax(np.abs(got2)) > 3


def test_minmaxnorm(frame):
    p = MinMaxNorm(fit_start_time=None, fit_end_time=None, fields_group="feature")
    p.fit(frame)
    out = p(frame.copy())
    f = frame[cols(frame, "feature")].to_numpy(dtype=np.float64)
    lo, hi = np.nanmin(f, axis=0), np.nanmax(f, axis=0)
    with np.errstate(invalid="ignore"):  # the constant column: 0/0, replaced below
        exp = (f - lo) / (hi - lo)
    exp[:, 2] = f[:, 2]  # min == max: untouched
    np.testing.assert_allclose(out[cols(frame, "feature")].to_numpy(dtype=np.float64), exp, rtol=1e-5, atol=1e-6)


def test_cszscorenorm_zscore_ddof1_per_date(frame):
    out = CSZScoreNorm(fields_group="label")(frame.copy())
    lab = frame[("label", "LABEL0")].astype(np.float64)
    exp = lab.groupby(level="datetime").transform(lambda s: (s - s.mean()) / s.std(ddof=1))
    np.testing.assert_allclose(out[("label", "LABEL0")].to_numpy(dtype=np.float64), exp.to_numpy(), rtol=1e-5,
                               atol=1e-6)
    # by hand for the first date (no NaN there)
    x = frame.loc[DATES[0], ("label", "LABEL0")].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(out.loc[DATES[0], ("label", "LABEL0")].to_numpy(dtype=np.float64),
                               (x - x.mean()) / x.std(ddof=1), rtol=1e-5)
    pd.testing.assert_frame_equal(out[cols(frame, "feature")], frame[cols(frame, "feature")])


def test_cszscorenorm_robust(frame):
    out = CSZScoreNorm(fields_group="feature", method="robust")(frame.copy())
    x = frame.loc[DATES[1], ("feature", "f2")].to_numpy(dtype=np.float64)
    x = x[~np.isnan(x)]
    med = np.median(x)
    mad = np.median(np.abs(x - med))
    exp = np.clip((x - med) / mad / 1.4826, -3, 3)
    got = out.loc[DATES[1], ("feature", "f2")].dropna().to_numpy(dtype=np.float64)
    np.testing.assert_allclose(got, exp, rtol=1e-5)
    with pytest.raises(ValueError, match="zscore"):
        CSZScoreNorm(method="minmax")


def test_csranknorm_346_and_ties(frame):
    df = frame.copy()
    df.loc[DATES[2], ("label", "LABEL0")] = np.array([0.1, 0.1, 0.3, np.nan, 0.2], dtype=np.float32)
    out = CSRankNorm(fields_group="label")(df)
    got = out.loc[DATES[2], ("label", "LABEL0")].to_numpy(dtype=np.float64)
    # 4 valid values: ranks 1.5, 1.5, 4, -, 3 -> pct / 4
    exp = (np.array([1.5, 1.5, 4, np.nan, 3]) / 4 - 0.5) * 3.46
    np.testing.assert_allclose(got, exp, rtol=1e-6)


def test_processinf_replaces_with_date_mean_of_finite(frame):
    df = frame.copy()
    df.iloc[5, 0] = np.inf   # date 1, instrument A
    df.iloc[6, 0] = -np.inf  # date 1, instrument B
    out = ProcessInf()(df)
    day = frame.loc[DATES[1], ("feature", "f1")].to_numpy(dtype=np.float64)
    finite_mean = np.nanmean(day[2:])  # A and B were inf
    assert out.iloc[5, 0] == pytest.approx(finite_mean, rel=1e-6)
    assert out.iloc[6, 0] == pytest.approx(finite_mean, rel=1e-6)
    assert np.isfinite(out.to_numpy()[~np.isnan(out.to_numpy())]).all()
    # nothing else changed
    mask = np.ones(len(df), bool)
    mask[[5, 6]] = False
    np.testing.assert_array_equal(out.to_numpy()[mask], df.to_numpy()[mask])


def test_fillna_and_cszfillna(frame):
    out = Fillna(fields_group="feature")(frame.copy())
    assert out.iloc[3, 0] == 0 and out.iloc[7, 1] == 0
    assert np.isnan(out.iloc[11, 3])  # label outside the group
    out = Fillna()(frame.copy())
    assert not out.isna().any().any()
    out = Fillna(fill_value=-1)(frame.copy())
    assert out.iloc[11, 3] == -1

    out = CSZFillna(fields_group="feature")(frame.copy())
    day = frame.loc[DATES[0], ("feature", "f1")]  # row 3 is date 0, instrument D
    assert out.iloc[3, 0] == pytest.approx(day.mean(), rel=1e-6)
    assert np.isnan(out.iloc[11, 3])


def test_dropna_processors(frame):
    out = DropnaLabel()(frame)
    assert len(out) == len(frame) - 2 and not out[("label", "LABEL0")].isna().any()
    assert DropnaLabel().is_for_infer() is False and DropnaLabel().readonly() is True
    out = DropnaProcessor(fields_group="feature")(frame)
    assert len(out) == len(frame) - 2
    out = DropnaProcessor()(frame)
    assert len(out) == len(frame) - 4


def test_dropcol_filtercol_keep_order(frame):
    out = DropCol(col_list=["f2"])(frame)
    assert list(out.columns) == [("feature", "f1"), ("feature", "const"), ("label", "LABEL0")]
    out = FilterCol(fields_group="feature", col_list=["const", "f1"])(frame)
    assert list(out.columns) == [("feature", "f1"), ("feature", "const"), ("label", "LABEL0")]
    assert FilterCol().readonly() and DropCol().readonly()


def test_tanhprocess_skips_label_columns(frame):
    out = TanhProcess()(frame.copy())
    f = frame[cols(frame, "feature")].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(out[cols(frame, "feature")].to_numpy(dtype=np.float64), np.tanh(f - 1), rtol=1e-6)
    pd.testing.assert_series_equal(out[("label", "LABEL0")], frame[("label", "LABEL0")])


def test_fitted_state_survives_pickle(frame):
    p = ZScoreNorm(fit_start_time=DATES[0], fit_end_time=DATES[2])
    p.fit(frame)
    q = pickle.loads(pickle.dumps(p))
    pd.testing.assert_frame_equal(q(frame.copy()), p(frame.copy()))
    with pytest.raises(RuntimeError, match="not fitted"):
        ZScoreNorm(fit_start_time=None, fit_end_time=None)(frame.copy())


def test_fit_window_without_rows_is_a_clear_error(frame):
    p = ZScoreNorm(fit_start_time="2030-01-01", fit_end_time="2030-12-31")
    with pytest.raises(ValueError, match="fit window"):
        p.fit(frame)


def test_processor_config_sets_fit_times():
    p = ZScoreNorm(fit_start_time="2020-01-01", fit_end_time="2020-06-30")
    p.config(fit_start_time=pd.Timestamp("2019-01-01"), dump_all=True)
    assert p.fit_start_time == pd.Timestamp("2019-01-01") and p.dump_all
    Fillna().config(fit_start_time="2019-01-01")  # ignored where there is no fit window
