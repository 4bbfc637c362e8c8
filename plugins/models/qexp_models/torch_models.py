"""Qlib's PyTorch sequence and tabular models on the shared loop (:mod:`.torch_loop`): ``GRU``, ``LSTM``,
``TransformerModel``, ``LocalformerModel``, ``TCN``, ``DNNModelPytorch`` (MLP) and ``GeneralPTNN``.

Each class takes Qlib's constructor arguments with Qlib's defaults and serves both of Qlib's variants where
Qlib has two (``pytorch_gru`` on a ``DatasetH`` and ``pytorch_gru_ts`` on a ``TSDatasetH``): ``fit`` tells
the dataset kinds apart. Where the two variants' defaults differ (Transformer's batch size, TCN's layers),
a ``..._ts`` subclass with the other defaults answers the ``_ts`` module path.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Any, ClassVar

import numpy as np

from ._data import check_frame, label_vector
from ._windows import FLAT
from .torch_loop import Segment, TorchModel, check_choice, check_dropout, check_positive_int


class _RNN(TorchModel):
    net_class: ClassVar[str] = "GRUModel"

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 n_epochs: int = 200, lr: float = 0.001, metric: str = "", batch_size: int = 2000,
                 early_stop: int = 20, loss: str = "mse", optimizer: str = "adam", GPU: Any = 0,
                 seed: int | None = None, **kwargs: Any):
        check_positive_int(self.name, hidden_size=hidden_size, num_layers=num_layers)
        check_dropout(self.name, dropout)
        self.hidden_size, self.num_layers, self.dropout = int(hidden_size), int(num_layers), float(dropout)
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)

    def _new_net(self) -> Any:
        from .nets import rnn
        return getattr(rnn, self.net_class)(self.d_feat, self.hidden_size, self.num_layers, self.dropout)


class GRU(_RNN):
    """Qlib's GRU (``pytorch_gru.GRU`` / ``pytorch_gru_ts.GRU``): a GRU over the steps, a linear head on the
    last hidden state; MSE, Adam, early stopping on minus the valid loss."""

    net_class = "GRUModel"


class LSTM(_RNN):
    """Qlib's LSTM (``pytorch_lstm.LSTM`` / ``pytorch_lstm_ts.LSTM``): as :class:`GRU` with an LSTM."""

    net_class = "LSTMModel"


class TransformerModel(TorchModel):
    """Qlib's ``TransformerModel`` (``pytorch_transformer`` / ``_ts``): linear embedding, sinusoidal positions,
    ``num_layers`` encoder layers, a linear head on the last step; Adam with weight decay ``reg``."""

    net_class: ClassVar[str] = "Transformer"
    cpu_eval_batch = 256   # the encoder's 2048-unit feed-forward layer: keep a scoring pass in cache
    gpu_eval_batch = 4096

    def __init__(self, d_feat: int = 20, d_model: int = 64, batch_size: int = 2048, nhead: int = 2,
                 num_layers: int = 2, dropout: float = 0, n_epochs: int = 100, lr: float = 0.0001,
                 metric: str = "", early_stop: int = 5, loss: str = "mse", optimizer: str = "adam",
                 reg: float = 1e-3, n_jobs: int = 10, GPU: Any = 0, seed: int | None = None, **kwargs: Any):
        check_positive_int(self.name, d_model=d_model, nhead=nhead, num_layers=num_layers)
        check_dropout(self.name, dropout)
        if d_model % nhead:
            raise ValueError(f"{self.name}: d_model={d_model} must be a multiple of nhead={nhead}")
        self.d_model, self.nhead, self.num_layers, self.dropout = int(d_model), int(nhead), int(num_layers), dropout
        self.reg, self.n_jobs = float(reg), n_jobs
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed,
                        weight_decay=reg, kwargs=kwargs)

    def _new_net(self) -> Any:
        from .nets import transformer
        return getattr(transformer, self.net_class)(self.d_feat, self.d_model, self.nhead, self.num_layers,
                                                    self.dropout)


class TransformerModelTS(TransformerModel):
    """``pytorch_transformer_ts.TransformerModel``: Qlib's defaults there (batch_size 8192)."""

    qlib_name = "TransformerModel"

    def __init__(self, d_feat: int = 20, d_model: int = 64, batch_size: int = 8192, **kwargs: Any):
        super().__init__(d_feat=d_feat, d_model=d_model, batch_size=batch_size, **kwargs)


