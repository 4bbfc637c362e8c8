"""Eight processes race to create the same experiment in a brand-new SQLite store and log into it."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("mlflow")

N_PROCS = 8
STEPS = 120

WORKER = r"""
import os, sys, time
uri, idx, go, steps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
import qexp
from qexp import R
import mlflow  # imported before the start signal so the processes really start together
time.sleep(max(0.0, go - time.time()))
qexp.init(uri=uri, autolog=False)
with R.start(experiment_name="race", recorder_name=f"p{idx}"):
    R.log_params(worker=idx, seed=idx * 7)
    rec = R.get_recorder()
    for s in range(steps):
        R.log_metrics(step=s, loss=idx + s / 1000.0, acc=s * idx / 1000.0)
        if s % 30 == 29:
            rec.flush()  # several writes per process, interleaved with the others
    R.set_tags(worker=str(idx))
    R.save_objects(**{"result.pkl": {"worker": idx, "values": list(range(idx, idx + 5))}})
print(rec.id)
"""


def test_eight_processes_race_on_a_new_sqlite_store(tmp_path):
    from mlflow import MlflowClient

    db = tmp_path / "race" / "mlflow.db"  # does not exist yet: the schema creation races too
    uri = f"sqlite:///{db}"
    env = {**os.environ, "QEXP_LOAD_PLUGINS": "file,mlflow", "PYTHONWARNINGS": "ignore"}
    go = time.time() + 8.0  # enough for 8 interpreters to import mlflow on a busy 2-core machine
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, uri, str(i), str(go), str(STEPS)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for i in range(N_PROCS)]
    run_ids = {}
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"worker {i} failed:\n{err.decode()[-3000:]}"
        run_ids[i] = out.decode().strip().splitlines()[-1]

    client = MlflowClient(tracking_uri=uri)
    race = [e for e in client.search_experiments() if e.name == "race"]
    assert len(race) == 1, "every process must have found the one experiment"
    runs = client.search_runs([race[0].experiment_id], max_results=100)
    assert {r.info.run_id for r in runs} == set(run_ids.values())

    import qexp
    from qexp import R
    qexp.init(uri=uri)
    for i, rid in run_ids.items():
        rec = R.get_recorder(recorder_id=rid, experiment_name="race")
        assert rec.name == f"p{i}" and rec.status == "FINISHED"
        assert rec.list_params() == {"worker": str(i), "seed": str(i * 7)}
        assert rec.list_tags()["worker"] == str(i)
        loss = rec.get_metric_history("loss").sort_values("step")
        acc = rec.get_metric_history("acc").sort_values("step")
        assert loss["step"].tolist() == list(range(STEPS)) == acc["step"].tolist()
        assert loss["value"].tolist() == pytest.approx([i + s / 1000.0 for s in range(STEPS)])
        assert acc["value"].tolist() == pytest.approx([s * i / 1000.0 for s in range(STEPS)])
        assert rec.load_object("result.pkl") == {"worker": i, "values": list(range(i, i + 5))}
