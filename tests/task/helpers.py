"""Task functions and worker bodies the tests run in other processes (importable, so picklable)."""
from __future__ import annotations

import os
import time


def noop(task_def, **kwargs):
    return {"i": task_def["i"], "pid": os.getpid()}


def pool_worker(pool, uri, out_path):
    """Run every waiting task of ``pool`` and write the ids this process ran, one a line."""
    from qexp.task import TaskManager
    tm = TaskManager(pool, uri=uri)
    ran = []
    for task in tm.task_fetcher_iter():
        tm.commit_task_res(task, noop(task["def"]))
        ran.append(task["_id"])
    with open(out_path, "w") as f:
        f.write("\n".join(ran))


def hang_worker(pool, uri, lease_s, flag_path):
    """Fetch one task, say so, then hang (the test SIGKILLs this process)."""
    from qexp.task import TaskManager
    tm = TaskManager(pool, uri=uri, lease_s=lease_s)
    task = tm.fetch_task()
    with open(flag_path, "w") as f:
        f.write(str(task["_id"]))
    time.sleep(600)


def slow(task_def, seconds=1.0):
    time.sleep(seconds)
    return os.getpid()


def parent_and_self(task_def, **kwargs):
    return os.getppid(), os.getpid(), task_def


def train_in_proc(task_config, experiment_name, recorder_name=None):
    """A train_func that records which process trained the task."""
    from qexp import R
    with R.start(experiment_name=experiment_name, recorder_name=recorder_name):
        R.set_tags(pid=str(os.getpid()), ppid=str(os.getppid()))
        R.log_params(i=task_config["i"])
        return R.get_recorder()


class PidModel:
    """LGBModel (same kwargs) that tags its run with the pid of the process that fits it."""

    def __init__(self, **kwargs):
        from qexp.config import init_instance_by_config
        self.model = init_instance_by_config({"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
                                              "kwargs": kwargs})

    def fit(self, dataset, **kwargs):
        from qexp import R
        R.set_tags(fit_pid=str(os.getpid()))
        return self.model.fit(dataset)

    def predict(self, dataset, segment="test"):
        return self.model.predict(dataset, segment)


class Sleepy:
    """A model whose fit takes ``seconds`` (to stop a worker in the middle of a task)."""

    def __init__(self, seconds=60.0):
        self.seconds = seconds

    def fit(self, dataset, **kwargs):
        time.sleep(self.seconds)

    def predict(self, dataset, segment="test"):  # pragma: no cover - never reached
        raise NotImplementedError


def stall_then_commit(pool, uri, flag_path, out_path):
    """Fetch one task on a 1 s lease, say so, then (after the test has stopped and resumed this process past
    its lease) try to commit; write what happened."""
    from qexp.task import TaskManager
    from qexp.task.manage import LeaseLost
    tm = TaskManager(pool, uri=uri, lease_s=1.0)
    task = tm.fetch_task()
    with open(flag_path, "w") as f:
        f.write(str(task["_id"]))
    time.sleep(0.5)  # the test stops this process here
    try:
        tm.commit_task_res(task, "A-result")
        outcome = "committed"
    except LeaseLost as exc:
        outcome = f"lost: {exc}"
    with open(out_path, "w") as f:
        f.write(outcome)


def insert_same_tasks(pool, uri, n, start_at, out_path):
    """Insert tasks 0..n-1 at ``start_at`` (time.time()); write how many this process created."""
    from qexp.task import TaskManager
    tm = TaskManager(pool, uri=uri)
    news = [tm._new_task({"n": i}) for i in range(n)]
    tm.store.insert(pool, news[:1])  # connected and the table made before the race starts
    while time.time() < start_at:
        time.sleep(0.001)
    created = tm.store.insert(pool, news)
    with open(out_path, "w") as f:
        f.write(str(sum(1 for _, is_new in created if is_new)))
