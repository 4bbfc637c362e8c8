"""The code-driven example and the multi-run example run as tests."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import qexp
from qexp import R

from .conftest import SMALL

REPO = Path(__file__).resolve().parents[2]


def load(name: str):
    # a plain import from the examples folder, so spawned worker processes can import it too
    examples = str(REPO / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    return importlib.import_module(name)


def test_workflow_by_code(small_market, tmp_path):
    ex = load("workflow_by_code")
    ex.HANDLER.update(start_time="2016-01-01", end_time="2019-12-31", fit_start_time="2016-01-01",
                      fit_end_time="2017-12-31")
    ex.TASK["dataset"]["kwargs"]["segments"] = {"train": ("2016-01-01", "2017-12-31"),
                                                "valid": ("2018-01-01", "2018-12-31"),
                                                "test": ("2019-01-01", "2019-12-31")}
    ex.TASK["model"]["kwargs"]["num_boost_round"] = 30
    ex.PORT_ANALYSIS["backtest"].update(start_time="2019-01-01", end_time="2019-12-31")
    ex.PORT_ANALYSIS["strategy"]["kwargs"].update(topk=10, n_drop=2)
    run_id = ex.main(uri=str(tmp_path / "runs"), provider_uri=str(small_market))
    rec = R.get_recorder(recorder_id=run_id)
    assert rec.status == "FINISHED"
    assert {"params.pkl", "pred.pkl", "label.pkl"} <= set(rec.list_artifacts())
    m = rec.list_metrics()
    assert math.isfinite(m["IC"]) and math.isfinite(m["1day.excess_return_with_cost.annualized_return"])


def test_multi_run_compares_parallel_runs(small_market, tmp_path):
    ex = load("multi_run")
    extra = [f"qlib_init.provider_uri={small_market}", "task.model.kwargs.num_boost_round=20"] + SMALL
    variants = {"a": ["task.model.kwargs.num_leaves=8"], "b": ["task.model.kwargs.num_leaves=16"]}
    ids, table = ex.main(str(tmp_path / "runs"), workers=2, config=str(ex.CONFIG), extra=extra, variants=variants)
    assert set(ids) == {"a", "b"} and len(set(ids.values())) == 2
    assert sorted(table["tags.variant"]) == ["a", "b"]
    assert table["metrics.IC"].notna().all()
    qexp.init(uri=str(tmp_path / "runs"))
    assert list(R.list_experiments()) == ["lgb_sweep"]