class LocalformerModel(TransformerModel):
    """Qlib's ``LocalformerModel``: the Transformer with a convolution beside each encoder layer and a GRU
    after the encoder."""

    net_class = "Localformer"


class LocalformerModelTS(LocalformerModel):
    """``pytorch_localformer_ts.LocalformerModel``: Qlib's defaults there (batch_size 8192)."""

    qlib_name = "LocalformerModel"

    def __init__(self, d_feat: int = 20, d_model: int = 64, batch_size: int = 8192, **kwargs: Any):
        super().__init__(d_feat=d_feat, d_model=d_model, batch_size=batch_size, **kwargs)


class TCN(TorchModel):
    """Qlib's ``TCN`` (``pytorch_tcn`` / ``_ts``): ``num_layers`` residual blocks of dilated causal convolutions
    with ``n_chans`` channels, a linear head on the last step."""

    def __init__(self, d_feat: int = 6, n_chans: int = 128, kernel_size: int = 5, num_layers: int = 5,
                 dropout: float = 0.5, n_epochs: int = 200, lr: float = 0.0001, metric: str = "",
                 batch_size: int = 2000, early_stop: int = 20, loss: str = "mse", optimizer: str = "adam",
                 GPU: Any = 0, seed: int | None = None, **kwargs: Any):
        check_positive_int(self.name, n_chans=n_chans, kernel_size=kernel_size, num_layers=num_layers)
        check_dropout(self.name, dropout)
        self.n_chans, self.kernel_size, self.num_layers, self.dropout = (int(n_chans), int(kernel_size),
                                                                         int(num_layers), float(dropout))
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)

    def _new_net(self) -> Any:
        from .nets.tcn import TCNModel
        assert self.d_feat is not None
        return TCNModel(self.d_feat, 1, [self.n_chans] * self.num_layers, self.kernel_size, self.dropout)


class TCNTS(TCN):
    """``pytorch_tcn_ts.TCN``: Qlib's defaults there (2 layers, no dropout, lr 1e-3)."""

    qlib_name = "TCN"

    def __init__(self, d_feat: int = 6, n_chans: int = 128, kernel_size: int = 5, num_layers: int = 2,
                 dropout: float = 0.0, n_epochs: int = 200, lr: float = 0.001, **kwargs: Any):
        super().__init__(d_feat=d_feat, n_chans=n_chans, kernel_size=kernel_size, num_layers=num_layers,
                         dropout=dropout, n_epochs=n_epochs, lr=lr, **kwargs)


# ---- networks named by URI -------------------------------------------------------------------------------
class _NetByURI(TorchModel):
    """A model whose network is ``pt_model_uri(**pt_model_kwargs)``."""

    pt_model_uri: str
    pt_model_kwargs: dict

    def _set_network(self, pt_model_uri: str, pt_model_kwargs: dict | None) -> None:
        from .nets import QLIB_NETWORKS
        if not isinstance(pt_model_uri, str) or "." not in pt_model_uri:
            raise ValueError(f"{self.name}: pt_model_uri must be 'package.module.Class' (e.g. "
                             f"{next(iter(QLIB_NETWORKS))}), got {pt_model_uri!r}")
        if pt_model_kwargs is not None and not isinstance(pt_model_kwargs, dict):
            raise ValueError(f"{self.name}: pt_model_kwargs must be a mapping, got {pt_model_kwargs!r}")
        self.pt_model_uri, self.pt_model_kwargs = pt_model_uri, dict(pt_model_kwargs or {})

    def _new_net(self) -> Any:
        from .nets import resolve_network
        cls = resolve_network(self.pt_model_uri)
        try:
            return cls(**self.pt_model_kwargs)
        except TypeError as exc:
            raise ValueError(f"{self.name}: {self.pt_model_uri}(**pt_model_kwargs) failed: {exc}") from exc

    def _check_input(self, seg: Any) -> None:
        super()._check_input(seg)
        for key in ("input_dim", "d_feat", "num_input", "fea_dim"):
            want = self.pt_model_kwargs.get(key)
            if want is None:
                continue
            if seg.x.ndim == 2 and key != "input_dim":
                if seg.x.shape[1] % int(want):
                    raise ValueError(f"{self.name}: pt_model_kwargs.{key}={want} does not divide the "
                                     f"{seg.x.shape[1]} feature columns; set it to the number of feature blocks "
                                     f"(Alpha360: 6)")
            elif int(want) != seg.x.shape[-1]:
                raise ValueError(f"{self.name}: pt_model_kwargs.{key}={want} but the data has {seg.x.shape[-1]} "
                                 f"features{' per step' if seg.x.ndim == 3 else ''}; set {key}: {seg.x.shape[-1]}")


