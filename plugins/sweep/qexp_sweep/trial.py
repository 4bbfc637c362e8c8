"""One trial, in a worker: a child run of the sweep's parent run that trains the config with the trial's
values, shares the dataset with the worker's earlier trials of the same sweep, and stops early when the
pruner says so.

The training steps are those of ``task_train`` (``qexp.ext.exe_task``: model, dataset, fit, records), with
one difference: the dataset comes from a per-worker cache of the sweep keyed by its config, so trials that
share it build it once (and LightGBM's binned training Dataset, kept through ``qexp.ext.reuse_preparation``,
is built once while no binning parameter changes). With pruning, models log each step's metrics as the step
ends (``qexp.ext.live_step_metrics``), so a pruned fit stops at that step.
"""
from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from qexp.ext import (
    R,
    apply_sys,
    exe_task,
    flatten_dict,
    get_plugin,
    get_settings,
    hookimpl,
    init_instance_by_config,
    live_step_metrics,
    register_plugin,
    reuse_preparation,
)

from .space import Pruning

COMPLETE, PRUNED, FAIL = "COMPLETE", "PRUNED", "FAIL"
TAG_SWEEP, TAG_TRIAL, TAG_STATE, TAG_PARENT = "qexp.sweep_id", "qexp.trial", "qexp.trial_state", "mlflow.parentRunId"
DATASETS_KEPT = 2   # dataset configs kept per worker (a sweep over dataset keys keeps the last two)


class TrialStopped(BaseException):
    """The pruner stopped the trial at ``step``. A BaseException, so that the model's own ``except
    Exception`` and the plugin-event guard let it through to :func:`run_trial`."""

    def __init__(self, step: int) -> None:
        super().__init__(f"pruned at step {step}")
        self.step = step


@dataclass(frozen=True)
class TrialSpec:
    """What a worker needs to run one trial."""
    sweep_id: str
    number: int
    trial_id: int
    experiment: str
    parent_run_id: str
    config: dict            # the workflow config with this trial's values set
    config_dir: str
    values: dict            # this trial's values, by dotted config path
    metric: str
    study_uri: str
    pruning: Pruning | None = None
    prune_sign: float = 1.0  # the step metric times this goes the study's direction


def run_trial(spec: TrialSpec) -> dict:
    """Train the trial in a child run; return its state (COMPLETE or PRUNED), objective value and metrics.
    An exception ends the run FAILED (tag ``qexp.failure_reason``) and is raised to the driver."""
    apply_sys(spec.config, Path(spec.config_dir))
    task = copy.deepcopy(spec.config["task"])
    state, pruned_at = COMPLETE, None
    reused: list[bool] = []  # filled as the dataset is made, so a pruned trial still says whether it reused it
    with R.start(experiment_name=spec.experiment, recorder_name=f"trial-{spec.number}"):
        rec = R.get_recorder()
        rec.set_tags(**{TAG_PARENT: spec.parent_run_id, TAG_SWEEP: spec.sweep_id, TAG_TRIAL: str(spec.number),
                        "hostname": socket.gethostname()})
        rec.save_objects(config=spec.config)
        R.log_params(**flatten_dict(task))
        R.save_objects(task=task)
        try:
            with _pruning(spec, rec.id), reuse_preparation(_preparation(spec.sweep_id)):
                _train(task, spec.sweep_id, reused)
        except TrialStopped as stop:
            state, pruned_at = PRUNED, stop.step
        except BaseException as exc:
            rec.set_tags(**{TAG_STATE: FAIL, "qexp.failure_reason": f"{type(exc).__name__}: {exc}"[:4000]})
            raise
        rec.set_tags(**{TAG_STATE: state})
        metrics = rec.list_metrics()
    return {"run_id": rec.id, "state": state, "value": metrics.get(spec.metric), "metrics": metrics,
            "pruned_at": pruned_at, "dataset_reused": bool(reused and reused[0])}


def _train(task: dict, sweep_id: str, reused: list[bool]) -> None:
    """task_train's steps (``qexp.ext.exe_task``) on the dataset shared by the sweep's trials in this worker;
    ``reused`` gets whether the dataset came from the cache as soon as it is known (the fit may be pruned)."""

    def dataset(config: Any) -> Any:
        ds, hit = _dataset(config, sweep_id)
        reused.append(hit)
        return ds

    exe_task(task, dataset_factory=dataset)


