"""Qlib's ``TRAModel`` (``qlib.contrib.model.pytorch_tra``): Temporal Routing Adaptor on an RNN or Transformer
backbone, trained on an ``MTSDatasetH`` through the shared loop (:mod:`.torch_loop`).

What TRA changes in the loop, through its hooks:

- data (``_load``, ``_device_data``): the ``MTSDatasetH`` segments themselves; their batches (windows
  gathered per batch, the memory as ``state``) are moved to the device one at a time.
- a round (``_train_round``): Qlib's ``train_epoch``: at most ``max_steps_per_epoch`` batches; the
  predictors' losses, the optimal-transport assignment (:func:`.nets.tra.transport`), each sample's (or day's)
  normalised losses written back to the memory, loss ``- lamb * rho ** (step // 100) * E[P log prob]`` (the
  router learns to predict the assignment); gradients accumulated over ``update_freq`` batches.
- scoring (``_evaluate``): one day per batch in date order, memory written as it goes; score = mean daily
  Spearman IC (Qlib's early-stopping metric), loss = MSE of the routed prediction. The train set is scored
  (after clearing the memory, as Qlib) only when the router is trained or ``eval_train``; else the round's
  mean batch loss is its loss.
- phases (``_train`` twice, ``metric_prefix``): with ``pretrain`` the backbone and predictors first train
  alone (oracle transport, the router frozen; metrics ``pretrain_*``), with their own early stopping; TRA then
  starts from the best pretrained weights.

``predict`` scores a segment extended back by the days whose memory its first windows read, so the memory
holds this model's own losses there: the same predictions in any process, equal to Qlib's right after fit.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import time
import warnings
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from . import _lazy
from ._data import has_segment, not_fitted, require_segment
from ._log import log_points
from .torch_loop import TorchModel, _release, check_choice, check_dropout, check_positive_int

logger = logging.getLogger("qexp.models")

TRANSPORT_METHODS = ("none", "router", "oracle")
MEMORY_MODES = ("sample", "daily")
MODEL_TYPES = ("RNN", "Transformer", "GRU", "LSTM")  # GRU/LSTM: the RNN backbone with that rnn_arch
TRA_KEYS = ("num_states", "hidden_size", "rnn_arch", "num_layers", "dropout", "tau", "src_info")
BACKBONE_KEYS = {"RNN": ("input_size", "hidden_size", "num_layers", "rnn_arch", "use_attn", "dropout"),
                 "Transformer": ("input_size", "hidden_size", "num_layers", "num_heads", "dropout")}


class _Reader:
    """A segment of the MTSDatasetH as the loop's rounds read it: the segment and the training device."""

    def __init__(self, name: str, seg: Any, device: Any = None):
        self.name, self.seg, self.device = name, seg, device
        self.kind = "MTSDatasetH"


