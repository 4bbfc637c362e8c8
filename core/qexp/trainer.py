"""Training tasks into runs (``qlib/model/trainer.py``): ``task_train`` and its two halves, and the trainers
``TrainerR``, ``DelayTrainerR``, ``TrainerRM``, ``DelayTrainerRM``.

Beyond Qlib: every trainer takes ``executor=`` (an URI such as ``process://4`` or an Executor; by default the
tasks run in this process, in order) and ``call_in_subproc`` wraps the train function once.
"""
from __future__ import annotations

import copy
import logging
import socket
import time
from typing import Any, Callable

from .api import R
from .config import auto_filter_kwargs, fill_placeholder, flatten_dict, init_instance_by_config
from .exceptions import ConfigError, QexpError
from .executor import DEFAULT_EXECUTOR, Executor, get_executor
from .progress import phase
from .recorder import Recorder
from .task.manage import TaskManager, run_task
from .task.store import default_tasks_uri
from .task.subproc import Portable, call_in_subproc, portable, unportable

logger = logging.getLogger("qexp.trainer")


def _log_task_info(task_config: dict) -> None:
    R.log_params(**flatten_dict(task_config))
    R.save_objects(task=task_config)
    R.set_tags(**{"hostname": socket.gethostname()})


def _exe_task(task_config: dict, dataset_factory: Callable[[Any], Any] | None = None) -> None:
    """Fit the model, save it and the dataset (without data), then generate each record, in the active run.

    ``dataset_factory(task_config["dataset"])`` builds the dataset instead of ``init_instance_by_config``
    (a sweep's trials take it from a cache shared by the trials of one worker)."""
    missing = [k for k in ("model", "dataset") if k not in task_config]
    if missing:
        raise ConfigError(f"task: missing key(s) {', '.join('task.' + k for k in missing)}; a task needs "
                          f"'model' and 'dataset' (and usually 'record')")
    rec = R.get_recorder()
    model = init_instance_by_config(task_config["model"], where="task.model")
    with phase("dataset"):
        if dataset_factory is not None:
            dataset = dataset_factory(task_config["dataset"])
        else:
            dataset = init_instance_by_config(task_config["dataset"], where="task.dataset")
    with phase(f"fit {type(model).__name__}"):
        auto_filter_kwargs(model.fit, warning=False)(dataset, reweighter=task_config.get("reweighter"))
    R.save_objects(**{"params.pkl": model})
    config_fn = getattr(dataset, "config", None)
    if callable(config_fn):
        try:  # Qlib's datasets drop their data when pickled with dump_all=False
            config_fn(dump_all=False, recursive=True)
        except TypeError:
            pass
    R.save_objects(**{"dataset": dataset})
    # placeholders are filled on a copy so the logged task keeps its text form
    task = fill_placeholder(copy.deepcopy(task_config), {"<MODEL>": model, "<DATASET>": dataset})
    records = task.get("record") or []
    if isinstance(records, (dict, str)):
        records = [records]
    for i, record in enumerate(records):
        r = init_instance_by_config(record, where=f"task.record.{i}", recorder=rec,
                                    try_kwargs={"model": model, "dataset": dataset})
        with phase(type(r).__name__):
            r.generate()


def task_train(task_config: dict, experiment_name: str, recorder_name: str | None = None) -> Recorder:
    """Train ``task_config`` in a new run of ``experiment_name``; the run ends FINISHED, or FAILED (re-raised)."""
    with R.start(experiment_name=experiment_name, recorder_name=recorder_name):
        _log_task_info(task_config)
        _exe_task(task_config)
        return R.get_recorder()


def begin_task_train(task_config: dict, experiment_name: str, recorder_name: str | None = None) -> Recorder:
    """Record the task in a new run without training (the first half of two-phase training)."""
    with R.start(experiment_name=experiment_name, recorder_name=recorder_name):
        _log_task_info(task_config)
        return R.get_recorder()


def end_task_train(rec: Recorder, experiment_name: str) -> Recorder:
    """Resume the run made by :func:`begin_task_train` and train its task."""
    with R.start(experiment_name=experiment_name, recorder_id=rec.id, resume=True):
        _exe_task(R.load_object("task"))
        return R.get_recorder()


# ---- trainers (``qlib/model/trainer.py``) -----------------------------------------------------------
def _as_list(items: Any, kind: type | tuple = dict) -> list:
    return [items] if isinstance(items, kind) else list(items)


def _is_local(executor: Executor) -> bool:
    return executor.uri.split(":", 1)[0] == DEFAULT_EXECUTOR


