"""`qexp run`: --system-metrics, the run's log as artifact logs/run.log, and --dry-run's runtime settings."""
from __future__ import annotations

import yaml
from click.testing import CliRunner

import qexp
from qexp import R


def _config(tmp_path, synth_root, **qlib_init) -> str:
    config = {
        "qlib_init": {"provider_uri": str(synth_root), "region": "cn", "kernels": 1, "mount_path": "/mnt/qlib",
                      **qlib_init},
        "experiment_name": "rt",
        "task": {
            "model": {"class": "LinearModel", "module_path": "qlib.contrib.model.linear"},
            "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {
                "handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler", "kwargs": {
                    "start_time": "2019-06-01", "end_time": "2020-03-31", "fit_start_time": "2019-06-01",
                    "fit_end_time": "2019-12-31", "instruments": "all"}},
                "segments": {"train": ["2019-06-01", "2019-12-31"], "valid": ["2020-01-01", "2020-01-31"],
                             "test": ["2020-02-01", "2020-03-31"]}}},
            "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp"}],
        },
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def _cli(*args):
    from qexp.cli.main import get_cli
    return CliRunner().invoke(get_cli(), list(args), catch_exceptions=False)


def test_qexp_run_with_system_metrics_keeps_the_log(tmp_path, synth_root):
    store = tmp_path / "store"
    res = _cli("run", _config(tmp_path, synth_root), "--uri", str(store), "--system-metrics",
               "--system-metrics-interval", "0.5")
    assert res.exit_code == 0, res.output
    qexp.init(uri=str(store))
    rec = R.get_recorder(recorder_name="LinearModel-Alpha158", experiment_name="rt")
    metrics = rec.list_metrics()
    assert "system/cpu_utilization_percentage" in metrics and "system/experiment_duration_seconds" in metrics
    log = rec.read_artifact("logs/run.log").decode()
    assert f"Recorder {rec.id} starts running under Experiment" in log
    assert "fit LinearModel" in log                          # progress lines are in the run's log too
    assert "'mount_path'" in res.output and "no effect in qexp" in res.output
    saved = rec.load_object("config")
    assert saved["qlib_init"]["system_metrics"] is True and saved["qlib_init"]["system_metrics_interval"] == 0.5


def test_dry_run_prints_the_effective_runtime_settings(tmp_path, synth_root, monkeypatch):
    monkeypatch.setenv("QEXP_CACHE_MAX_GB", "2")
    res = _cli("run", _config(tmp_path, synth_root, mem_cache_limit_type="sizeof", redis_host="cachebox"),
               "--dry-run", "--uri", str(tmp_path / "none"))
    assert res.exit_code == 0, res.output
    out = res.stdout
    runtime = yaml.safe_load(out[out.index("runtime:"):])["runtime"]
    assert runtime["kernels"] == 1 and runtime["mem_cache_limit_type"] == "sizeof"
    assert runtime["cache_uri"] == "redis://cachebox:6379/1" and runtime["cache_max_gb"] == 2.0
    assert runtime["capture_logs"] is True and runtime["system_metrics"] is False
    assert "mount_path" in runtime["ignored"]
    bad = _cli("run", _config(tmp_path, synth_root, default_disk_cache=3), "--dry-run",
               "--uri", str(tmp_path / "none"))
    assert bad.exit_code != 0 and "default_disk_cache=3" in bad.output


def test_dry_run_never_prints_the_redis_password(tmp_path, synth_root):
    from tests.runtime.conftest import free_port
    port = free_port()                                # nothing listens: the store degrades at once
    res = _cli("run", _config(tmp_path, synth_root, redis_host="127.0.0.1", redis_port=port,
                              redis_password="s3cret-pw"), "--dry-run", "--uri", str(tmp_path / "none"))
    assert res.exit_code == 0, res.output
    assert "s3cret-pw" not in res.output
    assert f"redis://:***@127.0.0.1:{port}/1" in res.output
    res = _cli("run", _config(tmp_path, synth_root, cache_uri=f"redis://u:s3cret-pw@127.0.0.1:{port}/3"),
               "--dry-run", "--uri", str(tmp_path / "none"), "--set", "qlib_init.redis_password=other-s3cret")
    assert res.exit_code == 0, res.output
    assert "s3cret" not in res.output and f"redis://u:***@127.0.0.1:{port}/3" in res.output
