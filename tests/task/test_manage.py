"""TaskManager on the SQLite and PostgreSQL task stores: Qlib's API, atomic fetch, leases, bad input."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pandas as pd
import pytest

from qexp.exceptions import QexpError, UnknownSchemeError
from qexp.task import TaskManager, run_task
from qexp.task.store import TaskStoreError, default_tasks_uri

from . import helpers

W, R_, PD, D = TaskManager.STATUS_WAITING, TaskManager.STATUS_RUNNING, TaskManager.STATUS_PART_DONE, \
    TaskManager.STATUS_DONE


def tasks(n, **extra):
    return [{"model": {"class": "M", "kwargs": {"i": i}}, "i": i, **extra} for i in range(n)]


def test_create_task_deduplicates_by_content(store_uri):
    tm = TaskManager("pool", uri=store_uri)
    ids = tm.create_task(tasks(3) + tasks(1))  # the 4th equals the 1st
    assert len(set(ids)) == 3 and ids[3] == ids[0]
    assert tm.create_task(tasks(4)) == ids[:3] + [tm.create_task(tasks(4))[3]]
    assert tm.task_stat() == {W: 4}
    # the same content with dates gives the same task; other pools are separate
    dated = {"seg": (pd.Timestamp("2020-01-02"), None)}
    assert tm.create_task([dated]) == tm.create_task([dict(dated)])
    assert TaskManager("other", uri=store_uri).create_task(tasks(1)) != ids[:1]
    assert tm.create_task(tasks(9), dry_run=True) == [] and tm.task_stat() == {W: 5}
    assert sorted(TaskManager.list(uri=store_uri)) == ["other", "pool"]


def test_document_shape_and_lifecycle(store_uri):
    tm = TaskManager("pool", uri=store_uri)
    ids = tm.create_task(tasks(3))
    tm.prioritize({"_id": ids[2]}, 5)
    task = tm.fetch_task()
    assert task["_id"] == ids[2] and task["status"] == R_ and task["def"] == tasks(3)[2]
    assert task["filter"]["model"]["kwargs"]["i"] == 2 and task["res"] is None and task["attempts"] == 1
    tm.commit_task_res(task, {"score": 1.5}, status=PD)
    again = tm.re_query(ids[2])
    assert again["status"] == PD and again["res"] == {"score": 1.5}
    assert tm.task_stat() == {W: 2, PD: 1}
    # part_done tasks are fetched from part_done, and the Mongo query subset selects
    assert tm.fetch_task(status=PD)["_id"] == ids[2]
    assert tm.fetch_task(query={"filter.model.kwargs.i": 1})["_id"] == ids[1]
    assert [t["_id"] for t in tm.query({"_id": {"$in": [ids[0], ids[1]]}})] == ids[:2]
    assert [t["_id"] for t in tm.query({"filter.i": {"$nin": [0, 1]}})] == [ids[2]]
    assert [t["_id"] for t in tm.query({"status": R_})] == ids[1:]
    assert tm.reset_waiting() == 2 and tm.task_stat() == {W: 3}
    assert tm.reset_status({"_id": ids[0]}, D) == 1 and tm.task_stat({"status": {"$ne": D}}) == {W: 2}
    assert tm.remove({"filter.i": 2}) == 1 and tm.task_stat() == {W: 1, D: 1}
    with pytest.raises(QexpError, match="no task with _id"):
        tm.re_query("999999")
    tm.remove()
    assert tm.task_stat() == {} and tm.fetch_task() is None


def test_safe_fetch_task_returns_the_task(store_uri):
    tm = TaskManager("pool", uri=store_uri)
    (tid,) = tm.create_task(tasks(1))
    with pytest.raises(ZeroDivisionError):
        with tm.safe_fetch_task() as task:
            assert tm.task_stat() == {R_: 1}
            raise ZeroDivisionError("in the task")
    assert tm.task_stat() == {W: 1}
    with pytest.raises(KeyboardInterrupt):
        with tm.safe_fetch_task() as task:
            raise KeyboardInterrupt
    assert tm.task_stat() == {W: 1} and tm.re_query(tid)["attempts"] == 2
    with tm.safe_fetch_task() as task:
        tm.commit_task_res(task, 7)
    with tm.safe_fetch_task() as task:
        assert task is None  # nothing waits
    assert tm.re_query(tid)["res"] == 7


def test_run_task_statuses(store_uri):
    tm = TaskManager("pool", uri=store_uri)
    tm.create_task(tasks(2))
    assert run_task(helpers.noop, tm, after_status=PD) is True
    assert tm.task_stat() == {PD: 2}
    # part_done tasks get their result as the parameter
    assert run_task(lambda res: res["i"] * 10, tm, before_status=PD) is True
    assert sorted(t["res"] for t in tm.query()) == [0, 10]
    assert run_task(helpers.noop, tm) is False
    with pytest.raises(ValueError):
        run_task(helpers.noop, tm, before_status=D)


def test_a_failing_task_goes_back_and_is_retried(store_uri):
    tm = TaskManager("pool", uri=store_uri)
    tm.create_task(tasks(1))
    calls = []

    def flaky(task_def):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return "ok"

    with pytest.raises(RuntimeError):
        run_task(flaky, tm)
    assert tm.task_stat() == {W: 1}
    assert run_task(flaky, tm) and [t["res"] for t in tm.query()] == ["ok"]


def test_eight_processes_run_500_tasks_exactly_once(store_uri, tmp_path):
    tm = TaskManager("many", uri=store_uri)
    ids = tm.create_task([{"i": i} for i in range(500)])
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=helpers.pool_worker, args=("many", store_uri, str(tmp_path / f"w{k}")))
             for k in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ran = [line for k in range(8) for line in (tmp_path / f"w{k}").read_text().split("\n") if line]
    assert sorted(ran) == sorted(ids)  # every task once, none twice, none lost
    assert tm.task_stat() == {D: 500}
    done = list(tm.query())
    assert all(t["attempts"] == 1 for t in done)
    assert sorted(t["res"]["i"] for t in done) == list(range(500))
    assert len({t["res"]["pid"] for t in done}) > 1  # the work was shared


def test_a_killed_workers_task_runs_again_after_its_lease(store_uri, tmp_path):
    tm = TaskManager("crash", uri=store_uri, lease_s=1.0)
    (tid,) = tm.create_task([{"i": 1}])
    flag = tmp_path / "fetched"
    proc = multiprocessing.get_context("fork").Process(target=helpers.hang_worker,
                                                       args=("crash", store_uri, 1.0, str(flag)))
    proc.start()
    deadline = time.monotonic() + 30
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.read_text() == tid and tm.task_stat() == {R_: 1}
    # alive, its heartbeat holds the lease past lease_s
    time.sleep(1.5)
    assert tm.fetch_task() is None and tm.task_stat() == {R_: 1}
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    t0 = time.monotonic()
    while not run_task(helpers.noop, tm):
        assert time.monotonic() - t0 < 10, "the task never came back"
        time.sleep(0.1)
    task = tm.re_query(tid)
    assert task["status"] == D and task["attempts"] == 2 and task["res"]["pid"] == os.getpid()


def test_heartbeat_keeps_a_long_task(store_uri):
    tm = TaskManager("long", uri=store_uri, lease_s=0.6)
    tm.create_task([{"i": 0}])
    other = TaskManager("long", uri=store_uri, lease_s=0.6)
    with tm.safe_fetch_task() as task:
        time.sleep(1.5)  # 2.5 leases
        assert other.fetch_task() is None
        tm.commit_task_res(task, "done")
    assert tm.task_stat() == {D: 1}


def test_reading_never_creates_a_store(tmp_path):
    uri = "sqlite:///" + str(tmp_path / "nowhere" / "tasks.sqlite")
    tm = TaskManager("pool", uri=uri)
    assert tm.task_stat() == {} and list(tm.query()) == [] and tm.fetch_task() is None
    assert TaskManager.list(uri=uri) == [] and tm.remove() == 0 and tm.reset_waiting() == 0
    tm.wait()
    assert not (tmp_path / "nowhere").exists()


def test_nothing_half_written(store_uri):
    tm = TaskManager("pool", uri=store_uri)
    tm.create_task(tasks(1))
    with pytest.raises(QexpError, match="cannot be pickled"):
        tm.create_task(tasks(3) + [{"f": lambda: 1}])
    assert tm.task_stat() == {W: 1}


def test_unknown_scheme_lists_known_ones():
    with pytest.raises(UnknownSchemeError, match=r"task store URI scheme 'mongodb'.*Known schemes:.*'postgresql:'.*'sqlite:'"):
        TaskManager("pool", uri="mongodb://localhost:27017/db").task_stat()


def test_unreachable_postgresql_names_the_uri():
    uri = "postgresql://postgres:secret@127.0.0.1:1/nowhere"
    with pytest.raises(TaskStoreError, match=r"cannot reach the task store postgresql://postgres:\*\*\*@127\.0\.0\.1:1/nowhere"):
        TaskManager("pool", uri=uri).create_task(tasks(1))


def test_bad_queries_and_pool_names(sqlite_uri):
    tm = TaskManager("pool", uri=sqlite_uri)
    with pytest.raises(TaskStoreError, match="unsupported key 'def'"):
        tm.task_stat({"def": 1})
    with pytest.raises(TaskStoreError, match=r"unsupported operator '\$regex'"):
        tm.task_stat({"status": {"$regex": "w"}})
    with pytest.raises(QexpError, match="non-empty name"):
        TaskManager("", uri=sqlite_uri)


def test_default_location(tmp_path, monkeypatch):
    monkeypatch.delenv("QEXP_TASKS_URI", raising=False)
    store = tmp_path / "runs"
    assert default_tasks_uri(str(store)) == "sqlite:///" + str(store / ".qexp" / "tasks.sqlite")
    monkeypatch.setenv("QEXP_HOME", str(tmp_path / "home"))
    other = default_tasks_uri("http://tracking.example:5000")
    assert other.startswith("sqlite:///" + str(tmp_path / "home" / "tasks")) and other.endswith(".sqlite")
    assert default_tasks_uri("http://tracking.example:5000") == other != default_tasks_uri("http://other:5000")
    monkeypatch.setenv("QEXP_TASKS_URI", "postgresql://u@h:1/d")
    assert default_tasks_uri(str(store)) == "postgresql://u@h:1/d"


def test_recorder_results_are_stored_as_ids(store_uri, tmp_path):
    import qexp
    from qexp import R
    qexp.init(uri=str(tmp_path / "runs"))
    with R.start(experiment_name="e"):
        rec = R.get_recorder()
    tm = TaskManager("recs", uri=store_uri)
    (tid,) = tm.create_task([{"i": 0}])
    task = tm.fetch_task()
    tm.commit_task_res(task, rec)
    raw = next(tm.query(decode=False))["res"]
    assert raw["recorder_id"] == rec.id and set(raw) == {"recorder_id", "experiment_id", "uri"}
    back = tm.re_query(tid)["res"]
    assert back.id == rec.id and back.status == "FINISHED"
