"""Qlib 0.9.7's own GRU/LSTM/Transformer/MLP training code, timed on matrices that bench_models.py wrote.

Runs in a separate Python that has pyqlib 0.9.7 installed (``--qlib-python`` of bench_models.py):

    python _qlib_peer.py DATA.npz MODEL EPOCHS MLP_STEPS OUT.json [KWARGS_JSON]

For GRU, LSTM and TransformerModel one epoch is exactly Qlib's ``fit`` loop body: ``train_epoch(x_train,
y_train)``, ``test_epoch(x_train, y_train)``, ``test_epoch(x_valid, y_valid)`` on pandas frames, as
``pytorch_gru.GRU.fit`` calls them. The MLP (``DNNModelPytorch``) has no epochs: ``fit`` runs MLP_STEPS
steps on a minimal dataset object (``segments`` and ``prepare``, as Qlib's DatasetH) and is timed whole.
``DEnsembleModel`` (DoubleEnsemble on LightGBM, ``bench_gbdt_zoo.py``) is built with KWARGS_JSON and its whole
``fit`` timed on that dataset object (wall clock and the process's CPU time).
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd


class _Dataset:
    """What DNNModelPytorch.fit reads from a DatasetH: ``segments`` and ``prepare(seg, col_set, data_key)``."""

    def __init__(self, frames: dict[str, pd.DataFrame]):
        self.frames = frames
        self.segments = {k: None for k in frames}

    def prepare(self, seg, col_set=None, data_key=None):  # noqa: ANN001, ANN201
        if isinstance(seg, (list, tuple)):  # DEnsembleModel asks for ["train", "valid"] at once
            return [self.frames[s] for s in seg]
        return self.frames[seg]


def _frame(data, seg: str) -> pd.DataFrame:  # noqa: ANN001
    x, y = data[f"x_{seg}"], data[f"y_{seg}"]
    cols = pd.MultiIndex.from_tuples([("feature", f"F{i}") for i in range(x.shape[1])] + [("label", "LABEL0")])
    index = pd.MultiIndex.from_arrays([pd.to_datetime(data[f"dates_{seg}"]), data[f"inst_{seg}"]],
                                      names=["datetime", "instrument"])
    return pd.DataFrame(np.c_[x, y[:, None]], columns=cols, index=index)


def main() -> int:
    data_file, model_name, epochs, mlp_steps, out = sys.argv[1:6]
    import torch
    torch.manual_seed(0)
    np.random.seed(0)
    data = np.load(data_file)
    tr = _frame(data, "train")
    va = _frame(data, "valid")
    result: dict = {"qlib_version": __import__("qlib").__version__, "threads": torch.get_num_threads()}
    if model_name == "DEnsembleModel":
        from qlib.contrib.model.double_ensemble import DEnsembleModel
        model = DEnsembleModel(**json.loads(sys.argv[6]))
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(_Dataset({"train": tr, "valid": va}))
        result["fit_s"], result["fit_cpu_s"] = [time.perf_counter() - t0], [time.process_time() - c0]
    elif model_name == "DNNModelPytorch":
        # Qlib 0.9.7 compares torch versions as strings ("2.13" <= "2.6"), so on torch >= 2.10 it passes
        # ReduceLROnPlateau a 'verbose' argument that newer torch rejects; a version string it reads
        # correctly avoids that and changes nothing else
        real_version = torch.__version__
        torch.__version__ = "2.7.0"
        import qlib.contrib.model.pytorch_nn as nn_mod
        from qlib.contrib.model.pytorch_nn import DNNModelPytorch

        class _NoRecorder:
            def log_metrics(self, **kwargs):  # noqa: ANN003, ANN201
                pass

        nn_mod.R = _NoRecorder()  # the timing needs no experiment store
        model = DNNModelPytorch(lr=0.002, optimizer="adam", max_steps=int(mlp_steps), batch_size=4096, GPU=-1,
                                seed=0, early_stop_rounds=10**9, pt_model_kwargs={"input_dim": tr["feature"].shape[1]})
        torch.__version__ = real_version
        t0 = time.perf_counter()
        model.fit(_Dataset({"train": tr, "valid": va}), save_path=out + ".pt")
        result["fit_s"] = [time.perf_counter() - t0]
    else:
        if model_name == "GRU":
            from qlib.contrib.model.pytorch_gru import GRU
            model = GRU(d_feat=6, hidden_size=64, num_layers=2, dropout=0.0, lr=1e-3, batch_size=800, GPU=-1, seed=0)
        elif model_name == "LSTM":
            from qlib.contrib.model.pytorch_lstm import LSTM
            model = LSTM(d_feat=6, hidden_size=64, num_layers=2, dropout=0.0, lr=1e-3, batch_size=800, GPU=-1,
                         seed=0)
        elif model_name == "TransformerModel":
            from qlib.contrib.model.pytorch_transformer import TransformerModel
            model = TransformerModel(d_feat=6, GPU=-1, seed=0)
        else:
            raise SystemExit(f"unknown model {model_name}")
        x_tr, y_tr, x_va, y_va = tr["feature"], tr["label"], va["feature"], va["label"]
        epochs_s, train_s = [], []
        for _ in range(int(epochs)):
            t0 = time.perf_counter()
            model.train_epoch(x_tr, y_tr)
            t1 = time.perf_counter()
            model.test_epoch(x_tr, y_tr)
            model.test_epoch(x_va, y_va)
            epochs_s.append(time.perf_counter() - t0)
            train_s.append(t1 - t0)
        result["epoch_s"], result["train_s"] = epochs_s, train_s
    with open(out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
