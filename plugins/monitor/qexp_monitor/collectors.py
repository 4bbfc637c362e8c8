"""What one sample measures, with MLflow's names (``mlflow/system_metrics/metrics/*``) and semantics.

Each collector appends one value per series per sample; :meth:`Collector.aggregate` turns the samples of one
logging step into values: the mean rounded to 1 decimal (as MLflow), or the last value for counters that
accumulate since the run started (network, process I/O).
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any

log = logging.getLogger("qexp.monitor")
MB = 1e6  # MLflow divides by 1e6 for its *_megabytes series


class Collector:
    """Samples some series; ``cumulative`` series report their last value instead of the mean."""

    cumulative: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def collect(self) -> None:
        raise NotImplementedError

    def aggregate(self) -> dict[str, float]:
        out = {}
        for k, v in self.samples.items():
            if v:
                out[k] = float(v[-1]) if k in self.cumulative else round(sum(v) / len(v), 1)
        return out

    def clear(self) -> None:
        self.samples.clear()


class CPUCollector(Collector):
    """``cpu_utilization_percentage`` (since the previous sample, primed at start: psutil's first
    ``cpu_percent()`` reads 0), ``system_memory_usage_megabytes``, ``system_memory_usage_percentage``."""

    def __init__(self, psutil: Any) -> None:
        super().__init__()
        self.psutil = psutil
        self._last = self._times()

    def _times(self) -> tuple[float, float]:
        t = self.psutil.cpu_times()
        total = sum(t)
        idle = t.idle + getattr(t, "iowait", 0.0)
        return total, total - idle

    def collect(self) -> None:
        total, busy = self._times()
        d_total, d_busy = total - self._last[0], busy - self._last[1]
        self._last = (total, busy)
        self.samples["cpu_utilization_percentage"].append(100.0 * d_busy / d_total if d_total > 0 else 0.0)
        mem = self.psutil.virtual_memory()
        self.samples["system_memory_usage_megabytes"].append(mem.used / MB)
        self.samples["system_memory_usage_percentage"].append(mem.used / mem.total * 100)


class DiskCollector(Collector):
    """``disk_usage_percentage``, ``disk_usage_megabytes``, ``disk_available_megabytes`` of ``/``."""

    def __init__(self, psutil: Any) -> None:
        super().__init__()
        self.psutil = psutil

    def collect(self) -> None:
        du = self.psutil.disk_usage(os.sep)
        self.samples["disk_usage_percentage"].append(du.percent)
        self.samples["disk_usage_megabytes"].append(du.used / MB)
        self.samples["disk_available_megabytes"].append(du.free / MB)


class NetworkCollector(Collector):
    """``network_receive_megabytes``, ``network_transmit_megabytes``: since the run started."""

    cumulative = frozenset({"network_receive_megabytes", "network_transmit_megabytes"})

    def __init__(self, psutil: Any) -> None:
        super().__init__()
        self.psutil = psutil
        n = psutil.net_io_counters()
        self._rx0, self._tx0 = n.bytes_recv, n.bytes_sent

    def collect(self) -> None:
        n = self.psutil.net_io_counters()
        self.samples["network_receive_megabytes"].append((n.bytes_recv - self._rx0) / MB)
        self.samples["network_transmit_megabytes"].append((n.bytes_sent - self._tx0) / MB)


class ProcessCollector(Collector):
    """Beyond MLflow: this process's ``process_memory_rss_megabytes``, ``process_cpu_utilization_percentage``
    (a share of the whole machine, 0-100 like ``cpu_utilization_percentage``), and
    ``process_disk_read_megabytes`` / ``process_disk_write_megabytes`` since the run started."""

    cumulative = frozenset({"process_disk_read_megabytes", "process_disk_write_megabytes"})

    def __init__(self, psutil: Any) -> None:
        super().__init__()
        self.proc = psutil.Process()
        self.ncpu = psutil.cpu_count() or 1
        self.proc.cpu_percent(None)  # prime: the first call reads 0
        self._io0 = self._io()

    def _io(self) -> tuple[float, float] | None:
        try:
            io = self.proc.io_counters()
        except Exception:  # noqa: BLE001 - not offered by every platform or container
            return None
        return io.read_bytes, io.write_bytes

    def collect(self) -> None:
        self.samples["process_memory_rss_megabytes"].append(self.proc.memory_info().rss / MB)
        self.samples["process_cpu_utilization_percentage"].append(self.proc.cpu_percent(None) / self.ncpu)
        io = self._io()
        if io is not None and self._io0 is not None:
            self.samples["process_disk_read_megabytes"].append((io[0] - self._io0[0]) / MB)
            self.samples["process_disk_write_megabytes"].append((io[1] - self._io0[1]) / MB)


class GPUCollector(Collector):
    """Through NVIDIA's management library (``pynvml`` from ``nvidia-ml-py``), per GPU ``i``:
    ``gpu_{i}_memory_usage_percentage``, ``gpu_{i}_memory_usage_megabytes``, ``gpu_{i}_utilization_percentage``,
    ``gpu_{i}_power_usage_watts``, ``gpu_{i}_power_usage_percentage`` (MLflow's) and
    ``gpu_{i}_temperature_celsius``. Construction raises when there is no library or no GPU."""

    def __init__(self) -> None:
        super().__init__()
        import pynvml  # nvidia-ml-py
        pynvml.nvmlInit()  # NVMLError when no driver or no GPU
        self.nvml = pynvml
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        if not self.handles:
            raise RuntimeError("NVML found no GPU")

    def collect(self) -> None:
        nv = self.nvml
        for i, h in enumerate(self.handles):
            # each query on its own: one a board does not support (power on some) skips only its series
            try:
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                self.samples[f"gpu_{i}_memory_usage_percentage"].append(mem.used / mem.total * 100)
                self.samples[f"gpu_{i}_memory_usage_megabytes"].append(mem.used / MB)
            except nv.NVMLError as exc:
                log.debug("GPU %d: memory not available: %s", i, exc)
            try:
                self.samples[f"gpu_{i}_utilization_percentage"].append(
                    float(nv.nvmlDeviceGetUtilizationRates(h).gpu))
            except nv.NVMLError as exc:
                log.debug("GPU %d: utilization not available: %s", i, exc)
            try:
                milliwatts = nv.nvmlDeviceGetPowerUsage(h)
                self.samples[f"gpu_{i}_power_usage_watts"].append(milliwatts / 1000)
                limit = nv.nvmlDeviceGetEnforcedPowerLimit(h)
                if limit:
                    self.samples[f"gpu_{i}_power_usage_percentage"].append(milliwatts / limit * 100)
            except nv.NVMLError as exc:
                log.debug("GPU %d: power not available: %s", i, exc)
            try:
                self.samples[f"gpu_{i}_temperature_celsius"].append(
                    float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)))
            except nv.NVMLError as exc:
                log.debug("GPU %d: temperature not available: %s", i, exc)


def make_collectors(psutil: Any) -> list[Collector]:
    """MLflow's collectors, this process's, and the GPUs' when NVML finds any (skipped cleanly otherwise)."""
    collectors: list[Collector] = [CPUCollector(psutil), DiskCollector(psutil), NetworkCollector(psutil),
                                   ProcessCollector(psutil)]
    try:
        collectors.append(GPUCollector())
    except Exception as exc:  # noqa: BLE001 - no library, no driver or no GPU: no GPU series
        log.debug("GPU metrics skipped: %s: %s", type(exc).__name__, exc)
    return collectors
