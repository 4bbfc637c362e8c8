"""Without mlflow installed, the plugin still loads and choosing an MLflow store says how to install it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

SIMULATE_MISSING = r"""
import sys
sys.modules["mlflow"] = None          # `import mlflow` now raises ImportError
import qexp
from qexp_mlflow import plugin        # the plugin module itself needs no mlflow
try:
    qexp.init(uri=sys.argv[1])
except qexp.MissingExtraError as exc:
    print("MISSING:", exc)
else:
    print("NO ERROR")
"""


@pytest.mark.parametrize("uri", ["sqlite:///{tmp}/x.db", "postgresql://nobody@127.0.0.1:1/none",
                                 "http://127.0.0.1:1"])
def test_missing_mlflow_names_the_extra(tmp_path, uri):
    env = {**os.environ, "QEXP_LOAD_PLUGINS": "file,mlflow"}
    out = subprocess.run([sys.executable, "-c", SIMULATE_MISSING, uri.format(tmp=tmp_path)], capture_output=True,
                         env=env, timeout=120, cwd=tmp_path)
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert text.startswith("MISSING:") and 'pip install "qexp[mlflow]"' in text, text
    assert not (tmp_path / "x.db").exists()


def test_mlflow_file_store_needs_the_opt_in(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    import mlflow

    import qexp
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    version = tuple(int(p) for p in mlflow.__version__.split(".")[:2])
    if version < (3, 13):
        pytest.skip("MLflow before 3.13 accepts its file store without opting in")
    with pytest.raises(qexp.QexpError, match="MLFLOW_ALLOW_FILE_STORE=true"):
        qexp.init(uri=f"mlflow+file:{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    qexp.init(uri=f"mlflow+file:{tmp_path / 'mlruns'}")
    from qexp import R
    with R.start(experiment_name="legacy"):
        R.log_metrics(x=1.0)
        rid = R.get_recorder().id
    assert R.get_recorder(recorder_id=rid).list_metrics() == {"x": 1.0}
    assert (tmp_path / "mlruns").is_dir()
