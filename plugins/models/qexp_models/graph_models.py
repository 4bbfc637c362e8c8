"""Qlib's models that relate the stocks of one day and start from a pretrained base model: ``GATs`` (graph
attention over the day's stocks), ``HIST`` (shared information through concepts) and ``IGMTF`` (similar stocks
of similar training days). They batch by day (all stocks of a date together) on the shared loop.

``model_path`` names the pretrained GRU/LSTM: Qlib's ``torch.save``-d ``state_dict`` file, a pickled qexp
model, or ``run:<run id>`` (that qexp run's ``params.pkl``). A file that does not exist yet is a warning when
the model is built (``qexp run --dry-run`` of a pipeline whose earlier step writes it) and a clear error at
``fit``.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any

from .pretrained import apply_base_state, describe_missing, load_base_state, missing_path
from .torch_loop import TorchModel, check_choice, check_dropout, check_positive_int

logger = logging.getLogger("qexp.models")


class _Pretrained(TorchModel):
    """A daily-batched model whose network's ``rnn``/``fc_out`` start from a base model's weights."""

    daily = True
    model_path: Any
    base_model: str

    def _init_base(self, hidden_size: int, num_layers: int, dropout: float, base_model: str,
                   model_path: Any) -> None:
        """The constructor arguments every pretrained graph model shares: the GRU/LSTM base's size and
        dropout, its kind and the saved base model to start from (checked; a missing file warns)."""
        check_positive_int(self.name, hidden_size=hidden_size, num_layers=num_layers)
        check_dropout(self.name, dropout)
        self.hidden_size, self.num_layers, self.dropout = int(hidden_size), int(num_layers), float(dropout)
        check_choice(self.name, "base_model", base_model, ("GRU", "LSTM"))
        self.base_model, self.model_path = base_model, model_path
        if missing_path(model_path):
            warnings.warn(describe_missing(self.name, str(model_path)) + " (fit will fail until it exists)",
                          stacklevel=3)
        self.base_keys: list[str] = []

    @classmethod
    def dry_run_warnings(cls, kwargs: dict) -> list[str]:
        """What ``qexp run --dry-run`` should warn about in these constructor arguments."""
        path = kwargs.get("model_path")
        return [describe_missing(cls.qlib_name, str(path))] if missing_path(path) else []

    def _init_net(self, torch: Any, net: Any) -> None:
        if self.model_path is None:
            return  # Qlib loads a freshly initialised base model then: the same as starting from scratch
        state = load_base_state(self.name, self.model_path)
        self.base_keys = apply_base_state(self.name, net, state, self.base_model)
        logger.info("%s: started from the base model in %s (%d tensors)", self.name, self.model_path,
                    len(self.base_keys))


class GATs(_Pretrained):
    """Qlib's ``GATs`` (``pytorch_gats`` on a DatasetH, ``pytorch_gats_ts`` on a TSDatasetH): a GRU/LSTM
    (``base_model``) per stock, attention across the day's stocks, a two-layer head; one batch per day."""

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 n_epochs: int = 200, lr: float = 0.001, metric: str = "", early_stop: int = 20, loss: str = "mse",
                 base_model: str = "GRU", model_path: Any = None, optimizer: str = "adam", GPU: Any = 0,
                 seed: int | None = None, **kwargs: Any):
        self._init_base(hidden_size, num_layers, dropout, base_model, model_path)
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=1,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)

    def _new_net(self) -> Any:
        from .nets.gats import GATModel
        assert self.d_feat is not None
        return GATModel(self.d_feat, self.hidden_size, self.num_layers, self.dropout, self.base_model)


class GATsTS(GATs):
    """``pytorch_gats_ts.GATs``: Qlib's defaults there (d_feat 20)."""

    qlib_name = "GATs"

    def __init__(self, d_feat: int = 20, **kwargs: Any):
        super().__init__(d_feat=d_feat, **kwargs)


