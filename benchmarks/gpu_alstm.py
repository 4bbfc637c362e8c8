"""GPU check: ALSTM on Alpha360 of the synthetic market, CPU vs GPU epoch time and prediction differences.

    python benchmarks/gpu_alstm.py [--instruments 300] [--epochs 3] [--cpu-epochs 1] [--out DIR]

Runs in a few minutes on one H100; without CUDA it reports the CPU part only, with a note.

Steps:
1. A synthetic market (``qexp_data.synth``, ``--instruments`` stocks, 2015-2020) is written to a temp folder and
   served by ``qexp.init(provider_uri=...)``; Alpha360 as in Qlib's ALSTM config (RobustZScoreNorm + Fillna;
   DropnaLabel + CSRankNorm), train 2015-2018, valid 2019, test 2020.
2. GPU: ALSTM with Qlib's hyperparameters (d_feat 6, hidden 64, 2 layers, batch 800, lr 1e-3, seed 0) for
   ``--epochs`` epochs; the time of each epoch (train + scoring train and valid). The first epoch includes
   CUDA/cuDNN warm-up, so the steady epoch time is the median of the others.
3. CPU: the same for ``--cpu-epochs`` epochs (all CPU threads).
4. Differences of test predictions:
   - same weights, GPU vs CPU kernels: the GPU-trained model predicting on the GPU and on the CPU;
   - GPU-trained vs CPU-trained, one epoch each from the same seed (the two training paths);
   - the GPU-trained model pickled, loaded in a new process that sees no GPU, predicting on the CPU.
Results are printed as markdown and written to ``--out`` (default ``$OUT``) as ``gpu_alstm.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SEGMENTS = {"train": ("2015-01-01", "2018-12-31"), "valid": ("2019-01-01", "2019-12-31"),
            "test": ("2020-01-01", "2020-12-31")}
HYPER = {"d_feat": 6, "hidden_size": 64, "num_layers": 2, "dropout": 0.0, "lr": 1e-3, "batch_size": 800,
         "seed": 0}


def build_dataset(folder: Path, instruments: int):
    import qexp
    from qexp_data.alpha import Alpha360
    from qexp_data.dataset import DatasetH
    from qexp_data.synth import SynthParams, write_synth
    t0 = time.perf_counter()
    write_synth(folder / "market", SynthParams(instruments=instruments, start="2015-01-01", end="2020-12-31"))
    qexp.init(uri=str(folder / "runs"), provider_uri=str(folder / "market"))
    handler = Alpha360(instruments="all", start_time="2015-01-01", end_time="2020-12-31",
                       fit_start_time="2015-01-01", fit_end_time="2018-12-31",
                       infer_processors=[{"class": "RobustZScoreNorm",
                                          "kwargs": {"fields_group": "feature", "clip_outlier": True}},
                                         {"class": "Fillna", "kwargs": {"fields_group": "feature"}}],
                       learn_processors=[{"class": "DropnaLabel"},
                                         {"class": "CSRankNorm", "kwargs": {"fields_group": "label"}}])
    ds = DatasetH(handler, dict(SEGMENTS))
    print(f"data ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return ds


def fit(ds, gpu: int, epochs: int):
    from qexp_models.alstm import ALSTM
    model = ALSTM(**HYPER, n_epochs=epochs, early_stop=epochs + 1, GPU=gpu)
    model.fit(ds)
    return model


def on_cpu(model):
    """The same fitted model, predicting on the CPU (through pickling, as a loaded model would)."""
    clone = pickle.loads(pickle.dumps(model))
    clone.GPU = -1
    return clone


def predict_without_gpu(model, ds, folder: Path) -> pd.Series:
    """Pickle the model and the dataset; predict in a new process with CUDA hidden."""
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    ds.config(dump_all=True, recursive=True)
    (folder / "dataset.pkl").write_bytes(pickle.dumps(ds))
    ds.config(dump_all=False, recursive=True)
    code = ("import pickle, sys, torch\n"
            "assert not torch.cuda.is_available()\n"
            "m = pickle.loads(open(sys.argv[1], 'rb').read())\n"
            "d = pickle.loads(open(sys.argv[2], 'rb').read())\n"
            "m.predict(d).to_pickle(sys.argv[3])\n")
    out = folder / "pred_nogpu.pkl"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code, str(folder / "model.pkl"), str(folder / "dataset.pkl"),
                           str(out)], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(f"prediction without a GPU failed:\n{proc.stderr[-3000:]}")
    return pd.read_pickle(out)


def diff(a: pd.Series, b: pd.Series) -> dict:
    assert a.index.equals(b.index)
    d = np.abs(a.to_numpy() - b.to_numpy())
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "scale": float(np.abs(b.to_numpy()).mean()),
            "corr": float(np.corrcoef(a.to_numpy(), b.to_numpy())[0, 1])}


def steady(epochs: list[float]) -> float:
    return float(np.median(epochs[1:])) if len(epochs) > 1 else float(epochs[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instruments", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=3, help="GPU epochs to time (default 3)")
    ap.add_argument("--cpu-epochs", type=int, default=1, help="CPU epochs to time (default 1)")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_alstm.json (default: $OUT)")
    args = ap.parse_args()

    import torch
    has_gpu = torch.cuda.is_available()
    res: dict = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                 "gpu": torch.cuda.get_device_name(0) if has_gpu else None,
                 "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                 "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    with tempfile.TemporaryDirectory(prefix="qexp-gpu-alstm-") as tmp:
        folder = Path(tmp)
        ds = build_dataset(folder, args.instruments)
        res["train_rows"] = len(ds.prepare("train", col_set=["feature", "label"], data_key="learn"))
        res["valid_rows"] = len(ds.prepare("valid", col_set=["feature", "label"], data_key="learn"))

        cpu_model = fit(ds, -1, args.cpu_epochs)
        res["cpu_epoch_s"] = cpu_model.epoch_seconds
        if has_gpu:
            gpu_model = fit(ds, 0, args.epochs)
            res["gpu_epoch_s"] = gpu_model.epoch_seconds
            res["gpu_peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2 ** 30
            pred_gpu = gpu_model.predict(ds)
            pred_same_weights_cpu = on_cpu(gpu_model).predict(ds)
            res["same_weights_gpu_vs_cpu"] = diff(pred_gpu, pred_same_weights_cpu)
            res["loaded_without_gpu_vs_cpu"] = diff(predict_without_gpu(gpu_model, ds, folder),
                                                    pred_same_weights_cpu)
            one_epoch_gpu = fit(ds, 0, 1) if args.epochs != 1 else gpu_model
            one_epoch_cpu = cpu_model if args.cpu_epochs == 1 else fit(ds, -1, 1)
            res["trained_gpu_vs_cpu_1_epoch"] = diff(one_epoch_gpu.predict(ds), one_epoch_cpu.predict(ds))
    print(report(res))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_alstm.json").write_text(json.dumps(res, indent=2))
    return 0


def report(r: dict) -> str:
    rows = f"{r['train_rows']:,} train + {r['valid_rows']:,} valid rows (Alpha360, synthetic market)"
    lines = [f"ALSTM, batch 800, hidden 64, 2 layers; {rows}; torch {r['torch']}", "",
             "| device | epoch time (steady) | epochs |", "|---|---|---|",
             f"| CPU ({r['cpu_threads']} threads) | {steady(r['cpu_epoch_s']):.2f} s | "
             f"{', '.join(f'{s:.2f}' for s in r['cpu_epoch_s'])} |"]
    if r["gpu"] is None:
        lines.append("\nNo CUDA device: the GPU part was skipped (CPU only).")
        return "\n".join(lines)
    lines.append(f"| GPU ({r['gpu']}) | {steady(r['gpu_epoch_s']):.3f} s | "
                 f"{', '.join(f'{s:.3f}' for s in r['gpu_epoch_s'])} |")
    lines += ["", f"GPU speed-up: {steady(r['cpu_epoch_s']) / steady(r['gpu_epoch_s']):.1f}x; "
              f"peak GPU memory {r['gpu_peak_mem_gb']:.2f} GB; cuDNN TF32 {r['cudnn_allow_tf32']}", "",
              "| test predictions | max abs diff | mean abs diff | mean abs pred | corr |", "|---|---|---|---|---|"]
    for key, label in (("same_weights_gpu_vs_cpu", "same weights, GPU vs CPU kernels"),
                       ("loaded_without_gpu_vs_cpu", "GPU-trained, loaded in a process without GPU vs CPU"),
                       ("trained_gpu_vs_cpu_1_epoch", "trained 1 epoch on GPU vs on CPU, same seed")):
        d = r[key]
        lines.append(f"| {label} | {d['max_abs']:.2e} | {d['mean_abs']:.2e} | {d['scale']:.2e} | {d['corr']:.6f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
