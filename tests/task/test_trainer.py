"""Trainers: order, Qlib's tags, delayed phases, task pools, executors and call_in_subproc."""
from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import time

import pytest

import qexp
from qexp import R
from qexp.exceptions import QexpError
from qexp.task import TaskManager
from qexp.trainer import DelayTrainerR, DelayTrainerRM, TrainerR, TrainerRM, task_train

from . import helpers
from .tasks import small_task

TESTS = [small_task(test=("2019-04-01", "2019-04-30")), small_task(test=("2019-05-01", "2019-05-31"), alpha=2.0),
         small_task(test=("2019-06-01", "2019-06-30"), alpha=3.0)]


@pytest.fixture
def session(tmp_path, tiny_market):
    store = tmp_path / "runs"
    qexp.init(uri=str(store), provider_uri=str(tiny_market))
    return store


def arts(rec):
    return set(rec.list_artifacts())


def test_trainer_r_keeps_order_and_tags(session):
    recs = TrainerR(experiment_name="r")(TESTS)
    assert [r.list_params()["model.kwargs.alpha"] for r in recs] == ["1.0", "2.0", "3.0"]
    assert all(r.list_tags()["train_status"] == "end_task_train" for r in recs)
    assert all({"pred.pkl", "label.pkl", "params.pkl", "task"} <= arts(r) for r in recs)
    first = recs[0].load_object("pred.pkl").index.get_level_values("datetime")
    assert str(first.min().date()) >= "2019-04-01" and str(first.max().date()) <= "2019-04-30"
    assert TrainerR(experiment_name="r").train([]) == []
    assert len(TrainerR(experiment_name="r", default_rec_name="named").train(TESTS[0])) == 1
    assert R.get_exp(experiment_name="r").get_recorder(recorder_name="named").list_tags()["train_status"] == \
        "begin_task_train"


def test_delay_trainer_r_two_phases(session):
    trainer = DelayTrainerR(experiment_name="d")
    recs = trainer.train(TESTS[:2])
    assert all("params.pkl" not in arts(r) and "task" in arts(r) for r in recs)
    assert all(r.list_tags()["train_status"] == "begin_task_train" for r in recs)
    recs = trainer.end_train(recs)
    assert all("pred.pkl" in arts(r) and r.list_tags()["train_status"] == "end_task_train" for r in recs)
    # fitted runs are skipped the second time
    before = [r.refresh().end_time for r in recs]
    trainer.end_train(recs)
    assert [r.refresh().end_time for r in recs] == before


def test_trainer_rm_through_a_pool(session):
    trainer = TrainerRM(experiment_name="rm")
    recs = trainer(TESTS)
    tm = TaskManager("rm")
    assert tm.uri.endswith(os.path.join("runs", ".qexp", "tasks.sqlite")) and tm.task_stat() == {"done": 3}
    ids = [t["_id"] for t in tm.query()]
    assert [r.list_tags()[TrainerRM.TM_ID] for r in recs] == ids
    assert [r.list_params()["model.kwargs.alpha"] for r in recs] == ["1.0", "2.0", "3.0"]
    # the same tasks again: nothing is retrained, the same runs come back
    again = TrainerRM(experiment_name="rm").train(TESTS)
    assert [r.id for r in again] == [r.id for r in recs]
    assert len(R.list_recorders(experiment_name="rm")) == 3


def test_delay_trainer_rm_two_phases(session):
    trainer = DelayTrainerRM(experiment_name="drm", task_pool="drm_pool")
    recs = trainer.train(TESTS[:2])
    tm = TaskManager("drm_pool")
    assert tm.task_stat() == {"part_done": 2}
    assert all("params.pkl" not in arts(r) for r in recs)
    assert [t["res"].id for t in tm.query()] == [r.id for r in recs]  # part_done results are the runs
    recs = trainer.end_train(recs)
    assert tm.task_stat() == {"done": 2}
    assert all("pred.pkl" in arts(r) and r.list_tags()["train_status"] == "end_task_train" for r in recs)


def test_trainer_rm_worker_trains_the_tasks_train_waits_for(session):
    """skip_run_task: train() only puts the tasks in the pool and waits; worker() (here, another thread; in
    practice another process or machine) trains them."""
    trainer = TrainerRM(experiment_name="rmw", skip_run_task=True)
    tm = TaskManager("rmw")
    with cf.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(trainer.train, TESTS)
        deadline = time.time() + 60
        while time.time() < deadline and not waiting.done():
            try:
                if tm.task_stat() == {"waiting": 3}:
                    break
            except QexpError:  # no store yet: train() has not made the pool
                pass
            time.sleep(0.05)
        assert tm.task_stat() == {"waiting": 3} and not waiting.done()  # nothing runs them but a worker
        trainer.worker()
        recs = waiting.result(timeout=60)
    assert tm.task_stat() == {"done": 3}
    assert [r.list_params()["model.kwargs.alpha"] for r in recs] == ["1.0", "2.0", "3.0"]
    assert [r.list_tags()[TrainerRM.TM_ID] for r in recs] == [t["_id"] for t in tm.query()]
    assert all("pred.pkl" in arts(r) for r in recs)
    assert trainer.has_worker()


