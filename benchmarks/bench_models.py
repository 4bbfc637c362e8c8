"""Benchmark: LGBModel fit on Alpha158 and ALSTM epochs on Alpha360 for the 505 S&P 500 stocks, on the CPU.

    .venv/bin/python benchmarks/bench_models.py [--epochs 2] [--qlib-batches N] [--skip-lgb] [--skip-alstm]
                                                [--skip-qlib-loop] [--work DIR] [--json FILE]

Steps:
1. The shared CSVs (``../shared/data/sp500_5yr`` or ``$QEXP_SHARED_DATA``) are imported into a Qlib-format
   folder with the data plugin's importer (``qexp data import-csv``), once per ``--work`` folder (default: a
   temp folder), and ``qexp.init(provider_uri=...)`` serves them.
2. LGBModel on Alpha158 as in Qlib's LightGBM benchmark config (raw features; DropnaLabel + CSZScoreNorm on the
   label; Qlib's Alpha158 LightGBM parameters with ``num_threads`` = the CPU count): fit time (train and valid
   matrices built, boosting with early stopping), iterations, test IC.
3. ALSTM on Alpha360 as in Qlib's ALSTM config (RobustZScoreNorm + Fillna on the features, DropnaLabel +
   CSRankNorm on the label) with Qlib's hyperparameters (d_feat 6, hidden 64, 2 layers, batch 800, lr 1e-3):
   ``--epochs`` epochs, each = one training pass + scoring train and valid; the time of each epoch.
4. Qlib's training loop on the same data and machine (a port of ``pytorch_alstm.ALSTM.train_epoch`` and
   ``test_epoch``: numpy fancy indexing and a host-to-tensor copy per batch, the flat-to-sequence reshape in
   every forward pass, ``nn.GRU``, the last partial batch dropped, one ``.item()`` per batch): one epoch, or
   its first ``--qlib-batches`` batches of each pass scaled to the full epoch.

Segments: train 2013-02-08..2015-12-31, valid 2016-01-01..2016-12-31, test 2017-01-01..2018-02-07.
Reference: Qlib's ALSTM takes about 148 s per epoch on 2 CPU cores for ~326k Alpha360 training rows.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
START, END = "2013-02-08", "2018-02-07"
SEGMENTS = {"train": (START, "2015-12-31"), "valid": ("2016-01-01", "2016-12-31"), "test": ("2017-01-01", END)}
QLIB_EPOCH_S = 148.0
LGB_ALPHA158 = {"learning_rate": 0.2, "colsample_bytree": 0.8879, "subsample": 0.8789, "lambda_l1": 205.6999,
                "lambda_l2": 580.9768, "max_depth": 8, "num_leaves": 210}
NORM_FEATURES = [{"class": "RobustZScoreNorm", "kwargs": {"fields_group": "feature", "clip_outlier": True}},
                 {"class": "Fillna", "kwargs": {"fields_group": "feature"}}]


def data_dir() -> Path:
    env = os.environ.get("QEXP_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data" / "sp500_5yr"


def import_data(work: Path) -> Path:
    dst = work / "sp500_qlib"
    if (dst / "calendars" / "day.txt").is_file():
        return dst
    from qexp_data.importer import import_csv
    t0 = time.perf_counter()
    report = import_csv(data_dir(), dst, symbol_col="Name", progress=False)
    print(f"imported {report.symbols} symbols x {report.days} days in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return dst


def daily_ic(pred: pd.Series, label: pd.Series) -> float:
    df = pd.DataFrame({"pred": pred, "label": label.reindex(pred.index)}).dropna()
    return float(df.groupby(level="datetime").apply(lambda g: g["pred"].corr(g["label"])).mean())


def dataset(handler: str, **handler_kwargs):
    from qexp_data.alpha import Alpha158, Alpha360
    from qexp_data.dataset import DatasetH
    cls = {"Alpha158": Alpha158, "Alpha360": Alpha360}[handler]
    t0 = time.perf_counter()
    h = cls(instruments="all", start_time=START, end_time=END, fit_start_time=START,
            fit_end_time=SEGMENTS["train"][1], **handler_kwargs)
    print(f"{handler}: handler ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return DatasetH(h, dict(SEGMENTS))


def bench_lgb() -> dict:
    from qexp_models.lgb import LGBModel
    ds = dataset("Alpha158", learn_processors=[{"class": "DropnaLabel"},
                                               {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}])
    n_train = len(ds.prepare("train", col_set=["feature", "label"], data_key="learn"))
    model = LGBModel(**LGB_ALPHA158, num_threads=os.cpu_count())
    t0 = time.perf_counter()
    model.fit(ds, verbose_eval=0)
    fit_s = time.perf_counter() - t0
    pred = model.predict(ds)
    label = ds.prepare("test", col_set="label", data_key="infer").iloc[:, 0]
    return {"fit_s": fit_s, "train_rows": n_train, "best_iteration": model.model.best_iteration,
            "test_ic": daily_ic(pred, label), "num_threads": os.cpu_count()}


def alstm_dataset():
    return dataset("Alpha360", infer_processors=NORM_FEATURES,
                   learn_processors=[{"class": "DropnaLabel"}, {"class": "CSRankNorm",
                                                                "kwargs": {"fields_group": "label"}}])


def bench_alstm(ds, epochs: int) -> dict:
    import torch

    from qexp_models.alstm import ALSTM
    model = ALSTM(d_feat=6, hidden_size=64, num_layers=2, dropout=0.0, n_epochs=epochs, lr=1e-3,
                  batch_size=800, early_stop=epochs + 1, seed=0, GPU=-1)
    t0 = time.perf_counter()
    model.fit(ds)
    total = time.perf_counter() - t0
    return {"epoch_s": list(model.epoch_seconds), "train_s": list(model.train_seconds), "fit_s": total,
            "threads": torch.get_num_threads()}


def bench_qlib_loop(ds, max_batches: int | None) -> dict:
    """One epoch of Qlib's ``pytorch_alstm.ALSTM`` loop (``train_epoch`` then ``test_epoch`` on train and valid),
    with the same network; ``max_batches`` limits each pass and scales its time to the full pass."""
    import torch

    from qexp_models.alstm_net import ALSTMNet

    torch.manual_seed(0)
    net = ALSTMNet(6, 64, 2)
    net.fast_cpu_gru = False  # Qlib's nn.GRU path throughout
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = 800

    def forward(feature: torch.Tensor) -> torch.Tensor:  # Qlib's ALSTMModel.forward: reshape per batch
        inputs = feature.view(len(feature), 6, -1).permute(0, 2, 1)
        rnn_out, _ = net.rnn(net.net(inputs))
        att = torch.sum(torch.mul(rnn_out, net.att_net(rnn_out)), dim=1)
        return net.fc_out(torch.cat((rnn_out[:, -1, :], att), dim=1))[..., 0]

    def loss_fn(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        mask = ~torch.isnan(label)
        return torch.mean((pred[mask] - label[mask]) ** 2)

    def frames(segment: str) -> tuple[np.ndarray, np.ndarray]:
        df = ds.prepare(segment, col_set=["feature", "label"], data_key="learn")
        return df["feature"].values, np.squeeze(df["label"].values)

    def train_epoch(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        net.train()
        indices = np.arange(len(x))
        np.random.shuffle(indices)
        starts = [i for i in range(len(indices))[::batch] if len(indices) - i >= batch]
        todo = starts[:max_batches] if max_batches else starts
        t0 = time.perf_counter()
        for i in todo:
            feature = torch.from_numpy(x[indices[i:i + batch]]).float()
            label = torch.from_numpy(y[indices[i:i + batch]]).float()
            loss = loss_fn(forward(feature), label)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(net.parameters(), 3.0)
            opt.step()
        return (time.perf_counter() - t0) * len(starts) / len(todo), len(starts)

    def test_epoch(x: np.ndarray, y: np.ndarray) -> float:
        net.eval()
        starts = [i for i in range(len(x))[::batch] if len(x) - i >= batch]
        todo = starts[:max_batches] if max_batches else starts
        losses = []
        t0 = time.perf_counter()
        for i in todo:
            feature = torch.from_numpy(x[i:i + batch]).float()
            label = torch.from_numpy(y[i:i + batch]).float()
            with torch.no_grad():
                pred = forward(feature)
                losses.append(loss_fn(pred, label).item())
                losses.append(-loss_fn(pred, label).item())  # Qlib's metric_fn: minus the loss
        return (time.perf_counter() - t0) * len(starts) / len(todo)

    np.random.seed(0)
    x_tr, y_tr = frames("train")
    x_va, y_va = frames("valid")
    train_s, n_batches = train_epoch(x_tr, y_tr)
    score_train_s = test_epoch(x_tr, y_tr)
    score_valid_s = test_epoch(x_va, y_va)
    return {"epoch_s": train_s + score_train_s + score_valid_s, "train_s": train_s,
            "score_s": score_train_s + score_valid_s, "batches": n_batches, "scaled": bool(max_batches)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=2, help="ALSTM epochs to time (default 2)")
    ap.add_argument("--qlib-batches", type=int, default=None,
                    help="time only the first N batches of each pass of Qlib's loop and scale (default: all)")
    ap.add_argument("--skip-lgb", action="store_true")
    ap.add_argument("--skip-alstm", action="store_true")
    ap.add_argument("--skip-qlib-loop", action="store_true")
    ap.add_argument("--work", default=None, help="folder for the imported data (default: temp)")
    ap.add_argument("--json", default=None, help="also write the results as JSON to this file")
    args = ap.parse_args()
    if not data_dir().is_dir() or not any(data_dir().glob("*.csv")):
        print(f"SKIPPED: the S&P 500 CSVs are not at {data_dir()}; set QEXP_SHARED_DATA to their folder")
        return 0

    import qexp
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="qexp-bench-models-")
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    qexp.init(uri=str(work / "runs"), provider_uri=str(import_data(work)))
    results: dict = {"cpus": os.cpu_count()}
    if not args.skip_lgb:
        results["lgb"] = bench_lgb()
        print(json.dumps({"lgb": results["lgb"]}), file=sys.stderr)
    if not (args.skip_alstm and args.skip_qlib_loop):
        ds = alstm_dataset()
        results["rows"] = {seg: len(ds.prepare(seg, col_set=["feature", "label"], data_key="learn"))
                           for seg in ("train", "valid")}
        if not args.skip_alstm:
            results["alstm"] = bench_alstm(ds, args.epochs)
            print(json.dumps({"alstm": results["alstm"]}), file=sys.stderr)
        if not args.skip_qlib_loop:
            results["qlib_loop"] = bench_qlib_loop(ds, args.qlib_batches)
            print(json.dumps({"qlib_loop": results["qlib_loop"]}), file=sys.stderr)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def table(r: dict) -> str:
    lines = ["| benchmark | data | time | vs Qlib's 148 s/epoch |", "|---|---|---|---|"]
    if "lgb" in r:
        g = r["lgb"]
        lines.append(f"| LGBModel fit (Qlib's Alpha158 params, {g['num_threads']} threads) | Alpha158, 505 stocks, "
                     f"{g['train_rows']:,} train rows | {g['fit_s']:.1f} s ({g['best_iteration']} iterations; "
                     f"test IC {g['test_ic']:.4f}) | |")
    rows = r.get("rows", {})
    data = f"Alpha360, {rows.get('train', 0):,} train + {rows.get('valid', 0):,} valid rows"
    if "alstm" in r:
        a = r["alstm"]
        i = int(np.argmin(a["epoch_s"]))
        best = a["epoch_s"][i]
        each = ", ".join(f"{s:.1f}" for s in a["epoch_s"])
        lines.append(f"| ALSTM epoch, qexp (batch 800, hidden 64, 2 layers, CPU, {a['threads']} threads) | {data} "
                     f"| {best:.1f} s (train {a['train_s'][i]:.1f} + scoring {best - a['train_s'][i]:.1f}; "
                     f"epochs: {each} s) | {best / QLIB_EPOCH_S:.2f}x |")
    if "qlib_loop" in r:
        q = r["qlib_loop"]
        note = ", scaled from the first batches" if q["scaled"] else ""
        lines.append(f"| ALSTM epoch, Qlib's loop on this machine | {data} | {q['epoch_s']:.1f} s (train "
                     f"{q['train_s']:.1f} + scoring {q['score_s']:.1f}{note}) | {q['epoch_s'] / QLIB_EPOCH_S:.2f}x |")
        if "alstm" in r:
            lines.append(f"\nqexp's epoch is {q['epoch_s'] / min(r['alstm']['epoch_s']):.1f}x faster than Qlib's "
                         f"loop on the same machine.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
