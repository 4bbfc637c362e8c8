"""What a quant run means, read from Qlib's artifacts and qexp's tags: backtest curves and risk tables
(PortAnaRecord), sweeps (``qexp sweep``: a parent tagged ``qexp.sweep_id`` with trial children) and rolling
runs (``qexp rolling``: a combined run whose params name each window's test segment and run, ``rolling/IC``
per window)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from qexp.ext import (
    ROLLING_IC_METRIC,
    ROLLING_TAG,
    ROLLING_WINDOW_RUN_PARAM,
    ROLLING_WINDOW_TAG,
    ROLLING_WINDOW_TEST_PARAM,
    RUN_NAME_TAG,
    SWEEP_GOAL_TAG,
    SWEEP_METRIC_TAG,
    TRIAL_STATE_TAG,
    TRIAL_TAG,
)

from .artifacts import unpickle

REPORT = re.compile(r"^portfolio_analysis/report_normal_(\w+)\.pkl$")
RISK = "portfolio_analysis/port_analysis_{freq}.pkl"
HEADLINE_METRICS = ["IC", "ICIR", "Rank IC", "Rank ICIR", "1day.excess_return_with_cost.annualized_return",
                    "1day.excess_return_with_cost.information_ratio", "1day.excess_return_with_cost.max_drawdown"]
WINDOW_TEST = re.compile(r"^rolling\.window\.(\d+)\.test$")


# ---- backtests ----------------------------------------------------------------------------------------

def report_paths(artifacts: list[str]) -> dict[str, str]:
    """``{freq: path}`` of the PortAnaRecord reports among a run's artifact paths."""
    out = {}
    for a in artifacts:
        m = REPORT.match(a)
        if m:
            out[m.group(1)] = a
    return out


def backtest_curves(report: Any) -> dict[str, Any]:
    """Cumulative returns of a ``report_normal`` frame, as Qlib's report graph draws them (sums of daily
    returns): strategy, benchmark, excess without and with cost."""
    import pandas as pd
    df = report.sort_index()
    ret = pd.to_numeric(df.get("return"), errors="coerce").fillna(0.0)
    bench = pd.to_numeric(df.get("bench", 0.0), errors="coerce").fillna(0.0) if "bench" in df else ret * 0
    cost = pd.to_numeric(df.get("cost", 0.0), errors="coerce").fillna(0.0) if "cost" in df else ret * 0
    dates = [d.strftime("%Y-%m-%d") if hasattr(d, "strftime") else str(d) for d in df.index]
    return {"dates": dates, "return": _floats(ret.cumsum()), "bench": _floats(bench.cumsum()),
            "excess": _floats((ret - bench).cumsum()), "excess_cost": _floats((ret - bench - cost).cumsum()),
            "turnover": _floats(pd.to_numeric(df["turnover"], errors="coerce")) if "turnover" in df else []}


def _floats(s: Any) -> list[float | None]:
    return [as_number(v) for v in s.tolist()]


def risk_rows(risk: Any) -> dict[tuple[str, str], float | None]:
    """``{(group, measure): value}`` from a ``port_analysis`` frame (MultiIndex rows, one ``risk`` column)."""
    out = {}
    col = risk["risk"] if "risk" in getattr(risk, "columns", []) else risk.iloc[:, 0]
    for idx, v in col.items():
        group, measure = (idx[0], idx[-1]) if isinstance(idx, tuple) else ("", idx)
        out[(str(group), str(measure))] = as_number(v)
    return out


def load_backtest(recorder: Any, artifacts: list[str]) -> dict[str, Any] | None:
    """Curves and risk table of a PortAnaRecord run (its first frequency), or None."""
    reports = report_paths(artifacts)
    if not reports:
        return None
    freq = "1day" if "1day" in reports else sorted(reports)[0]
    out: dict[str, Any] = {"freq": freq, "curves": None, "risk": {}, "error": None}
    try:
        out["curves"] = backtest_curves(unpickle(recorder.read_artifact(reports[freq])))
        risk_path = RISK.format(freq=freq)
        if risk_path in artifacts:
            out["risk"] = risk_rows(unpickle(recorder.read_artifact(risk_path)))
    except Exception as exc:  # a foreign or damaged report: say so, show the rest of the run
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


# ---- sweeps -------------------------------------------------------------------------------------------

@dataclass
class Sweep:
    objective: str | None
    goal: str                     # maximize | minimize
    trials: list[dict[str, Any]]  # number, run_id, name, status, state, params, value
    params: list[str]             # params that vary between trials
    importance: dict[str, float] = field(default_factory=dict)
    importance_method: str = ""   # how ``importance`` was measured, or why there is none
    best: dict[str, Any] | None = None