class GeneralPTNN(_NetByURI):
    """Qlib's ``GeneralPTNN`` (``pytorch_general_nn``): any network (``pt_model_uri``/``pt_model_kwargs``) on
    a ``DatasetH`` (rows ``[B, F]``) or a ``TSDatasetH`` (windows ``[B, T, F]``); Adam with
    ``weight_decay``, the learning rate halved when the valid loss stalls for 5 epochs (Qlib's
    ReduceLROnPlateau), early stopping on the valid loss. ``evals_result`` gets the losses, as Qlib's."""

    layout = "native"
    evals_loss = True

    def __init__(self, n_epochs: int = 200, lr: float = 0.001, metric: str = "", batch_size: int = 2000,
                 early_stop: int = 20, loss: str = "mse", weight_decay: float = 0.0, optimizer: str = "adam",
                 n_jobs: int = 10, GPU: Any = 0, seed: int | None = None,
                 pt_model_uri: str = "qlib.contrib.model.pytorch_gru_ts.GRUModel",
                 pt_model_kwargs: dict | None = None, **kwargs: Any):
        if pt_model_kwargs is None:
            pt_model_kwargs = {"d_feat": 6, "hidden_size": 64, "num_layers": 2, "dropout": 0.0}
        self._set_network(pt_model_uri, pt_model_kwargs)
        self.n_jobs = n_jobs
        self._init_loop(d_feat=None, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed,
                        weight_decay=weight_decay, kwargs=kwargs)
        self._scheduler: Any = None

    def _make_optimizer(self, torch: Any, params: list, device: Any) -> Any:
        opt = super()._make_optimizer(torch, params, device)
        self._scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=5,
                                                                     min_lr=1e-6, threshold=1e-5)
        return opt

    def _after_round(self, valid_loss: float) -> None:
        if self._scheduler is not None:
            self._scheduler.step(valid_loss)

    def _train(self, *args: Any) -> None:
        try:
            super()._train(*args)
        finally:
            self._scheduler = None  # holds the optimizer: not part of the fitted model


