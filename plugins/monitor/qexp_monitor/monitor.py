"""Which runs get a sampler, and its start and stop around the recorder's lifecycle.

A run is monitored when ``R.start(log_system_metrics=True)`` asks; ``False`` refuses; otherwise the session's
switch decides (``qexp.init(system_metrics=...)``, else ``QEXP_ENABLE_SYSTEM_METRICS_LOGGING``, else MLflow's
``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING``). Under that switch a child run whose parent is already monitored in
this process is not monitored again (it would log the same machine twice). The settings travel with
``qexp.get_settings()``, so executor workers monitor their runs too.
"""
from __future__ import annotations

import threading
import warnings
from typing import Any

from qexp.ext import MissingExtraError, SystemMetricsConfig, before_run_end, require_extra, system_metrics_config

from .sampler import SystemMetricsSampler

KEYS = ("system_metrics", "system_metrics_interval", "system_metrics_samples_before_logging",
        "system_metrics_node_id")


class Monitor:
    def __init__(self) -> None:
        self.config: SystemMetricsConfig | None = None
        self._samplers: dict[int, SystemMetricsSampler] = {}
        self._lock = threading.Lock()
        self._warned_missing = False

    def configure(self, settings: dict[str, Any]) -> list[str]:
        self.config = system_metrics_config(settings)
        return [k for k in KEYS if k in settings]

    def _config(self) -> SystemMetricsConfig:
        return self.config if self.config is not None else system_metrics_config({})

    def wanted(self, recorder: Any) -> bool:
        asked = recorder.__dict__.get("log_system_metrics")
        if asked is not None:
            return bool(asked)
        if not self._config().enabled:
            return False
        parent = getattr(recorder, "parent_id", None)
        with self._lock:
            return not (parent and any(s.recorder.id == parent for s in self._samplers.values()))

    def started(self, recorder: Any) -> None:
        if not self.wanted(recorder):
            return
        with self._lock:
            if id(recorder) in self._samplers:
                return
        try:
            require_extra("psutil", "monitor", "system metrics")
        except MissingExtraError as exc:
            if not self._warned_missing:  # once per process: every run would repeat it
                self._warned_missing = True
                warnings.warn(f"qexp: {exc}; runs go on without them", RuntimeWarning, stacklevel=3)
            return
        cfg = self._config()
        sampler = SystemMetricsSampler(recorder, cfg.interval, cfg.samples_before_logging, cfg.node_id)
        with self._lock:
            self._samplers[id(recorder)] = sampler
        sampler.start()
        before_run_end(recorder, lambda status: self.ended(recorder))

    def ended(self, recorder: Any) -> None:
        with self._lock:
            sampler = self._samplers.pop(id(recorder), None)
        if sampler is not None:
            sampler.stop()

    def samplers(self) -> list[SystemMetricsSampler]:
        with self._lock:
            return list(self._samplers.values())


MONITOR = Monitor()
