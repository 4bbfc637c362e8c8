"""File backend specifics: layout, concurrency across processes, corruption, index rebuilds, lock location."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import qexp
from qexp import R
from qexp.exceptions import QexpError

WORKER = textwrap.dedent("""
    import os, sys, qexp
    from qexp import R
    store, worker = sys.argv[1], int(sys.argv[2])
    qexp.init(uri=store)
    with R.start(experiment_name="shared", recorder_name=f"worker-{worker}"):
        for step in range(500):
            R.log_metrics(step=step, value=worker * 1000 + step)
        tmp = os.path.join(store + "-tmp", str(worker))
        os.makedirs(tmp, exist_ok=True)
        for i in range(20):
            p = os.path.join(tmp, f"file{i}.txt")
            with open(p, "w") as f:
                f.write(f"{worker}:{i}" * 100)
            R.log_artifact(p, artifact_path="files")
        R.log_params(worker=worker)
""")


def test_eight_processes_share_one_experiment(tmp_path):
    store = str(tmp_path / "store")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, store, str(w)], stderr=subprocess.PIPE, text=True)
             for w in range(8)]
    errs = [(p.wait(180), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in errs), errs
    qexp.init(uri=store)
    exps = R.list_experiments()
    assert list(exps) == ["shared"]  # exactly one experiment despite the race
    recs = R.list_recorders(experiment_name="shared")
    assert len(recs) == 8
    seen = set()
    for rec in recs.values():
        w = int(rec.list_params()["worker"])
        seen.add(w)
        assert rec.status == "FINISHED"
        hist = rec.get_metric_history("value")
        assert list(hist["step"]) == list(range(500))
        assert list(hist["value"]) == [w * 1000 + s for s in range(500)]
        files = rec.list_artifacts("files")
        assert len(files) == 20
        for i in range(20):
            assert rec.read_artifact(f"files/file{i}.txt").decode() == f"{w}:{i}" * 100
    assert seen == set(range(8))
    df = R.search_records(filter_string="metrics.value >= 7000")
    assert len(df) == 1 and df["params.worker"].iloc[0] == "7"


def test_layout_is_plain_readable_files(tmp_path):
    store = tmp_path / "store"
    qexp.init(uri=str(store))
    with R.start(experiment_name="layout", recorder_name="r"):
        R.log_params(a=1)
        R.log_metrics(step=3, m=0.5)
        R.set_tags(t="x")
        rec = R.get_recorder()
    exp_dir = store / rec.experiment_id
    assert json.loads((exp_dir / "meta.json").read_text())["name"] == "layout"
    run_dir = exp_dir / rec.id
    params = [json.loads(x) for x in (run_dir / "params.jsonl").read_text().splitlines()]
    assert [(p["key"], p["value"]) for p in params] == [("a", "1")]
    tags = [json.loads(x) for x in (run_dir / "tags.jsonl").read_text().splitlines()]
    assert {"key": "t", "value": "x"} in tags
    line = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert line["key"] == "m" and line["value"] == 0.5 and line["step"] == 3
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "FINISHED" and meta["run_name"] == "r"
    assert not list(store.rglob(".tmp-*"))  # no temp files left behind


def test_index_is_rebuilt_when_lost(tmp_path):
    store = str(tmp_path / "store")
    qexp.init(uri=store)
    for i in range(3):
        with R.start(experiment_name="idx", recorder_name=f"r{i}"):
            R.log_metrics(IC=float(i))
    R.exp_manager.store.index.close()
    for suffix in ("", "-wal", "-shm"):
        p = os.path.join(store, ".qexp", "index.sqlite" + suffix)
        if os.path.exists(p):
            os.unlink(p)
    qexp.init(uri=store)
    df = R.search_records(filter_string="metrics.IC >= 1")
    assert sorted(df["metrics.IC"]) == [1.0, 2.0]


def test_corrupt_index_is_rebuilt(tmp_path):
    store = str(tmp_path / "store")
    qexp.init(uri=store)
    with R.start(experiment_name="idx"):
        R.log_metrics(IC=0.5)
    R.exp_manager.store.index.close()
    for suffix in ("-wal", "-shm"):
        p = os.path.join(store, ".qexp", "index.sqlite" + suffix)
        if os.path.exists(p):
            os.unlink(p)
    with open(os.path.join(store, ".qexp", "index.sqlite"), "wb") as f:
        f.write(b"this is not a database" * 100)
    qexp.init(uri=store)
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        df = R.search_records()
    assert df["metrics.IC"].tolist() == [0.5]


def test_corrupted_run_meta_is_named_and_others_still_listed(tmp_path):
    store = str(tmp_path / "store")
    qexp.init(uri=store)
    ids = []
    for i in range(3):
        with R.start(experiment_name="c", recorder_name=f"r{i}"):
            ids.append(R.get_recorder().id)
    broken = R.get_recorder(recorder_id=ids[1])
    with open(os.path.join(broken.get_local_dir(), "meta.json"), "w") as f:
        f.write("{not json")
    with pytest.warns(RuntimeWarning, match=ids[1]):
        n = R.exp_manager.rebuild_index()
    assert n == 2
    assert set(R.list_recorders(experiment_name="c")) == {ids[0], ids[2]}
    with pytest.raises(QexpError, match="meta.json"):
        R.get_recorder(recorder_id=ids[1], experiment_name="c")


def test_corrupted_experiment_meta_is_skipped_with_warning(tmp_path):
    store = tmp_path / "store"
    qexp.init(uri=str(store))
    R.get_exp(experiment_name="good")
    bad = R.get_exp(experiment_name="bad")
    (store / bad.id / "meta.json").write_text("garbage")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert list(R.list_experiments()) == ["good"]


def test_lock_lives_inside_the_store_whatever_the_cwd(tmp_path, monkeypatch):
    store = tmp_path / "abs" / "store"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    qexp.init(uri="file://" + str(store))
    R.get_exp(experiment_name="x")
    assert (store / ".qexp" / "lock").exists()
    assert list(elsewhere.iterdir()) == []  # no stray CWD-relative lock tree (Qlib #2129)


def test_relative_uri_is_resolved_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    qexp.init(uri="runs")
    assert R.get_uri() == str(tmp_path / "runs")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    with R.start(experiment_name="rel"):
        pass
    assert (tmp_path / "runs").is_dir() and not (tmp_path / "sub" / "runs").exists()


def test_nan_metric_is_kept(tmp_path):
    qexp.init(uri=str(tmp_path / "s"))
    with R.start(experiment_name="nan"):
        R.log_metrics(a=float("nan"), b=float("inf"), c=1.0)
        rec = R.get_recorder()
    m = R.get_recorder(recorder_id=rec.id).list_metrics()
    assert m["c"] == 1.0 and m["b"] == float("inf") and m["a"] != m["a"]
    df = R.search_records(filter_string="metrics.c = 1")
    assert len(df) == 1
