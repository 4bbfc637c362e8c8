"""Benchmark: TopkDropout(topk=50, n_drop=5) over one year of all 505 S&P 500 stocks with random scores.

    .venv/bin/python benchmarks/bench_backtest.py [--start 2017-01-01] [--end 2017-12-31] [--repeat 5]

Prices come from the shared CSVs (``../shared/data/sp500_5yr`` or ``$QEXP_SHARED_DATA``), read with pandas into
a quote frame (``$close``, ``$change``, ``$factor`` = 1); the data plugin's provider is used instead when
``--provider-uri`` names a Qlib-format folder of the same data (then the timed backtest reads its prices
from the provider itself, e.g. a folder made by ``qexp_data.importer.import_csv``). Exchange settings are Qlib's benchmark ones
(9.5% limit, close price, 5/15 bp costs, minimum 5, lots of 100). The benchmark return is the equal-weighted
mean of the stocks' daily returns. The timed call is ``qexp_records.backtest.backtest`` end to end: pivoting
the quotes, aligning the signal, simulating every day and building the report, positions and indicators.
Qlib's reference time for this workload is 6.6 s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

QLIB_SECONDS = 6.6


def data_dir() -> Path:
    env = os.environ.get("QEXP_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sp500_5yr"


def load_quote(folder: Path, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The CSVs (``date,open,high,low,close,volume,Name``) as a quote frame indexed (datetime, instrument)."""
    frames = []
    for path in sorted(folder.glob("*.csv")):
        df = pd.read_csv(path, usecols=["date", "close", "Name"], parse_dates=["date"])
        df = df.dropna(subset=["Name"]).drop_duplicates("date").sort_values("date")
        # $change over the file's own rows, computed before cutting the window so the first day has one
        df["$change"] = df["close"] / df["close"].shift(1) - 1
        df = df[(df["date"] >= start - pd.Timedelta(days=10)) & (df["date"] <= end)]
        frames.append(df.rename(columns={"date": "datetime", "Name": "instrument", "close": "$close"}))
    q = pd.concat(frames, ignore_index=True)
    q["$factor"] = 1.0
    q = q.set_index(["datetime", "instrument"]).sort_index()
    return q[["$close", "$change", "$factor"]].astype("float32")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--start", default="2017-01-01")
    ap.add_argument("--end", default="2017-12-31")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--provider-uri", default=None, help="A Qlib-format folder of the same data (optional).")
    args = ap.parse_args()
    start, end = pd.Timestamp(args.start), pd.Timestamp(args.end)

    from qexp_records.backtest import SimulatorExecutor, TopkDropoutStrategy, backtest

    t0 = time.perf_counter()
    if args.provider_uri:
        import qexp
        qexp.init(provider_uri=args.provider_uri, region="us")
        from qexp.data_api import get_provider
        prov = get_provider()
        codes = prov.list_instruments("all", start, end, as_list=True)
        quote = prov.features(codes, ["$close", "$change", "$factor"], start - pd.Timedelta(days=10), end)
        source = f"provider {args.provider_uri} (read inside the timed backtest)"
    else:
        folder = data_dir()
        if not folder.is_dir():
            print(f"S&P data not found at {folder}; set QEXP_SHARED_DATA to the folder of the CSVs", file=sys.stderr)
            return 2
        quote = load_quote(folder, start, end)
        source = f"CSVs in {folder}"
    load_s = time.perf_counter() - t0

    dates = quote.index.get_level_values(0).unique()
    cal = dates[(dates >= start) & (dates <= end)]
    codes = sorted(quote.index.get_level_values(1).unique())
    # random scores for every stock on every day, including the trading day before the start (it drives day 1)
    pred_dates = dates[(dates >= dates[dates < cal[0]][-1]) & (dates <= end)]
    rng = np.random.default_rng(args.seed)
    idx = pd.MultiIndex.from_product([pred_dates, codes], names=["datetime", "instrument"])
    pred = pd.DataFrame({"score": rng.random(len(idx))}, index=idx)
    ret = quote["$change"].astype("float64")
    bench = ret.groupby(level="datetime").mean()

    exchange_kwargs = {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015,
                       "min_cost": 5, "trade_unit": 100}
    times = []
    report = None
    for _ in range(args.repeat):
        strategy = TopkDropoutStrategy(signal=pred, topk=50, n_drop=5)
        executor = SimulatorExecutor(time_per_step="day", generate_portfolio_metrics=True)
        t = time.perf_counter()
        pf, _ = backtest(cal[0], cal[-1], strategy, executor, benchmark=bench, account=1e8,
                         exchange_kwargs=exchange_kwargs, quote=None if args.provider_uri else quote)
        times.append(time.perf_counter() - t)
        report = pf["1day"][0]
    best, med = min(times), statistics.median(times)
    n_days = len(report)
    print(f"data: {source}: {len(codes)} stocks, {n_days} trading days {cal[0].date()}..{cal[-1].date()} "
          f"(loaded in {load_s:.2f} s, not timed)")
    print(f"TopkDropout(topk=50, n_drop=5), random scores, {args.repeat} runs: best {best:.3f} s, median {med:.3f} s")
    print(f"per trading day: {best / n_days * 1e3:.2f} ms; Qlib {QLIB_SECONDS} s -> {QLIB_SECONDS / best:.1f}x faster")
    print(f"final account {report['account'].iloc[-1]:,.0f}, total cost {report['total_cost'].iloc[-1]:,.0f}, "
          f"mean daily turnover {report['turnover'].mean():.3f}")
    print()
    print("| workload | qexp best (median) | per day | Qlib | speed-up |")
    print("|---|---|---|---|---|")
    print(f"| TopkDropout 50/5, {len(codes)} stocks, {n_days} days | {best:.3f} s ({med:.3f} s) | "
          f"{best / n_days * 1e3:.2f} ms | {QLIB_SECONDS} s | {QLIB_SECONDS / best:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
