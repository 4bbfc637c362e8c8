"""Entry point of the built-in model zoo: registers the models under their names and Qlib's module paths.

Importing this module (and registering) needs neither LightGBM nor torch: the model modules import them
when a model first fits or predicts.
"""
from __future__ import annotations

from typing import Callable

from qexp import hookimpl


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    from .alstm import ALSTM
    from .lgb import LGBModel
    from .linear import LinearModel

    register(LGBModel, module_paths=("qlib.contrib.model.gbdt",))
    register(LinearModel, module_paths=("qlib.contrib.model.linear",))
    from .catboost_model import CatBoostModel
    from .double_ensemble import DEnsembleModel
    from .xgb import XGBModel
    register(XGBModel, module_paths=("qlib.contrib.model.xgboost",))
    register(CatBoostModel, module_paths=("qlib.contrib.model.catboost_model",))
    register(DEnsembleModel, module_paths=("qlib.contrib.model.double_ensemble",))
    # Qlib has two classes named ALSTM (DatasetH and TSDatasetH variants); ours tells the dataset kinds apart
    # at fit time, so one class answers both module paths and the bare name.
    register(ALSTM, module_paths=("qlib.contrib.model.pytorch_alstm", "qlib.contrib.model.pytorch_alstm_ts"))
    from .torch_registry import register_torch_models
    register_torch_models(register)
