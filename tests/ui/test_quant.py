"""What the UI reads out of quant runs: backtest curves, sweeps (objective, best trial, importance, axes) and
rolling windows."""
from __future__ import annotations

import math
import random

import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the ui extra is not installed (pip install \"qexp[ui]\")")

from qexp_ui import quant  # noqa: E402


def test_backtest_curves_are_qlib_cumulative_sums() -> None:
    idx = pd.bdate_range("2020-01-01", periods=4)
    report = pd.DataFrame({"return": [0.01, -0.02, 0.03, 0.0], "bench": [0.005, -0.01, 0.01, 0.0],
                           "cost": [0.001, 0.001, 0.0, 0.0], "turnover": [1.0, 0.2, 0.2, 0.0]}, index=idx)
    c = quant.backtest_curves(report)
    assert c["dates"][0] == "2020-01-01"
    assert c["excess"] == pytest.approx([0.005, -0.005, 0.015, 0.015])
    assert c["excess_cost"] == pytest.approx([0.004, -0.007, 0.013, 0.013])
    risk = pd.DataFrame({"risk": [0.1, -0.05]}, index=pd.MultiIndex.from_tuples(
        [("excess_return_with_cost", "annualized_return"), ("excess_return_with_cost", "max_drawdown")]))
    assert quant.risk_rows(risk) == {("excess_return_with_cost", "annualized_return"): 0.1,
                                     ("excess_return_with_cost", "max_drawdown"): -0.05}


def _trials(n: int = 40) -> list[dict]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        lr = 10 ** rng.uniform(-3, -0.5)
        noise = rng.choice(["a", "b", "c"])
        leaves = rng.choice([7, 31])
        out.append({"run_id": f"r{i}", "status": "FINISHED", "params": {"m.lr": str(lr), "m.noise": noise,
                                                                         "m.leaves": str(leaves)},
                    "tags": {"qexp.trial": str(i), "qexp.trial_state": "COMPLETE"},
                    "metrics": {"IC": -abs(math.log10(lr) + 1.5) + rng.gauss(0, 0.05), "loss": 1.0}})
    return out


def test_sweep_objective_best_and_importance() -> None:
    children = _trials()
    sw = quant.sweep({"tags": {"qexp.sweep_id": "s", "qexp.sweep.metric": "IC"}}, children)
    assert sw.objective == "IC" and sw.goal == "maximize" and len(sw.trials) == 40
    assert sw.best["value"] == max(c["metrics"]["IC"] for c in children)
    assert sw.params == ["m.leaves", "m.lr", "m.noise"]
    assert set(sw.importance) == {"m.leaves", "m.lr", "m.noise"} and sum(sw.importance.values()) == pytest.approx(1)
    assert max(sw.importance, key=sw.importance.get) == "m.lr"  # the one param the objective depends on
    low = quant.sweep({"tags": {"qexp.sweep.metric": "IC", "qexp.sweep.goal": "minimize"}}, children)
    assert low.best["value"] == min(c["metrics"]["IC"] for c in children)
    # without a named objective: a headline metric the trials share
    assert quant.pick_objective({"tags": {}}, children) == "IC"


def test_parcoords_axes() -> None:
    pc = quant.parcoords(_trials(), ["m.lr", "m.noise", "m.leaves"], "IC")
    labels = [d["label"] for d in pc["dimensions"]]
    assert labels == ["log10(lr)", "noise", "leaves", "IC"]  # log-uniform samples on a log axis
    noise = pc["dimensions"][1]
    assert noise["ticktext"] == ["a", "b", "c"] and set(noise["values"]) <= {0, 1, 2}
    assert not quant.log_scaled([float(v) for v in range(1, 300)])  # uniform over decades stays linear


def test_rolling_windows_from_the_combined_runs_params() -> None:
    """The shape `qexp rolling` writes (core/qexp/task/rolling.py): window i's test segment and run id as params
    of the combined run, its IC as rolling/IC at step i; window runs tagged qexp.rolling and rolling.window."""
    params = {"rolling.windows": "3", "rolling.window.0.test": "2019-07-01..2019-08-28",
              "rolling.window.0.run_id": "w0", "rolling.window.1.test": "2019-08-29..2019-10-25",
              "rolling.window.1.run_id": "w1", "rolling.window.2.test": "2019-10-28..open",
              "rolling.window.2.run_id": "gone"}
    rows = {"w0": {"run_id": "w0", "run_name": "", "status": "FINISHED"},
            "w1": {"run_id": "w1", "run_name": "win-1", "status": "FAILED"}}
    wins = quant.rolling_windows(params, {0: 0.05, 1: None, 2: 0.01}, rows)
    assert [(w["index"], w["start"], w["end"], w["ic"]) for w in wins] == [
        (0, "2019-07-01", "2019-08-28", 0.05), (1, "2019-08-29", "2019-10-25", None), (2, "2019-10-28", None, 0.01)]
    assert [w["run_id"] for w in wins] == ["w0", "w1", None] and wins[2]["linked"] == "gone"
    assert wins[1]["status"] == "FAILED" and wins[1]["name"] == "window 1" and wins[2]["open_end"]
    combined = {"qexp.rolling": "rolling_models"}
    window = {"qexp.rolling": "rolling", "rolling.window": "0"}
    assert quant.is_rolling_combined(combined) and not quant.is_rolling_window(combined)
    assert quant.is_rolling_window(window) and not quant.is_rolling_combined(window)


def test_sweep_importance_is_optunas_fanova() -> None:
    """The sweep page shows the measure `qexp sweep` prints: Optuna's fANOVA over the finished trials."""
    pytest.importorskip("optuna")
    pytest.importorskip("sklearn")
    import optuna
    children = _trials(30)
    sw = quant.sweep({"tags": {"qexp.sweep.metric": "IC"}}, children)
    assert sw.importance_method == quant.FANOVA
    study = optuna.create_study(direction="maximize")
    dists = {"m.lr": optuna.distributions.FloatDistribution(
        min(float(c["params"]["m.lr"]) for c in children), max(float(c["params"]["m.lr"]) for c in children), log=True),
        "m.noise": optuna.distributions.CategoricalDistribution(["a", "b", "c"]),
        "m.leaves": optuna.distributions.IntDistribution(7, 31)}
    study.add_trials([optuna.trial.create_trial(
        params={"m.lr": float(c["params"]["m.lr"]), "m.noise": c["params"]["m.noise"],
                "m.leaves": int(c["params"]["m.leaves"])}, distributions=dists, value=c["metrics"]["IC"])
        for c in children])
    expected = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    assert sw.importance == pytest.approx(expected)
    few = quant.sweep({"tags": {}}, children[:2])
    assert few.importance == {} and "at least 3" in few.importance_method
