"""GPU check for the PyTorch zoo: every net on Alpha360 of the synthetic market, CPU vs GPU epoch times and
prediction differences.

    python benchmarks/gpu_models.py [--instruments 100] [--epochs 3] [--cpu-epochs 1] [--models GRU,LSTM,...]
                                    [--out DIR]

Without CUDA it runs the CPU part only and says that CUDA is absent. HIST runs on a synthetic concept matrix
of the market's stocks (``bench_models.hist_concepts``; the real one is your file, see docs/models.md).

Steps:
1. A synthetic market (``--instruments`` stocks, 2015-2020) in a temp folder; Alpha360 as in Qlib's configs
   (RobustZScoreNorm + Fillna; DropnaLabel + CSRankNorm), train 2015-2018, valid 2019, test 2020.
2. Per model, with the hyperparameters of Qlib's Alpha360 benchmark YAML (``bench_models.ZOO_KWARGS``) and
   seed 0: ``--cpu-epochs`` epochs on the CPU; with CUDA, ``--epochs`` epochs on GPU 0 (the steady epoch time
   is the median of all but the first, which includes CUDA warm-up).
3. With CUDA, test-prediction differences: the GPU-trained model predicting on the GPU vs the same weights on
   the CPU (loaded through pickling, as a saved model is).
Markdown on stdout; ``gpu_models.json`` in ``--out`` (default ``$OUT``).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tra_zoo import tra_dataset, tra_model  # noqa: E402
from bench_models import ZOO_KWARGS, ZOO_MODELS, zoo_class, zoo_kwargs  # noqa: E402
from gpu_alstm import build_dataset, diff, steady  # noqa: E402


class ThreeLabels:
    """TCTS's three tasks on a one-label dataset: the label three times (timing and CPU/GPU checks only)."""

    def __init__(self, ds):
        self.ds, self.segments = ds, ds.segments

    def prepare(self, segments, col_set="__all", data_key="infer", **kwargs):
        df = self.ds.prepare(segments, col_set=col_set, data_key=data_key, **kwargs)
        if isinstance(col_set, list) and "label" in col_set:
            import pandas as pd
            label = df["label"].iloc[:, 0]
            df = pd.concat([df, pd.DataFrame({("label", f"LABEL{k}"): label for k in (1, 2)}, index=df.index)],
                           axis=1)
        return df


def fit(name: str, ds, gpu: int, epochs: int):
    if name == "TRAModel":  # ds: the MTSDatasetH of _tra_zoo.tra_dataset
        return tra_model(epochs, gpu).fit(ds)
    cls = zoo_class(name)
    if name == "TCTS":
        ds = ThreeLabels(ds)
    if name == "DNNModelPytorch":  # 20 steps per "epoch" (one valid evaluation each)
        model = cls(**ZOO_KWARGS[name], max_steps=20 * epochs, early_stop_rounds=10**9, GPU=gpu, seed=0)
    else:
        instruments = ds.prepare("train", col_set="label", data_key="learn").index.get_level_values("instrument")
        model = cls(**zoo_kwargs(name, instruments.unique()), n_epochs=epochs, early_stop=epochs + 1, GPU=gpu,
                    seed=0)
    model.fit(ds)
    return model


def on_cpu(model):
    clone = pickle.loads(pickle.dumps(model))
    clone.GPU = -1
    return clone


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instruments", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3, help="GPU epochs per model (default 3)")
    ap.add_argument("--cpu-epochs", type=int, default=1, help="CPU epochs per model (default 1)")
    ap.add_argument("--models", default=",".join(ZOO_MODELS), help=f"comma-separated (default {','.join(ZOO_MODELS)})")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_models.json (default: $OUT)")
    args = ap.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = set(names) - set(ZOO_MODELS)
    if unknown:
        ap.error(f"unknown model(s) {', '.join(sorted(unknown))}; known: {', '.join(ZOO_MODELS)}")

    import torch
    has_gpu = torch.cuda.is_available()
    res: dict = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                 "gpu": torch.cuda.get_device_name(0) if has_gpu else None, "models": {}}
    if not has_gpu:
        print("CUDA is absent: timing the CPU part only (no GPU epochs, no CPU/GPU differences).", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="qexp-gpu-models-") as tmp:
        ds = build_dataset(Path(tmp), args.instruments)
        res["train_rows"] = len(ds.prepare("train", col_set=["feature", "label"], data_key="learn"))
        res["valid_rows"] = len(ds.prepare("valid", col_set=["feature", "label"], data_key="learn"))
        for name in names:
            entry: dict = {}
            t0 = time.perf_counter()
            # TRA reads windows and a memory: its own MTSDatasetH over the same handler (_tra_zoo.py)
            data = tra_dataset(ds.handler, ds.segments) if name == "TRAModel" else ds
            entry["cpu_epoch_s"] = fit(name, data, -1, args.cpu_epochs).epoch_seconds
            if has_gpu:
                torch.cuda.reset_peak_memory_stats()
                model = fit(name, data, 0, args.epochs)
                entry["gpu_epoch_s"] = model.epoch_seconds
                entry["gpu_peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2 ** 30
                entry["same_weights_gpu_vs_cpu"] = diff(model.predict(data), on_cpu(model).predict(data))
            entry["wall_s"] = time.perf_counter() - t0
            res["models"][name] = entry
            print(json.dumps({name: entry}), file=sys.stderr, flush=True)
    print(report(res))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_models.json").write_text(json.dumps(res, indent=2))
    return 0


def report(r: dict) -> str:
    rows = f"{r['train_rows']:,} train + {r['valid_rows']:,} valid rows (Alpha360, synthetic market)"
    lines = [f"PyTorch zoo, Qlib's Alpha360 YAML hyperparameters; {rows}; torch {r['torch']}", "",
             "| model | CPU epoch (" + str(r["cpu_threads"]) + " threads) | GPU epoch (steady) | speed-up | "
             "same weights GPU vs CPU: max abs diff | mean abs pred |", "|---|---|---|---|---|---|"]
    for name, e in r["models"].items():
        cpu = steady(e["cpu_epoch_s"])
        if "gpu_epoch_s" in e:
            gpu = steady(e["gpu_epoch_s"])
            d = e["same_weights_gpu_vs_cpu"]
            lines.append(f"| {name} | {cpu:.2f} s | {gpu:.3f} s | {cpu / gpu:.1f}x | {d['max_abs']:.2e} | "
                         f"{d['scale']:.2e} |")
        else:
            lines.append(f"| {name} | {cpu:.2f} s | not measured (no CUDA) | | | |")
    if r["gpu"] is None:
        lines.append("\nCUDA is absent on this machine: only the CPU part ran.")
    else:
        lines.append(f"\nGPU: {r['gpu']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
