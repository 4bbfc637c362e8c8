"""The models inside Qlib-style task configs: resolved by Qlib's module paths, fitted by task_train, their
per-iteration metrics and the saved model in the run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import qexp
from qexp.trainer import task_train

from .conftest import LGB_PARAMS, NORM_FEATURES, RANK_LABEL, SEGMENTS, SPAN, ZSCORE_LABEL


def _task(model: dict, handler: str, infer, learn, dataset: str = "DatasetH", **dataset_kwargs) -> dict:
    return {
        "model": model,
        "dataset": {"class": dataset, "module_path": "qlib.data.dataset",
                    "kwargs": {"handler": {"class": handler, "module_path": "qlib.contrib.data.handler",
                                           "kwargs": {**SPAN, "infer_processors": infer,
                                                      "learn_processors": learn}},
                               "segments": {k: list(v) for k, v in SEGMENTS.items()}, **dataset_kwargs}},
        "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                    "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
    }


@pytest.fixture
def market(synth_dir, tmp_path):
    qexp.init(uri=str(tmp_path / "runs"), provider_uri=str(synth_dir))


def test_lgbmodel_task(market) -> None:
    model = {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
             "kwargs": {"loss": "mse", "early_stopping_rounds": 10, "num_boost_round": 60, **LGB_PARAMS}}
    rec = task_train(_task(model, "Alpha158", [], ZSCORE_LABEL), experiment_name="workflow")
    loaded = rec.load_object("params.pkl")
    hist = rec.get_metric_history("l2.valid")
    assert len(hist) == len(rec.get_metric_history("l2.train")) > 0
    assert loaded.model.best_iteration <= 60
    pred = rec.load_object("pred.pkl")
    assert isinstance(pred, (pd.Series, pd.DataFrame)) and np.isfinite(np.asarray(pred)).all()


def test_alstm_ts_task(market) -> None:
    from .conftest import SELECTED_20
    model = {"class": "ALSTM", "module_path": "qlib.contrib.model.pytorch_alstm_ts",
             "kwargs": {"d_feat": 20, "hidden_size": 8, "num_layers": 1, "n_epochs": 2, "batch_size": 1024,
                        "GPU": -1, "seed": 0, "n_jobs": 20, "rnn_type": "GRU"}}
    infer = [{"class": "FilterCol", "kwargs": {"fields_group": "feature", "col_list": SELECTED_20}}] + NORM_FEATURES
    rec = task_train(_task(model, "Alpha158", infer, RANK_LABEL, dataset="TSDatasetH", step_len=20),
                     experiment_name="workflow")
    assert rec.get_metric_history("valid_loss")["step"].tolist() == [0, 1]
    loaded = rec.load_object("params.pkl")
    assert loaded.input_kind == "TSDatasetH" and loaded.net is None and loaded.fitted
