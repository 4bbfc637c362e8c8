"""Registers the PyTorch zoo under Qlib's class names and module paths (``qlib.contrib.model.pytorch_gru``,
``..._ts``, ...). Where Qlib's DatasetH and TSDatasetH variants have different defaults, the ``_ts`` path
gets a subclass with Qlib's ``_ts`` defaults; the bare class name answers the DatasetH variant."""
from __future__ import annotations

from typing import Any, Callable

_M = "qlib.contrib.model."


def register_torch_models(register: Callable[..., Any]) -> None:
    from . import aux_models as am, graph_models as gm, torch_models as tm
    from .tabnet import TabnetModel

    # (class, name, Qlib module paths); a name registered twice resolves by module path, and the bare name
    # answers the last registration (the DatasetH variant)
    table: list[tuple[Any, str, tuple[str, ...]]] = [
        (tm.GRU, "GRU", (_M + "pytorch_gru", _M + "pytorch_gru_ts")),
        (tm.LSTM, "LSTM", (_M + "pytorch_lstm", _M + "pytorch_lstm_ts")),
        (tm.TransformerModelTS, "TransformerModel", (_M + "pytorch_transformer_ts",)),
        (tm.TransformerModel, "TransformerModel", (_M + "pytorch_transformer",)),
        (tm.LocalformerModelTS, "LocalformerModel", (_M + "pytorch_localformer_ts",)),
        (tm.LocalformerModel, "LocalformerModel", (_M + "pytorch_localformer",)),
        (tm.TCNTS, "TCN", (_M + "pytorch_tcn_ts",)),
        (tm.TCN, "TCN", (_M + "pytorch_tcn",)),
        (tm.DNNModelPytorch, "DNNModelPytorch", (_M + "pytorch_nn",)),
        (tm.GeneralPTNN, "GeneralPTNN", (_M + "pytorch_general_nn",)),
        (tm.KRNN, "KRNN", (_M + "pytorch_krnn",)),
        (tm.Sandwich, "Sandwich", (_M + "pytorch_sandwich",)),
        (tm.SFM, "SFM", (_M + "pytorch_sfm",)),
        (gm.GATsTS, "GATs", (_M + "pytorch_gats_ts",)),
        (gm.GATs, "GATs", (_M + "pytorch_gats",)),
        (gm.HIST, "HIST", (_M + "pytorch_hist",)),
        (gm.IGMTF, "IGMTF", (_M + "pytorch_igmtf",)),
        (am.ADARNN, "ADARNN", (_M + "pytorch_adarnn",)),
        (am.ADD, "ADD", (_M + "pytorch_add",)),
        (am.TCTS, "TCTS", (_M + "pytorch_tcts",)),
        (TabnetModel, "TabnetModel", (_M + "pytorch_tabnet",)),
    ]
    for cls, name, paths in table:
        register(cls, name=name, module_paths=paths)
    from .tra import TRAModel  # Temporal Routing Adaptor, on an MTSDatasetH
    register(TRAModel, name="TRAModel", module_paths=(_M + "pytorch_tra",))
