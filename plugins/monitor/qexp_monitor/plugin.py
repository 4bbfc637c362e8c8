"""Entry point of qexp_monitor: system metrics for runs, switched on by ``R.start(log_system_metrics=True)``,
``qexp.init(system_metrics=True)``, ``qexp run --system-metrics`` or ``QEXP_ENABLE_SYSTEM_METRICS_LOGGING``
(MLflow's ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` and ``MLFLOW_SYSTEM_METRICS_*`` are honoured too)."""
from __future__ import annotations

from typing import Any

from qexp import hookimpl

from .monitor import MONITOR


@hookimpl
def qexp_init(settings: dict) -> list:
    return MONITOR.configure(settings)


@hookimpl
def recorder_started(recorder: Any) -> None:
    MONITOR.started(recorder)


@hookimpl
def recorder_ended(recorder: Any, status: str) -> None:
    MONITOR.ended(recorder)
