"""The code-driven path: the same LightGBM + Alpha158 workflow as the YAML, written in Python.

    python examples/workflow_by_code.py [--uri ./qexp_runs] [--provider-uri DIR]

Without --provider-uri it runs on qexp's built-in synthetic market.
"""
from __future__ import annotations

import argparse

import qexp
from qexp import R
from qexp.config import flatten_dict, init_instance_by_config

MARKET, BENCHMARK = "csi300", "SH000300"

HANDLER = {"start_time": "2015-01-01", "end_time": "2020-12-31", "fit_start_time": "2015-01-01",
           "fit_end_time": "2018-12-31", "instruments": MARKET}
TASK = {
    "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
              "kwargs": {"loss": "mse", "colsample_bytree": 0.8879, "learning_rate": 0.2, "subsample": 0.8789,
                         "lambda_l1": 205.6999, "lambda_l2": 580.9768, "max_depth": 8, "num_leaves": 210,
                         "num_threads": 2}},
    "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset",
                "kwargs": {"handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
                                       "kwargs": HANDLER},
                           "segments": {"train": ("2015-01-01", "2018-12-31"), "valid": ("2019-01-01", "2019-12-31"),
                                        "test": ("2020-01-01", "2020-12-31")}}},
}
PORT_ANALYSIS = {
    "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                 "kwargs": {"signal": "<PRED>", "topk": 50, "n_drop": 5}},
    "backtest": {"start_time": "2020-01-01", "end_time": "2020-12-31", "account": 100_000_000,
                 "benchmark": BENCHMARK,
                 "exchange_kwargs": {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005,
                                     "close_cost": 0.0015, "min_cost": 5}},
}


def main(uri: str | None = None, provider_uri: str | None = None, experiment: str = "workflow_by_code") -> str:
    """Train, predict and analyse; returns the run id."""
    qexp.init(uri=uri, **({"provider_uri": provider_uri} if provider_uri else {}), region="cn")
    model = init_instance_by_config(TASK["model"])
    dataset = init_instance_by_config(TASK["dataset"])

    with R.start(experiment_name=experiment):
        R.log_params(**flatten_dict(TASK))
        model.fit(dataset)
        R.save_objects(**{"params.pkl": model})
        recorder = R.get_recorder()

        signal = init_instance_by_config({"class": "SignalRecord", "module_path": "qlib.workflow.record_temp"},
                                         model=model, dataset=dataset, recorder=recorder)
        signal.generate()
        init_instance_by_config({"class": "SigAnaRecord", "module_path": "qlib.workflow.record_temp"},
                                recorder=recorder, ana_long_short=False, ann_scaler=252).generate()
        init_instance_by_config({"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp",
                                 "kwargs": {"config": PORT_ANALYSIS}}, recorder=recorder).generate()
        print({k: round(v, 4) for k, v in recorder.list_metrics().items()
               if k in ("IC", "Rank IC", "1day.excess_return_with_cost.annualized_return")})
        return recorder.id


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--uri", default=None)
    ap.add_argument("--provider-uri", default=None)
    a = ap.parse_args()
    print("run id:", main(a.uri, a.provider_uri))
