"""Executors on Dask against a real scheduler and two workers started as separate processes on 127.0.0.1."""
from __future__ import annotations

import os
import subprocess
import time

import pandas as pd
import pytest

import qexp
from qexp import R
from qexp.ext import QexpError, get_executor
from qexp.multirun import FINISHED, run_many

from . import calls
from .helpers import DaskProcesses, child_env, free_port, tiny_config, write_config

pytest.importorskip("distributed")


def runs(store, experiment="calls"):
    qexp.init(uri=str(store))
    exp = R.get_exp(experiment_name=experiment, create=False)
    return {rid: R.get_recorder(recorder_id=rid) for rid in R.search_records([exp.id])["run_id"]}


def dask_uri(cluster) -> str:
    return f"dask://127.0.0.1:{cluster.port}?timeout=30"


def test_unreachable_scheduler_fails_within_seconds_naming_the_address():
    port = free_port()  # nothing listens there
    t0 = time.perf_counter()
    with pytest.raises(QexpError) as err:
        get_executor(f"dask://127.0.0.1:{port}")
    took = time.perf_counter() - t0
    assert f"tcp://127.0.0.1:{port}" in str(err.value) and "dask scheduler" in str(err.value)
    assert took < 15, took  # the default wait is 5 s


def test_calls_errors_and_settings_on_the_cluster(dask_cluster, tmp_path):
    qexp.init(uri=str(tmp_path / "store"), region="us")
    with get_executor(dask_uri(dask_cluster)) as ex:
        assert ex.max_workers == 2
        futures = [ex.submit(calls.square, i, key=f"sq{i}") for i in range(5)]
        assert sorted(f.result() for f in ex.as_completed(futures)) == [0, 1, 4, 9, 16]
        with pytest.raises(ValueError, match="bad value 7"):
            ex.submit(calls.fail, "bad value 7").result()
        pid, settings = ex.submit(calls.whoami).result()
        assert pid != os.getpid() and settings == qexp.get_settings()
        rid = ex.submit(calls.leave_open, "open").result()
        with pytest.raises(QexpError, match="no Dask worker offers the resources GPU=1"):
            ex.submit(calls.noop, resources={"GPU": 1})
    assert runs(tmp_path / "store")[rid].status == "FINISHED"


def test_a_store_the_workers_cannot_reach_is_an_error_before_submitting(dask_cluster, tmp_path):
    port = free_port()
    ex = get_executor(dask_uri(dask_cluster))
    try:
        with pytest.raises(QexpError) as err:
            ex.check_reach({"uri": f"postgresql://qexp:secret@127.0.0.1:{port}/runs"})
        msg = str(err.value)
        assert "nothing was submitted" in msg and f"127.0.0.1:{port} does not answer" in msg
        assert "secret" not in msg  # the password is masked
    finally:
        ex.shutdown()


def test_a_killed_worker_fails_its_run_and_the_call_runs_on_another_worker(dask_cluster, tmp_path):
    qexp.init(uri=str(tmp_path / "store"))
    marker = tmp_path / "died"
    with get_executor(dask_uri(dask_cluster)) as ex:
        workers = set(ex.client.scheduler_info(n_workers=-1)["workers"])
        assert len(workers) == 2
        served = ex.submit(calls.die_once, str(marker), "victim", retries=2, key="victim").result(timeout=120)
    dead = marker.read_text()
    assert dead in workers
    # the retry ran on the other worker of the two, not on the dead one's restart (a new address)
    assert served == (workers - {dead}).pop()
    found = sorted(runs(tmp_path / "store").values(), key=lambda r: r.status)
    assert [r.status for r in found] == ["FAILED", "FINISHED"]
    reason = found[0].list_tags()["qexp.failure_reason"]
    assert f"Dask worker {dead} died" in reason and "'victim'" in reason and "retried" in reason, reason
    assert found[1].list_metrics() == {"v": 2.0}


def test_ctrl_c_cancels_and_the_running_run_stays_failed(dask_cluster, tmp_path):
    qexp.init(uri=str(tmp_path / "store"))
    markers = [tmp_path / f"m{i}" for i in range(3)]
    ex = get_executor(dask_uri(dask_cluster))
    with pytest.raises(KeyboardInterrupt):
        with ex:
            for i, m in enumerate(markers):
                ex.submit(calls.busy_run, f"r{i}", str(m), 30, key=f"r{i}")
            deadline = time.time() + 60
            while sum(m.exists() for m in markers) < 2 and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # the workers' "started" reports reach the driver
            # which two run is the scheduler's choice (a worker may queue two calls): any two, never the third
            started = {i for i, m in enumerate(markers) if m.exists()}
            raise KeyboardInterrupt
    deadline = time.time() + 30  # the workers' threads notice the cancellation at their next write
    while True:
        found = runs(tmp_path / "store")
        done = [r for r in found.values() if r.refresh().status == "FAILED" and "qexp.failure_reason" in r.list_tags()]
        if len(done) == len(found) or time.time() > deadline:
            break
        time.sleep(0.5)
    assert len(found) == 2
    for r in found.values():
        assert r.status == "FAILED", r
        assert "cancelled" in r.list_tags()["qexp.failure_reason"]
    time.sleep(1.0)
    assert all(r.refresh().status == "FAILED" for r in found.values())  # and they stay FAILED
    assert len(started) == 2
    assert {i for i, m in enumerate(markers) if m.exists()} == started  # the queued call never began
    assert sorted(r.name for r in found.values()) == sorted(f"r{i}" for i in started)


