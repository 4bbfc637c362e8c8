"""Executors side by side: LightGBM Alpha158 runs on local vs process://2 vs a Dask cluster of 2 single-thread
workers, the executor overhead per run, and a sweep against separate `qexp run` calls.

    python benchmarks/bench_executors.py [--data ../shared/data/sp500_5yr] [--quick] [--parts runs,overhead,sweep]

1. ``runs``: 8 LightGBM Alpha158 runs (``num_threads=1``, each its own learning rate) on a 100-stock slice of the
   imported S&P data (examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158_sp500.yaml), through
   ``qexp.multirun.run_many`` on each executor; wall seconds from creating the executor (pool and cluster start
   included) to the last result, and the speed-up over local. Target: >= 1.7x with 2 workers on 2 cores.
2. ``overhead``: N no-op runs (a run started and ended through R) on each executor, warm, minus the same runs
   in this process; per run. Target: < 50 ms.
3. ``sweep``: 8 LightGBM trials on all 505 stocks as one ``qexp sweep`` (local executor: one process, the
   dataset built once, LightGBM's binned Dataset reused) against 8 separate ``qexp run`` processes with the same
   parameters. Target: >= 1.3x.

The on-disk dataset cache is off (cold runs, as a first sweep sees them) unless --cache. ``--quick`` shrinks
every part (fewer stocks, runs and rounds) to prove the script works on a busy machine; its numbers are not
the targets' sizes.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158_sp500.yaml"
LEARNING_RATES = [0.05, 0.08, 0.1, 0.12, 0.15, 0.18, 0.2, 0.25]


def noop_run() -> None:
    """The smallest real run (imports inside: Dask ships a __main__ function by value)."""
    from qexp import R
    with R.start(experiment_name="noop"):
        pass


def import_slice(src: Path, dst: Path, n: int | None) -> Path:
    from qexp_data.importer import import_csv
    files = sorted(src.glob("*.csv"))
    if n is not None:
        subset = dst.parent / f"csv{n}"
        subset.mkdir(parents=True, exist_ok=True)
        for f in files[:n]:
            os.symlink(f, subset / f.name)
        src = subset
    import_csv(str(src), dst, symbol_col="Name", progress=False)
    return dst


def base_overrides(data: Path, rounds: int | None) -> list[str]:
    out = [f"qlib_init.provider_uri={data}", "task.model.kwargs.num_threads=1",
           "port_analysis_config.strategy.kwargs.topk=20",
           "task.record.2.kwargs.config.strategy.kwargs.topk=20"]
    if rounds:
        out.append(f"task.model.kwargs.num_boost_round={rounds}")
    return out


def part_runs(data: Path, tmp: Path, n_runs: int, rounds: int | None) -> None:
    import yaml

    from qexp.multirun import FINISHED, run_many
    from qexp.workflow import load_workflow
    paths = []
    for i, lr in enumerate(LEARNING_RATES[:n_runs]):
        wf = load_workflow(CONFIG, base_overrides(data, rounds) + [f"task.model.kwargs.learning_rate={lr}"])
        p = tmp / f"run{i}.yaml"
        p.write_text(yaml.safe_dump(wf.config, sort_keys=False))
        paths.append(str(p))
    rows = []
    for name, uri in (("local", "local"), ("process://2", "process://2"), ("Dask, 2 workers x 1 thread",
                                                                            "dask+local://2?threads=1")):
        t0 = time.perf_counter()
        got = run_many(paths, uri, uri=str(tmp / f"runs-{name.split(',')[0].replace('://', '')}"),
                       experiment_name="bench_executors")
        secs = time.perf_counter() - t0
        bad = [r for r in got if r.state != FINISHED]
        if bad:
            raise SystemExit(f"{name}: {len(bad)} run(s) failed: {bad[0].error}")
        rows.append((name, secs, [round(r.metrics.get("IC", float("nan")), 6) for r in got]))
    local = rows[0][1]
    print(f"\n{n_runs} LightGBM Alpha158 runs, num_threads=1 (pool / cluster start included)\n")
    print("| executor | seconds | speed-up |")
    print("|---|---|---|")
    for name, secs, _ in rows:
        print(f"| {name} | {secs:.1f} | {local / secs:.2f}x |")
    same = all(r[2] == rows[0][2] for r in rows)
    print(f"\nsame IC on every executor: {same}")


def part_overhead(tmp: Path, n: int) -> None:
    import qexp
    from qexp.executor import get_executor
    qexp.init(uri=str(tmp / "noop"))
    noop_run()  # the store and the experiment exist before timing
    t0 = time.perf_counter()
    for _ in range(n):
        noop_run()
    inline = (time.perf_counter() - t0) / n
    print(f"\nexecutor overhead per no-op run ({n} runs, warm; a no-op run in this process: {inline * 1e3:.1f} ms)\n")
    print("| executor | start | per run | overhead per run |")
    print("|---|---|---|---|")
    for uri in ("local", "process://2", "dask+local://2?threads=1"):
        t0 = time.perf_counter()
        ex = get_executor(uri)
        for f in [ex.submit(noop_run) for _ in range(ex.max_workers * 2)]:  # every worker warm
            f.result()
        start = time.perf_counter() - t0
        t0 = time.perf_counter()
        futures = [ex.submit(noop_run) for _ in range(n)]
        for f in ex.as_completed(futures):
            f.result()
        per = (time.perf_counter() - t0) / n
        workers = ex.max_workers
        ex.shutdown()
        # with W workers, N runs take N/W run-times at best: the overhead is what a run costs beyond that
        overhead = per - inline / workers
        print(f"| {uri} | {start:.1f} s | {per * 1e3:.1f} ms | {overhead * 1e3:.1f} ms |")


def part_sweep(data: Path, tmp: Path, trials: int, rounds: int | None) -> None:
    import yaml

    from qexp_sweep.driver import run_sweep
    lrs = LEARNING_RATES[:trials]
    space = tmp / "space.yaml"
    space.write_text(yaml.safe_dump({"method": "grid", "metric": {"name": "IC", "goal": "maximize"},
                                     "parameters": {"task.model.kwargs.learning_rate": {"values": lrs}}}))
    overrides = base_overrides(data, rounds)
    env = dict(os.environ, QEXP_PROGRESS="0")
    t0 = time.perf_counter()
    for lr in lrs:
        cmd = [sys.executable, "-m", "qexp", "run", str(CONFIG), "--uri", str(tmp / "separate"),
               "--experiment-name", "separate", "--set", f"task.model.kwargs.learning_rate={lr}"]
        for o in overrides:
            cmd += ["--set", o]
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    separate = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = run_sweep(str(CONFIG), str(space), uri=str(tmp / "sweep"), overrides=overrides,
                       experiment_name="sweep", echo=lambda line: None)
    swept = time.perf_counter() - t0
    if result.ran != len(lrs):
        raise SystemExit(f"the sweep ran {result.ran} trials of {len(lrs)}")
    reused = sum(t.dataset_reused for t in result.trials)
    print(f"\n{len(lrs)} LightGBM trials on the imported data: one sweep (dataset built once, reused by "
          f"{reused} trials) vs separate `qexp run` processes\n")
    print("| | seconds | ratio |")
    print("|---|---|---|")
    print(f"| {len(lrs)} x qexp run | {separate:.1f} | 1.00x |")
    print(f"| qexp sweep, {len(lrs)} trials | {swept:.1f} | {separate / swept:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sp500_5yr"))
    ap.add_argument("--parts", default="runs,overhead,sweep")
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script on a busy machine")
    ap.add_argument("--cache", action="store_true", help="allow the on-disk dataset cache")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        raise SystemExit(f"S&P sample not found at {args.data}; pass --data DIR")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("QEXP_PROGRESS", "0")
    os.environ.setdefault("QEXP_LOG_LEVEL", "WARNING")
    if not args.cache:
        os.environ["QEXP_DATASET_CACHE"] = "0"
    # workers (spawned, Dask) need the sweep plugin and must find this file's no-op run
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "benchmarks"),
                                                           os.environ.get("PYTHONPATH", "")) if p)
    stocks, runs, rounds, sweep_stocks, trials, noops = 100, 8, None, None, 8, 200
    if args.quick:
        stocks, runs, rounds, sweep_stocks, trials, noops = 30, 4, 30, 60, 3, 40
    tmp = Path(tempfile.mkdtemp(prefix="qexp-bench-exec-"))
    os.environ["QEXP_CACHE_DIR"] = str(tmp / "cache")
    parts = set(args.parts.split(","))
    try:
        if "runs" in parts:
            part_runs(import_slice(Path(args.data), tmp / "data_slice", stocks), tmp, runs, rounds)
        if "overhead" in parts:
            part_overhead(tmp, noops)
        if "sweep" in parts:
            part_sweep(import_slice(Path(args.data), tmp / "data_all", sweep_stocks), tmp, trials, rounds)
        print("\nThe machine may be shared: re-measure on a quiet one before quoting these numbers.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
