"""Alpha158 on ~30 real S&P 500 stocks imported with ``qexp data import-csv``'s importer.

Values are checked against formulas computed directly from the CSV files with pandas.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qexp import data_api
from qexp.config import init_instance_by_config

N_STOCKS = 30
SEGMENTS = {"train": ("2013-03-01", "2015-12-31"), "valid": ("2016-01-01", "2016-12-31"),
            "test": ("2017-01-01", "2018-02-07")}


@pytest.fixture(scope="module")
def sp_folder(tmp_path_factory) -> tuple[Path, list[str]]:
    from tests.conftest import SP500_DIR
    if not SP500_DIR.is_dir() or not any(SP500_DIR.glob("*.csv")):
        pytest.skip(f"the S&P 500 sample data is not at {SP500_DIR} (set QEXP_SHARED_DATA to its folder)")
    importer = pytest.importorskip("qexp_data.importer", reason="the CSV importer is not available")
    files = sorted(SP500_DIR.glob("*.csv"))[:N_STOCKS]
    src = tmp_path_factory.mktemp("sp_src")
    for f in files:  # links, not copies: the shared data stays where it is
        os.symlink(f, src / f.name)
    dst = tmp_path_factory.mktemp("sp_qlib") / "data"
    importer.import_csv(src, dst, symbol_col="Name", progress=False)
    codes = [f.name.split("_data")[0].upper() for f in files]
    return dst, codes


@pytest.fixture
def sp_provider(sp_folder):
    from qexp_data.provider import LocalProvider
    prov = LocalProvider(sp_folder[0])
    calls = {"n": 0}
    original = prov.features

    def counted(*a, **k):
        calls["n"] += 1
        return original(*a, **k)

    prov.features = counted
    prov.calls = calls
    old = (data_api._global["provider"], data_api._global["region"])
    data_api.set_provider(prov, "us")
    yield prov
    data_api.set_provider(*old)


def csv_frame(code: str) -> pd.DataFrame:
    from tests.conftest import SP500_DIR
    df = pd.read_csv(SP500_DIR / f"{code}_data.csv", parse_dates=["date"]).drop_duplicates("date")
    # float32 like the stored data: elementwise ops then round as the engine's (and Qlib's) do
    return df.set_index("date").sort_index()[["open", "high", "low", "close", "volume"]].astype(np.float32)


def expected_columns(df: pd.DataFrame) -> pd.DataFrame:
    """A few Alpha158 columns and the label by their formulas (reference section 3); elementwise in float32,
    rolling windows in float64 (pandas), as Qlib computes them."""
    o, h, lo, c, v = (df[k] for k in ["open", "high", "low", "close", "volume"])
    # the importer's stand-in for a missing vwap column, computed in float64 and stored as float32
    vwap = ((h.astype(np.float64) + lo + c) / 3).astype(np.float32)
    out = pd.DataFrame(index=df.index)
    out["KMID"] = (c - o) / o
    out["KSFT2"] = (2 * c - h - lo) / (h - lo + np.float32(1e-12))
    out["VWAP0"] = vwap / c
    out["ROC5"] = c.shift(5) / c
    out["MA10"] = c.rolling(10, min_periods=1).mean() / c
    out["STD20"] = c.rolling(20, min_periods=1).std(ddof=1) / c
    out["MAX30"] = h.rolling(30, min_periods=1).max() / c
    out["CNTP5"] = (c > c.shift(1)).astype(float).rolling(5, min_periods=1).mean()
    out["IMAX5"] = h.rolling(5, min_periods=1).apply(lambda a: a.argmax() + 1, raw=True) / 5
    out["VMA5"] = v.rolling(5, min_periods=1).mean() / (v + 1e-12)
    out["LABEL0"] = c.shift(-2) / c.shift(-1) - 1
    return out


def alpha158_config(**kw) -> dict:
    kwargs = {"instruments": "all", "start_time": "2013-02-08", "end_time": "2018-02-07",
              "fit_start_time": SEGMENTS["train"][0], "fit_end_time": SEGMENTS["train"][1]}
    kwargs.update(kw)
    return {"class": "Alpha158", "module_path": "qlib.contrib.data.handler", "kwargs": kwargs}


def test_alpha158_on_imported_sp500(sp_provider, sp_folder):
    _, codes = sp_folder
    h = init_instance_by_config(alpha158_config())
    assert type(h).__name__ == "Alpha158"
    raw = h.fetch(data_key="raw")
    assert raw.shape[1] == 159
    assert sorted(set(raw.index.get_level_values("instrument"))) == sorted(codes)
    for code in codes[:3]:
        exp = expected_columns(csv_frame(code))
        got = raw.xs(code, level="instrument")
        assert len(got) == len(exp)  # one row per calendar day in the stock's life; this sample has no gaps
        for col in exp.columns:
            np.testing.assert_allclose(got[col].to_numpy(np.float64), exp[col].to_numpy(), rtol=2e-4, atol=2e-6,
                                       equal_nan=True, err_msg=f"{code} {col}")
    # default learn processing: DropnaLabel then a per-date z-score of the label (ddof=1)
    learn = h.fetch(data_key="learn", col_set="label")["LABEL0"]
    assert not learn.isna().any()
    by_date = learn.groupby(level="datetime")
    np.testing.assert_allclose(by_date.mean().to_numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(by_date.std().to_numpy(), 1, atol=1e-4)
    # the same construction again is a cache hit
    n = sp_provider.calls["n"]
    again = init_instance_by_config(alpha158_config())
    assert sp_provider.calls["n"] == n
    pd.testing.assert_frame_equal(again.fetch(data_key="raw"), raw)


def test_datasets_on_imported_sp500(sp_provider):
    infer = [{"class": "FilterCol", "kwargs": {"fields_group": "feature", "col_list": ["KLEN", "ROC60", "STD5",
                                                                                       "RSQR5", "CORR20"]}},
             {"class": "RobustZScoreNorm", "kwargs": {"fields_group": "feature", "clip_outlier": True}},
             {"class": "Fillna", "kwargs": {"fields_group": "feature"}}]
    learn = [{"class": "DropnaLabel"}, {"class": "CSRankNorm", "kwargs": {"fields_group": "label"}}]
    ds = init_instance_by_config({"class": "TSDatasetH", "module_path": "qlib.data.dataset", "kwargs": {
        "handler": alpha158_config(infer_processors=infer, learn_processors=learn),
        "segments": SEGMENTS, "step_len": 20}})
    train = ds.prepare("train", col_set=["feature", "label"], data_key="learn")
    train.config(fillna_type="ffill+bfill")
    x = train[np.arange(min(64, len(train)))]
    assert x.shape == (min(64, len(train)), 20, 6) and x.dtype == np.float32
    assert not np.isnan(x[:, :, :5]).any()  # features were filled
    assert np.nanmax(np.abs(x[:, :, :5])) <= 3  # and clipped
    assert np.nanmax(np.abs(x[:, :, 5])) <= 0.5 * 3.46 + 1e-6  # rank-normalised label
    test = ds.prepare("test", col_set="feature")
    assert test.get_index().get_level_values("datetime").min() >= pd.Timestamp("2017-01-01")
    assert test[0].shape == (20, 5)
