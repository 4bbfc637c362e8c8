"""MLflow-specific behaviour of the backend: deleted names, search pass-through, URIs."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("mlflow")

import qexp  # noqa: E402
from qexp import R  # noqa: E402


def test_delete_renames_so_the_name_is_free(client):
    old = R.get_exp(experiment_name="reuse")
    with R.start(experiment_name="reuse", recorder_name="kept"):
        rid = R.get_recorder().id
    R.delete_exp(experiment_name="reuse")
    gone = client.get_experiment(old.id)
    assert gone.lifecycle_stage == "deleted" and gone.name == f"reuse-deleted-{old.id}"
    assert client.get_run(rid).info.experiment_id == old.id  # the old runs stay recoverable
    new = R.get_exp(experiment_name="reuse")
    assert new.id != old.id and new.list_recorders() == {}


def test_name_held_by_an_experiment_deleted_elsewhere(client):
    exp_id = client.create_experiment("held")
    client.delete_experiment(exp_id)  # plain MLflow keeps the name taken by the deleted experiment
    new = R.get_exp(experiment_name="held")
    assert new.id != exp_id
    old = client.get_experiment(exp_id)
    assert old.lifecycle_stage == "deleted" and old.name == f"held-deleted-{exp_id}"
    assert "held" in R.list_experiments() and len([e for e in R.list_experiments() if e.startswith("held")]) == 1


def test_new_store_lists_no_experiments_and_hides_only_empty_default(client):
    assert R.list_experiments() == {}
    run = client.create_run("0", run_name="in-default")  # MLflow's "Default" experiment, once used, is listed
    client.set_terminated(run.info.run_id)
    assert list(R.list_experiments()) == ["Default"]


@pytest.fixture
def runs(mlflow_store):
    ids = {}
    for name, status, quote in (("a", "FINISHED", "it's"), ("b", "FAILED", 'say "hi"'), ("c", "FINISHED", "plain"),
                                ("d", "FINISHED", "both ' and \"")):
        rec = R.get_exp(experiment_name="s" if name != "c" else "other").create_recorder(name)
        rec.autolog = False
        rec.start_run()
        rec.log_params(note=quote)
        rec.log_metrics(v=float(ord(name)))
        rec.end_run(status)
        ids[name] = rec.id
    return ids


def test_search_clauses_mlflow_cannot_run_are_evaluated_here(runs):
    exp = R.get_exp(experiment_name="s", create=False)
    other = R.get_exp(experiment_name="other", create=False)
    df = R.search_records(filter_string="attributes.status IN ('FAILED', 'KILLED')")
    assert df["run_id"].tolist() == [runs["b"]]
    df = R.search_records(filter_string=f"attributes.experiment_id = '{other.id}'")
    assert df["run_id"].tolist() == [runs["c"]]
    df = R.search_records([exp.id], filter_string="attributes.run_name NOT IN ('a', 'b') AND metrics.v > 0")
    assert df["run_id"].tolist() == [runs["d"]]
    assert R.search_records(filter_string="params.note = \"it's\"")["run_id"].tolist() == [runs["a"]]
    assert R.search_records(filter_string="params.note = 'say \"hi\"'")["run_id"].tolist() == [runs["b"]]
    both = R.search_records(filter_string="params.note = 'both \\' and \"'")
    assert both["run_id"].tolist() == [runs["d"]]
    ordered = R.search_records(order_by=["attributes.experiment_id DESC", "metrics.v ASC"], max_results=2)
    assert ordered["run_id"].tolist() == [runs["c"], runs["a"]]


def test_search_pages_through_mlflow(runs, monkeypatch):
    from qexp_mlflow import search
    monkeypatch.setattr(search, "PAGE_MAX", 1)  # every run on its own page
    assert set(R.search_records()["run_id"]) == set(runs.values())
    assert R.search_records(order_by="metrics.v DESC", max_results=3)["run_id"].tolist() == \
        [runs["d"], runs["c"], runs["b"]]


def test_relative_sqlite_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    qexp.init(uri="sqlite:///rel/mlflow.db")
    assert R.get_uri() == f"sqlite:///{tmp_path / 'rel' / 'mlflow.db'}"
    with R.start(experiment_name="where"):
        rec = R.get_recorder()
        R.save_objects(x=1)
    # artifacts sit next to the database, not in whatever folder the process started in
    assert rec.get_artifact_uri().startswith((tmp_path / "rel" / "mlartifacts").as_uri())
    assert os.path.isfile(os.path.join(rec.get_local_dir(), "artifacts", "x"))
    monkeypatch.chdir(tmp_path.parent)
    assert R.get_recorder(recorder_id=rec.id).load_object("x") == 1


def test_experiment_deleted_by_another_process_is_reported(client):
    exp = R.get_exp(experiment_name="shortlived")  # its id is now remembered for a moment
    client.delete_experiment(exp.id)               # as another process would
    with pytest.raises(qexp.ExpNotFoundError, match="start the run again"):
        with R.start(experiment_name="shortlived"):
            pass
    with R.start(experiment_name="shortlived"):    # looked up afresh: a new experiment of that name
        assert R.get_exp().id != exp.id
