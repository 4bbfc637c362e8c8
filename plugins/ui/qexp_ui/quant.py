"""What a quant run means, read from Qlib's artifacts and tags: backtest curves and risk tables
(PortAnaRecord), sweeps (a parent tagged ``qexp.sweep_id`` with trial children) and rolling runs (tagged
``qexp.rolling``, IC per window in ``rolling/IC``)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .artifacts import unpickle

REPORT = re.compile(r"^portfolio_analysis/report_normal_(\w+)\.pkl$")
RISK = "portfolio_analysis/port_analysis_{freq}.pkl"
PARENT_TAG = "mlflow.parentRunId"
SWEEP_TAG = "qexp.sweep_id"
ROLLING_TAG = "qexp.rolling"
TRIAL_TAGS = ("qexp.trial", "qexp.sweep.trial_number", "number")
TRIAL_STATE_TAGS = ("qexp.trial_state", "qexp.sweep.state", "state")
OBJECTIVE_TAGS = ("qexp.sweep.metric", "qexp.sweep_metric", "qexp.objective", "qexp.sweep.objective")
GOAL_TAGS = ("qexp.sweep.goal", "qexp.sweep_goal", "qexp.goal", "direction")
FAILURE_TAG = "qexp.failure_reason"
HEADLINE_METRICS = ["IC", "ICIR", "Rank IC", "Rank ICIR", "1day.excess_return_with_cost.annualized_return",
                    "1day.excess_return_with_cost.information_ratio", "1day.excess_return_with_cost.max_drawdown"]
DATE = re.compile(r"(\d{4})[-/, (]+0?(\d{1,2})[-/, ]+0?(\d{1,2})")


def first_tag(tags: dict[str, str], names: tuple[str, ...]) -> str | None:
    for n in names:
        v = tags.get(n)
        if v not in (None, ""):
            return v
    return None


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


def risk_rows(risk: Any) -> dict[tuple[str, str], float | None]:
    """``{(group, measure): value}`` from a ``port_analysis`` frame (MultiIndex rows, one ``risk`` column)."""
    out = {}
    col = risk["risk"] if "risk" in getattr(risk, "columns", []) else risk.iloc[:, 0]
    for idx, v in col.items():
        group, measure = (idx[0], idx[-1]) if isinstance(idx, tuple) else ("", idx)
        out[(str(group), str(measure))] = _float(v)
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
    best: dict[str, Any] | None = None


def pick_objective(parent: dict, children: list[dict]) -> str | None:
    named = first_tag(parent.get("tags", {}), OBJECTIVE_TAGS)
    if named:
        return named
    common: set[str] | None = None
    for c in children:
        keys = {k for k, v in c.get("metrics", {}).items() if not k.startswith("system/") and _finite(v)}
        common = keys if common is None else common & keys
    if not common:
        return None
    for k in HEADLINE_METRICS:
        if k in common:
            return k
    return sorted(common)[0]


def sweep(parent: dict, children: list[dict], objective: str | None = None) -> Sweep:
    tags = parent.get("tags", {})
    objective = objective or pick_objective(parent, children)
    goal = (first_tag(tags, GOAL_TAGS) or "maximize").lower()
    goal = "minimize" if goal.startswith("min") else "maximize"
    trials = []
    for i, c in enumerate(children):
        ctags = c.get("tags", {})
        number = first_tag(ctags, TRIAL_TAGS)
        trials.append({"number": int(number) if number and number.lstrip("-").isdigit() else i,
                       "run_id": c["run_id"], "name": c.get("run_name") or ctags.get("mlflow.runName", ""),
                       "status": c.get("status"), "state": first_tag(ctags, TRIAL_STATE_TAGS) or c.get("status"),
                       "params": c.get("params", {}),
                       "value": _float(c.get("metrics", {}).get(objective)) if objective else None})
    trials.sort(key=lambda t: t["number"])
    params = varying_params([t["params"] for t in trials])
    scored = [t for t in trials if t["value"] is not None]
    best = None
    if scored:
        best = (max if goal == "maximize" else min)(scored, key=lambda t: t["value"])
    return Sweep(objective, goal, trials, params, importance([t["params"] for t in scored],
                                                             [t["value"] for t in scored], params), best)


def varying_params(param_dicts: list[dict[str, str]]) -> list[str]:
    keys = sorted({k for p in param_dicts for k in p})
    return [k for k in keys if len({p.get(k) for p in param_dicts}) > 1]


def as_number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def importance(param_dicts: list[dict[str, str]], values: list[float], keys: list[str]) -> dict[str, float]:
    """How much each param explains the objective, normalised to sum 1: |Spearman correlation| for numeric
    params, the correlation ratio (eta, between-group share of the objective's rank variance) for others.
    A quick screen in the manner of W&B's importance panel, not a causal estimate."""
    import numpy as np
    import pandas as pd
    if len(values) < 3 or not keys:
        return {}
    y = pd.Series(values, dtype="float64").rank().to_numpy()
    raw = {}
    for k in keys:
        col = [p.get(k) for p in param_dicts]
        nums = [as_number(v) for v in col]
        if all(n is not None for n in nums):
            x = pd.Series(nums, dtype="float64").rank().to_numpy()
            if np.std(x) == 0:
                continue
            raw[k] = abs(float(np.corrcoef(x, y)[0, 1]))
        else:
            groups = pd.Series(y).groupby(pd.Series([str(v) for v in col]))
            total = float(((y - y.mean()) ** 2).sum())
            between = float(sum(len(g) * (g.mean() - y.mean()) ** 2 for _, g in groups))
            raw[k] = math.sqrt(between / total) if total > 0 else 0.0
    s = sum(v for v in raw.values() if math.isfinite(v))
    if s <= 0:
        return {k: 0.0 for k in raw}
    return dict(sorted(((k, v / s) for k, v in raw.items() if math.isfinite(v)), key=lambda kv: -kv[1]))


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
                     "values": [_float(r.get("metrics", {}).get(metric)) for r in runs]})
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