class TRAModel(TorchModel):
    """Qlib's ``TRAModel`` with Qlib's arguments and defaults (see the module docstring).

    ``model_config`` builds the backbone (``model_type`` ``RNN``: ``input_size``, ``hidden_size``,
    ``num_layers``, ``rnn_arch`` GRU/LSTM, ``use_attn``, ``dropout``; ``Transformer``: ..., ``num_heads``);
    ``tra_config`` the TRA head (``num_states``, ``hidden_size``, ``rnn_arch``, ``num_layers``, ``dropout``,
    ``tau``, ``src_info`` LR/TPE/LR_TPE). ``transport_method``: ``none`` (the predictors' mean, no router),
    ``router`` or ``oracle``. ``smooth_steps`` (Qlib before 0.9: scoring with the mean of the last
    ``smooth_steps`` rounds' weights) is honoured when given. ``GPU`` (a qexp addition) picks the device as
    for the other nets; by default CUDA when present, as Qlib.
    """

    METRICS: ClassVar[tuple[str, ...]] = ("ic",)
    daily = True          # scored one day per batch, no scoring replicas
    grad_clip = None      # Qlib's TRA does not clip

    def __init__(self, model_config: dict | None = None, tra_config: dict | None = None, model_type: str = "RNN",
                 lr: float = 1e-3, n_epochs: int = 500, early_stop: int = 50, update_freq: int = 1,
                 max_steps_per_epoch: int | None = None, lamb: float = 0.0, rho: float = 0.99, alpha: float = 1.0,
                 seed: int | None = None, logdir: str | None = None, eval_train: bool = False,
                 eval_test: bool = False, pretrain: bool = False, init_state: str | None = None,
                 reset_router: bool = False, freeze_model: bool = False, freeze_predictors: bool = False,
                 transport_method: str = "none", memory_mode: str = "sample", smooth_steps: int | None = None,
                 GPU: Any = None, **kwargs: Any):  # noqa: N803
        name = self.name
        check_choice(name, "model_type", model_type, MODEL_TYPES)
        check_choice(name, "transport_method", transport_method, TRANSPORT_METHODS)
        check_choice(name, "memory_mode", memory_mode, MEMORY_MODES)
        self.model_type = model_type
        self.model_config = self._check_model_config(model_config, model_type)
        self.tra_config = self._check_tra_config(tra_config)
        num_states = self.tra_config.get("num_states", 1)
        if transport_method != "none" and num_states < 2:
            raise ValueError(f"{name}: transport_method {transport_method!r} needs tra_config.num_states > 1 "
                             f"(got {num_states}); use transport_method: none for a single predictor")
        if memory_mode == "daily" and self.tra_config.get("src_info", "LR_TPE") != "TPE":
            raise ValueError(f"{name}: memory_mode 'daily' routes whole days, so tra_config.src_info must be "
                             f"'TPE' (got {self.tra_config.get('src_info', 'LR_TPE')!r})")
        check_positive_int(name, update_freq=update_freq)
        if max_steps_per_epoch is not None:
            check_positive_int(name, max_steps_per_epoch=max_steps_per_epoch)
        if smooth_steps is not None:
            check_positive_int(name, smooth_steps=smooth_steps)
        numbers = {}
        for key, value in (("lr", lr), ("lamb", lamb), ("rho", rho), ("alpha", alpha)):
            try:  # YAML reads 1e-3 (no dot) as a string; Qlib's configs write it so
                numbers[key] = float(value) if not isinstance(value, bool) else -1.0
            except (TypeError, ValueError):
                numbers[key] = -1.0
            if not numbers[key] >= 0:
                raise ValueError(f"{name}: {key} must be a number >= 0, got {value!r}")
        lr, lamb, rho, alpha = numbers["lr"], numbers["lamb"], numbers["rho"], numbers["alpha"]
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"{name}: alpha must be in [0, 1] (the weight of the current losses against the "
                             f"historical ones in the transport), got {alpha!r}")
        if logdir is not None and not isinstance(logdir, (str, os.PathLike)):
            raise ValueError(f"{name}: logdir must be a folder path or null, got {logdir!r}")
        self.update_freq = int(update_freq)
        self.max_steps_per_epoch = None if max_steps_per_epoch is None else int(max_steps_per_epoch)
        self.lamb, self.rho, self.alpha = float(lamb), float(rho), float(alpha)
        self.logdir = None if logdir is None else os.fspath(logdir)
        self.eval_train, self.eval_test, self.pretrain = bool(eval_train), bool(eval_test), bool(pretrain)
        self.init_state, self.reset_router = init_state, bool(reset_router)
        self.freeze_model, self.freeze_predictors = bool(freeze_model), bool(freeze_predictors)
        self.transport_method, self.memory_mode = transport_method, memory_mode
        self.use_daily_transport = memory_mode == "daily"
        self.smooth_steps = None if smooth_steps is None else int(smooth_steps)
        if transport_method == "router" and not eval_train:
            logger.info("%s: the router trains on the memory, so the train set is scored every epoch "
                        "(eval_train is implied)", name)
        self._init_loop(d_feat=None, n_epochs=n_epochs, lr=lr, metric="ic", batch_size=1, early_stop=early_stop,
                        loss="mse", optimizer="adam", GPU=GPU, seed=seed, kwargs=kwargs)
        self.pretrain_best_epoch: int | None = None
        self.pretrain_epoch_seconds: list[float] = []
        self._reset_fit_state()

    # ---- arguments -----------------------------------------------------------------------------------
    @classmethod
    def dry_run_warnings(cls, kwargs: dict) -> list[str]:
        """For ``qexp run --dry-run``: an ``init_state`` file that does not exist (yet)."""
        from .pretrained import missing_path
        path = kwargs.get("init_state")
        if path and missing_path(path):
            return [f"TRAModel: init_state {str(path)!r} does not exist yet; fit will fail until it does"]
        return []

    def _check_model_config(self, config: Any, model_type: str) -> dict:
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ValueError(f"{self.name}: model_config must be a mapping (input_size, hidden_size, ...), got "
                             f"{config!r}")
        config = dict(config)
        kind = "Transformer" if model_type == "Transformer" else "RNN"
        if model_type in ("GRU", "LSTM"):
            config.setdefault("rnn_arch", model_type)
        unknown = sorted(set(config) - set(BACKBONE_KEYS[kind]))
        if unknown:
            warnings.warn(f"{self.name}: model_config keys {', '.join(unknown)} are not used by the {kind} backbone "
                          f"(it takes {', '.join(BACKBONE_KEYS[kind])})", stacklevel=3)
        ints = {k: config[k] for k in ("input_size", "hidden_size", "num_layers", "num_heads") if k in config}
        check_positive_int(self.name, **{f"model_config.{k}": v for k, v in ints.items()})
        if "dropout" in config:
            check_dropout(self.name, config["dropout"])
        if kind == "RNN":
            check_choice(self.name, "model_config.rnn_arch", config.get("rnn_arch", "GRU"), ("GRU", "LSTM", "RNN"))
        elif int(config.get("hidden_size", 64)) % int(config.get("num_heads", 2)):
            raise ValueError(f"{self.name}: model_config.hidden_size={config.get('hidden_size', 64)} must be a "
                             f"multiple of num_heads={config.get('num_heads', 2)}")
        return config

    def _check_tra_config(self, config: Any) -> dict:
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ValueError(f"{self.name}: tra_config must be a mapping (num_states, hidden_size, tau, src_info, "
                             f"...), got {config!r}")
        unknown = sorted(set(config) - set(TRA_KEYS))
        if unknown:
            raise ValueError(f"{self.name}: unknown tra_config key(s) {', '.join(unknown)}; TRA takes "
                             f"{', '.join(TRA_KEYS)}")
        num_states = config.get("num_states", 1)
        if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 1:
            raise ValueError(f"{self.name}: tra_config.num_states must be an integer >= 1 (the number of "
                             f"predictors), got {num_states!r}")
        ints = {k: config[k] for k in ("hidden_size", "num_layers") if k in config}
        check_positive_int(self.name, **{f"tra_config.{k}": v for k, v in ints.items()})
        if "dropout" in config:
            check_dropout(self.name, config["dropout"])
        check_choice(self.name, "tra_config.src_info", config.get("src_info", "LR_TPE"), ("LR", "TPE", "LR_TPE"))
        check_choice(self.name, "tra_config.rnn_arch", config.get("rnn_arch", "GRU"), ("GRU", "LSTM", "RNN"))
        tau = config.get("tau", 1.0)
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or tau <= 0:
            raise ValueError(f"{self.name}: tra_config.tau must be a number > 0 (the softmax temperature), got "
                             f"{tau!r}")
        return dict(config)

    @property
    def num_states(self) -> int:
        return int(self.tra_config.get("num_states", 1))

    def _uses_memory(self, pretraining: bool) -> bool:
        return self.num_states > 1 and (pretraining or self.transport_method != "none")

    def _reset_fit_state(self) -> None:
        self._phase = "tra"
        self._pretrained: dict | None = None
        self._global_step = -1
        self._epoch = 0
        self._test: _Reader | None = None
        self._snapshots: collections.deque | None = None
        self._raw_state: dict | None = None

    # ---- network -------------------------------------------------------------------------------------
    def _new_net(self) -> Any:
        from .nets.tra import BACKBONES, TRA, TRANet
        config = dict(self.model_config)
        kind = "Transformer" if self.model_type == "Transformer" else "RNN"
        backbone = BACKBONES[kind](**config)
        return TRANet(backbone, TRA(backbone.output_size, **self.tra_config))

    def _init_net(self, torch: Any, net: Any) -> None:
        if self._pretrained is not None:      # TRA after pretraining: the best pretrained weights
            net.load_state_dict(self._pretrained)
        elif self.init_state:
            self._load_init_state(torch, net)
            if self.reset_router:             # a fresh router on the saved backbone and predictors
                for m in (net.tra.router, net.tra.fc):
                    if m is not None:
                        m.reset_parameters()
        frozen = []
        if self.freeze_model:
            frozen += list(net.model.parameters())
        if self.freeze_predictors:
            frozen += list(net.tra.predictors.parameters())
        if self._phase == "pretrain":         # the router waits for the TRA phase
            frozen += net.tra.router_parameters()
        for p in frozen:
            p.requires_grad_(False)

    def _load_init_state(self, torch: Any, net: Any) -> None:
        from .pretrained import load_base_state, missing_path
        path = str(self.init_state)
        if missing_path(path):
            raise FileNotFoundError(f"{self.name}: init_state {path!r} does not exist; it names a saved TRA model "
                                    f"(Qlib's model.bin, a qexp model pickle, or 'run:<run id>')")
        state: dict[str, Any] | None = None
        if not path.startswith("run:"):
            obj = torch.load(os.path.expanduser(path), map_location="cpu", weights_only=False)
            if isinstance(obj, dict) and isinstance(obj.get("model"), dict):   # Qlib's {"model": .., "tra": ..}
                state = {f"model.{k}": v for k, v in obj["model"].items()}
                state.update({f"tra.{k}": v for k, v in (obj.get("tra") or {}).items()})
        if state is None:
            state = load_base_state(self.name, path)
        own = net.state_dict()
        model_keys = [k for k in own if k.startswith("model.")]
        missing = [k for k in model_keys if k not in state]
        if missing:
            raise ValueError(f"{self.name}: init_state {path!r} does not hold this backbone ({len(missing)} of its "
                             f"tensors are missing, e.g. {missing[0]}); model_config must be the saved model's")
        loaded, skipped = [], []
        for k, v in state.items():
            if k in own and tuple(np.shape(v)) == tuple(own[k].shape):
                own[k] = torch.as_tensor(np.asarray(v.cpu() if hasattr(v, "cpu") else v))
                loaded.append(k)
            else:
                skipped.append(k)
        bad = [k for k in model_keys if k not in loaded]
        if bad:
            raise ValueError(f"{self.name}: init_state {path!r}: backbone tensor shapes differ ({bad[0]}); "
                             f"model_config must be the saved model's")
        net.load_state_dict(own)
        logger.info("%s: started from init_state %s (%d tensors; %d of the TRA head skipped)", self.name, path,
                    len(loaded), len(skipped))

    # ---- data ----------------------------------------------------------------------------------------
    def _segment(self, dataset: Any, segment: Any) -> Any:
        require_segment(dataset, segment, self.name)
        seg = dataset.prepare(segment)
        if not all(hasattr(seg, a) for a in ("assign_data", "restore_index", "train", "eval", "__iter__")):
            raise TypeError(f"{self.name} takes an MTSDatasetH (class: MTSDatasetH, module_path: "
                            f"qlib.contrib.data.dataset), but {type(dataset).__name__}.prepare({segment!r}) gave "
                            f"a {type(seg).__name__}")
        ds_mode = getattr(seg, "memory_mode", self.memory_mode)
        if ds_mode != self.memory_mode:
            raise ValueError(f"{self.name}: memory_mode {self.memory_mode!r} but the dataset's is {ds_mode!r}; set "
                             f"the same memory_mode in both (Qlib's configs use one YAML anchor)")
        ds_states = getattr(seg, "num_states", None)
        reads_memory = "TPE" in self.tra_config.get("src_info", "LR_TPE") or self._uses_memory(self.pretrain)
        if self.num_states > 1 and reads_memory and ds_states != self.num_states:
            raise ValueError(f"{self.name}: tra_config.num_states={self.num_states} but the dataset keeps "
                             f"{ds_states} memory states; set num_states to the same value in both")
        return seg

    def _load(self, dataset: Any, segment: Any, learn: bool) -> Any:
        return _Reader(str(segment), self._segment(dataset, segment))

    def _weights(self, dataset: Any, segment: str, seg: Any, reweighter: Any) -> Any:
        if reweighter is not None:
            raise ValueError(f"{self.name} does not take a reweighter (Qlib's TRAModel has none)")
        return seg

    def _learn(self, seg: Any, segment: str) -> Any:
        if seg.seg.n_rows == 0:
            raise ValueError(f"{self.name}: the '{segment}' segment has no rows; check the dataset's segments")
        return seg

    def _check_input(self, seg: Any) -> None:
        n_feat = int(seg.seg.n_features)
        want = int(self.model_config.get("input_size", 16))
        if want != n_feat:
            raise ValueError(f"{self.name}: model_config.input_size={want} but the dataset gives {n_feat} features "
                             f"per step; set input_size: {n_feat}")
        self.n_features = n_feat

    def _device_data(self, torch: Any, seg: Any, device: Any) -> _Reader:
        seg.device = device
        if self.seed is not None:
            seg.seg.rng = np.random.default_rng(self.seed)
        return seg

    # ---- training ------------------------------------------------------------------------------------
    def fit(self, dataset: Any, evals_result: dict | None = None, save_path: str | None = None,
            reweighter: Any = None) -> TRAModel:
        """Train (after ``pretrain``ing, if set) early-stopping on the valid IC; ``evals_result`` receives the
        per-epoch valid ICs (``pretrain_*`` lists for the pretraining phase); with ``logdir`` the logs, the
        model (``model.bin``, Qlib's format), predictions and ``info.json`` are written there at the end."""
        evals = {} if evals_result is None else evals_result
        self._reset_fit_state()
        self._test = _Reader("test", self._segment(dataset, "test")) if (
            (self.eval_test or self.logdir) and has_segment(dataset, "test")) else None
        try:
            super().fit(dataset, evals_result=evals, save_path=save_path, reweighter=reweighter)
            if self.logdir:
                self._write_logdir(dataset, evals)
        finally:
            self._reset_fit_state()
        return self

    def _train(self, torch: Any, device: Any, train: Any, valid: Any, evals_result: dict,
               save_path: str | None) -> None:
        if self._test is not None:
            self._device_data(torch, self._test, device)
        if self.pretrain:
            self._phase, self.metric_prefix = "pretrain", "pretrain_"
            pre: dict = {}
            try:
                super()._train(torch, device, train, valid, pre, None)
            finally:
                self.metric_prefix = ""
            evals_result["pretrain_train"], evals_result["pretrain_valid"] = pre["train"], pre["valid"]
            self.pretrain_best_epoch, self.pretrain_epoch_seconds = self.best_epoch, list(self.epoch_seconds)
            self._pretrained = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            logger.info("%s: pretraining done, best valid IC %.6f at epoch %s", self.name, self.best_score or 0.0,
                        self.best_epoch)
        self._phase = "tra"
        super()._train(torch, device, train, valid, evals_result, save_path)

    def _begin_round(self, torch: Any, net: Any, data: dict, epoch: int) -> None:
        self._epoch = epoch
        if epoch == 0:
            self._snapshots = collections.deque(maxlen=self.smooth_steps) if self.smooth_steps else None
            self._raw_state = None
            if self._phase == "tra" and self._uses_memory(False):  # Qlib: fill the memory before TRA trains
                self._pass(torch, net, data["train"], pretraining=False)
        if self._raw_state is not None:   # scored with smoothed weights; train on from the round's own
            net.load_state_dict(self._raw_state)
            self._raw_state = None

    def _train_round(self, torch: Any, net: Any, opt: Any, params: list, tr: Any, gen: Any,
                     epoch: int) -> float | None:
        from .nets.tra import masked_mse, transport
        seg, device = tr.seg, tr.device
        pretraining = self._phase == "pretrain"
        memory = self._uses_memory(pretraining)
        method = "oracle" if pretraining else self.transport_method
        net.train()
        seg.train()
        opt.zero_grad(set_to_none=True)
        max_steps = len(seg) if self.max_steps_per_epoch is None else min(len(seg), self.max_steps_per_epoch)
        total, count = None, 0
        for step, batch in enumerate(seg, 1):
            if step > max_steps:
                break
            if not pretraining:
                self._global_step += 1
            data, state, label = _to(batch, device)
            with torch.set_grad_enabled(not self.freeze_model):
                hidden = net.model(data)
            all_preds, choice, prob = net.tra(hidden, state)
            if memory:
                counts = batch["daily_count"] if self.use_daily_transport else None
                loss, _, L, P = transport(all_preds, label, choice, prob, state.mean(dim=1), counts, method,  # noqa: N806
                                          self.alpha, training=True)
                seg.assign_data(batch["daily_index"] if self.use_daily_transport else batch["index"], L)
                lamb = 0.0 if pretraining else self.lamb * self.rho ** (self._global_step // 100)
                if lamb:
                    loss = loss - lamb * prob.log().mul(P).sum(dim=1).mean()
            else:
                loss = masked_mse(all_preds.mean(dim=1), label)
            (loss / self.update_freq).backward()
            if step % self.update_freq == 0:
                opt.step()
                opt.zero_grad(set_to_none=True)
            total = loss.detach() if total is None else total + loss.detach()
            count += 1
        if self._snapshots is not None:
            self._raw_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            self._snapshots.append(self._raw_state)
            net.load_state_dict(_average(self._snapshots))
        return None if total is None else float(total.item()) / count

    def _scores_train(self) -> bool:
        return self._phase == "tra" and (self.transport_method == "router" or self.eval_train)

    def _evaluate(self, torch: Any, net: Any, t: Any, replicas: Any) -> tuple[float, float]:
        pretraining = self._phase == "pretrain"
        if t.name == "train" and self._uses_memory(pretraining):
            t.seg.clear_memory()  # Qlib: the train pass refills the whole memory with this round's losses
        loss, ic = _scores(self._pass(torch, net, t, pretraining))
        if t.name == "valid" and self.eval_test and self._test is not None:
            test_loss, test_ic = _scores(self._pass(torch, net, self._test, pretraining))
            ts, pre = int(time.time() * 1000), self.metric_prefix
            log_points([(pre + "test_loss", test_loss, ts, self._epoch), (pre + "test_score", test_ic, ts,
                                                                           self._epoch)])
        return loss, ic

    def _pass(self, torch: Any, net: Any, reader: Any, pretraining: bool) -> dict[str, np.ndarray]:
        """One day per batch over a segment in date order, writing the memory as Qlib's ``test_epoch``:
        row numbers, day numbers, routed scores, labels, every predictor's score and the router's
        probabilities (per row)."""
        from .nets.tra import transport
        seg, device = reader.seg, reader.device
        memory = self._uses_memory(pretraining)
        method = "oracle" if pretraining else self.transport_method
        net.eval()
        seg.eval()
        out: dict[str, list] = {"rows": [], "days": [], "score": [], "label": [], "preds": [], "prob": []}
        with torch.no_grad():
            for batch in seg:
                data, state, label = _to(batch, device)
                all_preds, _, prob = net(data, state)
                counts = batch["daily_count"]
                if memory:
                    _, pred, L, _ = transport(all_preds, label, None, prob, state.mean(dim=1),  # noqa: N806
                                              counts if self.use_daily_transport else None, method, self.alpha,
                                              training=False)
                    seg.assign_data(batch["daily_index"] if self.use_daily_transport else batch["index"], L)
                else:
                    pred = all_preds.mean(dim=1)
                if prob is not None and self.use_daily_transport:
                    prob = torch.repeat_interleave(prob, torch.as_tensor(counts, device=prob.device), dim=0)
                out["rows"].append(batch["index"])
                out["days"].append(np.repeat(batch["daily_index"], counts))
                out["score"].append(pred.float().cpu().numpy())
                out["label"].append(batch["label"].numpy())
                out["preds"].append(all_preds.float().cpu().numpy())
                if prob is not None:
                    out["prob"].append(prob.float().cpu().numpy())
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}

    # ---- prediction ----------------------------------------------------------------------------------
    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        """Scores of ``segment``'s rows (the dataset's learn data, as Qlib) as a Series indexed
        ``(datetime, instrument)``."""
        return self.predict_frame(dataset, segment)["score"].rename(None)

    def predict_frame(self, dataset: Any, segment: str | slice = "test") -> pd.DataFrame:
        """What Qlib's ``TRAModel.predict`` returns: ``score``, ``label``, every predictor's ``score_<k>``, and
        the router's ``prob_<k>`` (with more than one state), indexed ``(datetime, instrument)``."""
        if not self.fitted:
            raise not_fitted(self.name)
        torch = _lazy.torch(self.name)
        seg = self._segment(dataset, segment)
        if seg.n_rows == 0:
            raise ValueError(f"{self.name}: the {segment!r} segment has no rows; check the dataset's segments")
        device = self._device(torch)
        net = self._net_on(torch, device)
        reader = _Reader(str(segment), seg.with_history() if hasattr(seg, "with_history") else seg, device)
        try:
            res = self._pass(torch, net, reader, pretraining=False)
        finally:
            _release(net)
        keep = res["days"] >= getattr(seg, "first", 0)
        return _frame(seg, {k: v[keep] if len(v) else v for k, v in res.items()})

    def _write_logdir(self, dataset: Any, evals: dict) -> None:
        """Qlib's ``logdir`` files: ``logs.csv``, ``model.bin`` (``{"model": ..., "tra": ...}``),
        ``<segment>_pred.pkl`` (and ``_prob.pkl``) and ``info.json``."""
        torch = _lazy.torch(self.name)
        folder = os.path.expanduser(str(self.logdir))
        os.makedirs(folder, exist_ok=True)
        pd.DataFrame({k: pd.Series(v, dtype=float) for k, v in evals.items()}).to_csv(
            os.path.join(folder, "logs.csv"), index=False)
        state = self.net.state_dict()
        torch.save({part: {k[len(part) + 1:]: v.cpu() for k, v in state.items() if k.startswith(part + ".")}
                    for part in ("model", "tra")}, os.path.join(folder, "model.bin"))
        metrics = {}
        for name in ("train", "valid", "test"):
            if not has_segment(dataset, name):
                continue
            frame = self.predict_frame(dataset, name)
            frame.drop(columns=[c for c in frame if c.startswith("prob_")]).to_pickle(
                os.path.join(folder, f"{name}_pred.pkl"))
            probs = [c for c in frame if c.startswith("prob_")]
            if probs:
                frame[probs].to_pickle(os.path.join(folder, f"{name}_prob.pkl"))
            daily = frame.groupby(level="datetime").apply(lambda g: g["score"].corr(g["label"], method="spearman"))
            metrics[name] = {"IC": float(daily.mean()), "ICIR": float(daily.mean() / daily.std())}
        info = {"config": {k: getattr(self, k) for k in (
            "model_config", "tra_config", "model_type", "lr", "n_epochs", "early_stop", "max_steps_per_epoch", "lamb",
            "rho", "alpha", "seed", "logdir", "pretrain", "init_state", "transport_method", "use_daily_transport")},
            "best_eval_metric": -float(self.best_score or 0.0), "best_epoch": self.best_epoch, "metrics": metrics}
        with open(os.path.join(folder, "info.json"), "w") as f:
            json.dump(info, f, default=str)
        logger.info("%s: wrote logs, model.bin, predictions and info.json to %s", self.name, folder)


