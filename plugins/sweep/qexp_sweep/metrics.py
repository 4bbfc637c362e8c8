"""Which metrics a workflow config will log, known before it runs, so that a sweep metric no trial logs
is an error before the first trial. Models (and records) say what they log through a ``logged_metrics(kwargs)``
classmethod; qexp's records are known here by name. A component that says nothing leaves part of the answer
open: the sweep then checks the first finished trial for names it could log."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from qexp.ext import ConfigError, get_callable_kwargs

SIGNAL = ("IC", "ICIR", "Rank IC", "Rank ICIR")
LONG_SHORT = ("Long-Short Ann Return", "Long-Short Ann Sharpe", "Long-Avg Ann Return", "Long-Avg Ann Sharpe")
RISK = ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")
INDICATORS = ("ffr", "pa", "pos")
NO_METRICS = {"SignalRecord", "MultiSegRecord"}


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


def _component(cfg: Any) -> tuple[str, Any, dict]:
    """(class name, class or None when it does not resolve here, kwargs) of a component config."""
    name, kwargs = _cls(cfg)
    try:
        cls, kw = get_callable_kwargs(cfg)
        kwargs = dict(kw or {})
    except Exception:  # noqa: BLE001 - a class that does not resolve is check_config's error, not ours
        cls = None
    return name, cls, kwargs


def _declared(cls: Any, kwargs: dict) -> set[str] | None:
    """What a component says it logs (its ``logged_metrics(kwargs)`` classmethod), or None."""
    fn = getattr(cls, "logged_metrics", None)
    if not callable(fn):
        return None
    return {str(n) for n in fn(dict(kwargs))}


def _record_metrics(name: str, kw: dict) -> set[str] | None:
    """The metrics of qexp's (Qlib's) records, by class name; None for a record not known here."""
    if name in NO_METRICS:
        return set()
    if name == "SigAnaRecord":
        return set(SIGNAL) | (set(LONG_SHORT) if kw.get("ana_long_short") else set())
    if name == "SignalMseRecord":
        return {"MSE", "RMSE"}
    if name == "PortAnaRecord":
        executor = (kw.get("config") or {}).get("executor") or {}
        step = (executor.get("kwargs") or {}).get("time_per_step", "day") if isinstance(executor, dict) else "day"
        freqs = [_freq(step)]
        names: set[str] = set()
        for f in _freq_list(kw.get("risk_analysis_freq"), freqs):
            names |= {f"{f}.excess_return_{c}.{m}" for c in ("without_cost", "with_cost") for m in RISK}
        for f in _freq_list(kw.get("indicator_analysis_freq"), freqs):
            names |= {f"{f}.{i}" for i in INDICATORS}
        return names
    return None


@dataclass
class Expected:
    """The metrics a task's model and records log, as far as known before it runs."""
    names: set[str] = field(default_factory=set)
    model: str = ""
    model_known: bool = True     # the model declares what it logs (logged_metrics)
    records_known: bool = True   # every record's metrics are known (declared, or one of qexp's)


def expected(task: dict) -> Expected:
    """What the task's model and records log: the model's ``logged_metrics(kwargs)`` (LGBModel has one),
    each record's (or, for qexp's records, their known names: SigAnaRecord's IC/ICIR/Rank IC/Rank ICIR,
    PortAnaRecord's ``<freq>.excess_return_...`` from its kwargs)."""
    out = Expected()
    out.model, cls, kwargs = _component(task.get("model"))
    declared = _declared(cls, kwargs)
    if declared is None:
        out.model_known = False
    else:
        out.names |= declared
    records = task.get("record") or []
    for record in [records] if isinstance(records, (dict, str)) else records:
        name, rcls, kw = _component(record)
        found = _declared(rcls, kw)
        if found is None:
            found = _record_metrics(name, kw)
        if found is None:
            out.records_known = False
        else:
            out.names |= found
    return out


def expected_metrics(task: dict) -> tuple[set[str], bool]:
    """(metric names, complete): the names the task's model and records log; ``complete`` is False when a
    component does not say what it logs."""
    e = expected(task)
    return e.names, e.model_known and e.records_known


def _per_set(metric: str) -> bool:
    """Whether ``metric`` has the form models use for what they log per data set (``l2.valid``,
    ``valid_loss``, ``pretrain_train_score``)."""
    return bool({"train", "valid", "test"} & set(re.split(r"[._]", metric)))


def check_metric(task: dict, metric: str, what: str, step: bool = False) -> bool:
    """Raise when the config surely never logs ``metric``; return False when that is known only once a trial
    ran (a component that does not say what it logs). ``step``: a per-step metric (only models log those).

    A model that does not declare its metrics (no ``logged_metrics`` classmethod) is taken to log per-set
    metrics only, as qexp's models do, so a name that no record logs and that has no train/valid/test part
    (``IC_typo``, ``Rank_IC``) is refused before any trial."""
    e = expected(task)
    if metric in e.names:
        return True
    if not e.records_known:
        return False
    if not e.model_known and (step or _per_set(metric)):
        return False  # the model may log it: the first finished trial tells
    listed = ", ".join(sorted(e.names)) or "none"
    hint = "" if e.model_known else (f"; {e.model or 'the model'} does not declare what it logs (a logged_metrics "
                                     f"classmethod), so only names with a train/valid/test part can come from it")
    raise ConfigError(f"{what} {metric!r}: no trial would log it; this config's model and records log: {listed}{hint}")