# ---- what trials of one sweep share in a worker ------------------------------------------------------------
# Held for one sweep at a time: a trial of another sweep drops the older sweep's datasets and preparation, and a
# watcher thread drops them once no trial of the sweep came for IDLE_S seconds (a long-lived Dask worker must
# not keep a sweep's data after it ended); the driver drops its own when the sweep ends (release_sweep).
@dataclass
class _SweepCache:
    datasets: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    prep: dict = field(default_factory=dict)
    used: float = field(default_factory=time.monotonic)


IDLE_S = 600.0
"""A sweep whose trials stopped coming to this worker for this long has its datasets dropped."""
_lock = threading.Lock()
_caches: dict[str, _SweepCache] = {}
_watcher: threading.Thread | None = None


def _cache(sweep_id: str) -> _SweepCache:
    """The sweep's cache (called with ``_lock`` held); other sweeps' are dropped."""
    global _watcher
    for other in [k for k in _caches if k != sweep_id]:
        del _caches[other]
    cache = _caches.get(sweep_id)
    if cache is None:
        cache = _caches[sweep_id] = _SweepCache()
    cache.used = time.monotonic()
    if _watcher is None or not _watcher.is_alive():
        _watcher = threading.Thread(target=_watch, name="qexp-sweep-cache", daemon=True)
        _watcher.start()
    return cache


def _watch() -> None:
    global _watcher
    while True:
        time.sleep(min(IDLE_S / 4, 30.0))
        with _lock:
            if not _expire_locked():
                _watcher = None
                return


def _expire() -> list[str]:
    """Drop the sweeps idle for more than IDLE_S; return the sweeps still held."""
    with _lock:
        return _expire_locked()


def _expire_locked() -> list[str]:
    now = time.monotonic()
    for key in [k for k, c in _caches.items() if now - c.used > IDLE_S]:
        del _caches[key]
    return list(_caches)


def release_sweep(sweep_id: str) -> bool:
    """Drop what the sweep's trials keep in this process; return whether anything was held."""
    with _lock:
        return _caches.pop(sweep_id, None) is not None


def held_sweeps() -> list[str]:
    """The sweeps whose datasets this process holds."""
    with _lock:
        return sorted(_caches)


def _dataset(config: dict, sweep_id: str) -> tuple[Any, bool]:
    settings = get_settings()
    key = json.dumps([config, settings.get("provider_uri"), settings.get("region")], sort_keys=True, default=str)
    with _lock:
        cache = _cache(sweep_id)
        if key in cache.datasets:
            cache.datasets.move_to_end(key)
            return cache.datasets[key], True
    dataset = init_instance_by_config(copy.deepcopy(config), where="task.dataset")
    with _lock:
        cache = _cache(sweep_id)
        cache.datasets[key] = dataset
        while len(cache.datasets) > DATASETS_KEPT:
            cache.datasets.popitem(last=False)
    return dataset, False


def _preparation(sweep_id: str) -> dict:
    with _lock:
        return _cache(sweep_id).prep


# ---- pruning: the step metric goes to Optuna as it is logged ---------------------------------------------
@dataclass
class _Pruner:
    run_id: str
    metric: str
    sign: float
    interval: int
    trial: Any


_active: ContextVar[_Pruner | None] = ContextVar("qexp_sweep_trial", default=None)
_studies: dict[tuple[str, str], Any] = {}


class _StepListener:
    @hookimpl
    def recorder_metrics_logged(self, recorder: Any, metrics: dict, step: int | None) -> None:
        p = _active.get()
        if p is None or recorder.id != p.run_id or step is None or p.metric not in metrics:
            return
        if step % p.interval:
            return
        p.trial.report(p.sign * float(metrics[p.metric]), step)
        if p.trial.should_prune():
            raise TrialStopped(step)


_LISTENER = "qexp-sweep-steps"


@contextmanager
def _pruning(spec: TrialSpec, run_id: str | None) -> Iterator[None]:
    if spec.pruning is None or run_id is None:
        yield
        return
    import optuna

    from .study import pruner, storage
    with _lock:
        if get_plugin(_LISTENER) is None:
            register_plugin(_StepListener(), name=_LISTENER)
        key = (spec.study_uri, spec.sweep_id)
        if key not in _studies:
            _studies[key] = optuna.load_study(study_name=spec.sweep_id, storage=storage(spec.study_uri),
                                              pruner=pruner(spec.pruning))
        study = _studies[key]
    trial = optuna.trial.Trial(study, spec.trial_id)
    token = _active.set(_Pruner(run_id, spec.pruning.metric, spec.prune_sign, spec.pruning.interval, trial))
    try:
        with live_step_metrics():  # models report each step as it ends, so a pruned fit stops there
            yield
    finally:
        _active.reset(token)