def map_in_order(executor: str | Executor | None, func: Callable, calls: list[tuple], **kwargs: Any) -> list:
    """``[func(*args, **kwargs) for args in calls]`` on ``executor`` (None: ``$QEXP_EXECUTOR``, else in this
    process), results in the order of ``calls``. On the first failure the calls not started are cancelled
    and the error is raised. An executor given by URI is shut down afterwards; one given as an object is not."""
    ex = get_executor(executor)
    local = _is_local(ex)
    if not local:  # Recorders do not pickle: they cross to the workers and back as references
        func, calls = Portable(func), [tuple(portable(a) for a in args) for args in calls]
        kwargs = {k: portable(v) for k, v in kwargs.items()}
    name = getattr(getattr(func, "func", func), "__name__", "call")
    futures = [ex.submit(func, *args, key=f"{name} {i}", **kwargs) for i, args in enumerate(calls)]
    owned = not isinstance(executor, Executor)
    try:
        results = [f.result() if local else unportable(f.result()) for f in futures]
    except BaseException:
        ex.cancel(futures)
        if owned:
            ex.shutdown(wait=False, cancel_futures=True)
        raise
    if owned:
        ex.shutdown(wait=True)
    return results


class Trainer:
    """Trains a list of tasks and returns models (here: recorders). A delayed trainer's ``train`` only
    prepares and its ``end_train`` fits. Calling a trainer is ``end_train(train(...))``.

    Beyond Qlib: ``executor`` (an URI, or an :class:`Executor` the caller owns) says where the tasks run. An
    executor made from an URI is made on first use and kept for the trainer's life (its worker processes,
    their loaded data and their sessions serve every ``train``), until :meth:`close` or the end of a ``with``
    block; an Executor object given is never shut down by the trainer."""

    executor: str | Executor | None = None
    _ex: Executor | None = None

    def __init__(self) -> None:
        self.delay = False

    def _executor(self) -> Executor:
        if isinstance(self.executor, Executor):
            return self.executor
        if self._ex is None:
            self._ex = get_executor(self.executor)
        return self._ex

    def close(self) -> None:
        """Shut down the executor this trainer made (a later ``train`` makes a new one)."""
        ex, self._ex = self._ex, None
        if ex is not None:
            ex.shutdown(wait=True)

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        ex, self._ex = self._ex, None
        if ex is not None:
            ex.__exit__(exc_type, exc, tb)  # an exception (Ctrl-C) cancels what has not started

    def __del__(self) -> None:
        ex, self._ex = getattr(self, "_ex", None), None
        if ex is not None:
            try:
                ex.shutdown(wait=False)
            except Exception:  # noqa: BLE001 - at interpreter exit the executor may be half gone
                pass

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_ex", None)  # worker processes do not travel: a copy makes its own
        return state

    def train(self, tasks: list, *args: Any, **kwargs: Any) -> list:
        """Begin training ``tasks``; return the models."""
        raise NotImplementedError("Please implement the `train` method.")

    def end_train(self, models: list, *args: Any, **kwargs: Any) -> list:
        """Finish training (a no-op unless delayed)."""
        return models

    def is_delay(self) -> bool:
        """Whether the real training happens in :meth:`end_train`."""
        return self.delay

    def __call__(self, *args: Any, **kwargs: Any) -> list:
        return self.end_train(self.train(*args, **kwargs))

    def has_worker(self) -> bool:
        """Whether :meth:`worker` can run tasks from other processes or machines."""
        return False

    def worker(self) -> None:
        raise NotImplementedError("Please implement the `worker` method")


class TrainerR(Trainer):
    """Trains each task into a run of ``experiment_name`` and returns the recorders in task order.

    ``executor``: where the tasks run (an URI such as ``process://4`` or an Executor; default: in this
    process, in order). ``call_in_subproc`` runs each task in a fresh process to free its memory.
    Runs are tagged ``train_status`` = ``begin_task_train``, then ``end_task_train`` by :meth:`end_train`.
    """

    STATUS_KEY = "train_status"
    STATUS_BEGIN = "begin_task_train"
    STATUS_END = "end_task_train"

    def __init__(self, experiment_name: str | None = None, train_func: Callable = task_train,
                 call_in_subproc: bool = False, default_rec_name: str | None = None,
                 executor: str | Executor | None = None):
        super().__init__()
        self.experiment_name = experiment_name
        self.default_rec_name = default_rec_name
        self.train_func = train_func
        self._call_in_subproc = call_in_subproc
        self.executor = executor

    def _func(self, func: Callable) -> Callable:
        # wrapped once for all tasks (Qlib wraps it again inside its loop: task k ran through k wrappers)
        if self._call_in_subproc:
            logger.info("running each task in a fresh process (call_in_subproc) to release its memory")
            return call_in_subproc(func)
        return func

    def train(self, tasks: list | dict, train_func: Callable | None = None, experiment_name: str | None = None,
              **kwargs: Any) -> list[Recorder]:
        """Train ``tasks``; the recorders come back in task order."""
        tasks = _as_list(tasks)
        if not tasks:
            return []
        func = self._func(train_func or self.train_func)
        name = experiment_name if experiment_name is not None else self.experiment_name
        recs = map_in_order(self._executor(), func, [(t, name) for t in tasks],
                            recorder_name=self.default_rec_name, **kwargs)
        for rec in recs:
            rec.set_tags(**{self.STATUS_KEY: self.STATUS_BEGIN})
        return recs

    def end_train(self, models: list | Recorder, **kwargs: Any) -> list[Recorder]:
        """Tag the runs ``train_status=end_task_train``."""
        models = _as_list(models, Recorder)
        for rec in models:
            rec.set_tags(**{self.STATUS_KEY: self.STATUS_END})
        return models


