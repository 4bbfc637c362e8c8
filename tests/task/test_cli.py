"""``qexp tasks ...`` and ``qexp worker``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import qexp
from qexp import R
from qexp.cli.main import get_cli
from qexp.task import TaskManager

from .tasks import small_task

REPO = Path(__file__).resolve().parents[2]


def cli(*args):
    return CliRunner().invoke(get_cli(), list(args), catch_exceptions=False)


def _cli_split(*args, env=None):
    """``qexp ARGS`` with stdout and stderr apart."""
    return CliRunner().invoke(get_cli(), list(args), env=env)


READ_COMMANDS = [["tasks", "list"], ["tasks", "list", "--pool", "p"], ["tasks", "stat", "--pool", "p"],
                 ["tasks", "wait", "--pool", "p"], ["tasks", "reset", "--pool", "p"]]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_reading_a_missing_sqlite_store_is_an_error_and_creates_nothing(args, tmp_path):
    store = tmp_path / "runs"
    result = _cli_split(*args, "--uri", str(store))
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: no task store at sqlite:///")
    assert str(store / ".qexp" / "tasks.sqlite") in err and "came from beside the tracking store" in err
    assert "--uri" in err and result.stdout == "" and "Traceback" not in err
    assert not store.exists()
    typo = "sqlite:///" + str(tmp_path / "tasks" / "typo.sqlite")
    result = _cli_split(*args, "--tasks-uri", typo)
    assert result.exit_code == 1 and "came from --tasks-uri" in result.stderr and result.stdout == ""
    result = _cli_split(*args, env={"QEXP_TASKS_URI": typo})
    assert result.exit_code == 1 and "came from $QEXP_TASKS_URI" in result.stderr
    assert not (tmp_path / "tasks").exists()


def test_reading_a_postgres_database_without_the_table_is_an_error(pg_uri):
    for args in READ_COMMANDS:
        result = _cli_split(*args, "--tasks-uri", pg_uri)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.strip().startswith(f"Error: no task store at {pg_uri}") and result.stdout == ""
    from qexp.task.store import open_task_store
    assert not open_task_store(pg_uri).exists()  # the reads made no table
    TaskManager("p", uri=pg_uri).create_task([small_task()])
    listed = _cli_split("tasks", "list", "--tasks-uri", pg_uri)
    assert listed.exit_code == 0 and "p" in listed.stdout and pg_uri not in listed.stdout
    assert listed.stderr.strip() == f"task store: {pg_uri} (from --tasks-uri)"


def test_a_listing_names_its_task_store_on_stderr_and_json_stays_pure(tmp_path):
    store = tmp_path / "runs"
    uri = "sqlite:///" + str(store / ".qexp" / "tasks.sqlite")
    TaskManager("p", uri=uri).create_task([small_task()])
    for args in (["tasks", "list"], ["tasks", "list", "--pool", "p"], ["tasks", "stat", "--pool", "p"]):
        result = _cli_split(*args, "--uri", str(store), "--json")
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)
        assert result.stderr.strip() == f"task store: {uri} (from beside the tracking store)"
        table = _cli_split(*args, "--uri", str(store))
        assert uri not in table.stdout and table.stderr.count("task store: ") == 1


def test_tasks_commands(tmp_path):
    store = tmp_path / "runs"
    uri = "sqlite:///" + str(store / ".qexp" / "tasks.sqlite")
    tm = TaskManager("p", uri=uri)
    ids = tm.create_task([small_task(test=(f"2019-0{m}-01", f"2019-0{m}-28")) for m in (4, 5, 6)])
    tm.fetch_task()
    listed = cli("tasks", "list", "--uri", str(store))
    assert listed.exit_code == 0 and "p" in listed.output
    shown = cli("tasks", "list", "--pool", "p", "--uri", str(store), "--json")
    rows = json.loads(shown.stdout)
    assert [r["_id"] for r in rows] == ids and [r["status"] for r in rows] == ["running", "waiting", "waiting"]
    table = cli("tasks", "list", "--pool", "p", "--status", "waiting", "--tasks-uri", uri)
    assert "LinearModel test 2019-05-01..2019-05-28" in table.output and "2019-04-01" not in table.output
    stat = json.loads(cli("tasks", "stat", "--pool", "p", "--uri", str(store), "--json").stdout)
    assert stat == {"waiting": 2, "running": 1, "part_done": 0, "done": 0}
    reset = cli("tasks", "reset", "--pool", "p", "--uri", str(store))
    assert "1 task(s) of pool p set from running to waiting" in reset.output
    waited = cli("tasks", "wait", "--pool", "p", "--uri", str(store), "--timeout", "0.3")
    assert waited.exit_code == 1 and "3 task(s) of pool 'p' still undone" in waited.output
    tm.reset_status({}, "done")
    assert "3 done" in cli("tasks", "wait", "--pool", "p", "--uri", str(store)).output


def test_unknown_task_store_scheme():
    result = cli("tasks", "stat", "--pool", "p", "--tasks-uri", "mongodb://localhost:27017/x")
    assert result.exit_code == 1
    assert "Unknown task store URI scheme 'mongodb'" in result.output and "'sqlite:'" in result.output


def _worker(store, market, *extra):
    return subprocess.Popen([sys.executable, "-m", "qexp", "worker", "--pool", "wp", "--uri", str(store),
                             "--provider-uri", str(market), *extra], cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_workers_share_a_pool(tmp_path, tiny_market):
    store = tmp_path / "runs"
    qexp.init(uri=str(store), provider_uri=str(tiny_market))
    tm = TaskManager("wp")
    tm.create_task([small_task(test=(f"2019-0{m}-01", f"2019-0{m}-28"), alpha=float(m)) for m in (3, 4, 5, 6)])
    workers = [_worker(store, tiny_market) for _ in range(2)]
    outs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outs
    counts = [int(o.rsplit("worker done: ", 1)[1].split(" ")[0]) for o in outs]
    assert sum(counts) == 4
    assert tm.task_stat() == {"done": 4}
    assert len(R.list_recorders(experiment_name="wp")) == 4
    assert {t["res"].list_params()["model.kwargs.alpha"] for t in tm.query()} == {"3.0", "4.0", "5.0", "6.0"}


@pytest.mark.slow
def test_ctrl_c_returns_the_current_task(tmp_path, tiny_market):
    store = tmp_path / "runs"
    uri = "sqlite:///" + str(store / ".qexp" / "tasks.sqlite")
    tm = TaskManager("wp", uri=uri)
    task = small_task()
    task["model"] = {"class": "Sleepy", "module_path": "tests.task.helpers", "kwargs": {"seconds": 120}}
    (tid,) = tm.create_task([task])
    worker = _worker(store, tiny_market)
    deadline = time.monotonic() + 120
    while tm.task_stat() != {"running": 1}:
        assert time.monotonic() < deadline and worker.poll() is None, worker.communicate()[0]
        time.sleep(0.2)
    time.sleep(1.0)  # inside the fit
    worker.send_signal(signal.SIGINT)
    out = worker.communicate(timeout=60)[0]
    assert worker.returncode == 130, out
    assert "the current task went back to waiting" in out
    assert tm.task_stat() == {"waiting": 1} and tm.re_query(tid)["attempts"] == 1
    assert os.path.exists(str(store / ".qexp" / "tasks.sqlite"))
