"""Qlib's models whose training adds to the supervised loss, on the shared loop (:mod:`.torch_loop`) through
its hooks: ``ADARNN`` (distribution matching between periods of the training data), ``ADD`` (adversarial
decomposition into excess and market parts) and ``TCTS`` (a scheduler that weighs several label tasks).
Each keeps Qlib's constructor arguments and defaults; differences from Qlib's code are in the docstrings."""
from __future__ import annotations

import copy
import logging
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ._data import DK_L, check_frame, require_segment
from ._windows import FLAT, is_sampler
from .pretrained import apply_base_state, describe_missing, load_base_state, missing_path
from .torch_loop import OPTIMIZERS, Segment, TorchModel, check_choice, check_dropout, check_positive_int

logger = logging.getLogger("qexp.models")


def _check_number(model: str, name: str, value: Any, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise ValueError(f"{model}: {name} must be a number >= {low:g}, got {value!r}")
    return float(value)


# ---- ADARNN ----------------------------------------------------------------------------------------------
class ADARNN(TorchModel):
    """Qlib's ``ADARNN`` (``pytorch_adarnn``): the training days are cut into ``n_splits`` periods; each step
    takes one batch per period and, for each pair of periods, adds to both batches' MSE ``dw`` times the
    distance (``loss_type``) between their hidden states, step by step (``len_seq`` steps) and layer by layer.
    The first ``pre_epoch`` rounds weigh the steps with a learned gate (steps within ``len_win`` of each other
    compared too); later rounds start from the gate's last weights and raise the weight of a step whose
    distance grew since the previous round.

    Differences from Qlib's code: ``metric`` ``"mse"``/``"loss"`` is minus the mean squared error (Qlib's is
    minus the mean error, a sign-blind number); the transfer losses are the ones of
    :func:`.nets.adarnn.transfer_loss` (``adv`` and ``mine`` are refused: Qlib builds a new untrained
    network for them at every call); ``pre_epoch: 0`` starts the boosting from equal weights.
    """

    METRICS = ("", "loss", "mse", "ic")

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 n_epochs: int = 200, pre_epoch: int = 40, dw: float = 0.5, loss_type: str = "cosine",
                 len_seq: int = 60, len_win: int = 0, lr: float = 0.001, metric: str = "mse", batch_size: int = 2000,
                 early_stop: int = 20, loss: str = "mse", optimizer: str = "adam", n_splits: int = 2, GPU: Any = 0,
                 seed: int | None = None, **kwargs: Any):
        from .nets.adarnn import TRANSFER_LOSSES
        name = type(self).__name__
        check_positive_int(name, hidden_size=hidden_size, num_layers=num_layers, len_seq=len_seq)
        check_dropout(name, dropout)
        if loss_type in ("adv", "mine"):
            raise ValueError(f"{name}: loss_type {loss_type!r} is not supported (Qlib's builds a new, untrained "
                             f"network at every call); use one of {', '.join(TRANSFER_LOSSES)}")
        check_choice(name, "loss_type", loss_type, TRANSFER_LOSSES)
        if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2:
            raise ValueError(f"{name}: n_splits (the periods of the training data) must be an integer >= 2, "
                             f"got {n_splits!r}")
        for key, value in (("pre_epoch", pre_epoch), ("len_win", len_win)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: {key} must be an integer >= 0, got {value!r}")
        self.hidden_size, self.num_layers, self.dropout = int(hidden_size), int(num_layers), float(dropout)
        self.pre_epoch, self.dw, self.loss_type = pre_epoch, _check_number(name, "dw", dw), loss_type
        self.len_seq, self.len_win, self.n_splits = int(len_seq), len_win, n_splits
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)
        self._reset()

    def _reset(self) -> None:
        # training state, never pickled with a fitted model
        self._domains: list[np.ndarray] | None = None
        self._epoch = 0
        self._gate: list[Any] = []
        self._weight_mat: Any = None
        self._dist: Any = None
        self._dist_old: Any = None

    def _new_net(self) -> Any:
        from .nets.adarnn import AdaRNNModel
        assert self.d_feat is not None
        return AdaRNNModel(self.d_feat, self.hidden_size, self.num_layers, self.dropout, self.len_seq)

    def _check_input(self, seg: Segment) -> None:
        super()._check_input(seg)
        if seg.x.shape[1] != self.len_seq:
            raise ValueError(f"{self.name}: len_seq={self.len_seq} but the inputs have {seg.x.shape[1]} steps; "
                             f"set len_seq: {seg.x.shape[1]}")
        index = seg.index
        dates = index.get_level_values("datetime") if "datetime" in (index.names or []) else \
            index.get_level_values(0)
        days = np.sort(pd.unique(dates))
        if len(days) < self.n_splits:
            raise ValueError(f"{self.name}: the training data has {len(days)} day(s), fewer than n_splits="
                             f"{self.n_splits} periods")
        self._domains = [np.flatnonzero(dates.isin(chunk)) for chunk in np.array_split(days, self.n_splits)]

    def _train(self, *args: Any) -> None:
        try:
            super()._train(*args)
        finally:
            self._reset()

    def _batches(self, torch: Any, tr: Any, gen: Any, epoch: int) -> Any:
        """One batch per period, concatenated; steps stop with the shortest period (Qlib zips the periods'
        loaders) and unequal or single-row batches are skipped, as Qlib does."""
        assert self._domains is not None
        perms = [torch.from_numpy(d)[torch.randperm(len(d), generator=gen)] for d in self._domains]
        bs = self.batch_size
        for k in range(min(math.ceil(len(p) / bs) for p in perms)):
            parts = [p[k * bs:(k + 1) * bs] for p in perms]
            if len({len(p) for p in parts}) == 1 and len(parts[0]) > 1:
                yield torch.cat(parts).to(tr.y.device)

    def _begin_round(self, torch: Any, net: Any, data: dict, epoch: int) -> None:
        self._epoch = epoch
        if epoch >= self.pre_epoch:
            device = data["train"].y.device
            self._dist = torch.zeros(self.num_layers, self.len_seq, device=device)
            if self._weight_mat is None:
                self._weight_mat = torch.full((self.num_layers, self.len_seq), 1.0 / self.len_seq, device=device)

    def _batch_loss(self, torch: Any, net: Any, xb: Any, yb: Any, wb: Any) -> Any:
        from .nets.adarnn import transfer_loss
        k = self.n_splits
        b = len(xb) // k
        xs, ys = xb.split(b), yb.split(b)
        pretraining = self._epoch < self.pre_epoch
        self._gate = [None] * self.num_layers
        total = xb.new_zeros(())
        for i in range(k):
            for j in range(i + 1, k):
                outs = net.layer_outputs(torch.cat((xs[i], xs[j])))
                pred = net.head(outs[-1])
                total = total + torch.mean((pred[:b] - ys[i]) ** 2) + torch.mean((pred[b:] - ys[j]) ** 2)
                transfer = xb.new_zeros(())
                for layer, out in enumerate(outs):
                    s, t = out[:b].transpose(0, 1), out[b:].transpose(0, 1)   # [T, b, H]
                    if pretraining:
                        w = net.gate_weights(out, layer)
                        self._gate[layer] = w.detach()
                        steps = s.shape[0]
                        for off in range(-self.len_win, self.len_win + 1):
                            lo, hi = max(0, -off), min(steps, steps - off)
                            if lo < hi:
                                d = transfer_loss(self.loss_type, s[lo:hi], t[lo + off:hi + off])
                                transfer = transfer + (w[lo:hi] * d).sum()
                    else:
                        d = transfer_loss(self.loss_type, s, t)
                        transfer = transfer + (self._weight_mat[layer] * d).sum()
                        self._dist[layer] += d.detach()
                total = total + self.dw * transfer
        return total

    def _after_round(self, valid_loss: float) -> None:
        import torch
        if self._epoch < self.pre_epoch:
            if all(g is not None for g in self._gate):
                self._weight_mat = torch.stack(self._gate)
            return
        if self._epoch > self.pre_epoch and self._dist_old is not None:
            grew = self._dist > self._dist_old + 1e-5
            w = self._weight_mat.clone()
            w[grew] = w[grew] * (1 + torch.sigmoid(self._dist[grew] - self._dist_old[grew]))
            self._weight_mat = w / w.norm(p=1, dim=1, keepdim=True)
        self._dist_old = self._dist