def pick_objective(parent: dict, children: list[dict]) -> str | None:
    """The sweep's objective (its ``qexp.sweep.metric`` tag), else a headline metric every child has."""
    named = parent.get("tags", {}).get(SWEEP_METRIC_TAG)
    if named:
        return named
    common: set[str] | None = None
    for c in children:
        keys = {k for k, v in c.get("metrics", {}).items() if not k.startswith("system/") and as_number(v) is not None}
        common = keys if common is None else common & keys
    if not common:
        return None
    for k in HEADLINE_METRICS:
        if k in common:
            return k
    return sorted(common)[0]


def sweep(parent: dict, children: list[dict], objective: str | None = None) -> Sweep:
    """The trials of a sweep as ``qexp sweep`` records them: each child tagged with its trial number and
    state, its sampled values as params, its objective as a metric."""
    tags = parent.get("tags", {})
    objective = objective or pick_objective(parent, children)
    goal = "minimize" if str(tags.get(SWEEP_GOAL_TAG, "maximize")).lower().startswith("min") else "maximize"
    trials = []
    for i, c in enumerate(children):
        ctags = c.get("tags", {})
        number = ctags.get(TRIAL_TAG, "")
        trials.append({"number": int(number) if number.lstrip("-").isdigit() else i,
                       "run_id": c["run_id"], "name": c.get("run_name") or ctags.get(RUN_NAME_TAG, ""),
                       "status": c.get("status"), "state": ctags.get(TRIAL_STATE_TAG) or c.get("status"),
                       "params": c.get("params", {}),
                       "value": as_number(c.get("metrics", {}).get(objective)) if objective else None})
    trials.sort(key=lambda t: t["number"])
    params = varying_params([t["params"] for t in trials])
    scored = [t for t in trials if t["value"] is not None and t["state"] in ("COMPLETE", "FINISHED")]
    best = None
    if scored:
        best = (max if goal == "maximize" else min)(scored, key=lambda t: t["value"])
    imp, method = importance([t["params"] for t in scored], [t["value"] for t in scored], params, goal)
    return Sweep(objective, goal, trials, params, imp, method, best)


def varying_params(param_dicts: list[dict[str, str]]) -> list[str]:
    keys = sorted({k for p in param_dicts for k in p})
    return [k for k in keys if len({p.get(k) for p in param_dicts}) > 1]