class DelayTrainerR(TrainerR):
    """``train`` only records each task in a run (:func:`begin_task_train`); ``end_train`` fits them
    (:func:`end_task_train`, on the executor), skipping runs already tagged ``end_task_train``."""

    def __init__(self, experiment_name: str | None = None, train_func: Callable = begin_task_train,
                 end_train_func: Callable = end_task_train, **kwargs: Any):
        super().__init__(experiment_name, train_func, **kwargs)
        self.end_train_func = end_train_func
        self.delay = True

    def end_train(self, models: list | Recorder, end_train_func: Callable | None = None,
                  experiment_name: str | None = None, **kwargs: Any) -> list[Recorder]:
        """Fit every run not yet fitted, in order; tag them ``end_task_train``."""
        models = _as_list(models, Recorder)
        func = self._func(end_train_func or self.end_train_func)
        name = experiment_name if experiment_name is not None else self.experiment_name
        todo = [rec for rec in models if rec.list_tags().get(self.STATUS_KEY) != self.STATUS_END]
        if todo:
            map_in_order(self._executor(), func, [(rec, name) for rec in todo], **kwargs)
        for rec in todo:
            rec.set_tags(**{self.STATUS_KEY: self.STATUS_END})
        return models


class TrainerRM(Trainer):
    """Trains through a task pool: tasks go into ``task_pool`` (the experiment's name by default) of the task
    store ``tasks_uri``, de-duplicated; this process (``executor``: that many workers) and any
    ``worker()`` / ``qexp worker --pool`` elsewhere pull and train them; the recorders come back in task
    order, tagged ``train_status`` and ``_id in TaskManager``."""

    STATUS_KEY = "train_status"
    STATUS_BEGIN = "begin_task_train"
    STATUS_END = "end_task_train"
    TM_ID = "_id in TaskManager"

    def __init__(self, experiment_name: str | None = None, task_pool: str | None = None,
                 train_func: Callable = task_train, skip_run_task: bool = False,
                 default_rec_name: str | None = None, executor: str | Executor | None = None,
                 tasks_uri: str | None = None):
        super().__init__()
        self.experiment_name = experiment_name
        self.task_pool = task_pool
        self.train_func = train_func
        self.skip_run_task = skip_run_task
        self.default_rec_name = default_rec_name
        self.executor = executor
        self.tasks_uri = tasks_uri

    def _pool(self, experiment_name: str | None) -> TaskManager:
        pool = self.task_pool if self.task_pool is not None else experiment_name
        if pool is None:
            raise ConfigError(f"{type(self).__name__}: give task_pool or experiment_name (the pool is named after "
                              f"the experiment by default)")
        return TaskManager(pool, uri=self.tasks_uri or default_tasks_uri())

    def _run(self, func: Callable, tm: TaskManager, query: dict, **kwargs: Any) -> None:
        """Pull the tasks of ``query`` here: inline, or with one pulling worker per executor slot."""
        ex = self._executor()
        if _is_local(ex):
            run_task(func, tm, query=query, **kwargs)
        else:
            n = max(1, ex.max_workers)
            map_in_order(ex, run_task, [(func, tm, query)] * n, **kwargs)

    def train(self, tasks: list | dict, train_func: Callable | None = None, experiment_name: str | None = None,
              before_status: str = TaskManager.STATUS_WAITING, after_status: str = TaskManager.STATUS_DONE,
              default_rec_name: str | None = None, **kwargs: Any) -> list[Recorder]:
        """Put ``tasks`` in the pool, run them (unless ``skip_run_task``), wait for them (unless delayed) and
        return their recorders in order."""
        tasks = _as_list(tasks)
        if not tasks:
            return []
        func = train_func or self.train_func
        name = experiment_name if experiment_name is not None else self.experiment_name
        rec_name = default_rec_name if default_rec_name is not None else self.default_rec_name
        tm = self._pool(name)
        ids = tm.create_task(tasks)
        query = {"_id": {"$in": ids}}
        if not self.skip_run_task:
            self._run(func, tm, query, experiment_name=name, before_status=before_status,
                      after_status=after_status, recorder_name=rec_name, **kwargs)
        if not self.is_delay():
            tm.wait(query=query)
        else:
            _wait_fetched(tm, query)
        results = tm.results(ids)  # one query, only the results decoded
        recs = []
        for _id in ids:
            rec = results.get(_id)
            if not isinstance(rec, Recorder):
                raise QexpError(f"task {_id} of pool {tm.task_pool!r} has no recorder as its result ({rec!r}); "
                                f"its train_func must return the Recorder")
            rec.set_tags(**{self.STATUS_KEY: self.STATUS_BEGIN, self.TM_ID: _id})
            recs.append(rec)
        return recs

    def end_train(self, recs: list | Recorder, **kwargs: Any) -> list[Recorder]:  # type: ignore[override]
        """Tag the runs ``train_status=end_task_train``."""
        recs = _as_list(recs, Recorder)
        for rec in recs:
            rec.set_tags(**{self.STATUS_KEY: self.STATUS_END})
        return recs

    def worker(self, train_func: Callable | None = None, experiment_name: str | None = None) -> None:
        """Pull and train the pool's waiting tasks until none is left (run it on any machine that reaches the
        task store, the tracking store and the data)."""
        name = experiment_name if experiment_name is not None else self.experiment_name
        run_task(train_func or self.train_func, self._pool(name), experiment_name=name)

    def has_worker(self) -> bool:
        return True


