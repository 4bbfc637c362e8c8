"""``process://N``: results, errors, the caller's settings in the workers, resources, a killed worker's run
FAILED and its call retried, Ctrl-C on the driver."""
from __future__ import annotations

import os
import time

import pytest

import qexp
from qexp import R
from qexp.ext import ConfigError, QexpError, UnknownSchemeError, WorkerDied, get_executor

from . import calls


@pytest.fixture(scope="module")
def pool():
    from .conftest import load_executor_plugins
    load_executor_plugins()
    ex = get_executor("process://2")
    yield ex
    ex.shutdown()


def runs(store, experiment="calls"):
    qexp.init(uri=str(store))
    exp = R.get_exp(experiment_name=experiment, create=False)
    return {rid: R.get_recorder(recorder_id=rid) for rid in R.search_records([exp.id])["run_id"]}


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(UnknownSchemeError) as err:
        get_executor("ray://127.0.0.1:10001")
    msg = str(err.value)
    for scheme in ("'local:'", "'process:'", "'dask:'", "'dask+local:'"):
        assert scheme in msg, msg


def test_bad_process_uris_say_what_is_wrong():
    with pytest.raises(QexpError, match="integer"):
        get_executor("process://two")
    with pytest.raises(QexpError, match="unknown option.*workers"):
        get_executor("process://2?workers=3")
    for bad in ("0", "-1", "x"):  # 0 was ignored silently and -1 retired a worker after every call
        with pytest.raises(ConfigError, match=r"max_tasks_per_child must be a whole number >= 1.*" + bad):
            get_executor(f"process://2?max_tasks_per_child={bad}")
    with pytest.raises(ConfigError, match="max_tasks_per_child"):
        get_executor("process://2", max_tasks_per_child=0)
    with get_executor("process://2?max_tasks_per_child=3") as ex:
        assert ex._mtpc == 3


@pytest.mark.parametrize("uri", ["process://2?resources=GPU:x", "process://2?resources=GPU:-1",
                                 "dask+local://1?resources=GPU:x", "dask+local://1?resources=:2"])
def test_bad_resources_are_one_clear_error(uri):
    pytest.importorskip("distributed")
    with pytest.raises(ConfigError, match=r"resource .* must be NAME:AMOUNT with a number >= 0, e\.g\. GPU:2"):
        get_executor(uri)


def test_resources_parse_the_same_for_every_executor():
    from qexp.ext import parse_resources
    assert parse_resources("GPU:2, MEM=64,TPU", "x") == {"GPU": 2.0, "MEM": 64.0, "TPU": 1.0}
    assert parse_resources("", "x") == {}


def test_results_errors_and_the_remote_traceback(pool):
    assert pool.max_workers == 2
    futures = [pool.submit(calls.square, i) for i in range(6)]
    assert sorted(f.result() for f in pool.as_completed(futures)) == [i * i for i in range(6)]
    bad = pool.submit(calls.fail, "bad value 42")
    with pytest.raises(ValueError, match="bad value 42") as err:
        bad.result()
    assert "calls.py" in str(err.value.__cause__)  # where it happened in the worker


def test_workers_run_under_the_callers_settings(pool, tmp_path, tiny_market):
    qexp.init(uri=str(tmp_path / "store"), provider_uri=str(tiny_market), region="us")
    pid, settings = pool.submit(calls.whoami).result()
    assert pid != os.getpid()
    assert settings == qexp.get_settings()
    rid = pool.submit(calls.log_run, "a", 3.0).result()
    assert runs(tmp_path / "store")[rid].list_metrics() == {"v": 3.0}


def test_a_run_left_open_is_ended_by_the_worker(pool, tmp_path):
    qexp.init(uri=str(tmp_path / "store"))
    rid = pool.submit(calls.leave_open, "open").result()
    assert runs(tmp_path / "store")[rid].status == "FINISHED"


