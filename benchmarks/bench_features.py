"""Benchmark: Alpha158 / Alpha360 raw features for all 505 S&P 500 stocks, cold, from the dataset cache, and
by a naive per-instrument pandas implementation of the same expressions.

    .venv/bin/python benchmarks/bench_features.py [--instruments N] [--handlers Alpha158,Alpha360]
                                                  [--skip-naive] [--work DIR] [--check]

Steps:
1. The shared CSVs (``../shared/data/sp500_5yr`` or ``$QEXP_SHARED_DATA``) are imported into a Qlib-format
   folder with the data plugin's importer (``qexp data import-csv``: ``qexp_data.importer.import_csv``), once
   per ``--work`` folder (default: a temp folder).
2. Each measurement runs in a fresh subprocess, so its wall time and peak memory (``ru_maxrss``, which
   includes the interpreter and pandas: the baseline after imports is printed too) are its own:
   - ``cold``: ``Alpha158(instruments="all", ...)`` with an empty dataset cache (features computed by the
     provider's expression engine; the handler returns while a background thread writes the cache entry,
     whose remaining time is shown apart);
   - ``cached``: the same construction again, served from the cache;
   - ``naive``: the same expressions evaluated by the pandas peer below, one instrument at a time with a
     Python loop over the expressions (``Series.rolling`` per instrument; ``rolling.apply`` for IdxMax/IdxMin
     as Qlib's own Python path does).
   The handlers are built with no processors, so the time is the raw feature frame (158 + 1 label columns).
3. ``--check`` compares the engine's frame with the naive one column by column (share of values equal within
   rtol 1e-3 / atol 1e-5) on the first 50 instruments.

Targets on 2 cores: Alpha158 cold <= 4 s, cached <= 1 s, peak <= 3 GB, >= 10x faster than the naive peer.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
START, END = "2013-02-08", "2018-02-07"
RAW_FIELDS = ["open", "high", "low", "close", "volume", "vwap"]


def data_dir() -> Path:
    env = os.environ.get("QEXP_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data" / "sp500_5yr"


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    ``VmHWM`` is the high-water mark of this address space; ``ru_maxrss`` survives exec on Linux and would
    include the parent's peak, so it is only the fallback where /proc is missing.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---- the naive pandas peer ---------------------------------------------------------------------------
def _f(x):
    return x.astype(np.float64) if isinstance(x, pd.Series) else x


def _std_mask(x: pd.Series, d: int) -> pd.Series:
    return np.isclose(x.rolling(d, min_periods=1).std(), 0, atol=2e-5)


def _slope_parts(y: pd.Series, d: int):
    # least squares of y on time over the valid points of each window; the time origin cancels out
    t = pd.Series(np.arange(len(y), dtype=np.float64), index=y.index)
    valid = y.notna().astype(np.float64)
    yv = y.fillna(0.0)
    r = lambda s: s.rolling(d, min_periods=1).sum()  # noqa: E731
    n, sx, sy = r(valid), r(t * valid), r(yv)
    sxx, sxy, syy = r(t * t * valid), r(t * yv), r(yv * yv)
    return t, n, sx, sy, sxx, sxy, syy


def _slope(y, d):
    _, n, sx, sy, sxx, sxy, _ = _slope_parts(_f(y), d)
    return (n * sxy - sx * sy) / (n * sxx - sx * sx)


def _resi(y, d):
    y = _f(y)
    t, n, sx, sy, sxx, sxy, _ = _slope_parts(y, d)
    slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    return y - (slope * t + (sy / n - slope * sx / n))


def _rsquare(y, d):
    y = _f(y)
    _, n, sx, sy, sxx, sxy, syy = _slope_parts(y, d)
    r2 = (n * sxy - sx * sy) ** 2 / ((n * sxx - sx * sx) * (n * syy - sy * sy))
    return r2.mask(_std_mask(y, d))


def _corr(a, b, d):
    a, b = _f(a), _f(b)
    out = a.rolling(d, min_periods=1).corr(b)
    return out.mask(_std_mask(a, d) | _std_mask(b, d))


NAIVE_OPS = {
    "Ref": lambda x, n: _f(x).shift(n),
    "Mean": lambda x, d: _f(x).rolling(d, min_periods=1).mean(),
    "Sum": lambda x, d: _f(x).rolling(d, min_periods=1).sum(),
    "Std": lambda x, d: _f(x).rolling(d, min_periods=1).std(),
    "Max": lambda x, d: _f(x).rolling(d, min_periods=1).max(),
    "Min": lambda x, d: _f(x).rolling(d, min_periods=1).min(),
    "Quantile": lambda x, d, q: _f(x).rolling(d, min_periods=1).quantile(q),
    "Rank": lambda x, d: _f(x).rolling(d, min_periods=1).rank(pct=True),
    "IdxMax": lambda x, d: _f(x).rolling(d, min_periods=1).apply(lambda a: a.argmax() + 1, raw=True),
    "IdxMin": lambda x, d: _f(x).rolling(d, min_periods=1).apply(lambda a: a.argmin() + 1, raw=True),
    "Slope": _slope, "Resi": _resi, "Rsquare": _rsquare, "Corr": _corr,
    "Greater": lambda a, b: np.maximum(_f(a), _f(b)), "Less": lambda a, b: np.minimum(_f(a), _f(b)),
    "Abs": lambda x: _f(x).abs(), "Log": lambda x: np.log(_f(x)),
}


def naive_features(raw: pd.DataFrame, exprs: list[str], names: list[str]) -> pd.DataFrame:
    """Evaluate ``exprs`` per instrument with pandas: ``raw`` holds the raw fields, indexed (datetime, instrument)."""
    compiled = [compile(re.sub(r"\$(\w+)", r'F["\1"]', e), e, "eval") for e in exprs]
    parts = []
    for code, g in raw.groupby(level="instrument", sort=True):
        frame = g.droplevel("instrument")
        cols = {}
        for name, code_obj in zip(names, compiled):
            val = eval(code_obj, dict(NAIVE_OPS), {"F": frame})  # noqa: S307 - fixed benchmark expressions
            cols[name] = _f(val).astype(np.float32)
        out = pd.DataFrame(cols, index=frame.index)
        out["instrument"] = code
        parts.append(out.set_index("instrument", append=True))
    return pd.concat(parts).sort_index()


# ---- measurements (each in its own process) ------------------------------------------------------------
def handler_exprs(name: str) -> tuple[list[str], list[str]]:
    from qexp_data import alpha
    cls = getattr(alpha, name)
    if name.startswith("Alpha158"):
        exprs, names = alpha.Alpha158DL.get_feature_config()
    else:
        exprs, names = alpha.Alpha360DL.get_feature_config()
    label_exprs, label_names = cls.get_label_config(None)
    return exprs + label_exprs, names + label_names


def measure(kind: str, handler: str, provider_uri: str, n_inst: int | None) -> dict:
    from qexp import data_api
    from qexp_data import alpha
    from qexp_data.provider import LocalProvider
    provider = LocalProvider(provider_uri)
    data_api.set_provider(provider, "us")
    codes = provider.list_instruments("all", as_list=True)
    instruments = "all" if n_inst is None else codes[:n_inst]
    base = peak_rss_mb()
    t0 = time.perf_counter()
    if kind in ("cold", "cached"):
        h = getattr(alpha, handler)(instruments=instruments, start_time=START, end_time=END,
                                    infer_processors=[], learn_processors=[])
        shape = h.fetch(data_key="raw").shape
    elif kind == "naive":
        raw = provider.features(instruments, [f"${f}" for f in RAW_FIELDS], START, END)
        raw.columns = RAW_FIELDS
        exprs, names = handler_exprs(handler)
        shape = naive_features(raw, exprs, names).shape
    else:
        raise ValueError(kind)
    wall = time.perf_counter() - t0
    # a new cache entry is written by a background thread after the frame is returned: time it apart
    from qexp_data import cache
    t1 = time.perf_counter()
    cache.wait_for_writes()
    write = time.perf_counter() - t1
    return {"kind": kind, "handler": handler, "wall_s": wall, "write_s": write, "peak_mb": peak_rss_mb(),
            "base_mb": base, "rows": shape[0], "cols": shape[1]}


def run_child(kind: str, handler: str, provider_uri: str, cache_dir: Path, n_inst: int | None) -> dict:
    env = dict(os.environ, QEXP_CACHE_DIR=str(cache_dir), QEXP_PROGRESS="0")
    cmd = [sys.executable, __file__, "--measure", kind, "--handler", handler, "--provider-uri", provider_uri]
    if n_inst is not None:
        cmd += ["--instruments", str(n_inst)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {handler} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def check(handler: str, provider_uri: str, n_inst: int) -> list[tuple[str, float]]:
    """Columns where the engine and the naive peer agree on fewer than 99.9% of values."""
    from qexp import data_api
    from qexp_data import alpha
    from qexp_data.provider import LocalProvider
    provider = LocalProvider(provider_uri)
    data_api.set_provider(provider, "us")
    codes = provider.list_instruments("all", as_list=True)[:n_inst]
    h = getattr(alpha, handler)(instruments=codes, start_time=START, end_time=END, infer_processors=[],
                                learn_processors=[], cache=False)
    engine = h.fetch(data_key="raw")
    raw = provider.features(codes, [f"${f}" for f in RAW_FIELDS], START, END)
    raw.columns = RAW_FIELDS
    exprs, names = handler_exprs(handler)
    naive = naive_features(raw, exprs, names).reindex(engine.index)
    bad = []
    for name in names:
        a, b = engine[name].to_numpy(np.float64), naive[name].to_numpy(np.float64)
        ok = np.isclose(a, b, rtol=1e-3, atol=1e-5, equal_nan=True)
        share = float(ok.mean())
        if share < 0.999:
            bad.append((name, share))
    return bad


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]


def import_data(work: Path) -> Path:
    dst = work / "sp500_qlib"
    if (dst / "calendars" / "day.txt").is_file():
        return dst
    from qexp_data.importer import import_csv
    src = data_dir()
    if not src.is_dir():
        raise SystemExit(f"the S&P 500 CSVs are not at {src}; set QEXP_SHARED_DATA to their folder")
    t0 = time.perf_counter()
    report = import_csv(src, dst, symbol_col="Name", progress=False)
    print(f"imported {report.symbols} symbols x {report.days} days into {dst} in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instruments", type=int, default=None, help="first N instruments (default: all)")
    ap.add_argument("--handlers", default="Alpha158,Alpha360")
    ap.add_argument("--repeat", type=int, default=3, help="runs of cold and cached (median reported)")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--check", action="store_true", help="compare engine and naive values (50 instruments)")
    ap.add_argument("--work", default=None, help="folder for the imported data and caches (default: temp)")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--handler", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--provider-uri", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))

    if args.measure:
        print(json.dumps(measure(args.measure, args.handler, args.provider_uri, args.instruments)))
        return 0

    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="qexp-bench-features-")
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    uri = str(import_data(work))
    rows = []
    for handler in args.handlers.split(","):
        colds, cacheds = [], []
        for _ in range(max(1, args.repeat)):
            # every cold run starts from an empty cache; the cached run reads what it wrote
            cache_dir = Path(tempfile.mkdtemp(prefix=f"cache-{handler}-", dir=work))
            colds.append(run_child("cold", handler, uri, cache_dir, args.instruments))
            cacheds.append(run_child("cached", handler, uri, cache_dir, args.instruments))
            shutil.rmtree(cache_dir, ignore_errors=True)
        cold, cached = _median_run(colds), _median_run(cacheds)
        naive = None if args.skip_naive else run_child("naive", handler, uri, work, args.instruments)
        for r in (cold, cached, naive):
            if r is not None:
                r["vs_naive"] = naive["wall_s"] / r["wall_s"] if naive else None
                rows.append(r)
        print(f"{handler}: cold {[round(r['wall_s'], 2) for r in colds]} s, cached "
              f"{[round(r['wall_s'], 2) for r in cacheds]} s" + (f", naive {naive['wall_s']:.1f} s" if naive else ""),
              file=sys.stderr)
        if args.check:
            bad = check(handler, uri, 50)
            print(f"{handler} check: {'all columns agree' if not bad else bad}", file=sys.stderr)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    n = args.instruments or "all 505"
    print(f"\nRaw features, {n} S&P 500 stocks x 1259 days, {os.cpu_count()} CPUs (load average {load:.1f} at the "
          f"end); cold and cached: median of {max(1, args.repeat)} runs; peak = max RSS of the measuring process, "
          f"baseline after imports in brackets\n")
    print("| handler | run | wall (s) | peak RSS (MB) | rows x cols | speed-up vs naive pandas |")
    print("|---|---|---:|---:|---|---:|")
    labels = {"cold": "cold: expression engine", "cached": "from the dataset cache", "naive": "naive pandas peer"}
    for r in rows:
        ratio = f"{r['vs_naive']:.1f}x" if r.get("vs_naive") else "-"
        wall = f"{r['wall_s']:.2f}"
        if r["kind"] == "cold" and r.get("write_s", 0) > 0.005:
            wall += f" (+{r['write_s']:.2f} cache write, in the background)"
        print(f"| {r['handler']} | {labels[r['kind']]} | {wall} | {r['peak_mb']:.0f} "
              f"({r['base_mb']:.0f}) | {r['rows']} x {r['cols']} | {ratio} |")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
