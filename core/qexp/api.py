"""``R``: the Qlib-compatible facade over the ExpManager.

Active experiment/recorder are held in a contextvar stack, so each thread has its own and ``R.start``
inside ``R.start`` opens a child run (tag ``mlflow.parentRunId``) and restores the parent on exit.
"""
from __future__ import annotations

import contextvars
import os
import threading
import warnings
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import pandas as pd

from . import exit_handler
from .backends import create_manager
from .exceptions import NoActiveRecorderError, QexpError
from .experiment import Experiment
from .manager import ExpManager
from .plugins import call_init_hooks
from .recorder import Recorder
from .uri import resolve_uri


@dataclass(frozen=True)
class _Frame:
    manager: ExpManager
    experiment: Experiment
    recorder: Recorder


_stack: contextvars.ContextVar[tuple[_Frame, ...]] = contextvars.ContextVar("qexp_active", default=())
_uri_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("qexp_uri", default=None)

# every recorder started through R and not yet ended, whatever thread: the exit handlers end them
_open: dict[int, Recorder] = {}
_open_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # the parent's open runs are the parent's to end: a forked child's exit must not finish them
    global _open_lock
    _open_lock = threading.Lock()
    _open.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def before_run_end(recorder: Recorder, callback: Any) -> None:
    """Call ``callback(status)`` when ``R`` is about to end ``recorder``'s run, while it is still RUNNING (a
    sampler's last point, a captured log). Runs ended without ``R`` reach plugins only at ``recorder_ended``."""
    recorder.__dict__.setdefault("_qexp_before_end", []).append(callback)


