"""Runs left open end FAILED on an uncaught exception, FINISHED at exit, and a SIGKILLed run is reported FAILED."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import qexp
from qexp import R


def run_py(code: str, store: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "QEXP_URI": store}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120, **kw)


def only_run(store: str):
    qexp.init(uri=store)
    df = R.search_records()
    assert len(df) == 1, df
    return R.get_recorder(recorder_id=df["run_id"].iloc[0])


def test_uncaught_exception_marks_failed(tmp_path):
    store = str(tmp_path / "s")
    p = run_py("""
        import qexp
        from qexp import R
        qexp.init()
        R.start_exp(experiment_name="crash")
        R.log_metrics(x=1.0)
        raise RuntimeError("boom")
    """, store)
    assert p.returncode != 0 and "boom" in p.stderr
    rec = only_run(store)
    assert rec.status == "FAILED" and rec.list_metrics() == {"x": 1.0}


def test_keyboard_interrupt_at_top_level_marks_failed(tmp_path):
    store = str(tmp_path / "s")
    p = run_py("""
        import qexp
        from qexp import R
        qexp.init()
        R.log_params(a=1)   # auto-started run
        raise KeyboardInterrupt
    """, store)
    assert p.returncode != 0
    assert only_run(store).status == "FAILED"


def test_atexit_finishes_open_runs(tmp_path):
    store = str(tmp_path / "s")
    p = run_py("""
        import qexp
        from qexp import R
        qexp.init()
        R.start_exp(experiment_name="open")
        for i in range(10):
            R.log_metrics(step=i, v=float(i))
    """, store)
    assert p.returncode == 0, p.stderr
    rec = only_run(store)
    assert rec.status == "FINISHED" and len(rec.get_metric_history("v")) == 10


def test_sys_exit_nonzero_inside_start_is_failed(tmp_path):
    store = str(tmp_path / "s")
    p = run_py("""
        import sys, qexp
        from qexp import R
        qexp.init()
        with R.start(experiment_name="exit"):
            sys.exit(3)
    """, store)
    assert p.returncode == 3
    assert only_run(store).status == "FAILED"


def test_sigkill_is_detected(tmp_path):
    store = str(tmp_path / "s")
    env = {**os.environ, "QEXP_URI": store, "QEXP_HEARTBEAT_INTERVAL": "0.2"}
    code = textwrap.dedent("""
        import time, qexp
        from qexp import R
        qexp.init()
        with R.start(experiment_name="killed"):
            R.log_metrics(step=0, v=1.0)
            print("started", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(0.8)  # let the heartbeat flush the buffered metric
        qexp.init(uri=store)
        assert R.search_records()["status"].tolist() == ["RUNNING"]  # alive: still running
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    df = R.search_records()
    assert df["status"].tolist() == ["FAILED"]
    assert "killed or crashed" in df["tags.qexp.failure_reason"].iloc[0]
    rec = R.get_recorder(recorder_id=df["run_id"].iloc[0])
    assert rec.status == "FAILED" and rec.list_metrics() == {"v": 1.0}


def test_remote_run_with_stale_heartbeat_is_failed(tmp_path, monkeypatch):
    """A run owned by another host is judged by its heartbeat file's age."""
    store = str(tmp_path / "s")
    qexp.init(uri=store)
    with R.start(experiment_name="remote"):
        rec = R.get_recorder()
    # rewrite it as a RUNNING run of another machine whose heartbeat stopped long ago
    import json
    meta_path = os.path.join(rec.get_local_dir(), "meta.json")
    meta = json.load(open(meta_path))
    meta.update(status="RUNNING", end_time=None, host="some-other-host", pid=12345)
    json.dump(meta, open(meta_path, "w"))
    old = time.time() - 3600
    for name in ("heartbeat", "meta.json"):  # the heartbeat file exists once the first beat happened
        p = os.path.join(rec.get_local_dir(), name)
        if os.path.exists(p):
            os.utime(p, (old, old))
    monkeypatch.setenv("QEXP_HEARTBEAT_TIMEOUT", "60")
    assert R.get_recorder(recorder_id=rec.id).status == "FAILED"
