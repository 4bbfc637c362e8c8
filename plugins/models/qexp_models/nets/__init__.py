"""The networks of the PyTorch models, one small module each (they import torch; the models import them only
when they build a network). :func:`resolve_network` maps Qlib's ``pt_model_uri`` names to them."""
from __future__ import annotations

import importlib
from typing import Any

# Qlib's network classes (``pt_model_uri`` of GeneralPTNN / DNNModelPytorch) -> (module here, class)
QLIB_NETWORKS: dict[str, tuple[str, str]] = {
    "qlib.contrib.model.pytorch_nn.Net": ("mlp", "Net"),
    "qlib.contrib.model.pytorch_gru.GRUModel": ("rnn", "GRUModel"),
    "qlib.contrib.model.pytorch_gru_ts.GRUModel": ("rnn", "GRUModel"),
    "qlib.contrib.model.pytorch_lstm.LSTMModel": ("rnn", "LSTMModel"),
    "qlib.contrib.model.pytorch_lstm_ts.LSTMModel": ("rnn", "LSTMModel"),
    "qlib.contrib.model.pytorch_transformer.Transformer": ("transformer", "Transformer"),
    "qlib.contrib.model.pytorch_transformer_ts.Transformer": ("transformer", "Transformer"),
    "qlib.contrib.model.pytorch_localformer.Transformer": ("transformer", "Localformer"),
    "qlib.contrib.model.pytorch_localformer_ts.Transformer": ("transformer", "Localformer"),
    "qlib.contrib.model.pytorch_tcn.TCNModel": ("tcn", "TCNModel"),
    "qlib.contrib.model.pytorch_tcn_ts.TCNModel": ("tcn", "TCNModel"),
    "qlib.contrib.model.pytorch_gats.GATModel": ("gats", "GATModel"),
    "qlib.contrib.model.pytorch_gats_ts.GATModel": ("gats", "GATModel"),
    "qlib.contrib.model.pytorch_alstm.ALSTMModel": ("alstm", "ALSTMModel"),
    "qlib.contrib.model.pytorch_alstm_ts.ALSTMModel": ("alstm", "ALSTMModel"),
    "qlib.contrib.model.pytorch_sfm.SFM_Model": ("sfm", "SFM_Model"),
    "qlib.contrib.model.pytorch_krnn.KRNNModel": ("krnn", "KRNNModel"),
    "qlib.contrib.model.pytorch_sandwich.SandwichModel": ("krnn", "SandwichModel"),
}


def resolve_network(uri: str) -> Any:
    """The network class named by ``uri``: one of Qlib's (answered by the networks here), the bare class name
    of one of them, or any importable ``package.module.Class``."""
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"pt_model_uri must be a 'package.module.Class' string, got {uri!r}")
    if uri in QLIB_NETWORKS:
        here, cls = QLIB_NETWORKS[uri]
        return getattr(importlib.import_module(f"{__name__}.{here}"), cls)
    module_name, _, cls_name = uri.rpartition(".")
    if not module_name:
        raise ValueError(f"pt_model_uri {uri!r} is not 'package.module.Class'; Qlib's networks: "
                         f"{', '.join(sorted(QLIB_NETWORKS))}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"pt_model_uri {uri!r}: cannot import {module_name!r} ({exc}); Qlib's networks that "
                         f"resolve here: {', '.join(sorted(QLIB_NETWORKS))}") from exc
    try:
        return getattr(module, cls_name)
    except AttributeError:
        raise ValueError(f"pt_model_uri {uri!r}: module {module_name!r} has no class {cls_name!r}") from None
