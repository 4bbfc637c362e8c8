"""System metrics: MLflow's names, steps and averaging, every switch, resume, stop, errors, workers, MLflow."""
from __future__ import annotations

import threading
import time
import warnings

import pytest

import qexp
from qexp import R

MLFLOW_NAMES = ["cpu_utilization_percentage", "system_memory_usage_megabytes", "system_memory_usage_percentage",
                "disk_usage_percentage", "disk_usage_megabytes", "disk_available_megabytes",
                "network_receive_megabytes", "network_transmit_megabytes"]
QEXP_NAMES = ["process_memory_rss_megabytes", "process_cpu_utilization_percentage", "process_disk_read_megabytes",
              "process_disk_write_megabytes", "experiment_duration_seconds", "tracking_latency_ms"]
NAMES = ["system/" + n for n in MLFLOW_NAMES + QEXP_NAMES]


def _gpu_present() -> bool:
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("qexp-system-metrics")]


def _run(seconds: float, **start):
    with R.start(experiment_name="sm", **start) as exp:
        rec = R.get_recorder()
        time.sleep(seconds)
    assert exp is not None
    return rec


def test_every_series_has_points_at_increasing_steps(tmp_path):
    qexp.init(uri=str(tmp_path / "store"), system_metrics_interval=0.25)
    rec = _run(1.2, log_system_metrics=True)
    metrics = rec.list_metrics()
    for name in NAMES:
        hist = rec.get_metric_history(name)
        assert len(hist) >= 2, f"{name}: {len(hist)} points"
        steps = list(hist["step"])
        assert steps == list(range(len(steps))), f"{name}: steps {steps}"
        assert (hist["value"] >= 0).all()
    assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100
    assert metrics["system/process_memory_rss_megabytes"] > 10      # this Python process
    assert metrics["system/experiment_duration_seconds"] >= 1.0     # the last point is taken at the end
    gpu = [k for k in metrics if k.startswith("system/gpu_")]
    assert bool(gpu) == _gpu_present()                              # no GPU here: skipped cleanly
    # MLflow averages to one decimal
    assert all(round(v, 1) == v for v in rec.get_metric_history("system/disk_usage_percentage")["value"])
    assert not _sampler_threads()


def test_a_run_shorter_than_the_interval_gets_one_point_of_every_series(tmp_path):
    qexp.init(uri=str(tmp_path / "store"), system_metrics=True, system_metrics_interval=30)
    t0 = time.monotonic()
    rec = _run(0.05)
    assert time.monotonic() - t0 < 10            # ending does not wait for the interval
    for name in NAMES:
        hist = rec.get_metric_history(name)
        assert list(hist["step"]) == [0], name
    assert not _sampler_threads()


def test_resumed_run_continues_the_steps(tmp_path):
    qexp.init(uri=str(tmp_path / "store"), system_metrics_interval=0.2)
    rec = _run(0.5, log_system_metrics=True)
    first = list(rec.get_metric_history("system/cpu_utilization_percentage")["step"])
    duration = rec.list_metrics()["system/experiment_duration_seconds"]
    with R.start(experiment_name="sm", recorder_id=rec.id, resume=True, log_system_metrics=True):
        time.sleep(0.5)
    steps = list(rec.get_metric_history("system/cpu_utilization_percentage")["step"])
    assert steps[:len(first)] == first and len(steps) > len(first)
    assert steps == list(range(len(steps)))      # step max + 1 onwards, no repeats
    assert rec.list_metrics()["system/experiment_duration_seconds"] > duration  # running time accumulates


def test_sampler_stops_with_the_run_and_its_error_only_warns(tmp_path, monkeypatch):
    from qexp_monitor import collectors
    qexp.init(uri=str(tmp_path / "store"), system_metrics_interval=0.1)
    rec = _run(0.4, log_system_metrics=True)
    assert not _sampler_threads()

    def boom(self):
        raise OSError("sensor gone")

    monkeypatch.setattr(collectors.DiskCollector, "collect", boom)
    with pytest.warns(RuntimeWarning, match="system metrics of run .*sensor gone.*goes on"):
        rec = _run(0.3, log_system_metrics=True)
    assert rec.status == "FINISHED"
    assert not _sampler_threads()


def test_switches(tmp_path, monkeypatch):
    store = str(tmp_path / "store")
    # off by default; on by init; R.start(log_system_metrics=False) wins
    qexp.init(uri=store)
    assert not any(k.startswith("system/") for k in _run(0.01).list_metrics())
    qexp.init(uri=store, system_metrics=True, system_metrics_interval=60)
    assert "system/cpu_utilization_percentage" in _run(0.01).list_metrics()
    assert not _run(0.01, log_system_metrics=False).list_metrics()
    # qexp's and MLflow's environment variables
    qexp.init(uri=store)
    monkeypatch.setenv("QEXP_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    qexp.init(uri=store)
    assert "system/cpu_utilization_percentage" in _run(0.01).list_metrics()
    monkeypatch.delenv("QEXP_ENABLE_SYSTEM_METRICS_LOGGING")
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "2")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_NODE_ID", "node_0")
    qexp.init(uri=store)
    rec = _run(0.75)
    hist = rec.get_metric_history("system/node_0/cpu_utilization_percentage")
    # 2 samples of 0.1 s per logged point: about 3 points plus the final one, not 7
    assert 2 <= len(hist) <= 5, len(hist)
    # under the session switch, a child run of a monitored parent is not sampled twice
    with R.start(experiment_name="sm"):
        with R.start(experiment_name="sm", recorder_name="child"):
            child = R.get_recorder()
            time.sleep(0.05)
        parent = R.get_recorder()
    assert not child.list_metrics() and parent.list_metrics()