def test_killed_worker_fails_its_run_and_the_call_is_retried(pool, tmp_path):
    qexp.init(uri=str(tmp_path / "store"))
    (tmp_path / "meet").mkdir()
    # the pool's two workers, each named by a call that waits for the other
    workers = {f.result() for f in [pool.submit(calls.meet, str(tmp_path / "meet"), 2) for _ in range(2)]}
    assert len(workers) == 2
    marker = tmp_path / "died"
    served = pool.submit(calls.die_once, str(marker), "victim", retries=1, key="victim").result()
    dead = marker.read_text()
    assert dead in workers
    # the retry went to the other worker that was there all along, not to the dead one's replacement
    assert served == (workers - {dead}).pop()
    found = sorted(runs(tmp_path / "store").values(), key=lambda r: r.status)
    assert [r.status for r in found] == ["FAILED", "FINISHED"]  # the retry is a new run; the failed one is kept
    reason = found[0].list_tags()["qexp.failure_reason"]
    assert f"worker process {dead} died (killed by SIGKILL)" in reason and "'victim'" in reason and "retried" in reason
    assert found[1].list_metrics() == {"v": 2.0}


def test_a_call_whose_worker_always_dies_gives_up_after_its_retries(pool, tmp_path):
    qexp.init(uri=str(tmp_path / "store"))
    with pytest.raises(WorkerDied, match="tried 2 time"):
        pool.submit(calls.always_die, "doomed", retries=1).result()
    found = runs(tmp_path / "store")
    assert len(found) == 2 and all(r.status == "FAILED" for r in found.values())
    assert all("died" in r.list_tags()["qexp.failure_reason"] for r in found.values())
    assert pool.submit(calls.square, 3).result() == 9  # the pool replaced its dead workers


def test_resources_limit_what_runs_at_once(tmp_path):
    with pytest.raises(QexpError, match="no worker offers the resource 'GPU'"):
        get_executor("process://2").submit(calls.noop, resources={"GPU": 1})
    log = tmp_path / "holders"
    with get_executor("process://2?resources=GPU:1") as ex:
        with pytest.raises(QexpError, match="pool has GPU=1"):
            ex.submit(calls.noop, resources={"GPU": 2})
        for f in [ex.submit(calls.hold, str(log), 0.3, resources={"GPU": 1}) for _ in range(3)]:
            f.result()
    events = [line.split() for line in log.read_text().splitlines()]
    assert [e[0] for e in events] == ["start", "end"] * 3  # never two holders at once


def test_ctrl_c_cancels_queued_calls_and_fails_running_runs(tmp_path):
    qexp.init(uri=str(tmp_path / "store"))
    markers = [tmp_path / f"m{i}" for i in range(4)]
    ex = get_executor("process://2")
    futures = []
    with pytest.raises(KeyboardInterrupt):
        with ex:
            futures = [ex.submit(calls.busy_run, f"r{i}", str(m), 60, key=f"r{i}") for i, m in enumerate(markers)]
            deadline = time.time() + 60
            while sum(m.exists() for m in markers) < 2 and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(0.3)
            raise KeyboardInterrupt
    assert sum(m.exists() for m in markers) == 2  # the queued two never started
    assert sum(f.cancelled() for f in futures) == 2
    found = runs(tmp_path / "store")
    assert len(found) == 2
    for r in found.values():
        assert r.status == "FAILED"
        assert r.list_tags()["qexp.failure_reason"].startswith("cancelled: the driver stopped (Ctrl-C)")


def test_the_default_worker_count_is_the_usable_cores():
    from qexp.ext import usable_cores

    def check():
        for uri in ("process://", "process:", "process"):
            ex = get_executor(uri)  # workers start on the first submit: none are started here
            try:
                assert ex.max_workers == usable_cores() and ex.uri == f"process://{usable_cores()}", uri
            finally:
                ex.shutdown()

    check()
    mask = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if len(mask) > 1:  # on fewer CPUs than the machine has (a container's quota, taskset): those, not cpu_count
        os.sched_setaffinity(0, {min(mask)})
        try:
            assert usable_cores() == 1 < (os.cpu_count() or 1)
            check()
        finally:
            os.sched_setaffinity(0, mask)


def test_local_executor_runs_in_order_in_this_thread(tmp_path):
    qexp.init(uri=str(tmp_path / "store"))
    with get_executor("local") as ex:
        futures = [ex.submit(calls.whoami) for _ in range(2)]
        assert [f.result()[0] for f in futures] == [os.getpid()] * 2