class DNNModelPytorch(_NetByURI):
    """Qlib's MLP (``pytorch_nn.DNNModelPytorch``) on a ``DatasetH``'s rows.

    Training follows Qlib: ``max_steps`` steps, each on ``batch_size`` rows drawn with replacement; every
    ``eval_steps`` steps the valid loss is computed, the best weights kept, the learning rate scheduled
    (``scheduler="default"``: halved after 10 evaluations without improvement, down to 1e-5; ``None``: none;
    a callable ``scheduler(optimizer=...)``: yours), and training stops after ``early_stop_rounds``
    evaluations without a better valid loss. One "epoch" of the loop's logs = ``eval_steps`` steps;
    ``evals_result`` gets the train and valid losses of each, as Qlib's.
    """

    layout = "flat"
    evals_loss = True
    grad_clip = None
    LOSSES = ("mse", "binary")

    def __init__(self, lr: float = 0.001, max_steps: int = 300, batch_size: int = 2000, early_stop_rounds: int = 50,
                 eval_steps: int = 20, optimizer: str = "gd", loss: str = "mse", GPU: Any = 0, seed: int | None = None,
                 weight_decay: float = 0.0, data_parall: bool = False, scheduler: Any = "default",
                 init_model: Any = None, eval_train_metric: bool = False,
                 pt_model_uri: str = "qlib.contrib.model.pytorch_nn.Net", pt_model_kwargs: dict | None = None,
                 valid_key: str = "learn", **kwargs: Any):
        check_positive_int(self.name, max_steps=max_steps, eval_steps=eval_steps)
        if pt_model_kwargs is None:
            pt_model_kwargs = {"input_dim": 360, "layers": (256,)}
        self._set_network(pt_model_uri, pt_model_kwargs)
        if not (scheduler is None or scheduler == "default" or callable(scheduler)):
            raise ValueError(f"{self.name}: scheduler must be 'default', None or a callable(optimizer=...), "
                             f"got {scheduler!r}")
        check_choice(self.name, "valid_key", valid_key, ("learn", "infer"))
        if data_parall:
            warnings.warn(f"{self.name}: data_parall is ignored; training uses one device", stacklevel=2)
        self.max_steps, self.eval_steps = int(max_steps), int(eval_steps)
        self.early_stop_rounds = int(early_stop_rounds)
        self.scheduler = scheduler
        self.init_model = init_model
        self.eval_train_metric = bool(eval_train_metric)
        self.valid_key = valid_key
        self.data_parall = data_parall
        self.best_step: int | None = None
        self._init_loop(d_feat=None, n_epochs=math.ceil(self.max_steps / self.eval_steps), lr=lr, metric="",
                        batch_size=batch_size, early_stop=early_stop_rounds, loss=loss, optimizer=optimizer,
                        GPU=GPU, seed=seed, weight_decay=weight_decay, kwargs=kwargs)
        self._sched: Any = None

    def _scores_train(self) -> bool:
        """Score all train rows each round only with ``eval_train_metric`` (else: the batch losses' mean)."""
        return self.eval_train_metric

    def _new_net(self) -> Any:
        if self.init_model is not None:
            return copy.deepcopy(self.init_model)
        return super()._new_net()

    def _load(self, dataset: Any, segment: Any, learn: bool) -> Any:
        if learn and segment == "valid" and self.valid_key != "learn":
            df = dataset.prepare("valid", col_set=["feature", "label"], data_key=self.valid_key)
            check_frame(df, "valid", self.name)
            return Segment(np.ascontiguousarray(df["feature"].to_numpy(dtype=np.float32)),
                           label_vector(df, "valid", self.name).astype(np.float32), df.index, FLAT)
        return super()._load(dataset, segment, learn)

    def _make_optimizer(self, torch: Any, params: list, device: Any) -> Any:
        opt = super()._make_optimizer(torch, params, device)
        if self.scheduler == "default":
            self._sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=0.5, patience=10, threshold=0.0001, threshold_mode="rel", cooldown=0,
                min_lr=0.00001, eps=1e-08)
        elif callable(self.scheduler):
            self._sched = self.scheduler(optimizer=opt)
        return opt

    def _after_round(self, valid_loss: float) -> None:
        if self._sched is None:
            return
        from torch.optim.lr_scheduler import ReduceLROnPlateau
        if isinstance(self._sched, ReduceLROnPlateau):
            self._sched.step(valid_loss)
        else:
            self._sched.step()

    def _batches(self, torch: Any, tr: Any, gen: Any, epoch: int) -> Any:
        """``eval_steps`` batches (fewer in the last round) of rows drawn with replacement, as Qlib."""
        n = len(tr.y)
        steps = min(self.eval_steps, self.max_steps - epoch * self.eval_steps)
        for _ in range(steps):
            yield torch.randint(n, (self.batch_size,), generator=gen).to(tr.y.device)

    def _batch_loss(self, torch: Any, net: Any, xb: Any, yb: Any, wb: Any) -> Any:
        if self.loss == "binary":
            return torch.nn.functional.binary_cross_entropy_with_logits(self._forward(net, xb), yb, weight=wb)
        return super()._batch_loss(torch, net, xb, yb, wb)

    def _loss_value(self, torch: Any, pred: Any, y: Any) -> float:
        if self.loss == "binary":
            return float(torch.nn.functional.binary_cross_entropy_with_logits(pred.double(), y.double()).item())
        return super()._loss_value(torch, pred, y)

    def _train(self, *args: Any) -> None:
        try:
            super()._train(*args)
        finally:
            self._sched = None
        if self.best_epoch is not None:
            self.best_step = min((self.best_epoch + 1) * self.eval_steps, self.max_steps)



