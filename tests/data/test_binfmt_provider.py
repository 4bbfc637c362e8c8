"""Binary format round trips, dump_bin compatibility, the provider contract and its error messages."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qexp_data import binfmt
from qexp_data.errors import InstrumentsFileError, ProviderNotFoundError, UnknownFieldError, UnknownMarketError
from qexp_data.provider import LocalProvider
from qexp_data.writer import InstrumentData, write_folder


def _dump_bin_like(root, frames: dict[str, pd.DataFrame]) -> pd.DatetimeIndex:
    """Write a folder exactly as Qlib's scripts/dump_bin.py (dump_all) does, byte for byte."""
    cal = sorted(set().union(*(pd.to_datetime(df["date"]) for df in frames.values())))
    (root / "calendars").mkdir(parents=True)
    (root / "calendars" / "day.txt").write_text("\n".join(d.strftime("%Y-%m-%d") for d in cal))  # no final \n
    (root / "instruments").mkdir()
    lines = []
    for symbol, df in frames.items():
        df = df.copy()
        df["date"] = pd.to_datetime(df["date"])
        df = df.drop_duplicates("date").set_index("date").sort_index()
        lines.append(f"{symbol.upper()}\t{df.index.min():%Y-%m-%d}\t{df.index.max():%Y-%m-%d}")
        sub = pd.DatetimeIndex([d for d in cal if df.index.min() <= d <= df.index.max()])
        df = df.reindex(sub)
        start = cal.index(sub[0])
        folder = root / "features" / symbol.lower()
        folder.mkdir(parents=True)
        for field in ("open", "close", "volume"):
            np.hstack([start, df[field]]).astype("<f").tofile(str(folder / f"{field}.day.bin"))
    (root / "instruments" / "all.txt").write_text("\n".join(lines) + "\n")
    return pd.DatetimeIndex(cal)


def test_dump_bin_folder_loads_as_is(tmp_path):
    frames = {
        "AAA": pd.DataFrame({"date": ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-06"],
                             "open": [1.0, 2.0, 3.0, 9.0], "close": [1.5, 2.5, 3.5, 9.5], "volume": [10, 20, 30, 40]}),
        "BBB": pd.DataFrame({"date": ["2020-01-03", "2020-01-07"], "open": [5.0, 6.0], "close": [5.5, 6.5],
                             "volume": [1, 2]}),
    }
    cal = _dump_bin_like(tmp_path, frames)
    p = LocalProvider(str(tmp_path))
    assert list(p.calendar()) == list(cal)
    df = p.features("all", ["$close", "$volume"])
    assert df.index.names == ["datetime", "instrument"]
    bbb = df.xs("BBB", level="instrument")
    # BBB is reindexed to the calendar between its own first and last day: 2020-01-06 is a NaN row.
    assert list(bbb.index) == list(pd.to_datetime(["2020-01-03", "2020-01-06", "2020-01-07"]))
    assert np.isnan(bbb.loc["2020-01-06", "$close"])
    aaa = df.xs("AAA", level="instrument")
    assert aaa["$close"].tolist() == [1.5, 2.5, 3.5]  # duplicate date keeps the first row
    assert df.dtypes.unique().tolist() == [np.float32]


def test_round_trip_bytes_and_values(tmp_path):
    cal = pd.bdate_range("2022-01-03", periods=10)
    vals = np.array([1.0, np.nan, 3.25, 4.0], dtype=np.float64)
    write_folder(tmp_path / "q", cal, [InstrumentData("con", 3, {"close": vals})],
                 {"all": {"CON": [(cal[3], cal[6])]}})
    # Reserved Windows name gets Qlib's prefix; codes upper-case in the instruments file.
    path = tmp_path / "q" / "features" / "_qlib_con" / "close.day.bin"
    raw = np.fromfile(path, dtype="<f4")
    assert raw[0] == 3 and np.array_equal(raw[1:], vals.astype("<f4"), equal_nan=True)
    assert path.read_bytes() == np.hstack([[3], vals]).astype("<f").tobytes()
    assert (tmp_path / "q" / "instruments" / "all.txt").read_text() == "CON\t2022-01-06\t2022-01-11\n"
    assert binfmt.read_bin(path, 4, 5) == (4, pytest.approx(np.array([np.nan, 3.25], dtype="<f4"), nan_ok=True))
    df = LocalProvider(str(tmp_path / "q")).features(["CON"], ["$close"])
    assert df["$close"].to_numpy().tolist()[2:] == [3.25, 4.0]


