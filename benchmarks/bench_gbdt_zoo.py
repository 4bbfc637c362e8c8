"""Benchmark: XGBModel, CatBoostModel and DEnsembleModel fit time on Alpha158 of the imported S&P 500 stocks,
each timed side by side with the library called directly with the same parameters (target: within 10%).

    .venv/bin/python benchmarks/bench_gbdt_zoo.py [--models xgb,catboost,dense] [--stocks N] [--rounds N]
                                                  [--de-models N] [--threads N] [--repeats N] [--work DIR]
                                                  [--json FILE]

Standalone (it shares only the data import and dataset helpers of ``bench_models.py``). Steps:

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
   - DoubleEnsemble: the algorithm written plainly on ``lightgbm`` and pandas (sub-models by ``lgb.train``,
     the loss curve tree by tree, SR with pandas ranks and bins, FS re-predicting every sub-model for every
     permuted feature), with Qlib's Alpha158 config (decay 0.5, 28 rounds, weights 1/0.2, LightGBM
     parameters of the LightGBM config).
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
import pandas as pd

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


def direct_dense(ds, n_models: int, threads: int) -> Any:
    """DoubleEnsemble written plainly against lightgbm and pandas."""
    import lightgbm as lgb
    params = {"objective": "mse", **LGB_PARAMS, "num_threads": threads, "seed": 0}
    tr, va = ds.prepare(["train", "valid"], col_set=["feature", "label"], data_key="learn")
    x, y = tr["feature"], tr["label"].iloc[:, 0].to_numpy()
    xv, yv = va["feature"], va["label"].iloc[:, 0].to_numpy()
    rng = np.random.default_rng(0)
    sub_w = _de_weights(n_models)
    weights, feats = np.ones(len(y)), x.columns
    models: list[tuple[Any, pd.Index]] = []
    ens = np.zeros(len(y))
    for k in range(n_models):
        dtrain = lgb.Dataset(x[feats].to_numpy(), label=y, weight=weights)
        booster = lgb.train(params, dtrain, num_boost_round=DE_KW["epochs"],
                            valid_sets=[dtrain, lgb.Dataset(xv[feats].to_numpy(), label=yv)],
                            valid_names=["train", "valid"])
        models.append((booster, feats))
        if k + 1 == n_models:
            break
        xk = x[feats].to_numpy()
        curve = pd.DataFrame(index=range(len(y)), columns=range(booster.num_trees()), dtype=float)
        acc = np.zeros(len(y))
        for t in range(booster.num_trees()):
            acc += booster.predict(xk, start_iteration=t, num_iteration=1)
            curve[t] = (y - acc) ** 2
        ens += sub_w[k] * booster.predict(xk)
        loss = (y - ens / sum(sub_w[: k + 1])) ** 2
        # SR
        ranks = curve.rank(pct=True)
        part = max(int(curve.shape[1] * 0.1), 1)
        h = pd.Series(-loss).rank(pct=True) + (ranks.iloc[:, -part:].mean(axis=1)
                                               / ranks.iloc[:, :part].mean(axis=1)).rank(pct=True)
        bins = pd.cut(h, DE_KW["bins_sr"])
        weights = (1.0 / (DE_KW["decay"] ** (k + 1) * h.groupby(bins, observed=True).transform("mean") + 0.1)).to_numpy()
        # FS
        g = pd.Series(0.0, index=x.columns)
        tmp = x.copy()
        for f in x.columns:
            tmp[f] = rng.permutation(x[f].to_numpy())
            pred = sum(b.predict(tmp[fs].to_numpy()) for b, fs in models) / len(models)
            d = (y - pred) ** 2 - loss
            g[f] = d.mean() / (d.std() + 1e-7)
            tmp[f] = x[f]
        gbins = pd.cut(g.fillna(0.0), DE_KW["bins_fs"])
        chosen: list[str] = []
        for i, b in enumerate(sorted(gbins.unique(), reverse=True)):
            members = g.index[gbins == b]
            chosen += list(rng.choice(members, int(np.ceil(DE_KW["sample_ratios"][i] * len(members))), replace=False))
        feats = x.columns[x.columns.isin(chosen)]
    return models


def paired(ours: Callable[[], Any], direct: Callable[[], Any], repeats: int) -> dict:
    """Alternate the two (order swapped each round) and keep every time."""
    times: dict[str, list[float]] = {"ours_s": [], "direct_s": [], "ours_cpu_s": [], "direct_cpu_s": []}
    for r in range(repeats):
        order = [("ours", ours), ("direct", direct)] if r % 2 == 0 else [("direct", direct), ("ours", ours)]
        for name, fn in order:
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[f"{name}_s"].append(time.perf_counter() - t0)
            # the process's CPU time too: on a shared machine it varies less than the wall clock
            times[f"{name}_cpu_s"].append(time.process_time() - c0)
    return {**times, "ratio": float(np.median(times["ours_s"]) / np.median(times["direct_s"])),
            "cpu_ratio": float(np.median(times["ours_cpu_s"]) / np.median(times["direct_cpu_s"]))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="xgb,catboost,dense")
    ap.add_argument("--stocks", type=int, default=0, help="the first N stocks (0: all 505)")
    ap.add_argument("--rounds", type=int, default=1000, help="XGBoost/CatBoost boosting rounds at most")
    ap.add_argument("--de-models", type=int, default=6, help="DoubleEnsemble sub-models")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import qexp
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-gbdt-"))
    work.mkdir(parents=True, exist_ok=True)
    qexp.init(uri=str(work / "runs"), provider_uri=str(bm.import_data(work)))
    ds = build_dataset(args.stocks or None)
    xt, _, _, _ = learn(ds)
    out: dict = {"stocks": args.stocks or 505, "train_rows": len(xt), "features": xt.shape[1],
                 "threads": args.threads, "rounds": args.rounds, "de_models": args.de_models, "models": {}}
    label = ds.prepare("test", col_set="label", data_key="infer").iloc[:, 0]
    runs = {
        "xgb": ("XGBModel", lambda: ours_xgb(ds, args.rounds, args.threads),
                lambda: direct_xgb(ds, args.rounds, args.threads)),
        "catboost": ("CatBoostModel", lambda: ours_catboost(ds, args.rounds, args.threads),
                     lambda: direct_catboost(ds, args.rounds, args.threads)),
        "dense": ("DEnsembleModel", lambda: ours_dense(ds, args.de_models, args.threads),
                  lambda: direct_dense(ds, args.de_models, args.threads)),
    }
    for key in args.models.split(","):
        name, ours, direct = runs[key]
        res = paired(ours, direct, args.repeats)
        res["test_ic"] = bm.daily_ic(ours().predict(ds), label)
        out["models"][name] = res
        print(f"{name:15s} qexp {np.median(res['ours_s']):7.1f} s   direct {np.median(res['direct_s']):7.1f} s   "
              f"ratio {res['ratio']:.2f} (target <= 1.10; CPU time ratio {res['cpu_ratio']:.2f})   "
              f"test IC {res['test_ic']:.4f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