def test_dask_local_cluster_on_loopback(tmp_path):
    qexp.init(uri=str(tmp_path / "store"))
    with get_executor("dask+local://2") as ex:
        info = ex.client.scheduler_info()
        addresses = [info["address"], *info["workers"]]
        assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
        assert sorted(f.result() for f in [ex.submit(calls.square, i) for i in range(4)]) == [0, 1, 4, 9]
        rid = ex.submit(calls.log_run, "local", 2.0).result()
    assert runs(tmp_path / "store")[rid].list_metrics() == {"v": 2.0}


@pytest.mark.slow
def test_ten_configs_on_dask_give_the_metrics_they_give_locally(dask_cluster, tiny_market, tmp_path):
    paths = [write_config(tmp_path / f"c{i}.yaml", tiny_config(tiny_market, num_leaves=4 + 3 * i,
                                                              learning_rate=0.05 + 0.02 * i))
             for i in range(10)]
    outcomes = {}
    for name, executor in (("local", "local"), ("dask", dask_uri(dask_cluster))):
        got = run_many([str(p) for p in paths], executor, uri=str(tmp_path / name))
        assert [r.state for r in got] == [FINISHED] * 10, [r.error for r in got]
        outcomes[name] = [r.metrics for r in got]
    for local, remote in zip(outcomes["local"], outcomes["dask"]):
        assert set(local) == set(remote) and local.keys() >= {"IC", "Rank IC", "l2.valid"}
        for k in local:
            assert remote[k] == pytest.approx(local[k], rel=1e-9, abs=1e-12), k
    assert len({round(m["IC"], 10) for m in outcomes["dask"]}) > 1  # the configs really differ


def on_a_dask_worker(rec) -> bool:
    """Whether the run was made in a ``dask worker`` process (qexp tags every run with its command line)."""
    return " worker tcp://127.0.0.1:" in rec.list_tags().get("cmd-sys.argv", "")


def preds(recs) -> list[pd.DataFrame]:
    return [r.load_object("pred.pkl") for r in recs]


def test_trainers_on_the_cluster(dask_cluster, task_market, tmp_path):
    from qexp.task import TaskManager
    from qexp.trainer import DelayTrainerR, TrainerR, TrainerRM
    from tests.task.tasks import small_task
    tasks = [small_task(test=("2019-04-01", "2019-04-30")),
             small_task(test=("2019-05-01", "2019-05-31"), alpha=2.0),
             small_task(test=("2019-06-01", "2019-06-30"), alpha=3.0)]
    qexp.init(uri=str(tmp_path / "runs"), provider_uri=str(task_market))
    local = preds(TrainerR(experiment_name="local")(tasks))
    uri = dask_uri(dask_cluster)
    with get_executor(uri) as ex:
        for trainer in (TrainerR(experiment_name="r", executor=ex), DelayTrainerR(experiment_name="d", executor=ex),
                        TrainerRM(experiment_name="rm", executor=ex)):
            recs = trainer(tasks)
            name = type(trainer).__name__
            assert [r.list_params()["model.kwargs.alpha"] for r in recs] == ["1.0", "2.0", "3.0"], name
            assert all(on_a_dask_worker(r) and r.list_tags()["train_status"] == "end_task_train" for r in recs), name
            for got, want in zip(preds(recs), local):  # the same predictions as in this process
                pd.testing.assert_frame_equal(got, want)
        assert TaskManager("rm").task_stat() == {"done": 3}
        assert not ex._closed  # an Executor given is the caller's
    with TrainerR(experiment_name="by_uri", executor=uri) as trainer:  # or the trainer's own, from the URI
        (rec,) = trainer.train(tasks[:1])
    assert on_a_dask_worker(rec) and trainer._ex is None


def test_rolling_on_the_cluster_gives_the_local_predictions(dask_cluster, task_market, tmp_path):
    from qexp.task.rolling import Rolling
    from tests.task.test_rolling import CONFIG, TINY
    store = tmp_path / "runs"
    overrides = [f"qlib_init.provider_uri={task_market}", *TINY]
    on_dask = Rolling(CONFIG, exp_name="dask", horizon=1, step=40, executor=dask_uri(dask_cluster), uri=str(store),
                      overrides=overrides)
    rec = on_dask.run()
    assert list((store / ".qexp" / "handlers").glob("*.pkl*")) == []  # the workers' pickle is gone after them
    local = Rolling(CONFIG, exp_name="local", horizon=1, step=40, uri=str(store), overrides=overrides)
    want = local.run()
    windows = on_dask._recs
    assert len(windows) == 4 and all(on_a_dask_worker(w) for w in windows)
    assert not any(on_a_dask_worker(w) for w in local._recs)
    for key in ("pred.pkl", "label.pkl"):
        pd.testing.assert_frame_equal(rec.load_object(key), want.load_object(key))
    assert on_dask.window_ics == local.window_ics
    assert rec.list_metrics()["IC"] == want.list_metrics()["IC"]


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
def test_a_worker_on_another_disk_is_found_before_submitting(tmp_path):
    """A worker whose /tmp is another disk (its own mount namespace, a fresh tmpfs over the store's folder)
    is told apart from the driver's by the token file the check leaves in the store."""
    if not _unshare_works():
        pytest.skip("unshare -m is not allowed here (it needs CAP_SYS_ADMIN)")
    store = tmp_path / "store"
    store.mkdir()
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c",
              f"mount -t tmpfs tmpfs {store} && exec \"$0\" \"$@\""]
    procs = DaskProcesses(tmp_path / "dask", n_workers=1, env=child_env(), worker_prefix=prefix)
    try:
        procs.wait(1)
        qexp.init(uri=str(store))
        ex = get_executor(f"dask://127.0.0.1:{procs.port}?timeout=30")
        try:
            with pytest.raises(QexpError) as err:
                ex.submit(calls.noop)
            assert f"the tracking store {store}" in str(err.value) and "another folder" in str(err.value)
        finally:
            ex.shutdown()
    finally:
        procs.stop()