def test_missing_folder_error_names_path_and_fix(tmp_path):
    with pytest.raises(ProviderNotFoundError) as exc:
        LocalProvider(str(tmp_path / "nope"))
    msg = str(exc.value)
    assert str(tmp_path / "nope") in msg and "qexp data synth --out DIR" in msg and "qexp data import-csv" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProviderNotFoundError, match="calendars/day.txt"):
        LocalProvider(str(tmp_path / "empty"))


def test_bad_instruments_line_names_file_and_line(edge_store, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("SH600000\t2020-01-01\t2020-12-31\nSH600001\t2020-01-01\n")
    with pytest.raises(InstrumentsFileError, match=r"bad.txt, line 2"):
        binfmt.read_instruments(path)
    path.write_text("SH600000\t2020-01-01\tnot-a-date\n")
    with pytest.raises(InstrumentsFileError, match="line 1"):
        binfmt.read_instruments(path)


def test_unknown_field_and_market_errors(edge_store):
    p = LocalProvider(str(edge_store))
    with pytest.raises(UnknownFieldError) as exc:
        p.features("all", ["Mean($clsoe, 5)"])
    assert "$clsoe" in str(exc.value) and "$close" in str(exc.value) and "Mean($clsoe, 5)" in str(exc.value)
    with pytest.raises(UnknownMarketError, match="Markets available: all, csi300"):
        p.features("sp500", ["$close"])


def test_contract_index_columns_membership(edge_store):
    p = LocalProvider(str(edge_store))
    cal = p.calendar()
    fields = ["$close", "Ref($close, 1)/$close", "$close"]
    df = p.features("csi300", fields, cal[30], cal[110])
    assert list(df.columns) == ["$close", "Ref($close, 1)/$close"]      # named as passed, deduplicated
    assert df.index.is_monotonic_increasing and df.index.names == ["datetime", "instrument"]
    days = df.xs("SH600001", level="instrument").index
    # Two membership spans [40, 70] and [80, 100]: rows outside them are dropped.
    expect = list(cal[40:71]) + list(cal[80:101])
    assert list(days) == expect
    # The first row uses history from before start_time (Ref at cal[30] for SH600000 is not NaN).
    first = df.xs("SH600000", level="instrument").iloc[0]
    assert not np.isnan(first["Ref($close, 1)/$close"])
    # Label-style future reference at the end of the calendar is NaN, one day before it is not.
    lab = p.features(["SH600000"], ["Ref($close, -1)"], cal[-3], cal[-1])["Ref($close, -1)"].to_numpy()
    assert not np.isnan(lab[0]) and np.isnan(lab[-1])
    assert p.features("all", ["$close"], "1990-01-01", "1990-02-01").empty


def test_calendar_and_list_instruments(edge_store):
    p = LocalProvider(str(edge_store))
    cal = p.calendar()
    assert len(p.calendar(cal[5], cal[9])) == 5 and p.calendar(future=True).equals(cal)
    spans = p.list_instruments("csi300", cal[50], cal[90])
    assert spans["SH600001"] == [(cal[50], cal[70]), (cal[80], cal[90])]
    assert p.list_instruments({"market": "all", "filter_pipe": [
        {"filter_type": "NameDFilter", "name_rule_re": "SZ", "filter_start_time": None, "filter_end_time": None}
    ]}, as_list=True) == ["SZ000001", "SZ000002", "SZ000003", "SZ000004"]
    listed = p.list_instruments(["SZ000002", "SH600000"], as_list=True)
    assert listed == ["SH600000", "SZ000002"]
    expr_filter = {"market": "all", "filter_pipe": [{"filter_type": "ExpressionDFilter",
                                                     "rule_expression": "$close > 1000000", "keep": False}]}
    assert p.list_instruments(expr_filter) == {}


def test_absent_standard_field_reads_as_nan_like_qlib(tmp_path):
    """Qlib's Yahoo cn_data has no $vwap: Alpha158's VWAP0 must be an all-NaN column, not an error."""
    import warnings

    import numpy as np
    import pandas as pd

    from qexp_data.provider import LocalProvider
    from qexp_data.writer import InstrumentData, write_folder

    cal = pd.bdate_range("2020-01-01", periods=5)
    close = np.arange(1.0, 6.0)
    write_folder(tmp_path / "d", cal, [InstrumentData("SH600000", 0, {"close": close})],
                 {"all": {"SH600000": [(cal[0], cal[-1])]}})
    p = LocalProvider(str(tmp_path / "d"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = p.features(["SH600000"], ["$vwap/$close", "$close"])
    assert df["$vwap/$close"].isna().all() and df["$close"].tolist() == list(close)
    assert any("$vwap" in str(w.message) for w in caught)
    with pytest.raises(Exception, match="Available fields"):
        p.features(["SH600000"], ["$nosuchfield"])


# -- features computed in instrument chunks on threads
THREADED_FIELDS = ["$close", "Mean($close, 5)/$close", "Mad($close, 10)", "Mad($volume, 0)", "Slope($close, 20)",
                   "Rsquare($close, 10)", "Corr($close, Log($volume+1), 10)", "Ref($close, -2)/Ref($close, -1) - 1",
                   "ChangeInstrument('SH600000', $close)/$close", "WMA($close, 7)", "Quantile($close, 10, 0.8)"]


@pytest.mark.parametrize("market", ["all", "csi300"])
def test_threaded_features_equal_single_thread_bit_for_bit(edge_store, synth_small, monkeypatch, market):
    """Chunks of instruments on several threads give exactly the one-thread frame (index, order, values),
    including membership spans, ChangeInstrument and all-NaN windows, and no stray warnings."""
    import warnings

    import qexp_data.provider as prov
    monkeypatch.setattr(prov, "MIN_CODES_PER_THREAD", 1)
    root = edge_store if market == "csi300" else synth_small
    p = LocalProvider(root)
    frames = {}
    for threads in ("1", "3"):
        monkeypatch.setenv("QEXP_DATA_THREADS", threads)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            frames[threads] = p.features(market, THREADED_FIELDS)
    one, three = frames["1"], frames["3"]
    assert len(one) > 0 and len(one.index.get_level_values("instrument").unique()) >= 2
    assert one.index.equals(three.index)
    assert np.array_equal(one.to_numpy(), three.to_numpy(), equal_nan=True)
    assert np.isfinite(one.to_numpy()).any(axis=0).all()  # every column has real values, not only NaN


def test_feature_threads_setting(monkeypatch):
    import qexp_data.provider as prov
    monkeypatch.setenv("QEXP_DATA_THREADS", "3")
    assert prov.feature_threads() == 3
    assert prov._chunk_bounds(100, 3) == [(0, 33), (33, 67), (67, 100)]
    assert prov._chunk_bounds(40, 8) == [(0, 40)]        # chunks keep at least MIN_CODES_PER_THREAD codes
    for bad in ("two", "0"):
        monkeypatch.setenv("QEXP_DATA_THREADS", bad)
        with pytest.raises(ValueError, match="QEXP_DATA_THREADS"):
            prov.feature_threads()


def test_a_failing_chunk_stops_the_others_and_leaves_no_threads(synth_small, monkeypatch):
    import threading
    import time

    import qexp_data.provider as prov
    from qexp_data.expr import Evaluator
    monkeypatch.setattr(prov, "MIN_CODES_PER_THREAD", 1)
    monkeypatch.setenv("QEXP_DATA_THREADS", "3")
    real = Evaluator.compute
    calls = []

    def compute(self, key):
        if threading.current_thread().name.endswith("_1"):
            raise RuntimeError("chunk 1 failed")
        calls.append(1)
        time.sleep(0.01)  # a slow chunk, so that the failure comes first
        return real(self, key)

    monkeypatch.setattr(Evaluator, "compute", compute)
    fields = [f"Mean($close, {n})" for n in range(2, 42)]
    with pytest.raises(RuntimeError, match="chunk 1 failed"):
        LocalProvider(synth_small).features("all", fields)
    assert len(calls) < 2 * len(fields)  # the two other chunks stopped before their last output
    assert not [t for t in threading.enumerate() if t.name.startswith("qexp-features")]
