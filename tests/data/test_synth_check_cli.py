"""Synthetic market (determinism, contents, predictability), data check, the CLI and provider setup."""
from __future__ import annotations

import hashlib
import json

import numpy as np
from click.testing import CliRunner

from qexp_data import binfmt
from qexp_data.cli import data_group
from qexp_data.provider import LocalProvider
from qexp_data.synth import INDEX_CODE, SynthParams, write_synth


def _digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    params = SynthParams(instruments=12, start="2020-01-01", end="2020-06-30", seed=5)
    write_synth(tmp_path / "a", params)
    write_synth(tmp_path / "b", params)
    write_synth(tmp_path / "c", SynthParams(instruments=12, start="2020-01-01", end="2020-06-30", seed=6))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_synthetic_market_contents(synth_small):
    p = LocalProvider(str(synth_small))
    cal = p.calendar()
    assert not any((d.month == 10 and d.day <= 7) or (d.month == 1 and d.day <= 3) for d in cal)
    all_codes = p.list_instruments("all", as_list=True)
    assert len(all_codes) == 30 and all_codes[0].startswith("SH60") and all_codes[-1].startswith("SZ00")
    csi = p.list_instruments("csi300")
    k = (2 * 30) // 3                                   # the most liquid two thirds, re-selected twice a year
    for day in cal[::25]:
        members = [c for c, spans in csi.items() if any(a <= day <= b for a, b in spans)]
        assert 0 < len(members) <= k
    assert len(csi) >= k
    fields = ["$open", "$high", "$low", "$close", "$volume", "$vwap", "$factor", "$change"]
    df = p.features("all", fields)
    ok = df.dropna()
    assert (ok["$high"] >= ok[["$open", "$close"]].max(axis=1) - 1e-4).all()
    assert (ok["$low"] <= ok[["$open", "$close"]].min(axis=1) + 1e-4).all()
    assert ((ok["$vwap"] >= ok["$low"] - 1e-4) & (ok["$vwap"] <= ok["$high"] + 1e-4)).all()
    assert df["$close"].isna().any()                               # suspensions are NaN rows
    raw_close = df["$close"] / df["$factor"]
    prev = raw_close.groupby(level="instrument").shift(1)
    consecutive = df["$change"].notna() & prev.notna()
    np.testing.assert_allclose(df["$change"][consecutive], (raw_close / prev - 1)[consecutive], atol=1e-5)
    assert (df["$change"].abs() <= 0.1 + 1e-5)[consecutive].all()
    bench = p.features([INDEX_CODE], ["$close", "Ref($close, -1)/$close - 1"])
    assert len(bench) == len(cal) and bench["$close"].notna().all()
    assert p.list_instruments("index", as_list=True) == [INDEX_CODE]


def test_limit_days_and_weak_real_predictability(tmp_path_factory):
    root = tmp_path_factory.mktemp("pred") / "q"
    write_synth(root, SynthParams(instruments=150, start="2018-01-01", end="2019-12-31", seed=11))
    p = LocalProvider(str(root))
    df = p.features("all", ["$change", "($close-$low)/($high-$low+1e-12)", "Ref($close, 20)/$close",
                            "Ref($close, -2)/Ref($close, -1) - 1"])
    assert ((df["$change"].abs() >= 0.095).mean()) > 0.0005      # the 9.5% limit rule triggers sometimes
    label = df.columns[-1]
    ic = {}
    for feat in df.columns[1:3]:
        daily = df[[feat, label]].dropna().groupby(level="datetime").apply(
            lambda g, feat=feat: g[feat].rank().corr(g[label].rank()))
        ic[feat] = (daily.mean(), daily.mean() / daily.std() * np.sqrt(len(daily)))
    kbar, mom = ic[df.columns[1]], ic[df.columns[2]]
    assert 0.005 < kbar[0] < 0.1 and kbar[1] > 2         # close near the high: alpha leak
    assert -0.1 < mom[0] < -0.003 and mom[1] < -1.5      # Ref(C,20)/C is inverse momentum


