"""One sampler thread per monitored run: MLflow's ``SystemMetricsMonitor`` semantics on qexp's recorder.

Every ``interval`` seconds it takes a sample; every ``samples_before_logging`` samples it logs their mean at the
next integer step (0, or the run's last system step + 1 when it was resumed), with MLflow's ``system/`` names,
so MLflow's System tab shows them. Each logged step also carries ``system/experiment_duration_seconds``
(running time of the run so far) and, in a second write, ``system/tracking_latency_ms`` (how long the store
took to accept the step's batch). When the run ends the thread takes one last sample, logs it (so a run
shorter than the interval still has one point of every series) and stops. Any failure only warns: a
run never fails because of its system metrics.
"""
from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Any

from .collectors import Collector, make_collectors

log = logging.getLogger("qexp.monitor")
THREAD_PREFIX = "qexp-system-metrics"
JOIN_TIMEOUT_S = 60.0


class SystemMetricsSampler:
    """Samples system metrics for ``recorder`` from a daemon thread until :meth:`stop`."""

    def __init__(self, recorder: Any, interval: float, samples_before_logging: int = 1,
                 node_id: str | None = None, collectors: list[Collector] | None = None) -> None:
        import psutil
        self.recorder = recorder
        self.interval = float(interval)
        self.samples_before_logging = int(samples_before_logging)
        self.prefix = "system/" + (f"{node_id}/" if node_id else "")
        self.collectors = collectors if collectors is not None else make_collectors(psutil)
        self.step = 0
        self._duration0 = 0.0
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._pending = 0
        self._failed = False
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}-{recorder.id}", daemon=True)

    # -- lifecycle
    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread after its last sample is logged (waits for it)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                self._warn(f"the sampler did not finish within {JOIN_TIMEOUT_S:.0f} s; its last point may be "
                           f"missing")

    # -- the loop
    def _run(self) -> None:
        try:
            self._resume_position()
            while not self._stop.wait(self.interval):
                self._sample()
                if self._pending >= self.samples_before_logging:
                    self._publish()
            self._sample()
            self._publish()
        except Exception as exc:  # noqa: BLE001 - system metrics must never fail the run
            self._warn(f"{type(exc).__name__}: {exc}; the run goes on without further system metrics")

    def _resume_position(self) -> None:
        """A resumed run continues its steps (and its running time) where they stopped."""
        hist = self.recorder.get_metric_history(self.prefix + "experiment_duration_seconds")
        if len(hist):
            self.step = int(hist["step"].max()) + 1
            self._duration0 = float(hist.sort_values("step")["value"].iloc[-1])

    def _sample(self) -> None:
        for c in self.collectors:
            c.collect()
        self._pending += 1

    def _publish(self) -> None:
        values: dict[str, float] = {}
        for c in self.collectors:
            values.update(c.aggregate())
            c.clear()
        self._pending = 0
        values["experiment_duration_seconds"] = round(self._duration0 + time.monotonic() - self._t0, 3)
        ts = int(time.time() * 1000)
        rec = self.recorder
        t = time.perf_counter()
        rec.log_metric_batch([(self.prefix + k, v, ts, self.step) for k, v in values.items()])
        rec.flush()
        latency_ms = (time.perf_counter() - t) * 1000
        rec.log_metric_batch([(self.prefix + "tracking_latency_ms", round(latency_ms, 3), ts, self.step)])
        rec.flush()
        self.step += 1

    def _warn(self, message: str) -> None:
        if self._failed:
            return
        self._failed = True
        warnings.warn(f"qexp: system metrics of run {self.recorder.id}: {message}", RuntimeWarning, stacklevel=2)
