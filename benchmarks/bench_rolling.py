"""Rolling LightGBM Alpha158 over the 505 imported S&P 500 stocks, beside Qlib's own, and the task queue's throughput.

    python benchmarks/bench_rolling.py [--data ../shared/data/sp500_5yr] [--qlib-python /tmp/qlibvenv/bin/python]
                                       [--instruments N] [--rounds K] [--quick] [--skip-rolling] [--skip-queue]

Rolling: the workflow benchmark's config (examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158_sp500.yaml),
`qexp rolling --step 63 --horizon 1`: five windows over 2017-01 .. 2018-02, on the `local` executor and on
`process://2`, seconds per phase. The dataset cache is off (a cold run); the CSV import is done once beforehand
and timed apart. With `--qlib-python`, a Python with pyqlib 0.9.7 runs Qlib's own `qlib.contrib.rolling` (Rolling:
RollingGen + TrainerR + RecorderCollector + RollingEnsemble, with its handler cache) on the same imported folder
(pyqlib reads qexp's data folder as its own), and the table sets both side by side: task segments, each window's IC,
the combined IC and its difference (target: the same segments, IC within 0.0005), and seconds per phase (the fits
are LightGBM's own time; the target is everything else <= 8 s on the full data).

Two things Qlib 0.9.7 cannot do here, so both sides are set up alike: its TimeAdjuster.truncate asserts that a
segment does not start on the calendar's first day (`assert tp_idx > 0`), and the config's train segment starts on
2013-02-08, the first day of the data: both sides train from 2013-02-11 (`--train-start`). Its PortAnaRecord
replaces a null benchmark with SH000300, which the S&P data does not have, so Qlib's backtest record fails and only
the signal metrics are compared (qexp runs the backtest without a benchmark).

`--instruments N` imports only the first N symbols and `--rounds K` caps LightGBM's num_boost_round, on both
sides (the machine is shared: a reduced run proves the comparison; the lead re-measures the full one).

Queue: 10,000 no-op tasks pulled by 4 processes (fetch + commit each) from SQLite and from PostgreSQL (a database
made for the run on 127.0.0.1:5432 and dropped after); target >= 500 tasks/s on PostgreSQL.
`--quick`: 2,000 queue tasks and the local rolling only.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158_sp500.yaml"
FIT = "fit LGBModel"
STEP, HORIZON = 63, 1
TRAIN_START = "2013-02-11"  # Qlib cannot roll a segment that starts on the calendar's first day (2013-02-08)
PEER = Path(__file__).resolve().parent / "_qlib_rolling_peer.py"


# ---- rolling ---------------------------------------------------------------------------------------
def run_rolling(data: Path, store: Path, executor: str, rounds: int | None = None) -> dict:
    from qexp import progress
    from qexp.task.rolling import Rolling
    from qexp.task.utils import forget_shared_handlers
    forget_shared_handlers()
    progress.timings.clear()
    t0 = time.perf_counter()
    overrides = [f"qlib_init.provider_uri={data}"]
    if rounds:
        overrides.append(f"task.model.kwargs.num_boost_round={rounds}")
    rolling = Rolling(CONFIG, exp_name=f"bench_{executor.split(':')[0]}", horizon=HORIZON, step=STEP,
                      executor=executor, uri=str(store), overrides=overrides, train_start=TRAIN_START)
    rec = rolling.run()
    total = time.perf_counter() - t0
    phases: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for name, secs in progress.timings:
        phases[name] += secs
        counts[name] += 1
    fits = phases.get(FIT, 0.0)
    segments = [t["dataset"]["kwargs"]["segments"]["test"] for t in rolling._tasks]
    tasks = [{k: [_day(d) for d in v] for k, v in t["dataset"]["kwargs"]["segments"].items()} for t in rolling._tasks]
    return {"total": total, "phases": dict(phases), "counts": dict(counts), "fits": fits, "rec": rec,
            "windows": len(segments), "segments": segments, "tasks": tasks, "ics": rolling.window_ics}


def _day(ts: object) -> str | None:
    import pandas as pd
    return None if ts is None else str(pd.Timestamp(ts).date())


def print_rolling(executor: str, r: dict) -> None:
    m = r["rec"].list_metrics()
    outside = r["total"] - r["fits"]
    print(f"\n### rolling on `{executor}`: {r['windows']} windows, {r['total']:.1f} s\n")
    print("| phase | calls | seconds |")
    print("|---|---:|---:|")
    for name, secs in r["phases"].items():
        print(f"| {name} | {r['counts'][name]} | {secs:.1f} |")
    if executor != "local":
        print("\n(the fits ran in the workers: their phases are not timed here; 'outside the fits' is not measured "
              "for this executor)")
    else:
        print(f"\noutside the fits: {outside:.1f} s (target <= 8 s on the full data)")
    print("\nwindows (test segments) and IC: " + "; ".join(
        f"{s[0].date()}..{s[1].date() if s[1] is not None else 'open'} {ic:.4f}" for s, ic in zip(r["segments"], r["ics"])))
    print(f"combined: IC {m.get('IC', float('nan')):.4f}, Rank IC {m.get('Rank IC', float('nan')):.4f}, "
          f"annualized excess return with cost {m.get('1day.excess_return_with_cost.annualized_return', float('nan')):.3f}")


# ---- Qlib's own rolling, side by side ------------------------------------------------------------------
def run_qlib(python: str, data: Path, work: Path, rounds: int | None) -> tuple[dict | None, str]:
    """Qlib 0.9.7's contrib.rolling on the same folder in ``python``; (its results, '') or (None, why not)."""
    if not Path(python).exists():
        return None, f"{python} does not exist (give --qlib-python a Python with pyqlib 0.9.7 installed)"
    check = subprocess.run([python, "-c", "import qlib; print(qlib.__version__)"], capture_output=True, text=True)
    if check.returncode != 0:
        return None, f"{python} cannot import qlib: {(check.stderr.strip().splitlines() or ['?'])[-1]}"
    out = work / "qlib.json"
    ext = json.dumps({"model": {"kwargs": {"num_boost_round": rounds}}}) if rounds else ""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QEXP_")}
    done = subprocess.run([python, str(PEER), str(data), str(CONFIG), str(STEP), str(HORIZON), str(work / "qlib"),
                           str(out), ext, TRAIN_START], capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out.exists():
        tail = "\n    ".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        return None, f"Qlib's rolling failed (exit {done.returncode}):\n    {tail}"
    return json.loads(out.read_text()), ""


def print_side_by_side(r: dict, q: dict) -> None:
    m = r["rec"].list_metrics()
    same = r["tasks"] == q["tasks"]
    print(f"\n### qexp and Qlib {q['qlib_version']} side by side (`local`, the same data folder)\n")
    print(f"task segments: {'the same' if same else 'DIFFERENT'} ({len(r['tasks'])} tasks here, {len(q['tasks'])} in Qlib)")
    if not same:
        for i, (a, b) in enumerate(zip(r["tasks"], q["tasks"])):
            if a != b:
                print(f"  task {i}: qexp {a} / Qlib {b}")
    print("\n| window (test) | qexp IC | Qlib IC | diff |")
    print("|---|---:|---:|---:|")
    for t, ic, w in zip(r["tasks"], r["ics"], q["windows"]):
        test = f"{t['test'][0]}..{t['test'][1] or 'open'}"
        print(f"| {test} | {ic:.6f} | {w['ic']:.6f} | {ic - w['ic']:+.6f} |")
    ours, theirs = m.get("IC", float("nan")), q["metrics"].get("IC", float("nan"))
    diff = ours - theirs
    print(f"| **combined IC** | **{ours:.6f}** | **{theirs:.6f}** | **{diff:+.6f}** "
          f"({'within' if abs(diff) <= 0.0005 else 'NOT within'} 0.0005) |")
    if q.get("records_error"):
        print(f"\n(Qlib's records on the combined run stopped: {q['records_error']}; its IC is SigAnaRecord's "
              f"when that ran first, else computed from the combined predictions the same way)")
    qfits = sum(q["fits"])
    qtotal, total = q["total"], r["total"]
    data = r["phases"].get("handler (features, once for all windows)", 0.0) + r["phases"].get("dataset", 0.0)
    qdata = q["phases"].get("handler (features) + task list", 0.0)
    print("\n| seconds | qexp | Qlib | Qlib / qexp |")
    print("|---|---:|---:|---:|")
    print(f"| features (the handler, once) + per-window datasets | {data:.1f} | {qdata:.1f} (handler only; its "
          f"per-window datasets are inside the training below) | |")
    print(f"| the {len(q['fits'])} LightGBM fits | {r['fits']:.1f} | {qfits:.1f} | {qfits / max(r['fits'], 1e-9):.2f}x |")
    print(f"| **outside the fits** | **{total - r['fits']:.1f}** | **{qtotal - qfits:.1f}** | "
          f"{(qtotal - qfits) / max(total - r['fits'], 1e-9):.2f}x |")
    print(f"| total | {total:.1f} | {qtotal:.1f} | {qtotal / max(total, 1e-9):.2f}x |")
    print("\nQlib's phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in q["phases"].items()))


# ---- the queue -------------------------------------------------------------------------------------
def _pull(pool: str, uri: str, start, counts) -> None:
    from qexp.task import TaskManager
    tm = TaskManager(pool, uri=uri)
    start.wait()
    n = 0
    for task in tm.task_fetcher_iter():
        tm.commit_task_res(task, None)
        n += 1
    counts.put(n)


def queue_throughput(uri: str, n_tasks: int, n_procs: int) -> dict:
    from qexp.task import TaskManager
    pool = f"bench-{uuid.uuid4().hex[:6]}"
    tm = TaskManager(pool, uri=uri)
    t0 = time.perf_counter()
    tm.create_task([{"i": i} for i in range(n_tasks)])
    insert = time.perf_counter() - t0
    ctx = multiprocessing.get_context("spawn")
    start, counts = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_pull, args=(pool, uri, start, counts)) for _ in range(n_procs)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # let the spawned workers import qexp before the clock starts
    t0 = time.perf_counter()
    start.set()
    done = [counts.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    stat = tm.task_stat()
    return {"insert_s": insert, "seconds": elapsed, "per_s": n_tasks / elapsed, "per_worker": done, "stat": stat}


def print_queue(rows: list[tuple[str, dict]], n_tasks: int, n_procs: int) -> None:
    print(f"\n### task queue: {n_tasks:,} no-op tasks, {n_procs} processes (fetch + commit each)\n")
    print("| store | create_task | pulled in | tasks/s | per worker | target |")
    print("|---|---:|---:|---:|---|---|")
    for name, r in rows:
        target = ">= 500/s" if name == "postgresql" else ""
        print(f"| {name} | {r['insert_s']:.2f} s | {r['seconds']:.2f} s | {r['per_s']:,.0f} | {r['per_worker']} | {target} |")
        assert r["stat"] == {"done": n_tasks}, r["stat"]


def pg_database() -> tuple[str, object] | None:
    try:
        import psycopg2
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)
    except Exception as exc:
        print(f"\n(PostgreSQL not reachable on 127.0.0.1:5432: {exc}; its queue row is skipped)")
        return None
    admin.autocommit = True
    name = f"qexp_bench_{uuid.uuid4().hex[:8]}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@127.0.0.1:5432/{name}", admin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "sp500_5yr"))
    ap.add_argument("--quick", action="store_true", help="2,000 queue tasks; the local rolling only")
    ap.add_argument("--skip-rolling", action="store_true", help="only the queue")
    ap.add_argument("--skip-queue", action="store_true", help="only the rolling")
    ap.add_argument("--qlib-python", default=None, help="a Python with pyqlib 0.9.7: run Qlib's contrib.rolling "
                    "on the same data beside qexp's (e.g. /tmp/qlibvenv/bin/python)")
    ap.add_argument("--instruments", type=int, default=None, help="import only the first N symbols (both sides)")
    ap.add_argument("--rounds", type=int, default=None, help="cap num_boost_round (both sides)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("QEXP_PROGRESS", "0")
    os.environ.setdefault("QEXP_LOG_LEVEL", "WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="qexp-bench-rolling-"))
    os.environ["QEXP_CACHE_DIR"] = str(tmp / "cache")
    os.environ["QEXP_DATASET_CACHE"] = "0"
    os.environ["QEXP_HOME"] = str(tmp / "home")
    try:
        if not args.skip_rolling:
            if not Path(args.data).is_dir():
                raise SystemExit(f"S&P sample not found at {args.data}; pass --data DIR (or --skip-rolling)")
            from qexp_data.importer import import_csv
            source = Path(args.data)
            if args.instruments:
                source = tmp / "csv"
                source.mkdir()
                for f in sorted(Path(args.data).glob("*.csv"))[:args.instruments]:
                    os.symlink(f, source / f.name)
            t0 = time.perf_counter()
            import_csv(str(source), tmp / "sp500", symbol_col="Name", progress=False)
            print(f"import-csv of the S&P sample{f' ({args.instruments} symbols)' if args.instruments else ''} "
                  f"(once, not timed below): {time.perf_counter() - t0:.1f} s"
                  + (f"; num_boost_round capped at {args.rounds}" if args.rounds else ""))
            for executor in (["local"] if args.quick else ["local", "process://2"]):
                r = run_rolling(tmp / "sp500", tmp / f"runs-{executor.split(':')[0]}", executor, args.rounds)
                print_rolling(executor, r)
                if executor == "local":
                    local = r
            if args.qlib_python:
                q, why = run_qlib(args.qlib_python, tmp / "sp500", tmp / "qlib-peer", args.rounds)
                if q is None:
                    print(f"\nQlib's rolling could not run here, so there is no side-by-side comparison: {why}")
                else:
                    print_side_by_side(local, q)
        if not args.skip_queue:
            n_tasks, n_procs = (2_000 if args.quick else 10_000), 4
            rows = [("sqlite", queue_throughput("sqlite:///" + str(tmp / "queue" / "tasks.sqlite"), n_tasks, n_procs))]
            pg = pg_database()
            if pg is not None:
                uri, admin = pg
                try:
                    rows.append(("postgresql", queue_throughput(uri, n_tasks, n_procs)))
                finally:
                    from qexp.task import store
                    for s in store._stores.values():
                        s.close()
                    admin.cursor().execute(f"DROP DATABASE IF EXISTS {uri.rsplit('/', 1)[1]} WITH (FORCE)")
            print_queue(rows, n_tasks, n_procs)
        print("\n(measured on a shared machine: the lead re-measures on a quiet one)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
