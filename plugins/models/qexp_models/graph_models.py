"""Qlib's models that relate the stocks of one day and start from a pretrained base model: ``GATs`` (graph
attention over the day's stocks). They batch by day (all stocks of a date together) on the shared loop.

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

    def _set_base(self, base_model: str, model_path: Any) -> None:
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
        return [describe_missing(cls.__name__, str(path))] if missing_path(path) else []

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
        check_positive_int(self.name, hidden_size=hidden_size, num_layers=num_layers)
        check_dropout(self.name, dropout)
        self.hidden_size, self.num_layers, self.dropout = int(hidden_size), int(num_layers), float(dropout)
        self._set_base(base_model, model_path)
        self._init_loop(d_feat=d_feat, n_epochs=n_epochs, lr=lr, metric=metric, batch_size=1,
                        early_stop=early_stop, loss=loss, optimizer=optimizer, GPU=GPU, seed=seed, kwargs=kwargs)

    def _new_net(self) -> Any:
        from .nets.gats import GATModel
        assert self.d_feat is not None
        return GATModel(self.d_feat, self.hidden_size, self.num_layers, self.dropout, self.base_model)


class GATsTS(GATs):
    """``pytorch_gats_ts.GATs``: Qlib's defaults there (d_feat 20)."""

    def __init__(self, d_feat: int = 20, **kwargs: Any):
        super().__init__(d_feat=d_feat, **kwargs)