def _to(batch: dict, device: Any) -> tuple[Any, Any, Any]:
    if device is None or device.type == "cpu":
        return batch["data"], batch["state"], batch["label"]
    data, state, label = (batch[k].to(device, non_blocking=True) for k in ("data", "state", "label"))
    return data, state, label


def _average(states: Any) -> dict:
    """The element-wise mean of several ``state_dict``s (Qlib's parameter smoothing)."""
    states = list(states)
    if len(states) == 1:
        return states[0]
    return {k: sum(s[k] for s in states) / len(states) if states[0][k].is_floating_point() else states[-1][k]
            for k in states[0]}


def _scores(res: dict[str, np.ndarray]) -> tuple[float, float]:
    """(MSE of the routed score over labelled rows, mean daily Spearman IC) of one pass."""
    score, label, days = res["score"], res["label"], res["days"]
    ok = ~np.isnan(label)
    loss = float(np.mean((score[ok].astype(np.float64) - label[ok]) ** 2)) if ok.any() else float("nan")
    if not ok.any():
        return loss, float("nan")
    df = pd.DataFrame({"score": score[ok], "label": label[ok]})
    codes = pd.factorize(days[ok])[0]
    ranks = df.groupby(codes).rank()  # average ranks per day: Spearman = Pearson of ranks
    x, y = ranks["score"].to_numpy(np.float64), ranks["label"].to_numpy(np.float64)
    n = np.bincount(codes).astype(np.float64)
    sums = {k: np.bincount(codes, weights=v) for k, v in (("x", x), ("y", y), ("xx", x * x), ("yy", y * y),
                                                          ("xy", x * y))}
    cov = sums["xy"] - sums["x"] * sums["y"] / n
    var_x, var_y = sums["xx"] - sums["x"] ** 2 / n, sums["yy"] - sums["y"] ** 2 / n
    good = (n > 1) & (var_x > 1e-12) & (var_y > 1e-12)
    ic = float(np.mean(cov[good] / np.sqrt(var_x[good] * var_y[good]))) if good.any() else float("nan")
    return loss, ic


def _frame(seg: Any, res: dict[str, np.ndarray]) -> pd.DataFrame:
    cols: dict[str, Any] = {"score": res["score"].astype(np.float64), "label": res["label"].astype(np.float64)}
    preds = res["preds"].reshape(len(res["score"]), -1)
    for k in range(preds.shape[1]):
        cols[f"score_{k}"] = preds[:, k]
    if len(res["prob"]):
        for k in range(res["prob"].shape[1]):
            cols[f"prob_{k}"] = res["prob"][:, k]
    index = seg.restore_index(res["rows"]).swaplevel()
    index.names = ["datetime", "instrument"]
    return pd.DataFrame(cols, index=index).sort_index()

