"""TRAModel's rows of ``bench_models.py --zoo`` and ``gpu_models.py``: TRA needs an ``MTSDatasetH`` (windows and
a memory) rather than the zoo's matrices, so it is timed on its own dataset over the same Alpha360 handler.

Hyperparameters: Qlib's ``examples/benchmarks/TRA/workflow_config_tra_Alpha360.yaml`` (LSTM backbone 64 x 2
with attention, 3 states, router transport, batch 1024, at most 100 steps per epoch, ``eval_test``). An epoch
is what the loop times: the training pass (at most 100 batches) + scoring train (the router needs the
memory refreshed every epoch), valid and test one day per batch. The first epoch also fills the memory
before training, so the last of at least two epochs is reported.
"""
from __future__ import annotations

from typing import Any

TRA_DATASET: dict[str, Any] = {"seq_len": 60, "horizon": 2, "input_size": 6, "num_states": 3, "batch_size": 1024,
                               "drop_last": True}
TRA_KWARGS: dict[str, Any] = {
    "model_config": {"input_size": 6, "hidden_size": 64, "num_layers": 2, "rnn_arch": "LSTM", "use_attn": True,
                     "dropout": 0.0},
    "tra_config": {"num_states": 3, "hidden_size": 16, "tau": 1.0, "src_info": "LR_TPE"},
    "lr": 1e-3, "max_steps_per_epoch": 100, "smooth_steps": 5, "lamb": 1.0, "rho": 1.0, "transport_method": "router",
    "memory_mode": "sample", "eval_train": False, "eval_test": True, "pretrain": False,
}
SCORED = ("train", "valid", "test")  # the router scores train every epoch; eval_test scores test


def tra_dataset(handler: Any, segments: dict) -> Any:
    """An MTSDatasetH as in Qlib's TRA Alpha360 config over ``handler`` (its data is reused, not reloaded)."""
    from qexp_data.mts_dataset import MTSDatasetH
    return MTSDatasetH(handler, dict(segments), **TRA_DATASET)


def tra_model(epochs: int, gpu: int) -> Any:
    from qexp_models.tra import TRAModel
    return TRAModel(**TRA_KWARGS, n_epochs=epochs, early_stop=10**6, GPU=gpu, seed=0)


def _shortened(ds: Any, fraction: float) -> dict:
    """Each segment cut to its last ``fraction`` of days (whole days: each keeps its cross-section)."""
    out = {}
    for name, (_start, end) in ds.segments.items():
        seg = ds.prepare(name)
        keep = max(1, int(round(seg.n_days * fraction)))
        out[name] = (seg._store.dates[seg.last - keep + 1], end)
    return out


def bench_tra(handler: Any, segments: dict, epochs: int, fraction: float) -> dict:
    """Epoch times of TRAModel on the CPU, and the estimate for the full segments: the training pass scaled by
    the batches a full epoch trains (at most 100), the scoring by the rows scored."""
    import torch
    ds = tra_dataset(handler, segments)
    full = {name: ds.prepare(name).n_rows for name in SCORED}
    if fraction < 1.0:
        ds.config(segments=_shortened(ds, fraction))
    rows = {name: ds.prepare(name).n_rows for name in SCORED}
    model = tra_model(max(2, epochs), -1)
    model.fit(ds)
    batch, cap = TRA_DATASET["batch_size"], TRA_KWARGS["max_steps_per_epoch"]
    steps, full_steps = min(cap, rows["train"] // batch), min(cap, full["train"] // batch)
    train_s, epoch_s = model.train_seconds[-1], model.epoch_seconds[-1]
    score_s = epoch_s - train_s
    estimate = train_s * full_steps / max(1, steps) + score_s * sum(full.values()) / max(1, sum(rows.values()))
    return {"epoch_s": list(model.epoch_seconds), "train_s": list(model.train_seconds), "rows": rows,
            "full_rows": full, "steps": steps, "full_steps": full_steps, "full_epoch_s": estimate,
            "threads": torch.get_num_threads()}


def tra_row(e: dict) -> str:
    """The zoo table's TRAModel row."""
    o = e["ours"]
    measured = sum(o["rows"].values())
    return (f"| TRAModel (epoch: {o['full_steps']} steps of 1024 + scoring {sum(o['full_rows'].values()):,} rows; "
            f"MTSDatasetH, measured on {o['steps']} steps + {measured:,} rows) | {o['full_epoch_s']:.1f} s | "
            f"not compared | |")