class HIST(_Pretrained):
    """Qlib's ``HIST`` (``pytorch_hist``): shared information through predefined concepts (``stock2concept``:
    a ``.npy`` matrix, stocks x concepts) and hidden concepts, on a GRU/LSTM base; one batch per day.

    ``stock_index`` is a ``.npy`` holding a dict instrument -> row of the matrix. Both files are the user's:
    nothing is downloaded, and a missing one is a clear error at ``fit``. Stocks the index does not list get
    no predefined concept (Qlib points them at row 733 of its CSI300 file, for the same effect). The matrix is
    kept in the fitted model, so predicting needs neither file.
    """

    METRICS = ("", "loss", "ic")

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 n_epochs: int = 200, lr: float = 0.001, metric: str = "", early_stop: int = 20, loss: str = "mse",
                 base_model: str = "GRU", model_path: Any = None, stock2concept: Any = None, stock_index: Any = None,
                 optimizer: str = "adam", GPU: Any = 0, seed: int | None = None, **kwargs: Any):
        self._init_base(hidden_size, num_layers, dropout, base_model, model_path)
        self.stock2concept, self.stock_index = stock2concept, stock_index
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=1,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)
        self.concepts: Any = None           # the matrix, read by fit
        self.rows: dict[str, int] | None = None

    @classmethod
    def dry_run_warnings(cls, kwargs: dict) -> list[str]:
        out = super().dry_run_warnings(kwargs)
        for key in ("stock2concept", "stock_index"):
            path = kwargs.get(key)
            if path is None or missing_path(path):
                out.append(_missing_concepts(key, path))
        return out

    def _before_fit(self, dataset: Any) -> None:
        if self.rows is not None and self.concepts is not None:
            return
        import numpy as np
        for key in ("stock2concept", "stock_index"):
            path = getattr(self, key)
            if path is None or missing_path(path):
                raise FileNotFoundError(_missing_concepts(key, path))
        import os
        matrix = np.load(os.path.expanduser(str(self.stock2concept)))
        if matrix.ndim != 2:
            raise ValueError(f"HIST: stock2concept {self.stock2concept!r} holds an array of shape {matrix.shape}; "
                             f"it must be a 2-D matrix, stocks x concepts")
        index = np.load(os.path.expanduser(str(self.stock_index)), allow_pickle=True)
        index = index.item() if index.dtype == object and index.shape == () else index
        if not isinstance(index, dict):
            raise ValueError(f"HIST: stock_index {self.stock_index!r} must hold a dict instrument -> row of the "
                             f"concept matrix (np.save of a dict), got {type(index).__name__}")
        bad = {k: v for k, v in index.items() if not 0 <= int(v) < matrix.shape[0]}
        if bad:
            raise ValueError(f"HIST: stock_index rows outside the concept matrix's {matrix.shape[0]} rows: "
                             f"{dict(list(bad.items())[:3])}")
        self.concepts = matrix.astype(np.float32)
        self.rows = {str(k): int(v) for k, v in index.items()}

    def _load(self, dataset: Any, segment: Any, learn: bool) -> Any:
        import numpy as np
        self._before_fit(dataset)
        seg = super()._load(dataset, segment, learn)
        assert self.rows is not None and self.concepts is not None
        missing = len(self.concepts)  # the zero row after the matrix
        inst = seg.index.get_level_values("instrument")
        rows = np.array([self.rows.get(str(i), missing) for i in inst], dtype=np.float32)
        col = np.broadcast_to(rows[:, None, None], (len(rows), seg.x.shape[1], 1))
        return seg._replace(x=np.ascontiguousarray(np.concatenate([seg.x, col], axis=2)))

    def _check_input(self, seg: Any) -> None:
        self.n_features = int(seg.x.shape[-1]) - 1

    def _new_net(self) -> Any:
        from .nets.hist import HISTModel
        assert self.d_feat is not None
        return HISTModel(self.d_feat, self.hidden_size, self.num_layers, self.dropout, self.base_model,
                         self.concepts)


def _missing_concepts(key: str, path: Any) -> str:
    what = ("the concept matrix (.npy, stocks x concepts)" if key == "stock2concept"
            else "the stock index (.npy of a dict instrument -> row of the concept matrix)")
    if path is None:
        return f"HIST: {key} is not set; it names {what}, a file you supply (nothing is downloaded)"
    return f"HIST: {key} {str(path)!r} does not exist; it names {what}, a file you supply (nothing is downloaded)"


class IGMTF(_Pretrained):
    """Qlib's ``IGMTF`` (``pytorch_igmtf``): each day's stocks look up similar stocks of the most similar
    training days (see :mod:`.nets.igmtf`); a GRU/LSTM (``base_model``) base whose ``rnn`` starts from
    ``model_path``; one batch per day.

    Before each round the memory of the training days is encoded with the current weights (Qlib's
    ``get_train_hidden``); ``predict`` encodes it again from the dataset's ``train`` segment with the fitted
    weights, as Qlib does, so the dataset must still have that segment (the memory is not saved with the
    model: it is the size of the training set).
    """

    METRICS = ("", "loss", "ic")

    def __init__(self, d_feat: int = 6, hidden_size: int = 64, num_layers: int = 2, dropout: float = 0.0,
                 n_epochs: int = 200, lr: float = 0.001, metric: str = "", early_stop: int = 20, loss: str = "mse",
                 base_model: str = "GRU", model_path: Any = None, optimizer: str = "adam", GPU: Any = 0,
                 seed: int | None = None, **kwargs: Any):
        self._init_base(hidden_size, num_layers, dropout, base_model, model_path)
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=1,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)
        self._memory_source: Any = None  # the train segment, while predicting

    def _new_net(self) -> Any:
        from .nets.igmtf import IGMTFModel
        assert self.d_feat is not None
        return IGMTFModel(self.d_feat, self.hidden_size, self.num_layers, self.dropout, self.base_model)

    def _begin_round(self, torch: Any, net: Any, data: dict, epoch: int) -> None:
        train = data["train"]
        net.set_memory(train.x, train.days)

    def predict(self, dataset: Any, segment: Any = "test") -> Any:
        from ._data import has_segment
        from .torch_loop import day_spans
        if not self.fitted:
            return super().predict(dataset, segment)
        if not has_segment(dataset, "train"):
            raise ValueError(f"{self.name} predicts from the memory of its training days: the dataset needs its "
                             f"'train' segment (the one it was fitted on)")
        train = self._learn(self._load(dataset, "train", True), "train")
        self._memory_source = (train.x, day_spans(train.index))
        try:
            return super().predict(dataset, segment)
        finally:
            self._memory_source = None

    def _net_on(self, torch: Any, device: Any) -> Any:
        net = super()._net_on(torch, device)
        if self._memory_source is not None:
            x, days = self._memory_source
            net.set_memory(torch.from_numpy(x).to(device), days)
        return net

    def __setstate__(self, state: dict) -> None:
        state["_memory_source"] = None
        super().__setstate__(state)
