from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qexp_data import binfmt  # noqa: E402

N_DAYS = 120


def shared_sp500() -> Path:
    env = os.environ.get("QEXP_SHARED_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return base / "sp500_5yr" if (base / "sp500_5yr").is_dir() else base


def _write(root: Path, code: str, start: int, fields: dict[str, np.ndarray]) -> None:
    for name, values in fields.items():
        binfmt.write_bin(binfmt.feature_path(root, code, name), start, values)


def make_edge_store(root: Path) -> dict:
    """A small folder full of the cases that break naive engines: suspensions (NaN runs), late listing and
    early delisting, a flat (constant) price segment, ties, a 3-day history, a NaN first day, a missing
    vwap file, an all-NaN instrument and a second membership span."""
    rng = np.random.default_rng(7)
    cal = pd.bdate_range("2021-01-04", periods=N_DAYS)
    (root / "calendars").mkdir(parents=True)
    (root / "calendars" / "day.txt").write_text(binfmt.calendar_text(cal))

    def bars(n, base=20.0, tick=None):
        close = base * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        if tick:
            close = np.round(close / tick) * tick
        open_ = close * (1 + rng.normal(0, 0.01, n))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, n)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, n)))
        vol = rng.integers(1, 50, n) * 100.0
        return {"close": close, "open": open_, "high": high, "low": low, "volume": vol,
                "vwap": (high + low + close) / 3}

    spans = {}
    a = bars(N_DAYS)
    for v in a.values():
        v[50:57] = np.nan                                   # 7-day suspension
    _write(root, "SH600000", 0, a)
    spans["SH600000"] = [(cal[0], cal[-1])]

    b = bars(61, 10.0)
    for k in ("close", "open", "high", "low", "vwap"):
        b[k][20:35] = 10.0                                  # flat segment: constant windows
    b["volume"][20:35] = 500.0
    _write(root, "SH600001", 40, b)
    spans["SH600001"] = [(cal[40], cal[70]), (cal[80], cal[100])]

    c = bars(N_DAYS, 5.0, tick=0.5)                         # heavy ties
    c["volume"][rng.random(N_DAYS) < 0.2] = np.nan
    del c["vwap"]                                           # missing file -> all-NaN column
    _write(root, "SZ000001", 0, c)
    spans["SZ000001"] = [(cal[0], cal[-1])]

    d = bars(3)
    _write(root, "SZ000002", 10, d)                         # 3 days of history
    spans["SZ000002"] = [(cal[10], cal[12])]

    e = bars(90)
    for v in e.values():
        v[0] = np.nan                                       # first loaded value is NaN
        v[30:32] = np.nan
    _write(root, "SZ000003", 30, e)
    spans["SZ000003"] = [(cal[30], cal[-1])]

    f = {k: np.full(20, np.nan) for k in ("close", "open", "high", "low", "volume", "vwap")}
    _write(root, "SZ000004", 60, f)                         # all NaN
    spans["SZ000004"] = [(cal[60], cal[79])]

    (root / "instruments").mkdir()
    (root / "instruments" / "all.txt").write_text(binfmt.instruments_text(spans))
    (root / "instruments" / "csi300.txt").write_text(binfmt.instruments_text(
        {k: v for k, v in spans.items() if k in ("SH600000", "SH600001")}))
    return {"calendar": cal, "spans": spans}


@pytest.fixture(scope="session")
def edge_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("edge") / "qlib"
    make_edge_store(root)
    return root


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    from qexp_data.synth import SynthParams, write_synth
    root = tmp_path_factory.mktemp("synth") / "qlib"
    write_synth(root, SynthParams(instruments=30, start="2019-01-01", end="2020-06-30", seed=3))
    return root
