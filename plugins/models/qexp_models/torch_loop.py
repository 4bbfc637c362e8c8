"""The training loop shared by the PyTorch models of the zoo (GRU, LSTM, MLP, Transformer, TCN, GATs, ...).

A model is a :class:`TorchModel` subclass that says how to build its network (``_new_net``), how its inputs
are shaped (``layout``) and how it batches (``daily``); everything else is here, once:

- data: each segment becomes one tensor on the training device before the first epoch. ``layout="steps"``
  gives ``[N, T, d_feat]`` from either dataset kind (a ``DatasetH``'s flat columns reshaped as Qlib does,
  Alpha360 -> ``[N, 60, 6]``; a ``TSDatasetH``'s windows); ``"flat"`` gives ``[N, F]`` rows of a
  ``DatasetH``; ``"native"`` gives what the dataset gives (flat rows or windows). Rows with a NaN label are
  dropped (they add nothing to Qlib's masked loss); NaN features are a clear error.
- training: one round = a pass over a per-epoch permutation in ``batch_size`` batches (the last partial
  batch is used), or over the days in random order (``daily``: graph models see one day's stocks at a time);
  MSE on the labels (weighted when a reweighter gives weights), ``clip_grad_value_(3.0)`` as Qlib.
- after each round: train and valid scored over all rows (exact means, one host sync per segment; on a CPU
  with one network replica per core), ``metric`` ``""``/``"loss"`` = minus the loss, ``"ic"`` = mean daily
  Pearson IC; per-round ``train_loss``/``valid_loss``/``train_score``/``valid_score`` to the active recorder
  (one batched write, also when interrupted) and a progress line to the ``qexp.models`` logger.
- early stopping on the valid score with the best round's weights restored; seeds (``fork_rng``, so the
  caller's RNG is untouched); ``GPU`` index / device choice; pickling with the weights as CPU numpy arrays,
  so a GPU-trained model loads anywhere.

Models whose training differs (TCTS, ADARNN, ADD, IGMTF, TabNet's pretraining) stay on this loop through
small hooks: ``_batches`` (which rows form a batch; ``drop_last``), ``_batch_loss`` (the loss of one batch,
e.g. with auxiliary heads), ``_begin_round``/``_after_round`` (state around a round), ``_train_round`` (one
round's passes), ``_target`` (the label scored when ``y`` holds several per row), ``_init_net`` and
``metric_prefix`` (a pretraining phase run through the same ``_train``), ``_device_data`` (what the rounds
read instead of whole-segment tensors: TRA streams its MTSDatasetH's batches and memory).

This module imports torch only inside functions: registering the models needs no torch.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Any, ClassVar, Iterator, NamedTuple

import numpy as np
import pandas as pd

from qexp.ext import Model, bar

from . import _lazy
from ._checks import check_positive_int
from ._data import DK_I, DK_L, check_frame, has_segment, label_vector, not_fitted, require_segment
from ._log import log_points
from ._torch_state import TorchStateMixin

logger = logging.getLogger("qexp.models")

OPTIMIZERS = ("adam", "gd")
# Qlib arguments with nothing to do here: DataLoader workers (windows are read in bulk)
QLIB_IGNORED = frozenset({"n_jobs"})


class Segment(NamedTuple):
    """A segment's inputs as arrays: ``x`` [N, T, F] or [N, F] float32, ``y`` [N] float32 or None."""

    x: np.ndarray
    y: np.ndarray | None
    index: pd.Index
    kind: str                          # "DatasetH" or "TSDatasetH"
    w: np.ndarray | None = None        # per-row training weights (a reweighter's), or None