# ---- ADD -------------------------------------------------------------------------------------------------
class ADD(TorchModel):
    """Qlib's ``ADD`` (``pytorch_add``): see :mod:`.nets.add`. The loss is the excess-return MSE, the market
    regime's cross-entropy, the two adversaries' losses and ``mu`` times the reconstruction MSE. The market
    regime of a day is its mean raw label cut at the training days' 1/3 and 2/3 quantiles (Qlib's
    ``fit_thresh``). ``model_path`` (a GRU/LSTM base model: Qlib's file, a pickled qexp model or
    ``run:<run id>``) starts both encoders. ``metric`` ``"mse"``/``"loss"`` = minus the MSE of all rows,
    ``"ic"`` = the mean daily IC, as Qlib's daily evaluation."""

    METRICS = ("", "loss", "mse", "ic")
    drop_last = True  # batch norm in the heads

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 dec_dropout: float = 0.0, n_epochs: int = 200, lr: float = 0.001, metric: str = "mse",
                 batch_size: int = 5000, early_stop: int = 20, base_model: str = "GRU", model_path: Any = None,
                 optimizer: str = "adam", gamma: float = 0.1, gamma_clip: float = 0.4, mu: float = 0.05,
                 GPU: Any = 0, seed: int | None = None, **kwargs: Any):
        name = type(self).__name__
        check_positive_int(name, hidden_size=hidden_size, num_layers=num_layers)
        check_dropout(name, dropout)
        check_dropout(name, dec_dropout)
        check_choice(name, "base_model", base_model, ("GRU", "LSTM"))
        self.hidden_size, self.num_layers, self.dropout, self.dec_dropout = (int(hidden_size), int(num_layers),
                                                                             float(dropout), float(dec_dropout))
        self.base_model, self.model_path = base_model, model_path
        self.gamma, self.gamma_clip = _check_number(name, "gamma", gamma), _check_number(name, "gamma_clip", gamma_clip)
        self.mu = _check_number(name, "mu", mu)
        if missing_path(model_path):
            warnings.warn(describe_missing(name, str(model_path)) + " (fit will fail until it exists)", stacklevel=2)
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss="mse", optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)
        self.thresholds: tuple[float, float] | None = None   # the market regimes' cuts, from the train days
        self.base_keys: list[str] = []

    @classmethod
    def dry_run_warnings(cls, kwargs: dict) -> list[str]:
        path = kwargs.get("model_path")
        return [describe_missing(cls.__name__, str(path))] if missing_path(path) else []

    def _new_net(self) -> Any:
        from .nets.add import ADDModel
        assert self.d_feat is not None
        return ADDModel(self.d_feat, self.hidden_size, self.num_layers, self.dropout, self.dec_dropout,
                        self.base_model, self.gamma, self.gamma_clip)

    def _init_net(self, torch: Any, net: Any) -> None:
        if self.model_path is None:
            return
        state = load_base_state(self.name, self.model_path)
        rnn = {k[len("rnn."):]: v for k, v in state.items() if k.startswith("rnn.")}
        both = {f"{enc}.{k}": v for enc in ("enc_excess", "enc_market") for k, v in rnn.items()}
        self.base_keys = apply_base_state(self.name, net, both or state, self.base_model)
        logger.info("%s: both encoders start from the base model in %s", self.name, self.model_path)

    def _load(self, dataset: Any, segment: Any, learn: bool) -> Segment:
        seg = super()._load(dataset, segment, learn)
        if not learn:
            return seg
        daily = _raw_label(dataset, segment, self.name).groupby(level="datetime").mean()
        if segment == "train":
            lo, hi = daily.quantile([1 / 3, 2 / 3])
            self.thresholds = (float(lo), float(hi))
        assert self.thresholds is not None, "the train segment is loaded first"
        regime = pd.cut(daily, [-np.inf, *self.thresholds, np.inf], labels=False)
        dates = seg.index.get_level_values("datetime")
        market = regime.reindex(dates).to_numpy(dtype=np.float32)  # a day without raw labels: NaN, dropped
        assert seg.y is not None
        return seg._replace(y=np.stack([seg.y, market], axis=1))

    def _target(self, y: Any) -> Any:
        return y[:, 0] if y.dim() == 2 else y

    def _begin_round(self, torch: Any, net: Any, data: dict, epoch: int) -> None:
        net.set_round(epoch)  # the gradient reversal's strength after `epoch` rounds

    def _batch_loss(self, torch: Any, net: Any, xb: Any, yb: Any, wb: Any) -> Any:
        from .nets.rnn import as_steps
        f = torch.nn.functional
        out = net.outputs(xb)
        excess, market = yb[:, 0], yb[:, 1].long()
        err = (out["excess"] - excess) ** 2
        loss = torch.mean(err if wb is None else err * wb)
        loss = loss + f.cross_entropy(out["market"], market)
        loss = loss + f.mse_loss(out["adv_excess"], excess) + f.cross_entropy(out["adv_market"], market)
        assert self.d_feat is not None
        return loss + self.mu * f.mse_loss(out["reconstructed_feature"], as_steps(xb, self.d_feat))