def _run_before_end(recorder: Recorder, status: str) -> None:
    for callback in recorder.__dict__.pop("_qexp_before_end", []):
        try:
            callback(status)
        except Exception as exc:  # a plugin's end-of-run work must not keep the run from ending
            import warnings
            warnings.warn(f"qexp: end-of-run callback {getattr(callback, '__qualname__', callback)} failed: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)


class QexpRecorder:
    """The ``R`` object. Methods mirror Qlib's ``QlibRecorder``, with its warts fixed (see README)."""

    def __init__(self) -> None:
        self._manager: ExpManager | None = None
        self._managers: dict[str, ExpManager] = {}
        self.autolog = True

    # ---- registration ------------------------------------------------------------------------
    def register(self, manager: ExpManager) -> None:
        self._manager = manager
        self._managers = {manager.uri: manager}

    def setup(self, manager: ExpManager) -> None:
        """Make ``manager`` the default store and install the exit handlers that end runs left open."""
        self.register(manager)
        exit_handler.install(self._end_all_open, self._end_thread_open)

    def is_registered(self) -> bool:
        return self._manager is not None

    def has_active(self) -> bool:
        return bool(_stack.get())

    def _default_manager(self) -> ExpManager:
        if self._manager is None:
            # first use without qexp.init(): the default store, and plugins set their defaults
            self.setup(create_manager(None))
            call_init_hooks({})
        assert self._manager is not None
        return self._manager

    def _manager_for(self, uri: str | None) -> ExpManager:
        default = self._default_manager()
        if uri is None:
            uri = _uri_override.get()
        if uri is None:
            return default
        resolved = resolve_uri(uri)
        if resolved not in self._managers:
            self._managers[resolved] = create_manager(resolved, default_exp_name=default.default_exp_name)
        return self._managers[resolved]

    @property
    def exp_manager(self) -> ExpManager:
        frames = _stack.get()
        return frames[-1].manager if frames else self._manager_for(None)

    def __repr__(self) -> str:
        return f"QexpRecorder(manager={self._manager!r})"

    def __reduce__(self) -> str:
        # R travels by name: a pickled function that uses R (sent to an executor's worker) finds the
        # worker's own R, initialised there with the caller's settings
        return "R"

    # ---- start / end -------------------------------------------------------------------------
    def start(self, *, experiment_id: str | None = None, experiment_name: str | None = None,
              recorder_id: str | None = None, recorder_name: str | None = None, uri: str | None = None,
              resume: bool = False, log_system_metrics: bool | None = None) -> _StartContext:
        """Start a run and yield its Experiment: ``with R.start(...) as exp:``. An exception (or
        KeyboardInterrupt) ends the run FAILED and is re-raised; a normal exit ends it FINISHED. Inside another
        ``start`` it opens a child run, in the parent's experiment unless another is named.
        ``log_system_metrics`` turns the ``system/*`` metrics of this run on or off (None:
        ``qexp.init(system_metrics=...)`` / the environment decide).

        Nothing starts until the block is entered; called without ``with`` (MLflow's ``start_run`` habit) it
        warns, since no run was started."""
        return _StartContext(self._run_block(
            experiment_id=experiment_id, experiment_name=experiment_name, recorder_id=recorder_id,
            recorder_name=recorder_name, uri=uri, resume=resume, log_system_metrics=log_system_metrics))

    @contextmanager
    def _run_block(self, *, experiment_id: str | None, experiment_name: str | None, recorder_id: str | None,
                   recorder_name: str | None, uri: str | None, resume: bool,
                   log_system_metrics: bool | None) -> Iterator[Experiment]:
        exp = self.start_exp(experiment_id=experiment_id, experiment_name=experiment_name,
                             recorder_id=recorder_id, recorder_name=recorder_name, uri=uri, resume=resume,
                             log_system_metrics=log_system_metrics)
        frame = _stack.get()[-1]
        try:
            yield exp
        except SystemExit as exc:
            self._end_frame(frame, Recorder.STATUS_FI if exc.code in (None, 0) else Recorder.STATUS_FA)
            raise
        except BaseException:
            self._end_frame(frame, Recorder.STATUS_FA)
            raise
        else:
            self._end_frame(frame, Recorder.STATUS_FI)

    def start_exp(self, *, experiment_id: str | None = None, experiment_name: str | None = None,
                  recorder_id: str | None = None, recorder_name: str | None = None, uri: str | None = None,
                  resume: bool = False, log_system_metrics: bool | None = None) -> Experiment:
        """Start a run without a context manager; end it with :meth:`end_exp`."""
        manager = self._manager_for(uri)
        frames = _stack.get()
        if frames and experiment_id is None and experiment_name is None and manager is frames[-1].manager:
            exp = frames[-1].experiment  # a child run named no experiment: it goes beside its parent
        else:
            exp = manager.get_exp(experiment_id=experiment_id, experiment_name=experiment_name, create=True)
        parent = frames[-1].recorder if frames else None
        rec = self._start_recorder(exp, recorder_id, recorder_name, resume, parent,
                                   log_system_metrics=log_system_metrics)
        _stack.set(frames + (_Frame(manager, exp, rec),))
        return exp

    def _start_recorder(self, exp: Experiment, recorder_id: str | None, recorder_name: str | None, resume: bool,
                        parent: Recorder | None, log_system_metrics: bool | None = None) -> Recorder:
        if recorder_id is not None and not resume:
            raise QexpError("recorder_id is only used with resume=True (to reopen that run); to start a new "
                            "run give recorder_name")
        if resume:
            if recorder_id is not None:
                rec = exp._get_recorder(recorder_id, None)
            else:
                try:
                    rec = exp._get_recorder(None, recorder_name or exp.DEFAULT_RECORDER_NAME)
                except QexpError:
                    rec = exp.create_recorder(recorder_name)
        else:
            rec = exp.create_recorder(recorder_name)
        rec.autolog = self.autolog
        rec.__dict__["log_system_metrics"] = log_system_metrics  # read by the system-metrics plugin at start
        if parent is not None and rec.id is None:
            rec.parent_id = parent.id
        if any(f.recorder is not None and f.recorder.id == rec.id and rec.id is not None for f in _stack.get()):
            raise QexpError(f"run {rec.id} is already active in this thread; nested R.start must open another run")
        rec.start_run()
        exp.active_recorder = rec
        with _open_lock:
            _open[id(rec)] = rec
        return rec

    def _end_frame(self, frame: _Frame, status: str) -> None:
        frames = _stack.get()
        try:
            if frame.recorder.status == Recorder.STATUS_R or frame.recorder.id is not None:
                _run_before_end(frame.recorder, status)
                frame.recorder.end_run(status)
        finally:
            with _open_lock:
                _open.pop(id(frame.recorder), None)
            outer = frames[:frames.index(frame)] if frame in frames else frames
            # a child run can share its parent's Experiment object: the parent becomes its active run again
            frame.experiment.active_recorder = next(
                (f.recorder for f in reversed(outer) if f.experiment is frame.experiment), None)
            if frame in frames:
                _stack.set(outer)

    def end_exp(self, recorder_status: str = Recorder.STATUS_FI) -> None:
        """End the innermost active run with ``recorder_status``; nothing happens when none is active."""
        frames = _stack.get()
        if frames:
            self._end_frame(frames[-1], recorder_status)

    # ---- lookups -----------------------------------------------------------------------------
    def get_exp(self, *, experiment_id: str | None = None, experiment_name: str | None = None,
                create: bool = True, start: bool = False) -> Experiment:
        """The experiment by id or name; with neither, the active one, else the default one."""
        frames = _stack.get()
        if experiment_id is None and experiment_name is None and frames:
            return frames[-1].experiment
        if start and not frames:
            self.start_exp(experiment_id=experiment_id, experiment_name=experiment_name)
            return _stack.get()[-1].experiment
        return self.exp_manager.get_exp(experiment_id=experiment_id, experiment_name=experiment_name,
                                        create=create)

    def list_experiments(self) -> dict[str, Experiment]:
        return self.exp_manager.list_experiments()

    def list_recorders(self, experiment_id: str | None = None, experiment_name: str | None = None,
                       **kwargs: Any) -> dict[str, Recorder]:
        """Recorders of an experiment (the active or default one when none is named). Never creates it."""
        exp = self.get_exp(experiment_id=experiment_id, experiment_name=experiment_name, create=False)
        return exp.list_recorders(**kwargs)

    def search_records(self, experiment_ids: list[str] | str | None = None, filter_string: str = "",
                       order_by: list[str] | str | None = None, max_results: int | None = None,
                       **kwargs: Any) -> pd.DataFrame:
        """Runs as a DataFrame shaped like ``mlflow.search_runs`` (``metrics.*``, ``params.*``, ``tags.*``).
        ``experiment_ids=None`` searches every experiment."""
        return self.exp_manager.search_records(experiment_ids, filter_string=filter_string, order_by=order_by,
                                               max_results=max_results, **kwargs)

    def get_recorder(self, *, recorder_id: str | None = None, recorder_name: str | None = None,
                     experiment_id: str | None = None, experiment_name: str | None = None) -> Recorder:
        """The active recorder, or one by id / latest by name. Nothing active and nothing named is an error."""
        frames = _stack.get()
        if recorder_id is None and recorder_name is None:
            if frames and experiment_id is None and experiment_name is None:
                return frames[-1].recorder
            raise NoActiveRecorderError(
                "no recorder is active in this thread; start one with `with R.start(...)`, or name one: "
                "R.get_recorder(recorder_id=...) or R.get_recorder(recorder_name=..., experiment_name=...)")
        if recorder_id is not None and experiment_id is None and experiment_name is None:
            return self.exp_manager.get_recorder_by_id(recorder_id)
        exp = self.get_exp(experiment_id=experiment_id, experiment_name=experiment_name, create=False)
        return exp._get_recorder(recorder_id, recorder_name)

    def delete_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> None:
        self.exp_manager.delete_exp(experiment_id=experiment_id, experiment_name=experiment_name)

    def delete_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None,
                        experiment_id: str | None = None, experiment_name: str | None = None) -> None:
        if recorder_id is not None and experiment_id is None and experiment_name is None:
            rec = self.exp_manager.get_recorder_by_id(recorder_id)
            exp = self.exp_manager.get_exp(experiment_id=rec.experiment_id, create=False)
            exp.delete_recorder(recorder_id=recorder_id)
            return
        exp = self.get_exp(experiment_id=experiment_id, experiment_name=experiment_name, create=False)
        exp.delete_recorder(recorder_id=recorder_id, recorder_name=recorder_name)

    # ---- uri ---------------------------------------------------------------------------------
    def get_uri(self) -> str:
        return self.exp_manager.uri

    def set_uri(self, uri: str | None) -> None:
        """Change the default store (``None`` resets to ``QEXP_URI`` or ``./qexp_runs``)."""
        current = self._default_manager()
        self.register(create_manager(uri, default_exp_name=current.default_exp_name))

    @contextmanager
    def uri_context(self, uri: str) -> Iterator[None]:
        """Use ``uri`` as the store inside the block (this thread only)."""
        token = _uri_override.set(uri)
        try:
            yield
        finally:
            _uri_override.reset(token)

    # ---- writes to the active recorder (auto-started as in Qlib) -----------------------------
    def _active_or_autostart(self) -> Recorder:
        frames = _stack.get()
        if frames:
            return frames[-1].recorder
        self.start_exp()
        return _stack.get()[-1].recorder

    def _active(self, what: str) -> Recorder:
        frames = _stack.get()
        if not frames:
            raise NoActiveRecorderError(
                f"R.{what} needs an active recorder; use it inside `with R.start(...)`, or call "
                f"R.get_recorder(recorder_id=...).{what}(...)")
        return frames[-1].recorder

    def log_params(self, **kwargs: Any) -> None:
        self._active_or_autostart().log_params(**kwargs)

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        self._active_or_autostart().log_metrics(step=step, **kwargs)

    def set_tags(self, **kwargs: Any) -> None:
        self._active_or_autostart().set_tags(**kwargs)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        self._active_or_autostart().log_artifact(local_path, artifact_path)

    def save_objects(self, local_path: str | None = None, artifact_path: str | None = None, **kwargs: Any) -> None:
        """Pickle ``name=obj`` pairs (or copy ``local_path``) into the active run (auto-started if none)."""
        self._active_or_autostart().save_objects(local_path=local_path, artifact_path=artifact_path, **kwargs)

    def load_object(self, name: str, restricted: bool = False) -> Any:
        """Unpickle an artifact of the active run (an error when none is active)."""
        return self._active("load_object").load_object(name, restricted=restricted)

    def download_artifact(self, path: str, dst_path: str | None = None) -> str:
        """Download an artifact of the active run and return its local path."""
        return self._active("download_artifact").download_artifact(path, dst_path)

    # ---- exit handling -----------------------------------------------------------------------
    def _end_all_open(self, status: str) -> None:
        with _open_lock:
            recs = list(_open.values())
            _open.clear()
        for rec in recs:
            try:
                if rec.status == Recorder.STATUS_R:
                    rec.end_run(status)
            except Exception:  # at exit nothing more can be done than try the others
                pass
        _stack.set(())

    def _end_thread_open(self, status: str) -> None:
        for frame in reversed(_stack.get()):
            self._end_frame(frame, status)


class _StartContext(AbstractContextManager):
    """What ``R.start(...)`` returns: the run's context manager, which warns when it is never entered."""

    def __init__(self, block: AbstractContextManager) -> None:
        self._block = block
        self._entered = False

    def __enter__(self) -> Experiment:
        self._entered = True
        exp: Experiment = self._block.__enter__()
        return exp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        return self._block.__exit__(exc_type, exc, tb)

    def __del__(self) -> None:
        if not self._entered:
            warnings.warn("R.start(...) was called without `with`, so no run was started: write "
                          "`with R.start(...):`, or call R.start_exp(...) and R.end_exp() yourself",
                          RuntimeWarning, stacklevel=2)


R = QexpRecorder()