def test_check_finds_planted_problems(tmp_path):
    root = tmp_path / "q"
    write_synth(root, SynthParams(instruments=6, start="2020-01-01", end="2020-03-31", seed=1))
    runner = CliRunner()
    clean = runner.invoke(data_group, ["check", str(root), "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output)["ok"] is True
    code = "SH600000"
    path = binfmt.feature_path(root, code, "close")
    raw = np.fromfile(path, dtype="<f4")
    raw[10] = raw[9] * 3                                         # +200% jump
    raw.tofile(path)
    binfmt.feature_path(root, "SH600001", "vwap").unlink()     # missing field
    res = runner.invoke(data_group, ["check", str(root), "--json"])
    assert res.exit_code == 1
    report = json.loads(res.output)
    by_code = {i["code"]: i for i in report["instruments"]}
    assert by_code[code]["jumps"] and "+" in by_code[code]["jumps"][0]
    assert by_code["SH600001"]["missing_fields"] == ["vwap"]
    text = runner.invoke(data_group, ["check", str(root)])
    assert text.exit_code == 1 and "SH600000" in text.output and "vwap" in text.output
    nan_runs = runner.invoke(data_group, ["check", str(root), "--json", "--max-nan-run", "0"])
    assert nan_runs.exit_code == 1


def test_cli_synth_and_import_through_core_cli(tmp_path):
    try:
        from qexp.cli.main import get_cli
        cli = get_cli()                                  # the real `qexp` group, plugin commands added
    except ImportError:  # core CLI not there: a tiny group stands in
        import click

        @click.group()
        def cli() -> None:
            pass
        cli.add_command(data_group)
    runner = CliRunner()
    res = runner.invoke(cli, ["data", "synth", "--out", str(tmp_path / "s"), "--instruments", "5",
                              "--start", "2020-01-01", "--end", "2020-02-28", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert "5 instruments" in res.output
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "AAA.csv").write_text("date,close,high,low,open,volume\n2020-01-02,1,1,1,1,1\n"
                                              "2020-01-03,x,1,1,1,1\n")
    res = runner.invoke(cli, ["data", "import-csv", str(tmp_path / "csv"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "1 row(s) skipped" in res.output and "AAA.csv:3" in res.output
    res = runner.invoke(cli, ["data", "check", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "qexp data synth --out DIR" in res.output
    res = runner.invoke(cli, ["data", "synth", "--out", str(tmp_path / "x"), "--start", "2020-01-04",
                              "--end", "2020-01-04"])
    assert res.exit_code == 2 and "at least 2 trading days" in res.output


def test_provider_setup_and_lazy_synthetic(tmp_path, monkeypatch, edge_store):
    from qexp import data_api
    from qexp.plugins import load_plugins
    from qexp_data.provider_setup import configure
    load_plugins()
    consumed = configure({"provider_uri": {"day": str(edge_store)}, "region": "US", "kernels": 4,
                          "expression_cache": None})
    assert set(consumed) == {"provider_uri", "region", "kernels", "expression_cache"}
    assert data_api.get_region() == "us" and len(data_api.get_provider().calendar()) == 120
    configure({"provider_uri": f"file://{edge_store}"})
    assert data_api.get_region() == "cn"
    # a fresh cache folder (the reads above stored edge_store's calendar in the test's own)
    monkeypatch.setenv("QEXP_CACHE_DIR", str(tmp_path / "lazy_cache"))
    configure({"synth": {"instruments": 4, "start": "2020-01-01", "end": "2020-03-31"}})
    provider = data_api.get_provider()
    assert not provider.generated and not (tmp_path / "lazy_cache").exists()   # nothing until first data access
    assert len(provider.calendar()) > 50 and provider.generated
    # the synthetic folder, and the cache store (datasets/) holding its calendar
    folders = [p.name for p in (tmp_path / "lazy_cache").iterdir() if p.is_dir() and p.name != "datasets"]
    assert folders == [SynthParams(4, "2020-01-01", "2020-03-31").folder_name()]
    df = provider.features("csi300", ["$close"])
    assert df.index.names == ["datetime", "instrument"] and len(df) > 0
    data_api.set_provider(None)
