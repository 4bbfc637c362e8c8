"""import-csv: values survive the trip, bad rows are reported, interruptions leave nothing behind."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import shared_sp500

from qexp_data import writer
from qexp_data.importer import import_csv
from qexp_data.provider import LocalProvider

CSV_A = """date,open,high,low,close,volume,Name
2020-01-02,10,11,9,10.5,100,AAA
2020-01-03,10.5,12,10,11.5,200,AAA
2020-01-06,11.5,12,11,11.25,150,AAA
2020-01-07,,,,11.0,0,AAA
"""
CSV_B = """date,open,high,low,close,volume,Name
2020-01-03,20,21,19,20.5,1000,BBB
2020-01-06,20.5,22,20,21.5,2000,BBB
2020-01-06,99,99,99,99,99,BBB
"""
CSV_BAD = """date,open,high,low,close,volume,Name
2020-01-02,5,6,4,5.5,10,CCC
not-a-date,5,6,4,5.5,10,CCC
2020-01-03,5,six,4,5.5,10,CCC
2020-01-06,5,6,4,5.5,10
2020-01-07,5,6,4,5.25,10,CCC
"""


@pytest.fixture()
def src(tmp_path):
    d = tmp_path / "csv"
    d.mkdir()
    (d / "AAA_data.csv").write_text(CSV_A)
    (d / "BBB_data.csv").write_text(CSV_B)
    (d / "CCC_data.csv").write_text(CSV_BAD)
    return d


def test_csv_to_binary_to_features_equals_csv(src, tmp_path):
    (tmp_path / "m.txt").write_text("AAA\n# comment\nbbb, ZZZ\n")
    rep = import_csv(src, tmp_path / "out", symbol_col="Name", markets=[f"pair={tmp_path / 'm.txt'}"])
    assert rep.symbols == 3 and rep.days == 4 and rep.duplicates == 1
    assert rep.markets == {"all": 3, "pair": 2}
    p = LocalProvider(str(tmp_path / "out"))
    df = p.features("all", ["$open", "$close", "$volume", "$vwap", "$factor", "$change"])
    for text in (CSV_A, CSV_B):
        csv = pd.read_csv(pd.io.common.StringIO(text)).drop_duplicates("date")
        code = csv["Name"][0]
        got = df.xs(code, level="instrument")
        for col in ("open", "close", "volume"):
            want = csv[col].to_numpy(np.float32)
            np.testing.assert_array_equal(got.loc[pd.to_datetime(csv["date"]), f"${col}"].to_numpy(), want)
    aaa = df.xs("AAA", level="instrument")
    np.testing.assert_allclose(aaa["$vwap"].iloc[0], (11 + 9 + 10.5) / 3, rtol=1e-6)
    assert np.isnan(aaa["$vwap"].iloc[3])              # high/low missing -> no typical price
    assert (aaa["$factor"] == 1.0).all()
    np.testing.assert_allclose(aaa["$change"].iloc[1:].to_numpy(), [11.5 / 10.5 - 1, 11.25 / 11.5 - 1,
                                                                    11.0 / 11.25 - 1], rtol=1e-6)
    assert np.isnan(aaa["$change"].iloc[0])
    bbb = df.xs("BBB", level="instrument")
    assert bbb["$close"].tolist() == [20.5, 21.5]       # duplicate date keeps the first row
    assert sorted(p.list_instruments("pair")) == ["AAA", "BBB"]
    assert (tmp_path / "out" / "features" / "aaa" / "close.day.bin").is_file()


def test_bad_rows_are_reported_and_skipped(src, tmp_path):
    seen = []
    rep = import_csv(src, tmp_path / "out", symbol_col="Name", on_bad_row=seen.append)
    reasons = {(r.line, r.reason.split(":")[0]) for r in rep.bad_rows}
    assert all(r.file.endswith("CCC_data.csv") for r in rep.bad_rows) and seen == rep.bad_rows
    assert {line for line, _ in reasons} == {3, 4, 5}
    text = "\n".join(str(r) for r in rep.bad_rows)
    assert "cannot parse date 'not-a-date'" in text and "'six' is not a number" in text and "6 fields" in text
    ccc = LocalProvider(str(tmp_path / "out")).features(["CCC"], ["$close"])["$close"]
    assert ccc.dropna().tolist() == [5.5, 5.25]


def test_symbol_from_file_name_and_parquet(tmp_path):
    d = tmp_path / "pq"
    d.mkdir()
    pd.DataFrame({"day": pd.to_datetime(["2021-03-01", "2021-03-02"]), "close": [1.0, 2.0],
                  "high": [1.5, 2.5], "low": [0.5, 1.5], "open": [1.0, 2.0], "volume": [5, 6]}
                 ).to_parquet(d / "xyz.parquet")
    import_csv(d, tmp_path / "out", date_col="day")
    df = LocalProvider(str(tmp_path / "out")).features("all", ["$close", "$vwap"])
    assert df.index.get_level_values("instrument").unique().tolist() == ["XYZ"]
    assert df["$close"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("fail_after", [0, 2])
def test_interrupted_import_leaves_nothing_and_keeps_old_dst(src, tmp_path, monkeypatch, fail_after):
    dst = tmp_path / "out"
    import_csv(src, dst, symbol_col="Name")
    before = sorted(p.relative_to(dst) for p in dst.rglob("*"))
    calls = {"n": 0}
    real = writer.write_instrument

    def flaky(root, inst):
        calls["n"] += 1
        if calls["n"] > fail_after:
            raise KeyboardInterrupt("simulated Ctrl-C")
        real(root, inst)
    monkeypatch.setattr(writer, "write_instrument", flaky)
    with pytest.raises(KeyboardInterrupt):
        import_csv(src, dst, symbol_col="Name")
    assert sorted(p.relative_to(dst) for p in dst.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    with pytest.raises(KeyboardInterrupt):
        import_csv(src, tmp_path / "fresh", symbol_col="Name")
    assert not (tmp_path / "fresh").exists()


def test_real_sp500_subset(tmp_path):
    folder = shared_sp500()
    if not folder.is_dir() or not list(folder.glob("*.csv")):
        pytest.skip(f"S&P 500 data not found at {folder} (set QEXP_SHARED_DATA to the folder of the CSVs)")
    src = tmp_path / "sp"
    src.mkdir()
    files = sorted(folder.glob("*.csv"))[::17][:30]
    for f in files:
        (src / f.name).symlink_to(f)
    rep = import_csv(src, tmp_path / "out", symbol_col="Name")
    assert rep.symbols == len(files) and rep.bad_rows == []
    p = LocalProvider(str(tmp_path / "out"))
    df = p.features("all", ["$close", "$volume", "Mean($close, 5)", "Ref($close, -2)/Ref($close, -1) - 1"])
    raw = pd.read_csv(files[0])
    code = raw["Name"][0]
    got = df.xs(code, level="instrument")["$close"]
    want = raw.set_index(pd.to_datetime(raw["date"]))["close"].astype(np.float32)
    np.testing.assert_array_equal(got.loc[want.index].to_numpy(), want.to_numpy())
    assert p.calendar()[0] == pd.Timestamp("2013-02-08") and p.calendar()[-1] == pd.Timestamp("2018-02-07")
    assert df["Mean($close, 5)"].notna().mean() > 0.99
