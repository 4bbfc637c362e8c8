"""Runs written by qexp are what MLflow's own client sees, and runs written by plain MlflowClient read
back through R."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mlflow")

from qexp import R  # noqa: E402


@pytest.fixture
def fluent_uri(mlflow_store):
    """mlflow.search_runs reads the global tracking URI: point it at the store, restore it afterwards."""
    import mlflow
    before = os.environ.get("MLFLOW_TRACKING_URI")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_store)
    yield mlflow_store
    mlflow.set_tracking_uri(previous)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def test_qexp_runs_read_by_mlflow_client(client, fluent_uri, tmp_path):
    import mlflow
    pred = pd.DataFrame({"score": np.linspace(0, 1, 7)}, index=pd.Index(list("abcdefg"), name="instrument"))
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "summary.csv").write_text("ic,0.05\n")
    with R.start(experiment_name="interop", recorder_name="train"):
        R.log_params(lr=0.05, model="LGBModel")
        for step in range(50):
            R.log_metrics(step=step, loss=1.0 / (step + 1), ic=step / 1000)
        R.set_tags(stage="dev")
        R.save_objects(**{"pred.pkl": pred})
        R.log_artifact(str(folder))
        parent = R.get_recorder()
        with R.start(experiment_name="interop", recorder_name="child"):
            R.log_metrics(loss=0.3)
            child = R.get_recorder()
    with pytest.raises(ZeroDivisionError):
        with R.start(experiment_name="interop", recorder_name="broken"):
            failed = R.get_recorder()
            raise ZeroDivisionError("a failing step")

    exp = client.get_experiment_by_name("interop")
    assert exp is not None and exp.experiment_id == R.get_exp(experiment_name="interop").id
    run = client.get_run(parent.id)
    assert run.info.run_name == "train" and run.data.tags["mlflow.runName"] == "train"
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    assert run.data.params == {"lr": "0.05", "model": "LGBModel"}
    assert run.data.metrics == {"loss": pytest.approx(1 / 50), "ic": pytest.approx(0.049)}
    assert run.data.tags["stage"] == "dev"
    hist = sorted(client.get_metric_history(parent.id, "loss"), key=lambda m: m.step)
    assert [m.step for m in hist] == list(range(50))
    np.testing.assert_allclose([m.value for m in hist], [1.0 / (s + 1) for s in range(50)])
    assert all(m.timestamp > 0 for m in hist)
    assert client.get_run(child.id).data.tags["mlflow.parentRunId"] == parent.id
    assert client.get_run(failed.id).info.status == "FAILED"

    top = {f.path for f in client.list_artifacts(parent.id)}
    assert {"pred.pkl", "report"} <= top
    assert [f.path for f in client.list_artifacts(parent.id, "report")] == ["report/summary.csv"]
    local = client.download_artifacts(parent.id, "pred.pkl", str(tmp_path / "dl"))
    with open(local, "rb") as f:
        pd.testing.assert_frame_equal(pickle.load(f), pred)

    # mlflow.search_runs (the fluent DataFrame) and R.search_records agree on rows and values
    theirs = mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string="metrics.loss < 0.5",
                                order_by=["metrics.loss ASC"])
    ours = R.search_records([exp.experiment_id], filter_string="metrics.loss < 0.5", order_by=["metrics.loss ASC"])
    assert list(ours["run_id"]) == list(theirs["run_id"]) == [parent.id, child.id]
    for col in ("metrics.loss", "metrics.ic"):
        assert ours[col].tolist() == pytest.approx(theirs[col].tolist(), nan_ok=True), col
    for col in ("status", "params.lr", "tags.stage", "tags.mlflow.runName", "tags.mlflow.parentRunId"):
        assert ours[col].fillna("").tolist() == theirs[col].fillna("").tolist(), col
    assert set(ours.columns) <= set(theirs.columns) | {"end_time"}


def test_plain_mlflow_runs_read_through_r(client, tmp_path):
    exp_id = client.create_experiment("plain", artifact_location=(tmp_path / "plain-artifacts").as_uri())
    run = client.create_run(exp_id, run_name="raw", tags={"origin": "mlflow"})
    rid = run.info.run_id
    client.log_param(rid, "depth", "7")
    for step in range(10):
        client.log_metric(rid, "acc", step / 10, step=step, timestamp=1_700_000_000_000 + step)
    note = tmp_path / "note.txt"
    note.write_text("written by MlflowClient")
    client.log_artifact(rid, str(note), "docs")
    client.set_terminated(rid, "FINISHED")
    running = client.create_run(exp_id, run_name="unfinished")  # no qexp owner tag: cannot be judged

    exp = R.get_exp(experiment_name="plain", create=False)
    recs = exp.list_recorders(rtype="list")
    assert [r.name for r in recs] == ["unfinished", "raw"]
    rec = R.get_recorder(recorder_name="raw", experiment_name="plain")
    assert rec.id == rid and rec.status == "FINISHED" and rec.experiment_id == exp_id
    assert rec.list_params() == {"depth": "7"}
    assert rec.list_metrics() == {"acc": pytest.approx(0.9)}
    hist = rec.get_metric_history("acc")
    assert hist["step"].tolist() == list(range(10))
    assert hist["timestamp"].tolist() == [1_700_000_000_000 + s for s in range(10)]
    assert rec.list_tags()["origin"] == "mlflow"
    assert rec.read_artifact("docs/note.txt") == b"written by MlflowClient"
    assert rec.list_artifacts(recursive=True) == ["docs/note.txt"]
    assert R.get_recorder(recorder_id=running.info.run_id).status == "RUNNING"

    df = R.search_records([exp_id], filter_string="params.depth = '7'")
    assert df["run_id"].tolist() == [rid] and df["metrics.acc"].tolist() == [pytest.approx(0.9)]

    # resume the plain run through R: RUNNING again, then FINISHED, history appended
    with R.start(experiment_name="plain", recorder_id=rid, resume=True):
        assert client.get_run(rid).info.status == "RUNNING"
        R.log_metrics(step=10, acc=1.0)
    assert client.get_run(rid).info.status == "FINISHED"
    assert len(client.get_metric_history(rid, "acc")) == 11


def test_params_are_immutable_across_recorder_objects(mlflow_store, client):
    from qexp import QexpError
    with R.start(experiment_name="imm"):
        R.log_params(lr=0.1)
        rid = R.get_recorder().id
    again = R.get_recorder(recorder_id=rid)
    again.log_params(lr=0.1)
    with pytest.raises(QexpError, match="immutable"):
        again.log_params(lr=0.3)  # this recorder knows the stored value: refused at the call

    # two writers that do not know of each other: the second learns at its flush, and keeps the rest
    first, second = R.get_recorder(recorder_id=rid), R.get_recorder(recorder_id=rid)
    first.log_params(depth=3)
    second.log_params(depth=5, seed=1)
    second.log_metrics(step=1, acc=0.5)
    first.flush()
    with pytest.raises(QexpError, match="'depth' of run .* is already '3' and cannot change to '5'"):
        second.flush()
    second.flush()
    run = client.get_run(rid)
    assert run.data.params == {"lr": "0.1", "depth": "3", "seed": "1"}
    assert run.data.metrics == {"acc": 0.5}


def test_metric_names_mlflow_refuses_fail_at_the_call(mlflow_store):
    from qexp import QexpError
    with R.start(experiment_name="names"):
        with pytest.raises(QexpError, match="rename it"):
            R.log_metrics(**{"ndcg@5": 0.3})
        with pytest.raises(QexpError, match="paths"):
            R.log_params(**{"a//b": 1})
        R.log_metrics(**{"1day.excess_return_with_cost.annualized_return": 0.1, "Rank IC": 0.02})
        rec = R.get_recorder()
    assert set(rec.list_metrics()) == {"1day.excess_return_with_cost.annualized_return", "Rank IC"}
