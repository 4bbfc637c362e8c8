"""``task_train``: train one task (model + dataset + records) inside a run, as Qlib's trainer does."""
from __future__ import annotations

import copy
import socket

from .api import R
from .config import auto_filter_kwargs, fill_placeholder, flatten_dict, init_instance_by_config
from .exceptions import ConfigError
from .progress import phase
from .recorder import Recorder


def _log_task_info(task_config: dict) -> None:
    R.log_params(**flatten_dict(task_config))
    R.save_objects(**{"task": task_config})
    R.set_tags(**{"hostname": socket.gethostname()})


def _exe_task(task_config: dict) -> None:
    """Fit the model, save it and the dataset (without data), then generate each record."""
    missing = [k for k in ("model", "dataset") if k not in task_config]
    if missing:
        raise ConfigError(f"task: missing key(s) {', '.join('task.' + k for k in missing)}; a task needs "
                          f"'model' and 'dataset' (and usually 'record')")
    rec = R.get_recorder()
    model = init_instance_by_config(task_config["model"], where="task.model")
    with phase("dataset"):
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
