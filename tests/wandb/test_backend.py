"""The wandb:// backend end to end, offline: what reaches W&B is read back from the run's .wandb file."""
from __future__ import annotations

import os
import pickle
import threading

import pytest

pytest.importorskip("wandb")

import qexp  # noqa: E402
from qexp import R  # noqa: E402
from qexp_wandb.mapping import STEP_KEY  # noqa: E402
from qexp_wandb.mirror import LINK_ATTR, finish_all_mirrors  # noqa: E402

from .conftest import offline_run, run_folders  # noqa: E402


def test_params_metrics_tags_status_reach_wandb(wandb_uri):
    qexp.init(uri=wandb_uri)
    with R.start(experiment_name="exp-a", recorder_name="train"):
        R.log_params(**{"model.kwargs.lr": 0.05, "layers": 3, "handler": "Alpha158", "flag": True})
        for step in (1, 2, 3):
            R.log_metrics(step=step, loss=1.0 / step)
        R.log_metrics(step=2, loss=0.7)          # back to an earlier step: kept, W&B's own step still grows
        R.log_metrics(ic=0.04, rank_ic=0.05)     # no step: qexp's step 0
        R.set_tags(stage="dev")
        R.set_tags(stage="prod")                  # a tag set again replaces the W&B tag too
        rec = R.get_recorder()
    run = offline_run(rec)
    tags = rec.list_tags()
    # linked both ways
    assert tags["wandb.run_id"] == run.run_id and tags["wandb.project"] == "qexp-test" == run.project
    assert tags["wandb.mode"] == "offline"
    assert run.config["qexp.run_id"] == rec.id and run.config["qexp.experiment"] == "exp-a"
    assert rec.id in run.notes and run.name == "train" and run.group == "exp-a"
    # params: flat readable keys, typed values
    assert run.config["model.kwargs.lr"] == 0.05 and run.config["layers"] == 3
    assert run.config["handler"] == "Alpha158" and run.config["flag"] is True
    # metrics: every point, qexp's step as the x-axis
    assert run.step_metrics == {"*": STEP_KEY}
    assert run.metric_history("loss") == [(1, 1.0), (2, 0.5), (3, 1.0 / 3), (2, 0.7)]
    assert run.metric_history("ic") == [(0, 0.04)]
    assert [row["_step"] for row in run.history] == list(range(len(run.history)))
    # summary follows qexp's "latest = highest step", not W&B's "last logged"
    assert run.summary["loss"] == pytest.approx(1.0 / 3) and run.summary["qexp.status"] == "FINISHED"
    assert rec.list_metrics()["loss"] == pytest.approx(1.0 / 3)
    # tags: all in config, user tags also as W&B run tags
    assert run.config["tags.stage"] == "prod" and run.config["tags.mlflow.runName"] == "train"
    assert "tags.hostname" in run.config  # context tags written with the start reach W&B too
    assert run.tags == ["stage=prod"]
    assert run.exit_code == 0
    assert run.artifacts == []  # artifacts are opt-in


def test_failed_run_exits_1_and_reads_use_the_local_store(wandb_uri):
    qexp.init(uri=wandb_uri)
    with pytest.raises(ValueError):
        with R.start(experiment_name="exp-b", recorder_name="bad"):
            R.log_metrics(x=1.0)
            bad = R.get_recorder()
            raise ValueError("boom")
    run = offline_run(bad)
    assert run.exit_code == 1 and run.summary["qexp.status"] == "FAILED"
    df = R.search_records(filter_string="attributes.status = 'FAILED'")
    assert list(df["run_id"]) == [bad.id] and df["tags.wandb.run_id"].iloc[0] == run.run_id
    # the backend's extras and the local store are the local manager's
    assert R.exp_manager.local.uri == wandb_uri.split("store=")[1]
    assert R.exp_manager.rebuild_index() == 1


def test_artifacts_as_one_wandb_artifact(tmp_path):
    uri = f"wandb://qexp-test?mode=offline&artifacts=true&store={tmp_path / 'local'}"
    qexp.init(uri=uri)
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "ic.txt").write_text("ic")
    with R.start(experiment_name="exp-art"):
        R.save_objects(**{"pred.pkl": [1, 2, 3]})
        R.log_artifact(str(folder), "figs")
        rec = R.get_recorder()
    assert R.get_recorder(recorder_id=rec.id, experiment_name="exp-art").load_object("pred.pkl") == [1, 2, 3]
    (art,) = offline_run(rec).artifacts
    assert art["name"] == f"qexp-{rec.id}" and art["type"] == "qexp-run"
    assert {"pred.pkl", "figs/plots/ic.txt"} <= set(art["files"])


def test_default_store_is_absolute_under_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    qexp.init(uri="wandb://qexp-test?mode=disabled")  # disabled: nothing goes to W&B at all
    monkeypatch.chdir(tmp_path.parent)
    with R.start(experiment_name="e"):
        R.log_metrics(a=1.0)
        rec = R.get_recorder()
    assert R.exp_manager.local.uri == str(tmp_path / "qexp_runs")
    assert "wandb.run_id" not in rec.list_tags() and rec.list_metrics() == {"a": 1.0}


