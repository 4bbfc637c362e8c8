"""A run whose process is killed (SIGKILL) is RUNNING in MLflow forever; qexp marks it FAILED when it is
read on the same host. Buffered metrics reach the store through the background flusher."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("mlflow")

from qexp import R  # noqa: E402

KILLED = r"""
import os, signal, sys
import qexp
from qexp import R
qexp.init(uri=sys.argv[1], autolog=False)
R.start_exp(experiment_name="doomed", recorder_name="victim")
R.log_params(lr=0.1)
R.log_metrics(step=0, loss=1.0)
R.get_recorder().flush()
print(R.get_recorder().id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_run_is_marked_failed_on_read(mlflow_store, client):
    env = {**os.environ, "QEXP_LOAD_PLUGINS": "file,mlflow"}
    proc = subprocess.run([sys.executable, "-c", KILLED, mlflow_store], capture_output=True, env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    run_id = proc.stdout.decode().split()[0]
    assert client.get_run(run_id).info.status == "RUNNING"  # what MLflow alone would show forever

    rec = R.get_recorder(recorder_id=run_id)
    assert rec.status == "FAILED" and rec.end_time is not None
    assert "killed or crashed" in rec.list_tags()["qexp.failure_reason"]
    assert rec.list_params() == {"lr": "0.1"} and rec.list_metrics() == {"loss": 1.0}
    assert client.get_run(run_id).info.status == "FAILED"


def test_killed_run_is_failed_in_search(mlflow_store):
    env = {**os.environ, "QEXP_LOAD_PLUGINS": "file,mlflow"}

    def killed_run() -> str:
        proc = subprocess.run([sys.executable, "-c", KILLED, mlflow_store], capture_output=True, env=env, timeout=120)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
        return proc.stdout.decode().split()[0]

    first = killed_run()
    df = R.search_records(filter_string="params.lr = '0.1'")  # the rows MLflow returns are corrected
    assert df["run_id"].tolist() == [first] and df["status"].tolist() == ["FAILED"]
    second = killed_run()
    df = R.search_records(filter_string="attributes.status = 'FAILED'")  # corrected before MLflow filters
    assert set(df["run_id"]) == {first, second}


def test_live_run_of_this_process_stays_running(mlflow_store, client):
    with R.start(experiment_name="alive"):
        rid = R.get_recorder().id
        assert R.get_recorder(recorder_id=rid).status == "RUNNING"
        assert R.search_records(filter_string="attributes.status = 'RUNNING'")["run_id"].tolist() == [rid]
        assert client.get_run(rid).data.tags["qexp.owner"].startswith(f"{os.getpid()}@")
    assert "qexp.owner" not in client.get_run(rid).data.tags  # only a RUNNING run carries its owner
    with R.start(experiment_name="alive", recorder_id=rid, resume=True):
        assert "qexp.owner" in client.get_run(rid).data.tags


def test_background_flush_writes_waiting_metrics(mlflow_store, client, monkeypatch):
    monkeypatch.setenv("QEXP_MLFLOW_FLUSH_INTERVAL", "0.2")
    with R.start(experiment_name="flusher"):
        R.log_metrics(step=0, loss=0.5)  # one point: far from a full batch
        rid = R.get_recorder().id
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not client.get_metric_history(rid, "loss"):
            time.sleep(0.1)
        assert [m.value for m in client.get_metric_history(rid, "loss")] == [0.5]


LATE_WRITE = r"""
import sys
import qexp
from qexp import R
qexp.init(uri=sys.argv[1], autolog=False)
rec = R.get_recorder(recorder_id=sys.argv[2])  # a finished run, written to and never ended or flushed
rec.log_metrics(step=7, late=7.0)
"""


def test_points_buffered_at_exit_are_written(mlflow_store, client):
    with R.start(experiment_name="exit"):
        rid = R.get_recorder().id
    env = {**os.environ, "QEXP_LOAD_PLUGINS": "file,mlflow", "QEXP_MLFLOW_FLUSH_INTERVAL": "3600"}
    proc = subprocess.run([sys.executable, "-c", LATE_WRITE, mlflow_store, rid], capture_output=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert [(m.step, m.value) for m in client.get_metric_history(rid, "late")] == [(7, 7.0)]
