"""``ALSTM``: attention RNN (Qlib's ``pytorch_alstm.ALSTM`` and ``pytorch_alstm_ts.ALSTM`` in one class).

One class serves both of Qlib's variants: ``fit`` looks at what ``dataset.prepare("train")`` returns: a
frame (``DatasetH``: flat features reshaped to ``[N, T, d_feat]``, Alpha360 -> ``[N, 60, 6]``) or a window
sampler (``TSDatasetH``: ``[N, step_len, d_feat]`` windows, label of the last step).

Speed, against Qlib's loop: each segment becomes one tensor on the training device before the first epoch
(no per-batch host copies or numpy fancy indexing), batches are rows of a per-epoch permutation, scoring
runs under ``torch.inference_mode`` with the loss summed on the device (one host sync per scored segment),
and on the CPU the GRU runs through :mod:`.gru_cpu` (fewer, larger matrix products; reused buffers). Batch
semantics follow Qlib (shuffle every epoch, score train and valid after every epoch) except that the last
partial batch is used, not dropped, and the scores are exact means over all rows rather than means of
per-batch means.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from qexp.ext import Model

from . import _lazy
from ._data import DK_I, DK_L, has_segment, not_fitted, require_segment
from ._log import epoch_line, log_points, model_note
from ._torch_state import TorchStateMixin
from ._windows import Steps, load

logger = logging.getLogger("qexp.models.alstm")

LOSSES = ("mse",)
METRICS = ("", "loss")
OPTIMIZERS = ("adam", "gd")
_QLIB_IGNORED = {"n_jobs"}  # Qlib's DataLoader workers: nothing to do here, windows are read in bulk


class ALSTM(TorchStateMixin, Model):
    """Attention GRU/LSTM on sequences, trained with early stopping on the valid score.

    Args (Qlib's): d_feat (features per step), hidden_size, num_layers, dropout, n_epochs, lr, metric
    (``""``/``"loss"``: minus the loss), batch_size, early_stop (epochs without a better valid score),
    loss (``"mse"``), optimizer (``"adam"``/``"gd"``), GPU (CUDA device index; ``-1`` = CPU; ``None``, the
    default, uses GPU 0 when CUDA is present), seed (deterministic training on CPU), rnn_type (``"GRU"`` or
    ``"LSTM"``).
    """

    gpu_warn_once = True  # fit and predict both ask for the device: one warning per model
    gpu_warn_stacklevel = 3

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 n_epochs: int = 200, lr: float = 0.001, metric: str = "", batch_size: int = 2000,
                 early_stop: int = 20, loss: str = "mse", optimizer: str = "adam", GPU: int | None = None,
                 seed: int | None = None, rnn_type: str = "GRU", **kwargs: Any):
        unknown = set(kwargs) - _QLIB_IGNORED
        if unknown:
            warnings.warn(f"ALSTM: ignoring unknown argument(s) {', '.join(sorted(unknown))}", stacklevel=2)
        _check_choice("loss", loss, LOSSES)
        _check_choice("metric", metric, METRICS)
        _check_choice("optimizer", optimizer.lower(), OPTIMIZERS)
        _check_choice("rnn_type", rnn_type.upper(), ("GRU", "LSTM"))
        for name, value in (("d_feat", d_feat), ("hidden_size", hidden_size), ("num_layers", num_layers),
                            ("n_epochs", n_epochs), ("batch_size", batch_size), ("early_stop", early_stop)):
            if int(value) != value or value < 1:
                raise ValueError(f"ALSTM: {name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ALSTM: dropout must be in [0, 1), got {dropout}")
        self.d_feat = int(d_feat)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.n_epochs = int(n_epochs)
        self.lr = float(lr)
        self.metric = metric
        self.batch_size = int(batch_size)
        self.early_stop = int(early_stop)
        self.loss = loss
        self.optimizer = optimizer.lower()
        self.GPU = GPU
        self.seed = seed
        self.rnn_type = rnn_type.upper()
        # rows per forward pass when scoring and predicting; None chooses per device (see _eval_batch)
        self.eval_batch_size: int | None = None
        self.fitted = False
        self.input_kind: str | None = None      # "DatasetH" or "TSDatasetH", set by fit
        self.best_epoch: int | None = None
        self.best_score: float | None = None
        self.epoch_seconds: list[float] = []     # wall time of each epoch (training pass + scoring)
        self.train_seconds: list[float] = []     # the training pass of each epoch
        self.net: Any = None                     # the torch module; pickled as ``net_state`` (numpy, CPU)
        self.net_state: dict[str, np.ndarray] | None = None

    def _new_net(self) -> Any:
        from .alstm_net import ALSTMNet
        return ALSTMNet(self.d_feat, self.hidden_size, self.num_layers, self.dropout, self.rnn_type)

    # ---- training ----------------------------------------------------------------------------
    def fit(self, dataset: Any, evals_result: dict | None = None, save_path: str | None = None,
            reweighter: Any = None) -> ALSTM:
        """Train on ``train``, early-stopping on ``valid``; keeps the weights of the best valid score.

        ``evals_result`` (a dict) receives the per-epoch ``train``/``valid`` scores; ``save_path`` (optional)
        receives the best ``state_dict`` via ``torch.save``.
        """
        torch = _lazy.torch("ALSTM")
        if reweighter is not None:
            raise ValueError("ALSTM does not support a reweighter; fit without one")
        require_segment(dataset, "train", "ALSTM")
        train = _learn(load(dataset, "train", self.d_feat, DK_L, True, "ALSTM"), "train")
        valid = None
        if has_segment(dataset, "valid"):
            valid = _learn(load(dataset, "valid", self.d_feat, DK_L, True, "ALSTM"), "valid")
        else:
            warnings.warn(f"ALSTM: the dataset has no 'valid' segment, so it trains all {self.n_epochs} epochs "
                          f"without early stopping and keeps the last weights", stacklevel=2)
        self.input_kind = train.kind
        device = self._device(torch)
        cuda_devices = [device.index] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices, enabled=self.seed is not None):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            self._train(torch, device, train, valid, {} if evals_result is None else evals_result, save_path)
        return self

    def _train(self, torch: Any, device: Any, train: Steps, valid: Steps | None, evals_result: dict,
               save_path: str | None) -> None:
        net = self._new_net().to(device)
        params = list(net.parameters())
        # fused Adam on a GPU: one kernel for all parameters instead of several per parameter
        opt = (torch.optim.Adam(params, lr=self.lr, fused=device.type == "cuda") if self.optimizer == "adam"
               else torch.optim.SGD(params, lr=self.lr))
        # the data go to the device once; batches are index_select-ed there
        x_tr, y_tr = _to_device(torch, train, device)
        x_va, y_va = _to_device(torch, valid, device) if valid is not None else (None, None)
        shuffle = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        replicas = self._replicas(net, device, len(y_tr))
        try:
            best_state, best_epoch, best_score = self._epochs(torch, device, net, opt, params, replicas, x_tr, y_tr,
                                                              x_va, y_va, shuffle, evals_result)
        finally:
            if replicas is not None:
                replicas.close()
        if best_state is None:
            raise FloatingPointError(f"ALSTM: the valid loss was NaN in every epoch ({len(self.epoch_seconds)}); "
                                     f"training diverged: lower lr (now {self.lr}) or check the labels")
        net.load_state_dict(best_state)
        net.release_workspace()
        self.net, self.net_state = net, None
        self.best_epoch, self.best_score = best_epoch, float(best_score)
        self.fitted = True
        if save_path is not None:
            torch.save({k: v.cpu() for k, v in best_state.items()}, save_path)
        if device.type == "cuda":
            del x_tr, y_tr, x_va, y_va
            torch.cuda.empty_cache()

    def _epochs(self, torch: Any, device: Any, net: Any, opt: Any, params: list, replicas: Any, x_tr: Any,
                y_tr: Any, x_va: Any, y_va: Any, shuffle: Any, evals_result: dict) -> tuple:
        """The epoch loop with early stopping; returns (best state, best epoch, best valid score)."""
        from tqdm.auto import tqdm

        evals_result["train"], evals_result["valid"] = [], []
        points: list[tuple[str, float, int, int]] = []
        best_score, best_state, best_epoch, stale = -np.inf, None, 0, 0
        self.epoch_seconds, self.train_seconds = [], []
        bar = tqdm(range(self.n_epochs), desc="ALSTM", unit="epoch", disable=None, leave=False)
        try:
            for epoch in bar:
                t0 = time.perf_counter()
                perm = torch.randperm(len(y_tr), generator=shuffle).to(device)
                self._train_epoch(torch, net, opt, params, x_tr, y_tr, perm)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # only so that train_seconds measures the training pass
                self.train_seconds.append(time.perf_counter() - t0)
                train_loss = self._loss(torch, net, x_tr, y_tr, replicas)
                valid_loss = self._loss(torch, net, x_va, y_va, replicas) if x_va is not None else train_loss
                train_score, valid_score = -train_loss, -valid_loss  # metric "" / "loss": minus the loss
                self.epoch_seconds.append(time.perf_counter() - t0)
                ts = int(time.time() * 1000)
                points += [("train_loss", train_loss, ts, epoch), ("train_score", train_score, ts, epoch)]
                if x_va is not None:
                    points += [("valid_loss", valid_loss, ts, epoch), ("valid_score", valid_score, ts, epoch)]
                evals_result["train"].append(train_score)
                evals_result["valid"].append(valid_score)
                bar.set_postfix(train=f"{train_loss:.5f}", valid=f"{valid_loss:.5f}" if x_va is not None else "-")
                epoch_line("ALSTM", epoch, self.n_epochs, train_loss, valid_loss if x_va is not None else None,
                           self.epoch_seconds[-1])
                if x_va is None or valid_score > best_score:
                    best_score, best_epoch, stale = valid_score, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
                    if stale >= self.early_stop:
                        model_note("ALSTM", f"early stop at epoch {epoch + 1}: best valid score {best_score:.6f} at "
                                            f"epoch {best_epoch + 1}")
                        break
        finally:  # the epochs done so far reach the recorder even when training is interrupted
            bar.close()
            log_points(points)
        return best_state, best_epoch, best_score

    def _replicas(self, net: Any, device: Any, rows: int) -> Any:
        """Scoring replicas of ``net`` on a multi-core CPU (see :mod:`.thread_replicas`), else None."""
        from .thread_replicas import ThreadReplicas, replica_threads
        n = replica_threads(device, rows)
        return ThreadReplicas(net, n) if n > 1 else None

    def _train_epoch(self, torch: Any, net: Any, opt: Any, params: list, x: Any, y: Any, perm: Any) -> None:
        net.train()
        for start in range(0, len(perm), self.batch_size):
            idx = perm[start:start + self.batch_size]
            pred = net(x.index_select(0, idx))
            loss = torch.mean((pred - y.index_select(0, idx)) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_value_(params, 3.0)
            opt.step()

    def _loss(self, torch: Any, net: Any, x: Any, y: Any, replicas: Any = None) -> float:
        """Mean squared error over all rows (NaN labels were dropped at load), one host sync."""
        net.eval()
        step = self._eval_batch(y.device)
        if replicas is not None:
            return replicas.sse(x, y, step) / len(y)
        with torch.inference_mode():
            sse = torch.zeros((), dtype=torch.float64, device=y.device)
            for start in range(0, len(y), step):
                stop = start + step
                sse += torch.sum((net(x[start:stop]) - y[start:stop]) ** 2, dtype=torch.float64)
            return float(sse.item() / len(y))

    # ---- prediction --------------------------------------------------------------------------
    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        """Scores of ``segment``'s infer rows (DatasetH) or windows (TSDatasetH)."""
        if not self.fitted:
            raise not_fitted("ALSTM")
        torch = _lazy.torch("ALSTM")
        steps = load(dataset, segment, self.d_feat, DK_I, False, "ALSTM")
        if self.input_kind is not None and steps.kind != self.input_kind:
            raise ValueError(f"ALSTM was fitted on a {self.input_kind} but predicts on a {steps.kind}; "
                             f"predict with the same kind of dataset")
        device = self._device(torch)
        net = self._net_on(torch, device)
        net.eval()
        step = self._eval_batch(device)
        replicas = self._replicas(net, device, len(steps.x))
        if replicas is not None:
            with replicas:
                scores = replicas.predict(steps.x, step)
        else:
            out = []
            with torch.inference_mode():
                for start in range(0, len(steps.x), step):
                    xb = torch.from_numpy(steps.x[start:start + step]).to(device)
                    out.append(net(xb).float().cpu().numpy())
            scores = np.concatenate(out)
        net.release_workspace()
        return pd.Series(scores.astype(np.float64), index=steps.index)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"ALSTM: unknown {name} {value!r}; use one of {', '.join(map(repr, allowed))}")


def _learn(steps: Steps, segment: str) -> Steps:
    """Learn data without NaN-label rows (they add nothing to the loss), and a clear error on NaN features."""
    assert steps.y is not None
    keep = ~np.isnan(steps.y)
    if not keep.all():
        steps = Steps(steps.x[keep], steps.y[keep], steps.index[keep], steps.kind)
    bad = np.isnan(steps.x).any(axis=(1, 2))
    if bad.any():
        raise ValueError(f"ALSTM: {int(bad.sum())} of {len(bad)} '{segment}' samples have NaN features, which would "
                         f"make the loss NaN; fill them in the handler (e.g. infer_processors: RobustZScoreNorm "
                         f"then Fillna, as Qlib's ALSTM configs do)")
    return steps


def _to_device(torch: Any, steps: Steps, device: Any) -> tuple[Any, Any]:
    return torch.from_numpy(steps.x).to(device), torch.from_numpy(steps.y).to(device)