def test_segment(params: dict[str, str], tags: dict[str, str]) -> tuple[str, str] | None:
    """A window's test segment from its tags (``qexp.rolling.test``) or its dataset params."""
    cands = [tags.get(k) for k in ("qexp.rolling.test", "qexp.rolling.test_segment", "qexp.test_segment")]
    cands += [v for k, v in sorted(params.items()) if k.endswith("segments.test")]
    for c in cands:
        if not c:
            continue
        dates = DATE.findall(c)
        if len(dates) >= 2:
            return tuple(f"{y}-{int(m):02d}-{int(d):02d}" for y, m, d in dates[:2])  # type: ignore[return-value]
    return None


def rolling_windows(children: list[dict], ic_by_step: dict[int, float]) -> list[dict[str, Any]]:
    """Windows in test order: run, test segment, IC (``rolling/IC`` of the parent at that step, else the
    window run's own IC)."""
    wins = []
    for c in children:
        seg = test_segment(c.get("params", {}), c.get("tags", {}))
        wins.append({"run_id": c["run_id"], "name": c.get("run_name") or c.get("tags", {}).get("mlflow.runName", ""),
                     "status": c.get("status"), "start": seg[0] if seg else None, "end": seg[1] if seg else None,
                     "own_ic": _float(c.get("metrics", {}).get("IC"))})
    wins.sort(key=lambda w: (w["start"] is None, w["start"] or "", w["run_id"]))
    for i, w in enumerate(wins):
        w["index"] = i
        w["ic"] = ic_by_step.get(i, w["own_ic"])
    return wins


def _finite(v: Any) -> bool:
    return as_number(v) is not None


def _float(v: Any) -> float | None:
    return as_number(v)


def _floats(s: Any) -> list[float | None]:
    return [as_number(v) for v in s.tolist()]