class KRNN(TorchModel):
    """Qlib's ``KRNN`` (``pytorch_krnn``): a convolution over the steps, ``rnn_dups`` parallel GRUs averaged, a
    linear head on the last step. ``fea_dim`` is the features per step (Alpha360: 6)."""

    def __init__(self, fea_dim: int = 6, cnn_dim: int = 64, cnn_kernel_size: int = 3, rnn_dim: int = 64,
                 rnn_dups: int = 3, rnn_layers: int = 2, dropout: float = 0, n_epochs: int = 200, lr: float = 0.001,
                 metric: str = "", batch_size: int = 2000, early_stop: int = 20, loss: str = "mse",
                 optimizer: str = "adam", GPU: Any = 0, seed: int | None = None, **kwargs: Any):
        check_positive_int(self.name, cnn_dim=cnn_dim, cnn_kernel_size=cnn_kernel_size, rnn_dim=rnn_dim,
                           rnn_dups=rnn_dups, rnn_layers=rnn_layers)
        check_dropout(self.name, dropout)
        self.fea_dim, self.cnn_dim, self.cnn_kernel_size = int(fea_dim), int(cnn_dim), int(cnn_kernel_size)
        self.rnn_dim, self.rnn_dups, self.rnn_layers, self.dropout = (int(rnn_dim), int(rnn_dups), int(rnn_layers),
                                                                      float(dropout))
        self._init_loop(d_feat=fea_dim, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)

    def _new_net(self) -> Any:
        from .nets.krnn import KRNNModel
        return KRNNModel(self.fea_dim, self.cnn_dim, self.cnn_kernel_size, self.rnn_dim, self.rnn_dups,
                         self.rnn_layers, self.dropout)


class Sandwich(TorchModel):
    """Qlib's ``Sandwich`` (``pytorch_sandwich``): two CNN-KRNN encoders in a row and a linear head."""

    def __init__(self, fea_dim: int = 6, cnn_dim_1: int = 64, cnn_dim_2: int = 32, cnn_kernel_size: int = 3,
                 rnn_dim_1: int = 16, rnn_dim_2: int = 8, rnn_dups: int = 3, rnn_layers: int = 2, dropout: float = 0,
                 n_epochs: int = 200, lr: float = 0.001, metric: str = "", batch_size: int = 2000,
                 early_stop: int = 20, loss: str = "mse", optimizer: str = "adam", GPU: Any = 0,
                 seed: int | None = None, **kwargs: Any):
        check_positive_int(self.name, cnn_dim_1=cnn_dim_1, cnn_dim_2=cnn_dim_2, cnn_kernel_size=cnn_kernel_size,
                           rnn_dim_1=rnn_dim_1, rnn_dim_2=rnn_dim_2, rnn_dups=rnn_dups, rnn_layers=rnn_layers)
        check_dropout(self.name, dropout)
        self.fea_dim, self.cnn_dim_1, self.cnn_dim_2 = int(fea_dim), int(cnn_dim_1), int(cnn_dim_2)
        self.cnn_kernel_size, self.rnn_dim_1, self.rnn_dim_2 = int(cnn_kernel_size), int(rnn_dim_1), int(rnn_dim_2)
        self.rnn_dups, self.rnn_layers, self.dropout = int(rnn_dups), int(rnn_layers), float(dropout)
        self._init_loop(d_feat=fea_dim, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)

    def _new_net(self) -> Any:
        from .nets.krnn import SandwichModel
        return SandwichModel(self.fea_dim, self.cnn_dim_1, self.cnn_dim_2, self.cnn_kernel_size, self.rnn_dim_1,
                             self.rnn_dim_2, self.rnn_dups, self.rnn_layers, self.dropout)


class SFM(TorchModel):
    """Qlib's ``SFM`` (``pytorch_sfm``): the state-frequency memory network; SGD by default, as Qlib.
    ``eval_steps`` is accepted for Qlib's configs (Qlib's SFM does not use it either)."""

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, output_dim: int = 1, freq_dim: int = 10,
                 dropout_W: float = 0.0, dropout_U: float = 0.0, n_epochs: int = 200, lr: float = 0.001,  # noqa: N803
                 metric: str = "", batch_size: int = 2000, early_stop: int = 20, eval_steps: int = 5,
                 loss: str = "mse", optimizer: str = "gd", GPU: Any = 0, seed: int | None = None, **kwargs: Any):
        check_positive_int(self.name, hidden_size=hidden_size, output_dim=output_dim, freq_dim=freq_dim)
        self.hidden_size, self.output_dim, self.freq_dim = int(hidden_size), int(output_dim), int(freq_dim)
        self.dropout_W, self.dropout_U, self.eval_steps = dropout_W, dropout_U, eval_steps
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)

    def _new_net(self) -> Any:
        from .nets.sfm import SFM_Model
        assert self.d_feat is not None
        return SFM_Model(self.d_feat, self.output_dim, self.freq_dim, self.hidden_size, self.dropout_W,
                         self.dropout_U)