def check_choice(model: str, name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{model}: unknown {name} {value!r}; use one of {', '.join(map(repr, allowed))}")


def _named_params(fn: Any) -> set[str]:
    import inspect
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    try:
        return {n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds and n != "self"}
    except (TypeError, ValueError):
        return set()


def check_dropout(model: str, dropout: Any) -> None:
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{model}: dropout must be in [0, 1), got {dropout!r}")


class TorchModel(TorchStateMixin, Model):
    """Base of the zoo's PyTorch models: the shared loop (see the module docstring).

    Subclasses call :meth:`_init_loop` from ``__init__`` and implement :meth:`_new_net`.
    """

    LOSSES: ClassVar[tuple[str, ...]] = ("mse",)
    METRICS: ClassVar[tuple[str, ...]] = ("", "loss")
    layout: ClassVar[str] = "steps"       # "steps" | "flat" | "native"
    daily: ClassVar[bool] = False         # one batch per day (graph models), scored day by day
    score_train: ClassVar[bool] = True    # score all train rows after each round (Qlib's nets do)
    grad_clip: ClassVar[float | None] = 3.0
    drop_last: ClassVar[bool] = False     # skip a round's last partial batch (BatchNorm nets, as Qlib's loops)
    metric_prefix: str = ""               # prepended to the per-round metric names (a pretraining phase)
    evals_loss: ClassVar[bool] = False    # evals_result gets each round's loss, not its score (as Qlib's model)

    # ---- construction ------------------------------------------------------------------------
    def _init_loop(self, *, d_feat: int | None, n_epochs: int, lr: float, metric: str, batch_size: int,
                   early_stop: int, loss: str, optimizer: str, GPU: Any, seed: int | None,
                   weight_decay: float = 0.0, kwargs: dict | None = None) -> None:
        name = self.name
        unknown = set(kwargs or {}) - QLIB_IGNORED
        if unknown:
            warnings.warn(f"{name}: ignoring unknown argument(s) {', '.join(sorted(unknown))}", stacklevel=3)
        check_choice(name, "loss", loss, self.LOSSES)
        check_choice(name, "metric", metric, self.METRICS)
        check_choice(name, "optimizer", str(optimizer).lower(), OPTIMIZERS)
        check_positive_int(name, n_epochs=n_epochs, batch_size=batch_size, early_stop=early_stop)
        if d_feat is not None:
            check_positive_int(name, d_feat=d_feat)
        if GPU is not None and not isinstance(GPU, (int, str)):
            raise ValueError(f"{name}: GPU must be a CUDA device index (-1 = CPU) or a device string, got {GPU!r}")
        self.d_feat = None if d_feat is None else int(d_feat)
        self.n_epochs = int(n_epochs)
        self.lr = float(lr)
        self.metric = metric
        self.batch_size = int(batch_size)
        self.early_stop = int(early_stop)
        self.loss = loss
        self.optimizer = str(optimizer).lower()
        self.GPU = GPU
        self.seed = seed
        self.weight_decay = float(weight_decay)
        # rows per forward pass when scoring and predicting; None chooses per device
        self.eval_batch_size: int | None = None
        self.fitted = False
        self.input_kind: str | None = None     # "DatasetH" or "TSDatasetH", set by fit
        self.n_features: int | None = None      # features per row (flat) or per step, set by fit
        self.best_epoch: int | None = None
        self.best_score: float | None = None
        self.epoch_seconds: list[float] = []   # wall time of each round (training pass + scoring)
        self.train_seconds: list[float] = []   # the training pass of each round
        self.net: Any = None                   # the torch module; pickled as ``net_state`` (numpy, CPU)
        self.net_state: dict[str, np.ndarray] | None = None

    @classmethod
    def check_kwargs(cls, kwargs: dict[str, Any]) -> list[str]:
        """For ``qexp run --dry-run``: the constructor arguments this model ignores (Qlib's ``n_jobs`` is
        expected and silent). A subclass that names only the defaults it changes (``TCNTS``) passes the rest
        on through ``**kwargs``: every ``__init__`` up the class hierarchy counts."""
        known = set(QLIB_IGNORED)
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is not None and klass is not object:
                known.update(_named_params(init))
        return [f"ignoring unknown argument {k!r}" for k in kwargs if k not in known]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "qlib_name" not in cls.__dict__:
            cls.qlib_name = cls.__name__

    # Qlib's class name, in messages: a subclass with Qlib's ``_ts`` defaults (``TCNTS``) sets ``"TCN"``
    qlib_name: ClassVar[str] = "TorchModel"

    @property
    def name(self) -> str:
        return type(self).qlib_name

    # ---- data --------------------------------------------------------------------------------
    def _load(self, dataset: Any, segment: Any, learn: bool) -> Segment:
        """The inputs (and, to learn, labels) of ``segment`` in this model's layout."""
        from ._windows import FLAT, flat_steps, is_sampler, load as load_steps
        name = self.name
        key = DK_L if learn else DK_I
        if self.layout == "steps":
            assert self.d_feat is not None
            s = load_steps(dataset, segment, self.d_feat, key, learn, name)
            return Segment(s.x, s.y, s.index, s.kind)
        require_segment(dataset, segment, name)
        data = dataset.prepare(segment, col_set=["feature", "label"], data_key=key)
        if is_sampler(data):
            if self.layout == "flat":
                raise TypeError(f"{name} takes a DatasetH (rows of features), but the dataset gives windows "
                                f"(TSDatasetH); use a DatasetH")
            return self._native_windows(data, segment, learn)
        if not learn:
            data = dataset.prepare(segment, col_set="feature", data_key=key)
            if not isinstance(data, pd.DataFrame):
                raise TypeError(f"{name}: dataset.prepare({segment!r}) returned {type(data).__name__}")
            if data.empty:
                raise ValueError(f"{name}: the '{segment}' segment has no rows; check the dataset's segments")
            return Segment(np.ascontiguousarray(data.to_numpy(dtype=np.float32)), None, data.index, FLAT)
        check_frame(data, str(segment), name)
        y = label_vector(data, str(segment), name).astype(np.float32)
        x = np.ascontiguousarray(data["feature"].to_numpy(dtype=np.float32))
        if self.d_feat is not None and self.layout == "native":
            x = flat_steps(x, self.d_feat, segment, name)  # a network of steps on a DatasetH
        return Segment(x, y, data.index, FLAT)

    def _native_windows(self, sampler: Any, segment: Any, learn: bool) -> Segment:
        from ._windows import _from_sampler
        first = np.asarray(sampler[np.arange(min(len(sampler), 1))], dtype=np.float32)
        n_feat = self.d_feat if self.d_feat is not None else (first.shape[-1] - 1 if first.ndim == 3 else 0)
        s = _from_sampler(sampler, segment, n_feat, learn, self.name)
        return Segment(s.x, s.y, s.index, s.kind)

    def _learn(self, seg: Segment, segment: str) -> Segment:
        """Learn data without NaN-label rows, and a clear error on NaN features."""
        assert seg.y is not None
        keep = ~np.isnan(seg.y).reshape(len(seg.y), -1).any(axis=1)  # y may hold several labels per row
        if not keep.all():
            seg = Segment(seg.x[keep], seg.y[keep], seg.index[keep], seg.kind,
                          None if seg.w is None else seg.w[keep])
        assert seg.y is not None
        if len(seg.y) == 0:
            raise ValueError(f"{self.name}: the '{segment}' segment has no rows with a label")
        bad = np.isnan(seg.x).reshape(len(seg.x), -1).any(axis=1)
        if bad.any():
            raise ValueError(f"{self.name}: {int(bad.sum())} of {len(bad)} '{segment}' samples have NaN features, "
                             f"which would make the loss NaN; fill them in the handler (e.g. infer_processors: "
                             f"RobustZScoreNorm then Fillna, as Qlib's configs do)")
        return seg

    def _weights(self, dataset: Any, segment: str, seg: Segment, reweighter: Any) -> Segment:
        if reweighter is None:
            return seg
        if not hasattr(reweighter, "reweight"):
            raise TypeError(f"{self.name}: reweighter must have a reweight(data) method returning one weight per "
                            f"row, got {type(reweighter).__name__}")
        data = dataset.prepare(segment, col_set=["feature", "label"], data_key=DK_L)
        w = np.asarray(reweighter.reweight(data), dtype=np.float32).reshape(-1)
        if len(w) != len(seg.x):
            raise ValueError(f"{self.name}: the reweighter returned {len(w)} weights for {len(seg.x)} rows of "
                             f"'{segment}'")
        return seg._replace(w=w)

    def _check_input(self, seg: Segment) -> None:
        """Called with the training data before the network is built: record what it needs."""
        self.n_features = int(seg.x.shape[-1])

    # ---- training ----------------------------------------------------------------------------
    def fit(self, dataset: Any, evals_result: dict | None = None, save_path: str | None = None,
            reweighter: Any = None) -> TorchModel:
        """Train on ``train``, early-stopping on ``valid``; keeps the weights of the best valid score.

        ``evals_result`` (a dict) receives the per-round ``train``/``valid`` scores; ``save_path`` (optional)
        receives the best ``state_dict`` via ``torch.save``.
        """
        torch = _lazy.torch(self.name)
        require_segment(dataset, "train", self.name)
        train = self._learn(self._weights(dataset, "train", self._load(dataset, "train", True), reweighter),
                            "train")
        valid = None
        if has_segment(dataset, "valid"):
            valid = self._learn(self._load(dataset, "valid", True), "valid")
        else:
            warnings.warn(f"{self.name}: the dataset has no 'valid' segment, so it trains all {self.n_epochs} "
                          f"rounds without early stopping and keeps the last weights", stacklevel=2)
        self.input_kind = train.kind
        self._check_input(train)
        self._before_fit(dataset)
        device = self._device(torch)
        cuda_devices = [device.index] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices, enabled=self.seed is not None):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            self._train(torch, device, train, valid, {} if evals_result is None else evals_result, save_path)
        return self

    def _before_fit(self, dataset: Any) -> None:
        """Hook: anything a model needs from the dataset before training (e.g. a concept matrix)."""

    def _make_optimizer(self, torch: Any, params: list, device: Any) -> Any:
        if self.optimizer == "adam":
            # fused Adam on a GPU: one kernel for all parameters instead of several per parameter
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay,
                                    fused=device.type == "cuda")
        return torch.optim.SGD(params, lr=self.lr, weight_decay=self.weight_decay)

    def _init_net(self, torch: Any, net: Any) -> None:
        """Hook: change the fresh network before training (e.g. load a pretrained base model)."""

    def _train(self, torch: Any, device: Any, train: Segment, valid: Segment | None, evals_result: dict,
               save_path: str | None) -> None:
        net = self._new_net()
        self._init_net(torch, net)
        net = net.to(device)
        params = [p for p in net.parameters() if p.requires_grad]
        opt = self._make_optimizer(torch, params, device)
        data = {"train": self._device_data(torch, train, device)}
        if valid is not None:
            data["valid"] = self._device_data(torch, valid, device)
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        replicas = None if self.daily else self._replicas(net, device, len(train.x))
        try:
            best_state, best_epoch, best_score = self._rounds(torch, device, net, opt, params, replicas, data, gen,
                                                              evals_result)
        finally:
            if replicas is not None:
                replicas.close()
        if best_state is None:
            raise FloatingPointError(f"{self.name}: the valid loss was NaN in every round ({len(self.epoch_seconds)}); "
                                     f"training diverged: lower lr (now {self.lr}) or check the labels")
        net.load_state_dict(best_state)
        _release(net)
        self.net, self.net_state = net, None
        self.best_epoch, self.best_score = best_epoch, float(best_score)
        self.fitted = True
        if save_path is not None:
            torch.save({k: v.cpu() for k, v in best_state.items()}, save_path)
        if device.type == "cuda":
            del data
            torch.cuda.empty_cache()

    def _device_data(self, torch: Any, seg: Any, device: Any) -> Any:
        """Hook: a segment as the rounds read it (``_train_round``, ``_evaluate``); by default all of it on
        the device once. A model that streams batches from its dataset instead (TRA: windows gathered per
        batch, a memory written back) returns its own reader here."""
        days = self.daily or self.metric == "ic"  # the IC metric is a mean over days for every model
        return _Tensors.make(torch, seg, device, days)

    def _n_rounds(self) -> int:
        return self.n_epochs

    def _rounds(self, torch: Any, device: Any, net: Any, opt: Any, params: list, replicas: Any, data: dict,
                gen: Any, evals_result: dict) -> tuple:
        """The round loop with early stopping; returns (best state, best round, best valid score)."""
        evals_result["train"], evals_result["valid"] = [], []
        points: list[tuple[str, float, int, int]] = []
        best_score, best_state, best_epoch, stale = -np.inf, None, 0, 0
        self.epoch_seconds, self.train_seconds = [], []
        tr, va = data["train"], data.get("valid")
        progress = bar(range(self._n_rounds()), desc=self.name, unit="epoch")
        try:
            for epoch in progress:
                t0 = time.perf_counter()
                self._begin_round(torch, net, data, epoch)
                running = self._train_round(torch, net, opt, params, tr, gen, epoch)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # only so that train_seconds measures the training pass
                self.train_seconds.append(time.perf_counter() - t0)
                if self._scores_train() or running is None:
                    train_loss, train_score = self._evaluate(torch, net, tr, replicas)
                else:
                    train_loss, train_score = running, -running
                valid_loss, valid_score = (self._evaluate(torch, net, va, replicas) if va is not None
                                           else (train_loss, train_score))
                self._after_round(valid_loss)
                self.epoch_seconds.append(time.perf_counter() - t0)
                ts, pre = int(time.time() * 1000), self.metric_prefix
                points += [(pre + "train_loss", train_loss, ts, epoch), (pre + "train_score", train_score, ts, epoch)]
                if va is not None:
                    points += [(pre + "valid_loss", valid_loss, ts, epoch), (pre + "valid_score", valid_score, ts,
                                                                             epoch)]
                if self.evals_loss:  # Qlib's MLP and GeneralPTNN record the (positive) losses
                    evals_result["train"].append(train_loss)
                    evals_result["valid"].append(valid_loss)
                else:
                    evals_result["train"].append(train_score)
                    evals_result["valid"].append(valid_score)
                progress.set_postfix(train=f"{train_loss:.5f}", valid=f"{valid_loss:.5f}" if va is not None else "-")
                logger.info("%s epoch %d: train loss %.6f, valid loss %.6f (%.1fs)", self.name, epoch, train_loss,
                            valid_loss, self.epoch_seconds[-1])
                if va is None or valid_score > best_score:
                    best_score, best_epoch, stale = valid_score, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
                    if stale >= self.early_stop:
                        logger.info("%s: early stop at epoch %d: best valid score %.6f at epoch %d", self.name,
                                    epoch, best_score, best_epoch)
                        break
        finally:  # the rounds done so far reach the recorder even when training is interrupted
            progress.close()
            log_points(points)
        return best_state, best_epoch, best_score

    def _scores_train(self) -> bool:
        return self.score_train

    def _begin_round(self, torch: Any, net: Any, data: dict[str, _Tensors], epoch: int) -> None:
        """Hook: before each round's training pass, with the segments on the device (``data["train"]``,
        ``data.get("valid")``): e.g. IGMTF's memory of the training days, ADARNN's training phase."""

    def _after_round(self, valid_loss: float) -> None:
        """Hook: after each round's scoring (e.g. a learning-rate scheduler)."""

    def _batches(self, torch: Any, tr: _Tensors, gen: Any, epoch: int) -> Iterator[Any]:
        """Row indices of each training batch of one round."""
        if self.daily:
            assert tr.days is not None
            for d in torch.randperm(len(tr.days), generator=gen).tolist():
                start, stop = tr.days[d]
                yield slice(start, stop)
            return
        n = len(tr.y)
        perm = torch.randperm(n, generator=gen).to(tr.y.device)
        stop = n - n % self.batch_size if self.drop_last and n > self.batch_size else n
        for start in range(0, stop, self.batch_size):
            yield perm[start:start + self.batch_size]

    def _train_round(self, torch: Any, net: Any, opt: Any, params: list, tr: _Tensors, gen: Any,
                     epoch: int) -> float | None:
        """One training pass; returns the mean of the batch losses (a host sync at the end only)."""
        net.train()
        total, count = None, 0
        for idx in self._batches(torch, tr, gen, epoch):
            xb, yb, wb = tr.take(idx)
            loss = self._batch_loss(torch, net, xb, yb, wb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_value_(params, self.grad_clip)
            opt.step()
            total = loss.detach() if total is None else total + loss.detach()
            count += 1
        return None if total is None else float(total.item()) / count

    def _batch_loss(self, torch: Any, net: Any, xb: Any, yb: Any, wb: Any) -> Any:
        pred = self._forward(net, xb)
        err = (pred - yb) ** 2
        return torch.mean(err if wb is None else err * wb)

    def _forward(self, net: Any, xb: Any) -> Any:
        out = net(xb)
        if out.numel() != len(xb):
            raise ValueError(f"{self.name}: the network returned {tuple(out.shape)} for a batch of {len(xb)} rows; "
                             f"it must return one score per row")
        return out.reshape(len(xb))

    # ---- scoring -----------------------------------------------------------------------------
    def _replicas(self, net: Any, device: Any, rows: int) -> Any:
        """Scoring replicas of ``net`` on a multi-core CPU (see :mod:`.thread_replicas`), else None."""
        if self.daily:
            return None  # a day's stocks must stay together
        from .thread_replicas import ThreadReplicas, replica_threads
        n = replica_threads(device, rows)
        scorer: Any = _Scorer(net, self)  # quacks like the module ThreadReplicas copies
        return ThreadReplicas(scorer, n) if n > 1 else None

    def _predict_tensor(self, torch: Any, net: Any, x: Any, days: list[tuple[int, int]] | None,
                        replicas: Any = None) -> Any:
        """Scores of all rows of ``x`` (a tensor on the device), in eval mode without gradients."""
        net.eval()
        if replicas is not None and x.device.type == "cpu":
            return torch.from_numpy(replicas.predict(x.numpy(), self._eval_batch(x.device)))
        with torch.inference_mode():
            if self.daily:
                assert days is not None
                return torch.cat([self._forward(net, x[a:b]) for a, b in days])
            step = self._eval_batch(x.device)
            return torch.cat([self._forward(net, x[a:a + step]) for a in range(0, len(x), step)])

    def _evaluate(self, torch: Any, net: Any, t: _Tensors, replicas: Any) -> tuple[float, float]:
        """(loss, score) over all rows of a segment; one host sync."""
        pred = self._predict_tensor(torch, net, t.x, t.days, replicas).to(t.y.device)
        y = self._target(t.y)
        loss = self._loss_value(torch, pred, y)
        if self.metric == "ic":
            return loss, daily_ic(torch, pred, y, t.days)
        return loss, -loss

    def _target(self, y: Any) -> Any:
        """Hook: the label scores are measured against, from a segment's labels (a model that learns from
        several labels per row, e.g. TCTS's tasks, picks its target here)."""
        return y

    def _loss_value(self, torch: Any, pred: Any, y: Any) -> float:
        """The segment's loss from all its scores (the exact mean, not a mean of batch means)."""
        return float(torch.mean((pred.double() - y.double()) ** 2).item())

    # ---- prediction --------------------------------------------------------------------------
    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        """Scores of ``segment``'s infer rows (DatasetH) or windows (TSDatasetH)."""
        if not self.fitted:
            raise not_fitted(self.name)
        torch = _lazy.torch(self.name)
        seg = self._load(dataset, segment, False)
        if self.input_kind is not None and seg.kind != self.input_kind:
            raise ValueError(f"{self.name} was fitted on a {self.input_kind} but predicts on a {seg.kind}; "
                             f"predict with the same kind of dataset")
        if self._needs_dataset_to_predict:
            self._before_fit(dataset)
        device = self._device(torch)
        net = self._net_on(torch, device)
        x = torch.from_numpy(seg.x)
        days = day_spans(seg.index) if self.daily else None
        replicas = self._replicas(net, device, len(seg.x)) if device.type == "cpu" else None
        try:
            if device.type == "cpu":
                scores = self._predict_tensor(torch, net, x, days, replicas).float().numpy()
            else:
                scores = self._predict_device(torch, net, x, days, device)
        finally:
            if replicas is not None:
                replicas.close()
        _release(net)
        return pd.Series(scores.astype(np.float64), index=seg.index)

    _needs_dataset_to_predict: ClassVar[bool] = False

    def _predict_device(self, torch: Any, net: Any, x: Any, days: Any, device: Any) -> np.ndarray:
        """Predict on a GPU with host batches moved one at a time (the test set need not fit there)."""
        net.eval()
        out = []
        with torch.inference_mode():
            spans = days if days is not None else [(a, a + self._eval_batch(device))
                                                   for a in range(0, len(x), self._eval_batch(device))]
            for a, b in spans:
                out.append(self._forward(net, x[a:b].to(device)).float().cpu())
        return torch.cat(out).numpy()


class _Scorer:
    """Wraps a network so that scoring replicas return one score per row (``_forward``'s contract)."""

    def __init__(self, net: Any, model: TorchModel):
        import torch
        self.module = net
        self.model = model
        self._torch = torch

    def __call__(self, x: Any) -> Any:
        return self.model._forward(self.module, x)

    def eval(self) -> _Scorer:
        self.module.eval()
        return self

    def named_parameters(self) -> Any:
        return self.module.named_parameters()

    def named_buffers(self) -> Any:
        return self.module.named_buffers()

    def release_workspace(self) -> None:
        _release(self.module)

    def __deepcopy__(self, memo: dict) -> _Scorer:
        import copy
        clone = _Scorer.__new__(_Scorer)
        clone.module = copy.deepcopy(self.module, memo)
        clone.model = self.model
        clone._torch = self._torch
        return clone


class _Tensors(NamedTuple):
    """A segment on the training device: inputs, labels, weights and the day spans of its rows."""

    x: Any
    y: Any
    w: Any
    days: list[tuple[int, int]] | None

    @staticmethod
    def make(torch: Any, seg: Segment, device: Any, daily: bool) -> _Tensors:
        assert seg.y is not None
        w = None if seg.w is None else torch.from_numpy(seg.w).to(device)
        return _Tensors(torch.from_numpy(seg.x).to(device), torch.from_numpy(seg.y).to(device), w,
                        day_spans(seg.index) if daily else None)

    def take(self, idx: Any) -> tuple[Any, Any, Any]:
        if isinstance(idx, slice):
            return self.x[idx], self.y[idx], None if self.w is None else self.w[idx]
        return (self.x.index_select(0, idx), self.y.index_select(0, idx),
                None if self.w is None else self.w.index_select(0, idx))


def day_spans(index: pd.Index) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of each date of a (datetime, instrument) index sorted by date."""
    dates = index.get_level_values(0) if isinstance(index, pd.MultiIndex) else index
    codes = pd.factorize(dates)[0]
    if len(codes) and (np.diff(codes) < 0).any():
        raise ValueError("the rows must be sorted by date for a model that batches by day")
    cuts = np.flatnonzero(np.diff(codes)) + 1
    edges = np.concatenate([[0], cuts, [len(codes)]]).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def daily_ic(torch: Any, pred: Any, y: Any, days: list[tuple[int, int]] | None) -> float:
    """Mean over days of the Pearson correlation of scores and labels (days with no spread skipped)."""
    ics = []
    for a, b in days or [(0, len(y))]:
        p, t = pred[a:b].double(), y[a:b].double()
        p, t = p - p.mean(), t - t.mean()
        den = torch.sqrt((p * p).sum() * (t * t).sum())
        if b - a > 1 and float(den) > 0:
            ics.append(float((p * t).sum() / den))
    return float(np.mean(ics)) if ics else float("nan")


def _release(net: Any) -> None:
    """Free a network's CPU scratch buffers (the fast GRU keeps some between batches)."""
    for m in net.modules():
        release = getattr(m, "release_workspace", None)
        if callable(release):
            release()
