"""Qlib's ``TabnetModel`` (``pytorch_tabnet``) on the shared loop, with its self-supervised pretraining.

With ``pretrain: True`` (Qlib's default) ``fit`` first trains the encoder and a decoder to rebuild randomly
hidden features (each entry hidden with probability ``ps``) on the dataset's ``pretrain`` segment,
early-stopping on ``pretrain_validation`` (Qlib's configs define both); the best encoder is written to
``pretrain_file`` when one is named, and the supervised fit then starts from it. With ``pretrain: False``
and an existing ``pretrain_file`` the encoder starts from that file (an earlier pretraining; Qlib ignores
the file then). Both phases run through the same loop: the pretraining's rounds are logged as
``pretrain_train_loss``/``pretrain_valid_loss``.

Differences from Qlib's code, which follow the paper: the reconstruction loss scales each feature by the
standard deviation of its true values in the batch (Qlib scales by the decoder's output) and is averaged
over rows; the validation masks are the same each round (Qlib draws new ones), so rounds compare; the
head's linear layer is trained (Qlib leaves it out of the optimizer); ``lamb`` (default 0, as Qlib, which
computes the sparsity loss but never adds it) weighs the paper's sparsity regulariser.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from .torch_loop import Segment, TorchModel, check_choice, check_positive_int

logger = logging.getLogger("qexp.models")

PRETRAIN_SEGMENTS = ("pretrain", "pretrain_validation")


class TabnetModel(TorchModel):
    """Qlib's TabNet on a ``DatasetH``'s rows (``d_feat`` = the number of feature columns)."""

    layout = "flat"
    drop_last = True                    # batch norm: no batch of a single row, as Qlib
    phase: str = "finetune"             # the class default; the instance says "pretrain" while pretraining

    def __init__(self, d_feat: int = 158, out_dim: int = 64, final_out_dim: int = 1, batch_size: int = 4096,
                 n_d: int = 64, n_a: int = 64, n_shared: int = 2, n_ind: int = 2, n_steps: int = 5,
                 n_epochs: int = 100, pretrain_n_epochs: int = 50, relax: float = 1.3, vbs: int = 2048,
                 seed: int | None = 993, optimizer: str = "adam", loss: str = "mse", metric: str = "",
                 early_stop: int = 20, GPU: Any = 0, pretrain_loss: str = "custom", ps: float = 0.3,
                 lr: float = 0.01, pretrain: bool = True, pretrain_file: Any = None, lamb: float = 0.0,
                 **kwargs: Any):
        name = type(self).__name__
        check_positive_int(name, out_dim=out_dim, n_d=n_d, n_a=n_a, n_steps=n_steps, vbs=vbs,
                           pretrain_n_epochs=pretrain_n_epochs)
        if isinstance(n_ind, bool) or not isinstance(n_ind, int) or n_ind < 0 or \
                isinstance(n_shared, bool) or not isinstance(n_shared, int) or n_shared < 0 or n_shared + n_ind < 1:
            raise ValueError(f"{name}: n_shared and n_ind must be integers >= 0 with at least one GLU layer, got "
                             f"n_shared={n_shared!r}, n_ind={n_ind!r}")
        if final_out_dim != 1:
            raise ValueError(f"{name}: final_out_dim must be 1 (one score per row), got {final_out_dim!r}")
        check_choice(name, "pretrain_loss", pretrain_loss, ("custom",))
        if not isinstance(ps, (int, float)) or not 0.0 < ps < 1.0:
            raise ValueError(f"{name}: ps (the probability of hiding a feature while pretraining) must be in "
                             f"(0, 1), got {ps!r}")
        if not isinstance(relax, (int, float)) or relax < 1.0:
            raise ValueError(f"{name}: relax must be >= 1 (1: each feature is used by one step only), got {relax!r}")
        if not isinstance(lamb, (int, float)) or lamb < 0:
            raise ValueError(f"{name}: lamb (the sparsity loss weight) must be >= 0, got {lamb!r}")
        self.out_dim, self.final_out_dim = int(out_dim), int(final_out_dim)
        self.n_d, self.n_a, self.n_shared, self.n_ind, self.n_steps = int(n_d), int(n_a), n_shared, n_ind, int(n_steps)
        self.pretrain_n_epochs, self.relax, self.vbs = int(pretrain_n_epochs), float(relax), int(vbs)
        self.pretrain_loss, self.ps, self.pretrain, self.pretrain_file = pretrain_loss, float(ps), bool(pretrain), \
            pretrain_file
        self.lamb = float(lamb)
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=batch_size,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)
        self.pretrain_best_epoch: int | None = None
        self.pretrain_evals: dict = {}
        self._pre: tuple[Segment, Segment] | None = None        # the pretraining data, during fit only
        self._encoder_state: dict | None = None                   # the pretrained encoder, during fit only

    # ---- data ----------------------------------------------------------------------------------------
    def _check_input(self, seg: Segment) -> None:
        super()._check_input(seg)
        if self.n_features != self.d_feat:
            raise ValueError(f"{self.name}: d_feat={self.d_feat} but the data has {self.n_features} feature "
                             f"columns; set d_feat: {self.n_features}")

    def _before_fit(self, dataset: Any) -> None:
        self._pre = None
        if not self.pretrain:
            return
        names = getattr(dataset, "segments", None)
        missing = [s for s in PRETRAIN_SEGMENTS if isinstance(names, dict) and s not in names]
        if missing:
            raise ValueError(f"{self.name}: pretrain=True needs the dataset segments 'pretrain' and "
                             f"'pretrain_validation' (Qlib's TabNet configs define them, e.g. the train and valid "
                             f"dates); missing: {', '.join(missing)}. Add them or set pretrain: False")
        self._pre = tuple(self._learn(self._load(dataset, s, True), s) for s in PRETRAIN_SEGMENTS)  # type: ignore[assignment]

    # ---- the two phases on the shared loop ------------------------------------------------------------
    def _train(self, torch: Any, device: Any, train: Segment, valid: Segment | None, evals_result: dict,
               save_path: str | None) -> None:
        self._encoder_state = None
        try:
            if self._pre is not None:
                self._pretrain(torch, device)
            elif self.pretrain_file is not None and os.path.exists(os.path.expanduser(str(self.pretrain_file))):
                self._encoder_state = torch.load(os.path.expanduser(str(self.pretrain_file)), map_location="cpu",
                                                 weights_only=True)
                logger.info("%s: the encoder starts from %s", self.name, self.pretrain_file)
            super()._train(torch, device, train, valid, evals_result, save_path)
        finally:
            self._pre, self._encoder_state = None, None

    def _pretrain(self, torch: Any, device: Any) -> None:
        assert self._pre is not None
        self.phase = "pretrain"
        self.metric_prefix = "pretrain_"
        self.pretrain_evals = {}
        try:
            super()._train(torch, device, self._pre[0], self._pre[1], self.pretrain_evals, None)
        finally:
            del self.phase
            self.metric_prefix = ""
        self.pretrain_best_epoch = self.best_epoch
        self._encoder_state = {k[len("model."):]: v.detach().cpu().clone() for k, v in self.net.state_dict().items()
                               if k.startswith("model.")}
        self.net, self.fitted = None, False
        if self.pretrain_file is not None:
            path = os.path.expanduser(str(self.pretrain_file))
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            tmp = f"{path}.tmp-{os.getpid()}"
            torch.save(self._encoder_state, tmp)
            os.replace(tmp, path)
            logger.info("%s: pretrained encoder (best round %s) saved to %s", self.name, self.best_epoch, path)

    def _n_rounds(self) -> int:
        return self.pretrain_n_epochs if self.phase == "pretrain" else self.n_epochs

    def _new_net(self) -> Any:
        from .nets.tabnet import FinetuneModel, PretrainModel, TabNet, TabNet_Decoder
        assert self.d_feat is not None
        encoder = TabNet(inp_dim=self.d_feat, out_dim=self.out_dim, n_d=self.n_d, n_a=self.n_a,
                         n_shared=self.n_shared, n_ind=self.n_ind, n_steps=self.n_steps, relax=self.relax,
                         vbs=self.vbs)
        if self.phase == "pretrain":
            return PretrainModel(encoder, TabNet_Decoder(self.out_dim, self.d_feat, self.n_shared, self.n_ind,
                                                         self.vbs, self.n_steps))
        return FinetuneModel(self.out_dim, self.final_out_dim, encoder)

    def _init_net(self, torch: Any, net: Any) -> None:
        if self.phase != "pretrain" and self._encoder_state is not None:
            net.model.load_state_dict(self._encoder_state)

    def _replicas(self, net: Any, device: Any, rows: int) -> Any:
        return None if self.phase == "pretrain" else super()._replicas(net, device, rows)

    # ---- losses --------------------------------------------------------------------------------------
    def _mask(self, torch: Any, shape: tuple, device: Any, gen: Any = None) -> Any:
        return torch.bernoulli(torch.full(shape, self.ps), generator=gen).to(device)

    def _batch_loss(self, torch: Any, net: Any, xb: Any, yb: Any, wb: Any) -> Any:
        from .nets.tabnet import pretrain_loss
        if self.phase == "pretrain":
            mask = self._mask(torch, tuple(xb.shape), xb.device)
            return pretrain_loss(xb, net.reconstruct(xb, mask), mask)
        vec, sparse = net.features(xb)
        err = (net.fc(vec)[..., 0] - yb) ** 2
        loss = torch.mean(err if wb is None else err * wb)
        return loss + self.lamb * sparse if self.lamb else loss

    def _evaluate(self, torch: Any, net: Any, t: Any, replicas: Any) -> tuple[float, float]:
        if self.phase != "pretrain":
            return super()._evaluate(torch, net, t, replicas)
        from .nets.tabnet import pretrain_loss
        net.eval()
        gen = torch.Generator().manual_seed(0)  # the same masks every round: the rounds' losses compare
        step = self._eval_batch(t.x.device)
        total, rows = 0.0, 0
        with torch.inference_mode():
            for a in range(0, len(t.x), step):
                xb = t.x[a:a + step]
                mask = self._mask(torch, tuple(xb.shape), xb.device, gen)
                total += float(pretrain_loss(xb, net.reconstruct(xb, mask), mask)) * len(xb)
                rows += len(xb)
        loss = total / max(rows, 1)
        return loss, -loss

    def __setstate__(self, state: dict) -> None:
        state.pop("phase", None)
        super().__setstate__(state)
