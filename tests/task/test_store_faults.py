"""What goes wrong between workers and their task store: a lease lost while a worker stalled, a dropped
PostgreSQL connection, workers that start before any driver made the table, drivers inserting the same tasks
at once."""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time

import pytest

from qexp.task import TaskManager, run_task
from qexp.task.store import TaskStoreError

from . import helpers
from .stores import _pg_admin

W, R_, D = TaskManager.STATUS_WAITING, TaskManager.STATUS_RUNNING, TaskManager.STATUS_DONE


def _wait_for(path, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_worker_that_lost_its_lease_cannot_commit(store_uri, tmp_path):
    tm = TaskManager("stale", uri=store_uri)
    (tid,) = tm.create_task([{"n": 1}])
    flag, out = tmp_path / "fetched", tmp_path / "outcome"
    a = multiprocessing.get_context("fork").Process(target=helpers.stall_then_commit,
                                                    args=("stale", store_uri, str(flag), str(out)))
    a.start()
    try:
        _wait_for(flag)
        os.kill(a.pid, signal.SIGSTOP)  # A stalls (swapping, a GC pause, a VM migration) past its 1 s lease
        time.sleep(2.0)
        b = TaskManager("stale", uri=store_uri, lease_s=30)
        tb = b.fetch_task()
        assert tb is not None and tb["_id"] == tid and tb["attempts"] == 2
    finally:
        os.kill(a.pid, signal.SIGCONT)
    a.join(30)
    assert out.read_text().startswith("lost: lease lost, result dropped: task " + tid)
    row = tm.re_query(tid)
    assert row["status"] == R_ and row["res"] is None  # B's run is untouched
    b.commit_task_res(tb, "B-result")
    assert tm.re_query(tid)["res"] == "B-result" and tm.task_stat() == {D: 1}


def test_run_task_goes_on_after_a_lost_lease(sqlite_uri, caplog):
    tm = TaskManager("pool", uri=sqlite_uri)
    tm.create_task([{"i": 0}])
    other = TaskManager("pool", uri=sqlite_uri)
    calls = []

    def work(task_def):
        calls.append(task_def["i"])
        if len(calls) == 1:
            other.reset_waiting()  # an operator puts the running task back meanwhile
        return len(calls)

    with caplog.at_level(logging.WARNING, logger="qexp.tasks"):
        assert run_task(work, tm) is True
    assert calls == [0, 0] and [t["res"] for t in tm.query()] == [2]
    assert "lease lost, result dropped" in caplog.text


def _terminate_sessions(dbname: str) -> int:
    admin = _pg_admin()
    try:
        cur = admin.cursor()
        cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()", (dbname,))
        return int(cur.fetchone()[0])
    finally:
        admin.close()


def test_postgresql_reconnects_after_the_server_ends_its_sessions(pg_uri, caplog):
    tm = TaskManager("lost", uri=pg_uri, lease_s=1.5)
    ids = tm.create_task([{"n": 1}, {"n": 2}])
    task = tm.fetch_task()
    time.sleep(0.7)  # the heartbeat thread has its own connection now
    assert _terminate_sessions(pg_uri.rsplit("/", 1)[1]) >= 2
    with caplog.at_level(logging.WARNING, logger="qexp.tasks"):
        assert tm.task_stat() == {W: 1, R_: 1}
        time.sleep(2.5)  # past the lease: only a heartbeat that reconnected keeps it
        assert tm.task_stat() == {W: 1, R_: 1}
        assert "connection was lost" in caplog.text
    other = TaskManager("lost", uri=pg_uri).fetch_task()
    assert other["_id"] == ids[1]
    tm.commit_task_res(task, "done")
    assert tm.re_query(ids[0])["res"] == "done"


def _table_exists(dbname: str) -> bool:
    import psycopg2
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=dbname)
    try:
        cur = conn.cursor()
        cur.execute("SELECT to_regclass('qexp_tasks') IS NOT NULL")
        return bool(cur.fetchone()[0])
    finally:
        conn.close()


def test_a_worker_before_any_driver_on_postgresql_finds_nothing_and_creates_nothing(pg_uri):
    from click.testing import CliRunner

    from qexp.cli.main import cli
    tm = TaskManager("early", uri=pg_uri)
    assert tm.fetch_task() is None and tm.task_stat() == {} and list(tm.query()) == []
    assert run_task(helpers.noop, tm) is False
    assert tm.store.renew(["1"], tm.owner, 5) == 0
    assert tm.store.finish("early", "1", D, None, None, owner=tm.owner) is False
    assert TaskManager.list(uri=pg_uri) == [] and tm.remove() == 0 and tm.reset_waiting() == 0
    result = CliRunner().invoke(cli, ["worker", "--pool", "early", "--tasks-uri", pg_uri], catch_exceptions=False)
    assert result.exit_code == 0 and "0 task(s)" in result.output, result.output
    assert not _table_exists(pg_uri.rsplit("/", 1)[1])


def test_postgresql_errors_name_the_store_without_its_password(pg_uri):
    host, db = pg_uri.split("@", 1)[1].rsplit("/", 1)
    uri = f"postgresql://postgres:secret@{host}/{db}?options=-c%20default_transaction_read_only%3Don"
    with pytest.raises(TaskStoreError) as err:
        TaskManager("ro", uri=uri).create_task([{"n": 1}])
    text = str(err.value)
    assert "postgresql://postgres:***@" in text and "secret" not in text and "read-only" in text


def test_three_drivers_inserting_the_same_300_tasks_create_each_once(store_uri, tmp_path):
    TaskManager("dedup", uri=store_uri).create_task([{"warm": 1}])  # the table exists before the race
    ctx = multiprocessing.get_context("fork")
    for rnd in range(2):
        pool = f"dedup{rnd}"
        start = time.time() + 1.5
        outs = [tmp_path / f"r{rnd}p{k}" for k in range(3)]
        procs = [ctx.Process(target=helpers.insert_same_tasks, args=(pool, store_uri, 300, start, str(o)))
                 for o in outs]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        created = [int(o.read_text()) for o in outs]
        # each process created task 0 in its warm-up or saw it: only tasks 1..299 race
        assert sum(created) == 299, created
        assert TaskManager(pool, uri=store_uri).task_stat() == {W: 300}