def test_nested_runs_and_threads_get_their_own_wandb_runs(wandb_uri, wandb_env):
    qexp.init(uri=wandb_uri)
    with R.start(experiment_name="outer", recorder_name="parent"):
        R.log_metrics(step=0, p=1.0)
        with R.start(experiment_name="outer", recorder_name="child"):
            R.log_metrics(step=0, c=2.0)
            child = R.get_recorder()
        R.log_metrics(step=1, p=3.0)
        parent = R.get_recorder()
    ids = {}

    def work(i: int) -> None:
        with R.start(experiment_name=f"thread-{i}", recorder_name=f"t{i}"):
            for s in range(5):
                R.log_metrics(step=s, v=float(i * 10 + s))
            ids[i] = R.get_recorder().id

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p_run, c_run = offline_run(parent), offline_run(child)
    assert p_run.run_id != c_run.run_id
    assert p_run.metric_history("p") == [(0, 1.0), (1, 3.0)] and "c" not in p_run.summary
    assert c_run.metric_history("c") == [(0, 2.0)] and c_run.config["qexp.parent_run_id"] == parent.id
    for i, rid in ids.items():
        run = offline_run(R.get_recorder(recorder_id=rid))
        assert run.metric_history("v") == [(s, float(i * 10 + s)) for s in range(5)] and run.exit_code == 0
    assert len(run_folders(wandb_env)) == 5


def test_resume_and_late_writes_continue_the_same_wandb_run(wandb_uri, wandb_env):
    from qexp_wandb.sync import offline_dirs
    qexp.init(uri=wandb_uri)
    with R.start(experiment_name="exp-r", recorder_name="long"):
        R.log_metrics(step=0, loss=1.0)
        rec = R.get_recorder()
    wandb_id = rec.list_tags()["wandb.run_id"]
    with R.start(experiment_name="exp-r", recorder_id=rec.id, resume=True):
        R.log_metrics(step=1, loss=0.5)
    # a write to a finished run (allowed, as in Qlib) reopens the W&B run until the next end or exit
    R.get_recorder(recorder_id=rec.id).log_metrics(step=2, loss=0.25)
    assert finish_all_mirrors() == 1
    assert rec.list_tags()["wandb.run_id"] == wandb_id
    folders = offline_dirs(rec.list_tags()["wandb.dir"], wandb_id)
    assert len(folders) == 3 and len(run_folders(wandb_env)) == 3  # W&B writes each session to a new folder
    from qexp_wandb.reader import wait_for_offline_run
    sessions = [wait_for_offline_run(f) for f in folders]
    assert {s.run_id for s in sessions} == {wandb_id}
    assert sorted(p for s in sessions for p in s.metric_history("loss")) == [(0, 1.0), (1, 0.5), (2, 0.25)]


def test_recorders_are_linked_and_the_link_does_not_pickle(wandb_uri):
    import types
    qexp.init(uri=wandb_uri)
    with R.start(experiment_name="exp-p"):
        rec = R.get_recorder()
        link = getattr(rec, LINK_ATTR)
        assert link.mirror is R.exp_manager.mirror and link.experiment_name == "exp-p"
    assert getattr(R.get_recorder(recorder_id=rec.id), LINK_ATTR).mirror is link.mirror
    assert all(getattr(r, LINK_ATTR).mirror is link.mirror for r in R.list_recorders(experiment_name="exp-p").values())
    # a recorder sent to another process arrives unlinked (the link holds this process's W&B runs)
    carrier = pickle.loads(pickle.dumps(types.SimpleNamespace(**{LINK_ATTR: link, "id": rec.id})))
    assert carrier.id == rec.id and getattr(carrier, LINK_ATTR) is None


def test_reader_handles_records_across_blocks(wandb_uri):
    """3000 points write well past one 32 KiB block, so records are split into fragments."""
    qexp.init(uri=wandb_uri)
    with R.start(experiment_name="exp-big"):
        rec = R.get_recorder()
        rec.log_metric_batch([("m", float(i), 1_700_000_000_000 + i, i) for i in range(3000)])
        R.log_params(blob="x" * 40_000)  # one record bigger than a block
    run = offline_run(rec)
    assert os.path.getsize(run.path) > 3 * 32 * 1024
    assert run.metric_history("m") == [(i, float(i)) for i in range(3000)]
    assert run.config["blob"] == "x" * 40_000 and run.exit_code == 0


def test_reader_rejects_other_files(tmp_path):
    from qexp_wandb.reader import WandbFileError, read_offline_run
    (tmp_path / "run-x.wandb").write_bytes(b"not a log")
    with pytest.raises(WandbFileError, match="not a W&B transaction log"):
        read_offline_run(str(tmp_path))
    with pytest.raises(WandbFileError, match="no .wandb file"):
        read_offline_run(str(tmp_path / "missing"))
