"""A small, fast task on the tiny synthetic market: 3 features, a ridge model, SignalRecord."""
from __future__ import annotations

import copy

HANDLER = {
    "class": "DataHandlerLP", "module_path": "qlib.data.dataset.handler",
    "kwargs": {
        "instruments": "all", "start_time": "2018-01-01", "end_time": "2019-12-31",
        "data_loader": {"class": "QlibDataLoader", "kwargs": {"config": {
            "feature": [["$close/Ref($close,1)-1", "Mean($close,5)/$close-1", "$volume/Mean($volume,10)-1"],
                        ["R1", "MA5", "V10"]],
            "label": [["Ref($close,-2)/Ref($close,-1)-1"], ["LABEL0"]]}}},
        "infer_processors": [{"class": "Fillna", "kwargs": {"fields_group": "feature"}}],
        "learn_processors": [{"class": "DropnaLabel"}],
    },
}


def small_task(train=("2018-02-01", "2018-12-31"), valid=("2019-01-01", "2019-03-31"),
               test=("2019-04-01", "2019-05-31"), alpha=1.0) -> dict:
    return {
        "model": {"class": "LinearModel", "module_path": "qlib.contrib.model.linear",
                  "kwargs": {"estimator": "ridge", "alpha": alpha}},
        "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset",
                    "kwargs": {"handler": copy.deepcopy(HANDLER),
                               "segments": {"train": train, "valid": valid, "test": test}}},
        "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                    "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
    }


def write_market(dst):
    """The small synthetic market these tasks and the rolling tests fit: 12 stocks, 2018-2019."""
    from qexp_data.synth import SynthParams, write_synth
    write_synth(dst, SynthParams(instruments=12, start="2018-01-01", end="2019-12-31", seed=11))
    return dst
