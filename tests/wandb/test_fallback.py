"""When W&B cannot be reached or fails, the local record is complete and W&B problems are warnings."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

import qexp
from qexp import R

from .conftest import offline_run, run_folders

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _wandb_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "W&B" in str(w.message)]


def test_online_without_credentials_goes_offline_with_one_warning(wandb_uri, monkeypatch):
    uri = wandb_uri.replace("mode=offline", "mode=online")
    qexp.init(uri=uri)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("a", "b"):
            with R.start(experiment_name="fb", recorder_name=name):
                R.log_metrics(step=0, x=1.0)
                rec = R.get_recorder()
    msgs = _wandb_warnings(caught)
    assert len(msgs) == 1 and "no W&B credentials" in msgs[0] and "wandb login" in msgs[0]
    assert "sync-wandb" in msgs[0]
    assert rec.list_tags()["wandb.mode"] == "offline" and offline_run(rec).metric_history("x") == [(0, 1.0)]


def test_online_init_failure_falls_back_to_offline_quickly(wandb_uri, monkeypatch):
    pytest.importorskip("wandb")
    with socket.socket() as s:  # a port nothing listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    uri = wandb_uri.replace("mode=offline", "mode=online&entity=nobody&init_timeout=2")
    qexp.init(uri=uri)
    t0 = time.monotonic()
    with pytest.warns(RuntimeWarning, match="starting the online W&B run failed") as caught:
        with R.start(experiment_name="fb2"):
            R.log_params(lr=0.1)
            R.log_metrics(step=3, loss=0.5)
            rec = R.get_recorder()
    assert time.monotonic() - t0 < 30
    assert len(_wandb_warnings(caught)) == 1
    local = R.get_recorder(recorder_id=rec.id)
    assert local.status == "FINISHED" and local.list_params() == {"lr": "0.1"} and local.list_metrics() == {"loss": 0.5}
    run = offline_run(rec)
    assert rec.list_tags()["wandb.mode"] == "offline" and run.metric_history("loss") == [(3, 0.5)]
    assert run.entity == "nobody" and run.config["lr"] == 0.1


def test_a_wandb_logging_error_is_reported_once_and_the_run_goes_on(wandb_uri, monkeypatch):
    wandb = pytest.importorskip("wandb")
    qexp.init(uri=wandb_uri)

    def broken_log(self, *args, **kwargs):
        raise OSError("disk full (simulated)")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with R.start(experiment_name="err"):
            R.log_params(a=1)
            monkeypatch.setattr(wandb.Run, "log", broken_log)
            for step in range(3):
                R.log_metrics(step=step, loss=float(step))
            R.set_tags(after="error")
            rec = R.get_recorder()
    msgs = _wandb_warnings(caught)
    assert len(msgs) == 1 and "disk full" in msgs[0] and rec.id in msgs[0] and "goes on" in msgs[0]
    local = R.get_recorder(recorder_id=rec.id)
    assert local.status == "FINISHED" and list(local.get_metric_history("loss")["step"]) == [0, 1, 2]
    assert local.list_tags()["after"] == "error"
    run = offline_run(rec)  # what reached W&B before the error is kept, and the run is closed
    assert run.config["a"] == 1 and run.metric_history("loss") == [] and "tags.after" not in run.config
    assert run.exit_code == 0


def _run_script(code: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "QEXP_LOAD_PLUGINS": "file,wandb", "PYTHONPATH": REPO, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_without_wandb_installed_the_error_says_what_to_install(tmp_path):
    proc = _run_script(f"""
        import sys
        sys.modules["wandb"] = None  # as if wandb were not installed
        import qexp, qexp_wandb.plugin
        for kwargs in ({{"uri": "wandb://p?store={tmp_path}/s"}},
                       {{"uri": "{tmp_path}/f", "mirrors": ["wandb://p"]}}):
            try:
                qexp.init(**kwargs)
            except qexp.MissingExtraError as exc:
                print("ERROR:", exc)
        import click
        from qexp.cli.main import get_cli
        try:
            get_cli().main(["runs", "sync-wandb", "--uri", "{tmp_path}/f"], standalone_mode=False)
        except click.ClickException as exc:
            print("ERROR:", exc.message)
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ERROR:")]
    assert len(lines) == 3
    assert all('pip install "qexp[wandb]"' in ln for ln in lines)
    assert "wandb:// backend" in lines[0] and "wandb:// mirror" in lines[1] and "wandb sync" in lines[2]


@pytest.mark.parametrize("ending,status,exit_code", [("pass", "FINISHED", 0), ("1 / 0", "FAILED", 1)])
def test_runs_left_open_at_exit_end_in_wandb_too(tmp_path, wandb_env, ending, status, exit_code):
    """qexp ends open runs FAILED on an uncaught exception and FINISHED at exit; the W&B run agrees, and
    is complete on disk although W&B's own exit handler runs before qexp's."""
    pytest.importorskip("wandb")
    store = tmp_path / "local"
    proc = _run_script(f"""
        import qexp
        from qexp import R
        qexp.init(uri="wandb://qexp-test?mode=offline&store={store}")
        R.start_exp(experiment_name="open")
        R.log_metrics(step=7, loss=0.25)
        {ending}
        """, tmp_path)
    assert (proc.returncode == 0) == (exit_code == 0), proc.stderr
    from qexp.settings import create_manager
    (rec,) = create_manager(str(store)).get_exp(experiment_name="open", create=False).list_recorders().values()
    assert rec.status == status
    (folder,) = run_folders(wandb_env)
    from qexp_wandb.reader import read_offline_run
    run = read_offline_run(str(folder))  # the process has exited: the file is complete
    assert run.metric_history("loss") == [(7, 0.25)]
    assert run.exit_code == exit_code and run.summary["qexp.status"] == status