def test_delay_trainer_rm_worker_fits_the_recorded_tasks(session):
    trainer = DelayTrainerRM(experiment_name="drmw", skip_run_task=True)
    recs = trainer.train(TESTS[:2])  # the preparation always runs here
    tm = TaskManager("drmw")
    assert tm.task_stat() == {"part_done": 2} and all("params.pkl" not in arts(r) for r in recs)
    trainer.worker()  # fits them: part_done -> done
    assert tm.task_stat() == {"done": 2}
    assert all("pred.pkl" in arts(r) for r in recs)
    before = [r.refresh().end_time for r in recs]
    recs = trainer.end_train(recs)  # skip_run_task: only waits, nothing is fitted again
    assert [r.refresh().end_time for r in recs] == before
    assert all(r.list_tags()["train_status"] == "end_task_train" for r in recs)


@pytest.mark.slow
def test_delay_trainer_rm_end_phase_in_a_worker(session, tiny_market):
    trainer = DelayTrainerRM(experiment_name="drw", skip_run_task=True)
    recs = trainer.train(TESTS[:2])  # the preparation always runs here
    assert TaskManager("drw").task_stat() == {"part_done": 2}
    worker = subprocess.Popen([sys.executable, "-m", "qexp", "worker", "--pool", "drw", "--end-train",
                               "--uri", str(session), "--provider-uri", str(tiny_market)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    recs = trainer.end_train(recs)  # waits for the worker
    out = worker.communicate(timeout=300)[0]
    assert worker.returncode == 0, out
    assert "2 task(s) trained" in out
    assert all("pred.pkl" in arts(r) for r in recs)


@pytest.mark.slow
def test_call_in_subproc_runs_each_task_in_one_child(session):
    tasks = [{"i": i} for i in range(3)]
    recs = TrainerR(experiment_name="sub", train_func=helpers.train_in_proc, call_in_subproc=True).train(tasks)
    tags = [r.list_tags() for r in recs]
    # each task ran in its own child of this process: no child of a child (Qlib nested one more wrapper per task)
    assert all(t["ppid"] == str(os.getpid()) for t in tags)
    assert len({t["pid"] for t in tags}) == 3 and str(os.getpid()) not in {t["pid"] for t in tags}
    assert [r.list_params()["i"] for r in recs] == ["0", "1", "2"]


def process_executor():
    from qexp.ext import get_executor
    return get_executor("process://2")  # the executors plugin is part of qexp: no skip when it fails


@pytest.mark.slow
def test_trainers_on_a_process_pool(session):
    with process_executor() as ex:
        recs = TrainerR(experiment_name="pp", executor=ex)(TESTS)
        assert [r.list_params()["model.kwargs.alpha"] for r in recs] == ["1.0", "2.0", "3.0"]
        assert all("pred.pkl" in arts(r) for r in recs)
        recs = TrainerR(experiment_name="pp2", train_func=helpers.train_in_proc, executor=ex).train(
            [{"i": 0}, {"i": 1}])
        assert str(os.getpid()) not in {r.list_tags()["pid"] for r in recs}  # trained there, read back here
        delayed = DelayTrainerR(experiment_name="ppd", executor=ex)
        recs = delayed.end_train(delayed.train(TESTS[:2]))  # recorders travel to the workers as references
        assert all("pred.pkl" in arts(r) for r in recs)
        recs = TrainerRM(experiment_name="ppm", executor=ex)(TESTS)
        assert TaskManager("ppm").task_stat() == {"done": 3}
        assert [r.list_params()["model.kwargs.alpha"] for r in recs] == ["1.0", "2.0", "3.0"]
    recs = TrainerR(experiment_name="pp_uri", executor="process://2")(TESTS[:2])
    assert len(recs) == 2


def test_task_train_error_names_the_key(session):
    with pytest.raises(qexp.ConfigError, match="task.dataset"):
        task_train({"model": {"class": "LinearModel"}}, experiment_name="bad")


@pytest.mark.slow
def test_a_trainer_keeps_one_executor_for_its_life(session):
    """Each train() made and shut down a new process pool; now the trainer's pool serves every call until
    close() (a with block does it), and TrainerRM reads its results back in one query."""
    pids = []
    with TrainerR(experiment_name="keep", train_func=helpers.train_in_proc, executor="process://1") as trainer:
        for i in range(2):
            (rec,) = trainer.train([{"i": i}])
            pids.append(rec.list_tags()["pid"])
        pool = trainer._ex
        assert pool is not None and pool.max_workers == 1
    assert pids[0] == pids[1] != str(os.getpid())  # the same worker process served both calls
    assert trainer._ex is None and pool._closed
    rm = TrainerRM(experiment_name="keeprm", train_func=helpers.train_in_proc, executor="process://1")
    try:
        recs = rm.train([{"i": 0}, {"i": 1}])
        assert [r.list_params()["i"] for r in recs] == ["0", "1"]
        assert rm._ex is not None and rm.train([{"i": 2}])[0].list_tags()["pid"] in {
            r.list_tags()["pid"] for r in recs}
    finally:
        rm.close()
    # an Executor object given is the caller's: the trainer never shuts it down
    with process_executor() as ex:
        t = TrainerR(experiment_name="given", executor=ex)
        t.train(TESTS[:1])
        t.close()
        assert not ex._closed and t._ex is None
