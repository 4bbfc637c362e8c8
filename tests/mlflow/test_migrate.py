"""``qexp runs migrate``: file -> MLflow (SQLite) -> file, checked value by value, and idempotent."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mlflow")

import qexp  # noqa: E402
from qexp import R  # noqa: E402
from qexp.migrate import SKIP_TAGS, TAG_MIGRATED_FROM, TAG_MIGRATING_FROM, migrate  # noqa: E402
from qexp.settings import create_manager  # noqa: E402

LONG = "x" * 7000 + "-tail"  # over MLflow's param limit: truncated there, whole again in the file store


def build_source(uri: str, tmp_path) -> None:
    """A file store with nested, failed, long-param, many-step and artifact-carrying runs."""
    qexp.init(uri=uri)
    (tmp_path / "plots" / "sub").mkdir(parents=True)
    (tmp_path / "plots" / "a.csv").write_text("1,2\n")
    (tmp_path / "plots" / "sub" / "b.csv").write_text("3,4\n")
    with R.start(experiment_name="alpha", recorder_name="parent"):
        R.log_params(lr=0.1, model="LGBModel", task=LONG)
        for s in range(30):
            R.log_metrics(step=s, loss=1 / (s + 1), ic=s / 100)
        R.set_tags(stage="dev")
        R.save_objects(**{"pred.pkl": pd.DataFrame({"score": np.arange(4.0)})})
        R.log_artifact(str(tmp_path / "plots"))
        with R.start(experiment_name="alpha", recorder_name="child"):
            R.log_metrics(step=3, loss=0.7)
    with pytest.raises(RuntimeError):
        with R.start(experiment_name="alpha", recorder_name="broken"):
            R.log_params(model="bad")
            raise RuntimeError("boom")
    with R.start(experiment_name="beta", recorder_name="steps"):
        R.get_recorder().log_metric_batch([("m", float(i), 1_700_000_000_000 + i, i) for i in range(2500)])
    R.get_exp(experiment_name="empty")


def runs_of(uri: str) -> dict[str, list]:
    manager = create_manager(uri)
    return {name: exp.list_recorders(rtype="list") for name, exp in manager.list_experiments().items()}


def assert_same_run(src, dst, id_map: dict[str, str], times: bool) -> None:
    assert dst.name == src.name and dst.status == src.status
    if times:
        assert (dst._start_ms, dst._end_ms) == (src._start_ms, src._end_ms)
    assert dst.list_params() == src.list_params()
    src_metrics = src.list_metrics()
    assert dst.list_metrics() == pytest.approx(src_metrics)
    for key in src_metrics:
        a = src.get_metric_history(key).sort_values(["step", "timestamp"]).reset_index(drop=True)
        b = dst.get_metric_history(key).sort_values(["step", "timestamp"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    src_tags, dst_tags = src.list_tags(), dst.list_tags()
    assert dst_tags[TAG_MIGRATED_FROM] == src.id and TAG_MIGRATING_FROM not in dst_tags
    assert dst_tags["mlflow.runName"] == src.name
    src_parent = src_tags.get("mlflow.parentRunId")
    assert dst_tags.get("mlflow.parentRunId") == (id_map[src_parent] if src_parent else None)
    keep = {k: v for k, v in src_tags.items() if k not in SKIP_TAGS}
    assert {k: v for k, v in dst_tags.items() if k in keep} == keep
    # the whole value of a long param is a backend's detail: compare the user's artifacts
    src_files = [f for f in src.list_artifacts(recursive=True) if not f.startswith("params/")]
    dst_files = [f for f in dst.list_artifacts(recursive=True) if not f.startswith("params/")]
    assert dst_files == src_files
    for f in src_files:
        assert dst.read_artifact(f) == src.read_artifact(f), f


def assert_same_store(src_uri: str, dst_uri: str, report, times: bool) -> None:
    src_runs, dst_runs = runs_of(src_uri), runs_of(dst_uri)
    assert set(dst_runs) == set(src_runs) == {"alpha", "beta", "empty"}
    for name, runs in src_runs.items():
        by_origin = {r.list_tags()[TAG_MIGRATED_FROM]: r for r in dst_runs[name]}
        assert set(by_origin) == {r.id for r in runs}
        for src in runs:
            assert report.copied[src.id] == by_origin[src.id].id
            assert_same_run(src, by_origin[src.id], report.copied, times)


def test_file_to_sqlite_to_file(tmp_path, sqlite_uri):
    first, back = str(tmp_path / "first"), str(tmp_path / "back")
    build_source(first, tmp_path)
    n_runs = sum(len(r) for r in runs_of(first).values())

    to_mlflow = migrate(first, sqlite_uri, progress=False)
    assert len(to_mlflow.copied) == n_runs == 4 and to_mlflow.times_kept
    children = [r for r in runs_of(first)["alpha"] if r.list_tags().get("mlflow.parentRunId")]
    assert [c.name for c in children] == ["child"]  # the parent link below is checked on a real child
    assert_same_store(first, sqlite_uri, to_mlflow, times=True)
    # MLflow's own client sees the copies too, the long param stored truncated
    from mlflow import MlflowClient
    mlflow_run = MlflowClient(tracking_uri=create_manager(sqlite_uri).uri).get_run(
        next(dst for src, dst in to_mlflow.copied.items()
             if create_manager(first).get_recorder_by_id(src).name == "parent"))
    assert len(mlflow_run.data.params["task"]) < len(LONG)

    to_file = migrate(sqlite_uri, back, progress=False)
    assert len(to_file.copied) == n_runs and to_file.times_kept
    # copies of copies: compare the second store with the MLflow one, then the chain end to end
    assert_same_store(sqlite_uri, back, to_file, times=True)
    for name, runs in runs_of(first).items():
        for src in runs:
            final = create_manager(back).get_recorder_by_id(to_file.copied[to_mlflow.copied[src.id]])
            assert (final._start_ms, final._end_ms) == (src._start_ms, src._end_ms)  # also after a reload
            assert final.list_params() == src.list_params()
            assert final.get_metric_history("m" if name == "beta" else "loss")["value"].tolist() == \
                src.get_metric_history("m" if name == "beta" else "loss")["value"].tolist()


def test_migrate_is_idempotent(tmp_path, sqlite_uri):
    first = str(tmp_path / "first")
    build_source(first, tmp_path)
    report = migrate(first, sqlite_uri, progress=False)
    before = {n: sorted(r.id for r in runs) for n, runs in runs_of(sqlite_uri).items()}
    again = migrate(first, sqlite_uri, progress=False)
    assert again.copied == {} and again.skipped == len(report.copied)
    assert {n: sorted(r.id for r in runs) for n, runs in runs_of(sqlite_uri).items()} == before
    # migrating back into the store the runs came from copies nothing either
    back = migrate(sqlite_uri, first, progress=False)
    assert back.copied == {} and back.skipped == len(report.copied)
    # a new run at the source is the only thing the next call copies
    qexp.init(uri=first)
    with R.start(experiment_name="beta", recorder_name="late"):
        R.log_metrics(x=1.0)
        late = R.get_recorder().id
    third = migrate(first, sqlite_uri, experiments=["beta"], progress=False)
    assert list(third.copied) == [late] and third.skipped == 1


def test_interrupted_copy_is_redone(tmp_path, sqlite_uri):
    first = str(tmp_path / "first")
    build_source(first, tmp_path)
    src = create_manager(first).get_exp(experiment_name="beta", create=False).list_recorders(rtype="list")[0]
    # what a crash half-way through copying leaves: a run with the in-progress marker only
    target = create_manager(sqlite_uri)
    half = target.get_exp(experiment_name="beta").create_recorder("steps")
    half.autolog = False
    half.start_run()
    half.set_tags(**{TAG_MIGRATING_FROM: src.id})
    half.log_metrics(m=1.0)
    half.end_run("FAILED")
    report = migrate(first, sqlite_uri, experiments=["beta"], progress=False)
    assert report.redone == 1 and list(report.copied) == [src.id]
    runs = target.get_exp(experiment_name="beta", create=False).list_recorders(rtype="list")
    assert [r.id for r in runs] == [report.copied[src.id]]
    assert len(runs[0].get_metric_history("m")) == 2500


def test_running_runs_wait_for_a_later_call(tmp_path, sqlite_uri):
    first = str(tmp_path / "first")
    qexp.init(uri=first)
    with R.start(experiment_name="live", recorder_name="done"):
        R.log_metrics(x=1.0)
    R.start_exp(experiment_name="live", recorder_name="busy")
    busy = R.get_recorder().id
    report = migrate(first, sqlite_uri, progress=False)
    assert report.running == [busy] and len(report.copied) == 1
    R.end_exp()
    later = migrate(first, sqlite_uri, progress=False)
    assert list(later.copied) == [busy] and later.skipped == 1


def test_cli_migrate(tmp_path, sqlite_uri):
    from click.testing import CliRunner

    from qexp.cli.main import get_cli
    first = str(tmp_path / "first")
    build_source(first, tmp_path)
    runner = CliRunner()
    out = runner.invoke(get_cli(), ["runs", "migrate", "--from", first, "--to", sqlite_uri, "--quiet"])
    assert out.exit_code == 0, out.output
    assert "copied 4 run(s) in 3 experiment(s); 0 already there" in out.output
    out = runner.invoke(get_cli(), ["runs", "migrate", "--from", first, "--to", sqlite_uri, "--json"])
    assert out.exit_code == 0 and '"skipped": 4' in out.output and '"copied": {}' in out.output
    out = runner.invoke(get_cli(), ["runs", "migrate", "--from", first, "--to", sqlite_uri, "--exp", "nope"])
    assert out.exit_code != 0 and "nope" in out.output
    out = runner.invoke(get_cli(), ["runs", "migrate", "--from", first, "--to", first])
    assert out.exit_code != 0 and "same store" in out.output


def test_parent_in_another_experiment_copied_later(tmp_path, sqlite_uri):
    first = str(tmp_path / "first")
    qexp.init(uri=first)
    R.get_exp(experiment_name="children")  # listed (and copied) before the parents' experiment
    with R.start(experiment_name="parents", recorder_name="sweep"):
        parent = R.get_recorder().id
        with R.start(experiment_name="children", recorder_name="trial"):
            child = R.get_recorder().id
    report = migrate(first, sqlite_uri, progress=False)
    assert report.experiments == ["children", "parents"] and set(report.copied) == {parent, child}
    copy = create_manager(sqlite_uri).get_recorder_by_id(report.copied[child])
    assert copy.list_tags()["mlflow.parentRunId"] == report.copied[parent]


def test_file_to_file_keeps_start_and_end_times(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    build_source(src, tmp_path)
    report = migrate(src, dst, progress=False)
    assert report.times_kept
    assert_same_store(src, dst, report, times=True)
    # a run that has started keeps its own start time: only a new recorder takes preset times
    started = create_manager(dst).get_recorder_by_id(next(iter(report.copied.values())))
    assert started.preserve_times(1, 2) is False
