"""End-to-end LightGBM Alpha158 workflow on all 505 imported S&P 500 stocks, with the time of each phase.

    python benchmarks/bench_workflow.py [--data ../shared/data/sp500_5yr] [--cache]

train 2013-2015, valid 2016, test 2017-01-01..2018-02-07 (examples/benchmarks/LightGBM/
workflow_config_lightgbm_Alpha158_sp500.yaml). The CSV import is done once beforehand and timed apart.
The dataset cache is off unless --cache (a cold run is what Qlib's 60 s compares with).
Qlib 0.9.7 on this machine type with 2 worker processes: about 60 s (40 s dataset, 12 s fit, 6.6 s backtest).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158_sp500.yaml"
QLIB_SECONDS = {"total": 60.0, "dataset": 40.0, "fit LGBModel": 12.0, "PortAnaRecord": 6.6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sp500_5yr"))
    ap.add_argument("--cache", action="store_true", help="allow the on-disk dataset cache")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        raise SystemExit(f"S&P sample not found at {args.data}; pass --data DIR")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("QEXP_PROGRESS", "0")
    tmp = Path(tempfile.mkdtemp(prefix="qexp-bench-wf-"))
    os.environ["QEXP_CACHE_DIR"] = str(tmp / "cache")
    if not args.cache:
        os.environ["QEXP_DATASET_CACHE"] = "0"
    try:
        from qexp_data.importer import import_csv
        t0 = time.perf_counter()
        import_csv(args.data, tmp / "sp500", symbol_col="Name", progress=False)
        t_import = time.perf_counter() - t0

        from qexp import progress
        from qexp.workflow import load_workflow, run_workflow
        wf = load_workflow(CONFIG, [f"qlib_init.provider_uri={tmp / 'sp500'}"], "bench_workflow")
        progress.timings.clear()
        t0 = time.perf_counter()
        rec = run_workflow(wf, uri=str(tmp / "runs"))
        total = time.perf_counter() - t0
        phases = dict(progress.timings)
        m = rec.list_metrics()
        print(f"\nimport-csv of 505 files (once, not in the total): {t_import:.1f} s\n")
        print("| phase | qexp | Qlib 0.9.7 | ratio |")
        print("|---|---|---|---|")
        for name, secs in phases.items():
            q = QLIB_SECONDS.get(name)
            print(f"| {name} | {secs:.1f} s | {f'{q:.1f} s' if q else ''} | {f'{q / secs:.1f}x' if q else ''} |")
        print(f"| **total** | **{total:.1f} s** | {QLIB_SECONDS['total']:.0f} s | "
              f"{QLIB_SECONDS['total'] / total:.1f}x |")
        print(f"\nIC {m.get('IC', float('nan')):.4f}, Rank IC {m.get('Rank IC', float('nan')):.4f}, "
              f"annualized excess return with cost "
              f"{m.get('1day.excess_return_with_cost.annualized_return', float('nan')):.3f} (target total <= 20 s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
