"""Which metrics a workflow config will log, known before it runs, so that a sweep metric no trial logs
is an error before the first trial. Components whose metrics are not known here (a third party's model or
record) make the answer incomplete: the sweep then checks the first finished trial instead."""
from __future__ import annotations

from typing import Any

from qexp.ext import ConfigError

SIGNAL = ("IC", "ICIR", "Rank IC", "Rank ICIR")
LONG_SHORT = ("Long-Short Ann Return", "Long-Short Ann Sharpe", "Long-Avg Ann Return", "Long-Avg Ann Sharpe")
RISK = ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")
INDICATORS = ("ffr", "pa", "pos")
NO_METRICS = {"SignalRecord", "MultiSegRecord"}
LGB_DEFAULT_METRIC = {"mse": "l2", "binary": "binary_logloss"}
LGB_METRIC_ALIASES = {"mean_squared_error": "l2", "mse": "l2", "regression": "l2", "regression_l2": "l2",
                      "l2_root": "rmse", "root_mean_squared_error": "rmse", "mean_absolute_error": "l1",
                      "mae": "l1", "regression_l1": "l1", "binary": "binary_logloss"}


def _cls(cfg: Any) -> tuple[str, dict]:
    if isinstance(cfg, str):
        return cfg.split(".")[-1], {}
    if isinstance(cfg, dict):
        return str(cfg.get("class", "")).split(".")[-1], dict(cfg.get("kwargs") or {})
    return type(cfg).__name__, {}


def _freq(text: Any) -> str:
    text = str(text)
    return text if text[:1].isdigit() else f"1{text}"


def _freq_list(value: Any, default: list[str]) -> list[str]:
    if value is None:
        return default
    return [_freq(v) for v in ([value] if isinstance(value, str) else value)]


def expected_metrics(task: dict) -> tuple[set[str], bool]:
    """(metric names, complete): the names the task's model and records log; ``complete`` is False when a
    component's metrics are not known here."""
    names: set[str] = set()
    complete = True
    model, kwargs = _cls(task.get("model"))
    if model == "LGBModel":
        metric = kwargs.get("metric") or LGB_DEFAULT_METRIC.get(str(kwargs.get("loss", "mse")), "l2")
        for m in metric if isinstance(metric, list) else str(metric).split(","):
            m = LGB_METRIC_ALIASES.get(m.strip(), m.strip()).replace("@", "_")
            names |= {f"{m}.train", f"{m}.valid"}
    else:
        complete = False
    records = task.get("record") or []
    for record in [records] if isinstance(records, (dict, str)) else records:
        cls, kw = _cls(record)
        if cls in NO_METRICS:
            continue
        if cls == "SigAnaRecord":
            names |= set(SIGNAL) | (set(LONG_SHORT) if kw.get("ana_long_short") else set())
        elif cls == "SignalMseRecord":
            names |= {"MSE", "RMSE"}
        elif cls == "PortAnaRecord":
            executor = (kw.get("config") or {}).get("executor") or {}
            step = (executor.get("kwargs") or {}).get("time_per_step", "day") if isinstance(executor, dict) else "day"
            freqs = [_freq(step)]
            for f in _freq_list(kw.get("risk_analysis_freq"), freqs):
                names |= {f"{f}.excess_return_{c}.{m}" for c in ("without_cost", "with_cost") for m in RISK}
            for f in _freq_list(kw.get("indicator_analysis_freq"), freqs):
                names |= {f"{f}.{i}" for i in INDICATORS}
        else:
            complete = False
    return names, complete


def check_metric(task: dict, metric: str, what: str) -> bool:
    """Raise when the config surely never logs ``metric``; return False when that is not known yet."""
    names, complete = expected_metrics(task)
    if metric in names:
        return True
    if complete:
        listed = ", ".join(sorted(names)) or "none"
        raise ConfigError(f"{what} {metric!r}: no trial would log it; this config's model and records log: {listed}")
    return False