def test_invalid_system_metric_settings_raise(tmp_path):
    with pytest.raises(qexp.ConfigError, match="system_metrics_interval"):
        qexp.init(uri=str(tmp_path / "s"), system_metrics_interval=0)
    with pytest.raises(qexp.ConfigError, match="system_metrics"):
        qexp.init(uri=str(tmp_path / "s"), system_metrics="yes")


def _worker_run(settings: dict) -> tuple[str, list[str]]:
    import time as _t

    import qexp as q
    from qexp import R as _R
    q.init(**settings)
    with _R.start(experiment_name="worker"):
        _t.sleep(0.3)
        rec = _R.get_recorder()
    return rec.id, sorted(k for k in rec.list_metrics() if k.startswith("system/"))


def test_executor_workers_monitor_their_runs(tmp_path):
    """Workers get every qexp.init setting (qexp.get_settings()), so their runs are monitored too."""
    import multiprocessing as mp
    qexp.init(uri=str(tmp_path / "store"), system_metrics=True, system_metrics_interval=0.1)
    settings = qexp.get_settings()
    assert settings["system_metrics"] is True
    with mp.get_context("spawn").Pool(1) as pool:
        run_id, names = pool.apply(_worker_run, (settings,))
    assert set(NAMES) <= set(names)
    rec = R.get_recorder(recorder_id=run_id)
    assert len(rec.get_metric_history("system/cpu_utilization_percentage")) >= 2


@pytest.mark.slow  # MLflow creates its sqlite schema (alembic migrations): most of the time
def test_mlflow_reads_the_same_names(tmp_path):
    """A run written through the MLflow backend: MLflow's own client sees MLflow's system metric names."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    qexp.init(uri=uri, system_metrics_interval=0.2)
    rec = _run(0.7, log_system_metrics=True)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(rec.id)
    assert set(NAMES) <= set(run.data.metrics)
    hist = client.get_metric_history(rec.id, "system/cpu_utilization_percentage")
    steps = sorted(m.step for m in hist)
    assert len(steps) >= 2 and steps == list(range(len(steps)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run.info.status == "FINISHED"


def _executor_call() -> tuple[str, list[str]]:
    import time as _t

    from qexp import R as _R
    with _R.start(experiment_name="worker"):
        _t.sleep(0.3)
        rec = _R.get_recorder()
    return rec.id, sorted(k for k in rec.list_metrics() if k.startswith("system/"))


def test_process_executor_worker_is_monitored(tmp_path):
    """Through the process:// executor, which hands every call the driver's qexp.init settings."""
    from qexp.ext import get_executor, known_schemes
    if "process" not in known_schemes("executor"):
        pytest.skip("the process:// executor is not available")
    qexp.init(uri=str(tmp_path / "store"), system_metrics=True, system_metrics_interval=0.1)
    with get_executor("process://1") as ex:
        run_id, names = ex.submit(_executor_call).result(timeout=120)
    assert set(NAMES) <= set(names)


def test_gpu_series_through_nvml(tmp_path, monkeypatch):
    """NVIDIA's management library, faked (this machine has no GPU): MLflow's gpu_{i}_* names, averaged; a
    query a board does not support skips only its series."""
    import sys
    import types

    class NVMLError(Exception):
        pass

    class Mem:
        used, total = 4e9, 16e9

    class Util:
        gpu = 37

    def power(h):
        if h == 1:
            raise NVMLError("Not Supported")
        return 150_000

    fake = types.SimpleNamespace(
        NVMLError=NVMLError, NVML_TEMPERATURE_GPU=0, nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetMemoryInfo=lambda h: Mem(),
        nvmlDeviceGetUtilizationRates=lambda h: Util(), nvmlDeviceGetPowerUsage=power,
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 300_000, nvmlDeviceGetTemperature=lambda h, kind: 61)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    qexp.init(uri=str(tmp_path / "store"), system_metrics_interval=0.2)
    metrics = _run(0.5, log_system_metrics=True).list_metrics()
    assert metrics["system/gpu_0_memory_usage_megabytes"] == 4000.0
    assert metrics["system/gpu_0_memory_usage_percentage"] == 25.0
    assert metrics["system/gpu_0_utilization_percentage"] == 37.0
    assert metrics["system/gpu_0_power_usage_watts"] == 150.0
    assert metrics["system/gpu_0_power_usage_percentage"] == 50.0
    assert metrics["system/gpu_1_temperature_celsius"] == 61.0
    assert "system/gpu_1_utilization_percentage" in metrics and "system/gpu_1_power_usage_watts" not in metrics


def test_missing_psutil_warns_once_with_the_install_command(tmp_path, monkeypatch):
    import sys

    from qexp_monitor.monitor import MONITOR
    monkeypatch.setitem(sys.modules, "psutil", None)          # as if it were not installed
    monkeypatch.setattr(MONITOR, "_warned_missing", False)
    qexp.init(uri=str(tmp_path / "s"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with R.start(experiment_name="nomon", log_system_metrics=True):
                pass
    msgs = [str(w.message) for w in caught if "psutil" in str(w.message)]
    assert len(msgs) == 1, msgs
    assert 'pip install "qexp[monitor]"' in msgs[0] and "system metrics needs the psutil package" in msgs[0]