def _raw_label(dataset: Any, segment: str, model: str) -> pd.Series:
    """The raw label of a segment's rows (a TSDatasetH's from its handler, over the segment's dates)."""
    label = dataset.prepare(segment, col_set="label", data_key="raw")
    if is_sampler(label) or not isinstance(label, (pd.DataFrame, pd.Series)):
        start, end = dataset.segments[segment]
        label = dataset.handler.fetch(slice(start, end), col_set="label", data_key="raw")
    if isinstance(label, pd.DataFrame):
        label = label.iloc[:, 0]
    if label.empty:
        raise ValueError(f"{model}: the '{segment}' segment has no raw label to find the market's regimes from")
    return label


# ---- TCTS ------------------------------------------------------------------------------------------------
class TCTS(TorchModel):
    """Qlib's ``TCTS`` (``pytorch_tcts``) on a ``DatasetH`` whose handler gives ``output_dim`` labels (tasks;
    ``target_label`` is the one predicted). Each round trains the forecaster ``steps`` times over the train
    rows, its loss on every task weighted by the scheduler (``mode``: ``soft`` weights, or ``hard``: the
    task the scheduler picks), the scheduler seeing the forecaster as it was at the round's start; then the
    scheduler learns on the valid rows to favour tasks that lower the target's valid loss. Early stopping on
    the target's valid loss.

    While the best valid loss is above ``lowest_valid_performance`` Qlib retrains with a new seed, without
    end; here at most ``max_attempts`` trainings (the later ones' rounds logged as ``retry<k>_valid_loss``
    ...), keeping the best, with a warning when none reaches it (``lowest_valid_performance: null`` trains
    once). ``lr`` and ``metric`` are accepted for Qlib's configs (its TCTS ignores them too): the learning
    rates are ``fore_lr`` and ``weight_lr``.
    """

    layout = "flat"
    drop_last = True
    METRICS = ("", "loss")

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 n_epochs: int = 200, batch_size: int = 2000, early_stop: int = 20, loss: str = "mse",
                 fore_optimizer: str = "adam", weight_optimizer: str = "adam", input_dim: int = 360,
                 output_dim: int = 5, fore_lr: float = 5e-7, weight_lr: float = 5e-7, steps: int = 3, GPU: Any = 0,
                 target_label: int = 0, mode: str = "soft", seed: int | None = None,
                 lowest_valid_performance: float | None = 0.993, metric: str = "", lr: float | None = None,
                 max_attempts: int = 5, **kwargs: Any):
        name = type(self).__name__
        check_positive_int(name, hidden_size=hidden_size, num_layers=num_layers, input_dim=input_dim,
                           output_dim=output_dim, steps=steps, max_attempts=max_attempts)
        check_dropout(name, dropout)
        check_choice(name, "mode", mode, ("soft", "hard"))
        check_choice(name, "weight_optimizer", str(weight_optimizer).lower(), OPTIMIZERS)
        if isinstance(target_label, bool) or not isinstance(target_label, int) or not 0 <= target_label < output_dim:
            raise ValueError(f"{name}: target_label must be the index of one of the output_dim={output_dim} labels "
                             f"(0..{output_dim - 1}), got {target_label!r}")
        if lowest_valid_performance is not None:
            _check_number(name, "lowest_valid_performance", lowest_valid_performance)
        self.hidden_size, self.num_layers, self.dropout = int(hidden_size), int(num_layers), float(dropout)
        self.input_dim, self.output_dim, self.steps = int(input_dim), int(output_dim), int(steps)
        self.fore_optimizer, self.weight_optimizer = str(fore_optimizer).lower(), str(weight_optimizer).lower()
        self.fore_lr, self.weight_lr = float(fore_lr), float(weight_lr)
        self.target_label, self.mode = target_label, mode
        self.lowest_valid_performance, self.max_attempts = lowest_valid_performance, int(max_attempts)
        self.ignored_lr = lr
        self.attempts = 0
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=fore_lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss=loss, optimizer=fore_optimizer, GPU=GPU, seed=seed,
                        kwargs=kwargs)
        self._clear()

    def _clear(self) -> None:
        self._weight_ids: set[int] = set()
        self._weight_opt: Any = None
        self._valid: Any = None
        self._init_fore: Any = None

    def _new_net(self) -> Any:
        from .nets.tcts import TCTSModel
        assert self.d_feat is not None
        return TCTSModel(self.d_feat, self.hidden_size, self.num_layers, self.dropout, self.input_dim,
                         self.output_dim)

    # ---- data: every label is a task ----------------------------------------------------------------
    def _load(self, dataset: Any, segment: Any, learn: bool) -> Segment:
        if not learn:
            return super()._load(dataset, segment, learn)
        require_segment(dataset, segment, self.name)
        df = dataset.prepare(segment, col_set=["feature", "label"], data_key=DK_L)
        check_frame(df, str(segment), self.name)
        labels = df["label"]
        if labels.shape[1] != self.output_dim:
            raise ValueError(f"{self.name}: output_dim={self.output_dim} but the handler gives {labels.shape[1]} "
                             f"label(s) ({', '.join(map(str, labels.columns))}); set output_dim: {labels.shape[1]} "
                             f"(one task per label)")
        return Segment(np.ascontiguousarray(df["feature"].to_numpy(dtype=np.float32)),
                       np.ascontiguousarray(labels.to_numpy(dtype=np.float32)), df.index, FLAT)

    def _check_input(self, seg: Segment) -> None:
        super()._check_input(seg)
        assert self.d_feat is not None and self.n_features is not None
        if self.n_features != self.input_dim:
            raise ValueError(f"{self.name}: input_dim={self.input_dim} but the data has {self.n_features} feature "
                             f"columns; set input_dim: {self.n_features}")
        if self.n_features % self.d_feat:
            raise ValueError(f"{self.name}: d_feat={self.d_feat} does not divide the {self.n_features} feature "
                             f"columns; set it to the features per step (Alpha360: 6)")

    def _target(self, y: Any) -> Any:
        return y[:, self.target_label] if y.dim() == 2 else y

    # ---- two networks, two optimizers -----------------------------------------------------------------
    def _init_net(self, torch: Any, net: Any) -> None:
        self._weight_ids = {id(p) for p in net.weight.parameters()}

    def _make_optimizer(self, torch: Any, params: list, device: Any) -> Any:
        def make(kind: str, group: list, lr: float) -> Any:
            return torch.optim.Adam(group, lr=lr) if kind == "adam" else torch.optim.SGD(group, lr=lr)
        self._weight_opt = make(self.weight_optimizer, [p for p in params if id(p) in self._weight_ids],
                                self.weight_lr)
        return make(self.fore_optimizer, [p for p in params if id(p) not in self._weight_ids], self.fore_lr)

    def _begin_round(self, torch: Any, net: Any, data: dict, epoch: int) -> None:
        self._valid = data.get("valid")

    def _train_round(self, torch: Any, net: Any, opt: Any, params: list, tr: Any, gen: Any,
                     epoch: int) -> float | None:
        init = copy.deepcopy(net.fore).eval()
        for p in init.parameters():
            p.requires_grad_(False)
        self._init_fore = init
        scheduler = list(net.weight.parameters())
        for p in scheduler:
            p.requires_grad_(False)
        try:
            losses = [super(TCTS, self)._train_round(torch, net, opt, params, tr, gen, epoch)
                      for _ in range(self.steps)]
        finally:
            for p in scheduler:
                p.requires_grad_(True)
            self._init_fore = None
        self._scheduler_round(torch, net, gen, epoch)
        done = [v for v in losses if v is not None]
        return float(np.mean(done)) if done else None

    def _batch_loss(self, torch: Any, net: Any, xb: Any, yb: Any, wb: Any) -> Any:
        with torch.no_grad():
            start = self._init_fore(xb)
            weight = net.task_weights(xb, start, yb, self.target_label)
        pred = net.fore(xb)
        if self.mode == "hard":
            picked = yb.gather(1, weight.argmax(1, keepdim=True))[:, 0]
            return torch.mean((pred - picked) ** 2)
        return torch.mean((pred[:, None] - yb) ** 2 * weight)

    def _scheduler_round(self, torch: Any, net: Any, gen: Any, epoch: int) -> None:
        """The scheduler's pass over the valid rows, the forecaster fixed (Qlib's second half of
        ``train_epoch``)."""
        va = self._valid
        net.train()
        for idx in self._batches(torch, va, gen, epoch):
            xb, yb, _ = va.take(idx)
            with torch.no_grad():
                pred = net.fore(xb)
            weight = net.task_weights(xb, pred, yb, self.target_label)
            valid_loss = torch.mean((pred - yb[:, self.target_label]) ** 2)
            loss = torch.mean(valid_loss * torch.log(weight.gather(1, weight.argmax(1, keepdim=True))[:, 0]))
            self._weight_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_value_(list(net.weight.parameters()), 3.0)
            self._weight_opt.step()

    # ---- Qlib's retraining while the valid loss is not low enough -------------------------------------
    def _train(self, torch: Any, device: Any, train: Segment, valid: Segment | None, evals_result: dict,
               save_path: str | None) -> None:
        if valid is None:
            raise ValueError(f"{self.name} needs a 'valid' segment: its scheduler learns on it")
        best: tuple | None = None
        target = self.lowest_valid_performance
        for attempt in range(self.max_attempts):
            self.metric_prefix = f"retry{attempt}_" if attempt else ""
            if attempt:
                torch.manual_seed((self.seed or 0) + 7919 * attempt)
            evals: dict = {}
            try:
                super()._train(torch, device, train, valid, evals, None)
            finally:
                self.metric_prefix = ""
                self._clear()
            assert self.best_score is not None and self.net is not None
            loss = -self.best_score
            self.attempts = attempt + 1
            if best is None or loss < best[0]:
                state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                best = (loss, state, self.best_epoch, self.best_score, evals, list(self.epoch_seconds),
                        list(self.train_seconds))
            if target is None or loss <= target:
                break
            if attempt + 1 < self.max_attempts:
                logger.warning("%s: best valid loss %.6f of training %d is above lowest_valid_performance=%s; "
                               "training again with another seed", self.name, loss, attempt + 1, target)
        else:
            assert best is not None
            warnings.warn(f"{self.name}: no training of {self.max_attempts} reached lowest_valid_performance="
                          f"{target} (best valid loss {best[0]:.6f} kept); raise max_attempts or "
                          f"lowest_valid_performance", stacklevel=3)
        assert best is not None and self.net is not None
        self.net.load_state_dict(best[1])
        self.best_epoch, self.best_score = best[2], best[3]
        self.epoch_seconds, self.train_seconds = best[5], best[6]
        evals_result.update(best[4])
        if save_path is not None:
            torch.save({k: v.cpu() for k, v in best[1].items()}, save_path)
