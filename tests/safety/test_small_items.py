"""Issue 13 item 11, the smaller findings: download_artifact's temp folders, Ctrl-C, `qexp plugins` with no
third-party plugin, `--exp NAME` errors, `make demo`'s install, load_object's allow-list, benchmark: null."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import qexp
from qexp import R
from qexp.ext import LoadObjectError

from .conftest import cli, workflow_config, write_config

REPO = Path(__file__).resolve().parents[2]


def test_download_artifact_folders_belong_to_the_caller_or_to_a_with_block(tmp_path):
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="dl"):
        R.save_objects(**{"pred.pkl": [1, 2]})
        rec = R.get_recorder()
    kept = rec.download_artifact("pred.pkl")  # as mlflow.artifacts.download_artifacts: the path stays valid
    assert os.path.isfile(kept) and os.path.basename(os.path.dirname(kept)).startswith("qexp-artifact-")
    with rec.downloaded_artifact("pred.pkl") as local:
        assert open(local, "rb").read() == rec.read_artifact("pred.pkl")
    assert not os.path.exists(os.path.dirname(local))  # removed with its temp folder


def test_ctrl_c_exits_130_and_names_the_failed_run(tiny_market, tmp_path):
    (tmp_path / "slowmodel.py").write_text(textwrap.dedent('''
        import time
        from qexp.model import Model

        class SlowModel(Model):
            def fit(self, dataset, reweighter=None):
                time.sleep(120)

            def predict(self, dataset, segment="test"):
                raise NotImplementedError
    '''))
    model = {"class": "SlowModel", "module_path": str(tmp_path / "slowmodel.py")}
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market, model=model))
    store = tmp_path / "runs"
    qexp_bin = os.path.join(os.path.dirname(sys.executable), "qexp")
    p = subprocess.Popen([qexp_bin, "run", str(cfg), "--uri", str(store)], stderr=subprocess.PIPE, text=True)
    try:
        seen = [""]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            seen.append(line)
            if "fit SlowModel ..." in line or (not line and p.poll() is not None):
                break
        if "fit SlowModel ..." not in seen[-1]:
            pytest.fail("the fit never started:\n" + "".join(seen))
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        rest = p.stderr.read()
        assert p.wait(timeout=60) == 130, rest
    finally:
        if p.poll() is None:
            p.kill()
    assert "Error: interrupted (Ctrl-C)" in rest and "is marked FAILED" in rest
    qexp.init(uri=str(store))
    rec = R.get_recorder(recorder_id=R.search_records().run_id.iloc[0])
    assert rec.status == "FAILED" and rec.id[:8] in rest
    assert rec.list_tags()["qexp.failure_reason"].startswith("interrupted")
    assert "config" in rec.list_artifacts()


def test_plugins_without_third_party_ones_prints_a_hint():
    r = cli("plugins")
    assert r.exit_code == 0 and "no third-party plugins" in r.output and "qexp plugins --all" in r.output
    assert "records" in cli("plugins", "--all").output


def test_exp_name_errors_say_name(tmp_path):
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="cold"):
        R.log_metrics(x=1.0)
    r = cli("runs", "list", "--uri", str(tmp_path / "s"), "--exp", "nope")
    assert r.exit_code == 1 and "no experiment named 'nope'" in r.output and "existing: 'cold'" in r.output


def test_make_demo_installs_the_demo_extra_only():
    demo = subprocess.run(["make", "-n", "-B", "demo"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert demo.returncode == 0, demo.stderr
    assert '".[demo]"' in demo.stdout and ".[dev]" not in demo.stdout and "torch" not in demo.stdout
    assert "workflow_config_lightgbm_Alpha158.yaml" in demo.stdout and "stored in" in demo.stdout
    test = subprocess.run(["make", "-n", "-B", "test"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert '".[dev]"' in test.stdout


def test_restricted_load_object_takes_an_allow_list(tmp_path):
    from qexp_models.linear import LinearModel
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="pk"):
        R.save_objects(**{"params.pkl": LinearModel(estimator="ridge", alpha=2.0)})
        rec = R.get_recorder()
    with pytest.raises(LoadObjectError, match=r"allow=\['qexp_models.linear.LinearModel'\]"):
        rec.load_object("params.pkl", restricted=True)
    assert rec.load_object("params.pkl", restricted=True, allow=[LinearModel]).alpha == 2.0
    assert rec.load_object("params.pkl", restricted=True, allow=["qexp_models.*"]).alpha == 2.0
    with pytest.raises(LoadObjectError, match=r"refused global '(os|posix).system'"):
        import pickle
        rec.log_bytes(pickle.dumps(os.system), "evil.pkl")
        rec.load_object("evil.pkl", restricted=True, allow=["qexp_models.*"])


def test_benchmark_null_reports_absolute_returns(tiny_market, tmp_path, monkeypatch):
    from qexp_records import plots
    labels = []
    real = plots._png

    def capture(fig):
        labels.extend(line.get_label() for ax in fig.axes for line in ax.get_lines())
        labels.extend(ax.get_title() for ax in fig.axes)
        return real(fig)
    monkeypatch.setattr(plots, "_png", capture)
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market, benchmark=None))
    store = tmp_path / "runs"
    assert cli("run", str(cfg), "--uri", str(store)).exit_code == 0
    assert "benchmark" not in labels and not any("excess" in t for t in labels)
    assert "cumulative return (no benchmark)" in " ".join(labels)
    qexp.init(uri=str(store))
    rid = R.search_records().run_id.iloc[0]
    report = cli("runs", "report", rid, "--uri", str(store)).stdout
    assert "return (no benchmark) with cost" in report and "excess return" not in report
    assert "absolute returns" in report
