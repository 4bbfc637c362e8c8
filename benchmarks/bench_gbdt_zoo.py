"""Benchmark: XGBModel, CatBoostModel and DEnsembleModel fit time on Alpha158 of the imported S&P 500 stocks,
each timed side by side with its peer with the same parameters (target: within 10%): the library called
directly (XGBoost, CatBoost) and Qlib 0.9.7's own DEnsembleModel (DoubleEnsemble).

    .venv/bin/python benchmarks/bench_models.py --gbdt [xgb,catboost,dense] [--gbdt-stocks N] ...
    .venv/bin/python benchmarks/bench_gbdt_zoo.py [--models xgb,catboost,dense] [--stocks N] [--rounds N]
                                                  [--de-models N] [--threads N] [--repeats N] [--work DIR]
                                                  [--qlib-python PY] [--json FILE]

``bench_models.py --gbdt`` runs these rows with the rest (``bench`` and ``gbdt_table`` here). Steps:

1. The shared CSVs are imported once per ``--work`` folder (``bench_models.import_data``); Alpha158 is built
   as in Qlib's GBDT configs (raw features; DropnaLabel + CSZScoreNorm on the label) for all 505 stocks or the
   first ``--stocks``; segments as bench_models (train 2013-02-08..2015-12-31, valid 2016, test 2017..).
2. Per model, ``--repeats`` rounds in alternation (so a shared machine's load hits both alike), each timing
   qexp's ``fit(dataset)`` and the direct path: ``dataset.prepare`` of train/valid (what Qlib's fit does),
   then the library:
   - XGBoost: ``xgb.train(params, DMatrix, num_boost_round, evals=[train, valid], early_stopping_rounds=50)``
     with Qlib's Alpha158 parameters (eta 0.0421, max_depth 8, subsample 0.8789, colsample 0.8879);
   - CatBoost: ``CatBoost(params).fit(Pool, eval_set=Pool, use_best_model=True)`` with Qlib's parameters
     (lr 0.0421, max_depth 6, 100 leaves, Lossguide; Bernoulli bootstrap, as Poisson is GPU-only);
   - DoubleEnsemble: Qlib 0.9.7's ``DEnsembleModel.fit`` on the same train/valid matrices, in a second Python
     that has pyqlib (``--qlib-python``, default ``/tmp/qlibvenv/bin/python``; ``_qlib_peer.py``), timed
     there around ``fit`` alone; with Qlib's Alpha158 config (decay 0.5, 28 rounds, weights 1/0.2, LightGBM
     parameters of the LightGBM config) on both sides.
   ``--rounds`` caps the boosting rounds of XGBoost/CatBoost (default 1000, Qlib's), ``--de-models`` the
   number of DoubleEnsemble sub-models (default 6, Qlib's). The ratio printed is qexp / direct (< 1.10 meets
   the target), by the wall clock and by the process's CPU time (steadier on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_models as bm  # noqa: E402  (the data import and dataset helpers)

XGB_PARAMS = {"eval_metric": "rmse", "colsample_bytree": 0.8879, "eta": 0.0421, "max_depth": 8,
              "subsample": 0.8789}
CB_PARAMS = {"loss_function": "RMSE", "learning_rate": 0.0421, "subsample": 0.8789, "max_depth": 6,
             "num_leaves": 100, "grow_policy": "Lossguide", "bootstrap_type": "Bernoulli"}
DE_KW = {"decay": 0.5, "epochs": 28, "bins_sr": 10, "bins_fs": 5, "sample_ratios": [0.8, 0.7, 0.6, 0.5, 0.4]}
LGB_PARAMS = {**bm.LGB_ALPHA158, "verbosity": -1}


def build_dataset(stocks: int | None) -> Any:
    from qexp_data.alpha import Alpha158
    from qexp_data.dataset import DatasetH
    instruments: Any = "all"
    if stocks:
        from qexp.data_api import get_provider
        instruments = sorted(get_provider().list_instruments("all", as_list=True))[:stocks]
    h = Alpha158(instruments=instruments, start_time=bm.START, end_time=bm.END, fit_start_time=bm.START,
                 fit_end_time=bm.SEGMENTS["train"][1],
                 learn_processors=[{"class": "DropnaLabel"},
                                   {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}])
    return DatasetH(h, dict(bm.SEGMENTS))


def learn(ds) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tr, va = ds.prepare(["train", "valid"], col_set=["feature", "label"], data_key="learn")
    return (tr["feature"].to_numpy(), tr["label"].to_numpy()[:, 0], va["feature"].to_numpy(),
            va["label"].to_numpy()[:, 0])


# ---- XGBoost -----------------------------------------------------------------------------------------------
def ours_xgb(ds, rounds: int, threads: int) -> Any:
    from qexp_models.xgb import XGBModel
    return XGBModel(**XGB_PARAMS, nthread=threads).fit(ds, num_boost_round=rounds, verbose_eval=0)


def direct_xgb(ds, rounds: int, threads: int) -> Any:
    import xgboost as xgb
    xt, yt, xv, yv = learn(ds)
    dtrain, dvalid = xgb.DMatrix(xt, label=yt), xgb.DMatrix(xv, label=yv)
    return xgb.train({**XGB_PARAMS, "nthread": threads}, dtrain, num_boost_round=rounds,
                     evals=[(dtrain, "train"), (dvalid, "valid")], early_stopping_rounds=50, verbose_eval=False)


# ---- CatBoost ----------------------------------------------------------------------------------------------
def ours_catboost(ds, rounds: int, threads: int) -> Any:
    from qexp_models.catboost_model import CatBoostModel
    kw = {k: v for k, v in CB_PARAMS.items() if k != "loss_function"}
    return CatBoostModel(loss="RMSE", **kw, thread_count=threads, task_type="CPU").fit(
        ds, num_boost_round=rounds, verbose_eval=0)


def direct_catboost(ds, rounds: int, threads: int) -> Any:
    from catboost import CatBoost, Pool
    xt, yt, xv, yv = learn(ds)
    model = CatBoost({**CB_PARAMS, "thread_count": threads, "task_type": "CPU", "iterations": rounds,
                      "early_stopping_rounds": 50, "verbose": False, "allow_writing_files": False})
    model.fit(Pool(xt, label=yt), eval_set=Pool(xv, label=yv), use_best_model=True)
    return model


# ---- DoubleEnsemble ----------------------------------------------------------------------------------------
def _de_weights(n_models: int) -> list[float]:
    return [1.0] + [0.2] * (n_models - 1)


def ours_dense(ds, n_models: int, threads: int) -> Any:
    from qexp_models.double_ensemble import DEnsembleModel
    return DEnsembleModel(num_models=n_models, sub_weights=_de_weights(n_models), **DE_KW, **LGB_PARAMS,
                          num_threads=threads, seed=0).fit(ds, verbose_eval=0)


def qlib_dense(ds, n_models: int, threads: int, python: str, work: Path) -> dict | None:
    """Qlib 0.9.7's own ``DEnsembleModel.fit`` on the same train/valid matrices, in ``python`` (a second Python
    with pyqlib; ``_qlib_peer.py``), timed there (fit only: no imports); None when that Python has no qlib."""
    import subprocess
    probe = subprocess.run([python, "-c", "import qlib, lightgbm"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"Qlib peer skipped: {python} cannot import qlib and lightgbm; create it with: python -m venv "
              f"/tmp/qlibvenv && /tmp/qlibvenv/bin/pip install torch==2.13.0 pyqlib==0.9.7", file=sys.stderr)
        return None
    npz = work / "gbdt_matrices.npz"
    if not npz.exists():
        tr, va = ds.prepare(["train", "valid"], col_set=["feature", "label"], data_key="learn")
        arrays = {}
        for seg, df in (("train", tr), ("valid", va)):
            arrays[f"x_{seg}"] = df["feature"].to_numpy(np.float32)
            arrays[f"y_{seg}"] = df["label"].iloc[:, 0].to_numpy(np.float32)
            arrays[f"dates_{seg}"] = df.index.get_level_values(0).to_numpy("datetime64[ns]").astype(np.int64)
            arrays[f"inst_{seg}"] = df.index.get_level_values(1).to_numpy().astype(str)
        np.savez(npz, **arrays)
    kwargs = {"num_models": n_models, "sub_weights": _de_weights(n_models), **DE_KW, **LGB_PARAMS,
              "num_threads": threads, "seed": 0}
    out = work / "qlib_dense.json"
    proc = subprocess.run([python, str(Path(__file__).with_name("_qlib_peer.py")), str(npz), "DEnsembleModel", "0",
                           "0", str(out), json.dumps(kwargs)], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"Qlib peer DEnsembleModel failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.read_text())


def paired(ours: Callable[[], Any], direct: Callable[[], Any], repeats: int) -> dict:
    """Alternate the two (order swapped each round) and keep every time. A side that times itself (Qlib's, in
    another process) returns ``{"fit_s": [s], "fit_cpu_s": [s]}``, or None when it could not run."""
    times: dict[str, list[float]] = {"ours_s": [], "direct_s": [], "ours_cpu_s": [], "direct_cpu_s": []}
    for r in range(repeats):
        order = [("ours", ours), ("direct", direct)] if r % 2 == 0 else [("direct", direct), ("ours", ours)]
        for name, fn in order:
            t0, c0 = time.perf_counter(), time.process_time()
            res = fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if isinstance(res, dict):
                wall, cpu = res["fit_s"][0], res["fit_cpu_s"][0]
            elif res is None and name == "direct":
                continue
            times[f"{name}_s"].append(wall)
            # the process's CPU time too: on a shared machine it varies less than the wall clock
            times[f"{name}_cpu_s"].append(cpu)
    if not times["direct_s"]:
        return {**times, "ratio": None, "cpu_ratio": None}
    return {**times, "ratio": float(np.median(times["ours_s"]) / np.median(times["direct_s"])),
            "cpu_ratio": float(np.median(times["ours_cpu_s"]) / np.median(times["direct_cpu_s"]))}


PEERS = {"XGBModel": "xgboost.train", "CatBoostModel": "CatBoost.fit", "DEnsembleModel": "Qlib 0.9.7's DEnsembleModel"}


def bench(models: list[str], stocks: int | None, rounds: int, de_models: int, threads: int, repeats: int,
          qlib_python: str, work: Path) -> dict:
    """Each of ``models`` (``xgb``, ``catboost``, ``dense``) timed against its peer on Alpha158 (the data
    provider must serve the imported S&P data: ``bench_models.import_data``)."""
    ds = build_dataset(stocks)
    xt, _, _, _ = learn(ds)
    out: dict = {"stocks": stocks or 505, "train_rows": len(xt), "features": xt.shape[1], "threads": threads,
                 "rounds": rounds, "de_models": de_models, "models": {}}
    label = ds.prepare("test", col_set="label", data_key="infer").iloc[:, 0]
    (work / "gbdt_matrices.npz").unlink(missing_ok=True)  # Qlib's side reads the rows of this run
    runs = {
        "xgb": ("XGBModel", lambda: ours_xgb(ds, rounds, threads), lambda: direct_xgb(ds, rounds, threads)),
        "catboost": ("CatBoostModel", lambda: ours_catboost(ds, rounds, threads),
                     lambda: direct_catboost(ds, rounds, threads)),
        "dense": ("DEnsembleModel", lambda: ours_dense(ds, de_models, threads),
                  lambda: qlib_dense(ds, de_models, threads, qlib_python, work)),
    }
    for key in models:
        name, ours, peer = runs[key]
        res = paired(ours, peer, repeats)
        res["test_ic"] = bm.daily_ic(ours().predict(ds), label)
        out["models"][name] = res
        print(json.dumps({name: res}), file=sys.stderr, flush=True)
    return out


def gbdt_table(out: dict) -> list[str]:
    lines = [f"\nGBDT zoo fit on Alpha158 ({out['stocks']} stocks, {out['train_rows']:,} train rows, "
             f"{out['threads']} threads; XGBoost/CatBoost at most {out['rounds']} rounds, DoubleEnsemble "
             f"{out['de_models']} sub-models):", "",
             "| model | qexp fit | peer (same data, same machine) | qexp / peer (target <= 1.10) | CPU time ratio "
             "| test IC |", "|---|---|---|---|---|---|"]
    for name, r in out["models"].items():
        ours = f"{np.median(r['ours_s']):.1f} s"
        if r["ratio"] is None:
            lines.append(f"| {name} | {ours} | {PEERS[name]}: not run | | | {r['test_ic']:.4f} |")
            continue
        lines.append(f"| {name} | {ours} | {PEERS[name]} {np.median(r['direct_s']):.1f} s | {r['ratio']:.2f} | "
                     f"{r['cpu_ratio']:.2f} | {r['test_ic']:.4f} |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="xgb,catboost,dense")
    ap.add_argument("--stocks", type=int, default=0, help="the first N stocks (0: all 505)")
    ap.add_argument("--rounds", type=int, default=1000, help="XGBoost/CatBoost boosting rounds at most")
    ap.add_argument("--de-models", type=int, default=6, help="DoubleEnsemble sub-models")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--qlib-python", default="/tmp/qlibvenv/bin/python",
                    help="a Python with pyqlib 0.9.7, for DoubleEnsemble's peer")
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import qexp
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-gbdt-"))
    work.mkdir(parents=True, exist_ok=True)
    qexp.init(uri=str(work / "runs"), provider_uri=str(bm.import_data(work)))
    out = bench(args.models.split(","), args.stocks or None, args.rounds, args.de_models, args.threads,
                args.repeats, args.qlib_python, work)
    print("\n".join(gbdt_table(out)))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