class DelayTrainerRM(TrainerRM):
    """Two phases through the pool: ``train`` records each task (tasks end ``part_done``); ``end_train`` fits
    them (``part_done`` -> ``done``), here or in ``worker()`` processes (``skip_run_task=True`` only waits)."""

    def __init__(self, experiment_name: str | None = None, task_pool: str | None = None,
                 train_func: Callable = begin_task_train, end_train_func: Callable = end_task_train,
                 skip_run_task: bool = False, **kwargs: Any):
        super().__init__(experiment_name, task_pool, train_func, **kwargs)
        self.end_train_func = end_train_func
        self.delay = True
        self.skip_run_task = skip_run_task

    def train(self, tasks: list | dict, train_func: Callable | None = None,  # type: ignore[override]
              experiment_name: str | None = None, **kwargs: Any) -> list[Recorder]:
        """Record the tasks (always done here: the preparation is never skipped)."""
        tasks = _as_list(tasks)
        if not tasks:
            return []
        skip, self.skip_run_task = self.skip_run_task, False
        try:
            return super().train(tasks, train_func=train_func, experiment_name=experiment_name,
                                 after_status=TaskManager.STATUS_PART_DONE, **kwargs)
        finally:
            self.skip_run_task = skip

    def end_train(self, recs: list | Recorder, end_train_func: Callable | None = None,  # type: ignore[override]
                  experiment_name: str | None = None, **kwargs: Any) -> list[Recorder]:
        """Fit the recorded tasks (``part_done`` -> ``done``), wait for all, tag them ``end_task_train``."""
        recs = _as_list(recs, Recorder)
        func = end_train_func or self.end_train_func
        name = experiment_name if experiment_name is not None else self.experiment_name
        tm = self._pool(name)
        ids = []
        for rec in recs:
            tags = rec.list_tags()
            if self.TM_ID not in tags:
                raise QexpError(f"run {rec.id} has no tag {self.TM_ID!r}; DelayTrainerRM.end_train takes the runs "
                                f"its train returned")
            ids.append(tags[self.TM_ID])
        query = {"_id": {"$in": ids}}
        if not self.skip_run_task:
            self._run(func, tm, query, experiment_name=name, before_status=TaskManager.STATUS_PART_DONE, **kwargs)
        tm.wait(query=query)
        for rec in recs:
            rec.set_tags(**{self.STATUS_KEY: self.STATUS_END})
        return recs

    def worker(self, end_train_func: Callable | None = None, experiment_name: str | None = None) -> None:
        """Pull and fit the pool's part_done tasks until none is left."""
        name = experiment_name if experiment_name is not None else self.experiment_name
        run_task(end_train_func or self.end_train_func, self._pool(name), experiment_name=name,
                 before_status=TaskManager.STATUS_PART_DONE)


def _wait_fetched(tm: TaskManager, query: dict, poll_s: float = 0.2) -> None:
    """Until no task of ``query`` is waiting or running (a delayed train reads each task's first result)."""
    while True:
        stat = tm.task_stat(query)
        if not stat.get(TaskManager.STATUS_WAITING) and not stat.get(TaskManager.STATUS_RUNNING):
            return
        time.sleep(poll_s)