def as_number(v: Any) -> float | None:
    """``v`` as a finite float, else None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


FANOVA = "fANOVA (Optuna's get_param_importances, as `qexp sweep` reports it)"


def importance(param_dicts: list[dict[str, str]], values: list[float], keys: list[str],
               goal: str = "maximize") -> tuple[dict[str, float], str]:
    """``({param: importance}, method)``: Optuna's fANOVA over the finished trials, the measure ``qexp sweep``
    prints (the sweep records no importance on its runs, so it is computed again from the trials' params and
    objective values: numeric params as float or int ranges, on a log scale when sampled over decades,
    others as categories). Without Optuna or scikit-learn, or when fANOVA cannot fit, no importance and why."""
    if len(values) < 3 or not keys:
        return {}, (f"parameter importance needs at least 3 finished trials with varied params (have "
                    f"{len(values)} finished, {len(keys)} varied)")
    try:
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    except ImportError:
        return {}, "parameter importance needs Optuna (pip install \"qexp[optuna]\"), as `qexp sweep` does"
    dists: dict[str, Any] = {}
    columns: dict[str, list[Any]] = {}
    for k in keys:
        raw = [p.get(k) for p in param_dicts]
        nums = [as_number(v) for v in raw]
        if all(n is not None for n in nums):
            vals = [float(n) for n in nums if n is not None]
            if all(v == int(v) and "." not in str(r) for v, r in zip(vals, raw)):
                dists[k] = IntDistribution(int(min(vals)), int(max(vals)), log=log_scaled(vals))
                columns[k] = [int(v) for v in vals]
            else:
                dists[k] = FloatDistribution(min(vals), max(vals), log=log_scaled(vals))
                columns[k] = vals
        else:
            cats = sorted({str(v) for v in raw})
            dists[k] = CategoricalDistribution(cats)
            columns[k] = [str(v) for v in raw]
    dists = {k: d for k, d in dists.items() if len(set(columns[k])) > 1}
    if not dists:
        return {}, "no param varies between the finished trials"
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="minimize" if goal == "minimize" else "maximize")
        study.add_trials([optuna.trial.create_trial(params={k: columns[k][i] for k in dists}, distributions=dists,
                                                    value=v) for i, v in enumerate(values)])
        # the sweep's evaluator, seeded so that a page shows the same numbers on every view
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except Exception as exc:  # noqa: BLE001 - fANOVA cannot fit every study (or scikit-learn is missing)
        return {}, f"parameter importance is not available: {type(exc).__name__}: {exc}"
    return {k: float(v) for k, v in imp.items()}, FANOVA


def parcoords(runs: list[dict], params: list[str], metric: str | None) -> dict[str, Any]:
    """Axes for a parallel-coordinates plot: numeric params as numbers (on a log axis when they were
    sampled over decades), others as category codes; axis labels are the last part of dotted names."""
    dims = []
    labels = short_labels(params)
    for k in params:
        col = [r.get("params", {}).get(k) for r in runs]
        nums = [as_number(v) for v in col]
        if all(n is not None for n in nums):
            if log_scaled([n for n in nums if n is not None]):
                dims.append({"label": f"log10({labels[k]})", "key": k,
                             "values": [round(math.log10(n), 4) for n in nums if n is not None]})
            else:
                dims.append({"label": labels[k], "key": k, "values": nums})
        else:
            cats = sorted({str(v) for v in col})
            dims.append({"label": labels[k], "key": k, "values": [cats.index(str(v)) for v in col],
                         "tickvals": list(range(len(cats))), "ticktext": cats})
    if metric:
        dims.append({"label": metric, "key": metric,
                     "values": [as_number(r.get("metrics", {}).get(metric)) for r in runs]})
    return {"dimensions": dims, "metric": metric, "run_ids": [r["run_id"] for r in runs]}


def log_scaled(values: list[float]) -> bool:
    """Positive values spanning more than a decade and bunched at the low end (log-uniform samples)."""
    if not values or min(values) <= 0:
        return False
    lo, hi = min(values), max(values)
    if hi / lo < 10:
        return False
    mid = sorted(values)[len(values) // 2]
    return (mid - lo) / (hi - lo) < 0.25


def short_labels(keys: list[str]) -> dict[str, str]:
    """``model.kwargs.learning_rate`` -> ``learning_rate``, unless two keys would look the same."""
    last = {k: k.rsplit(".", 1)[-1] for k in keys}
    seen: dict[str, int] = {}
    for v in last.values():
        seen[v] = seen.get(v, 0) + 1
    return {k: (v if seen[v] == 1 else k) for k, v in last.items()}




# ---- rolling runs -------------------------------------------------------------------------------------

def is_rolling_combined(tags: dict[str, str]) -> bool:
    """The combined run of ``qexp rolling`` (tagged ``qexp.rolling``; its window runs carry the same tag and
    their index in ``rolling.window``)."""
    return bool(tags.get(ROLLING_TAG)) and ROLLING_WINDOW_TAG not in tags


def is_rolling_window(tags: dict[str, str]) -> bool:
    return bool(tags.get(ROLLING_TAG)) and ROLLING_WINDOW_TAG in tags


def rolling_windows(params: dict[str, str], ic_by_step: dict[int, float | None],
                    window_rows: dict[str, dict]) -> list[dict[str, Any]]:
    """The windows of a combined rolling run, in order: index, test segment (``rolling.window.{i}.test`` =
    ``"YYYY-MM-DD..YYYY-MM-DD"``), window run (``rolling.window.{i}.run_id``, with its row when found), and
    the window's IC (``rolling/IC`` at step i). Windows known only by their IC steps are listed too."""
    indexes = {int(m.group(1)) for k in params if (m := WINDOW_TEST.match(k))} | set(ic_by_step)
    wins = []
    for i in sorted(indexes):
        start, _, end = params.get(ROLLING_WINDOW_TEST_PARAM.format(i), "").partition("..")
        run_id = params.get(ROLLING_WINDOW_RUN_PARAM.format(i)) or None
        row = window_rows.get(run_id or "")
        wins.append({"index": i, "run_id": run_id if row else None, "linked": run_id, "name": f"window {i}",
                     "status": (row or {}).get("status"), "start": _day(start), "end": _day(end),
                     "open_end": end == "open", "ic": ic_by_step.get(i)})
    return wins


def _day(text: str) -> str | None:
    return text if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text or "") else None


def ic_steps(series: Any) -> dict[int, float | None]:
    """``rolling/IC`` history -> {window index: IC} (the last point of each step)."""
    return {int(step): as_number(v) for step, v in zip(series.steps.tolist(), series.values.tolist())}


ROLLING_IC = ROLLING_IC_METRIC  # the metric of the IC per window
