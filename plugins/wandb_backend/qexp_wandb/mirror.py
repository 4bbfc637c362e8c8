"""WandbMirror: one W&B run per qexp run, fed by qexp's recorder events.

The local store has already accepted every write when an event arrives, so W&B is a copy: a W&B error is
reported once per run (one warning) and the run goes on locally; an online start that fails falls back to
offline for this and later runs. Used two ways with the same code:

- as a mirror (``qexp.init(mirrors=["wandb://project"])``): registered as a plugin, it receives the events
  of every recorder, whatever the backend;
- by the ``wandb://`` backend, which links the recorders it hands out to its mirror (:class:`Link`); a
  registered mirror with the same W&B project leaves those alone, so a run is never mirrored twice.
"""
from __future__ import annotations

import atexit
import os
import posixpath
import secrets
import string
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from qexp import hookimpl

from ._lazy import import_wandb
from .credentials import CREDENTIALS_HINT, has_credentials, resolve_mode
from .mapping import STEP_KEY, history_row, params_to_config, tags_to_config, wandb_run_tags
from .uri import WandbTarget

LINK_ATTR = "_qexp_wandb_link"
FAILED = "FAILED"
_ID_ALPHABET = string.ascii_lowercase + string.digits


class Link:
    """Attached to the recorders a ``wandb://`` backend hands out: they are mirrored by ``mirror``."""

    __slots__ = ("mirror", "experiment_name")

    def __init__(self, mirror: WandbMirror, experiment_name: str | None):
        self.mirror = mirror
        self.experiment_name = experiment_name

    def __reduce__(self) -> tuple:
        # a pickled recorder (sent to another process) travels without the link: it holds locks and a
        # W&B run that only exist in this process
        return (_no_link, ())


def _no_link() -> None:
    return None


def link_of(recorder: Any) -> Link | None:
    return getattr(recorder, LINK_ATTR, None)


def new_run_id() -> str:
    # always passed explicitly: after a resume, wandb 0.31 reuses the resumed id for the next run without one
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


@dataclass(eq=False)
class _RunState:
    """The W&B side of one qexp run while it is open in this process."""

    qexp_id: str
    run: Any = None
    failed: bool = False              # a W&B error happened: warned once, later writes skipped
    lock: threading.RLock = field(default_factory=threading.RLock)
    latest: dict[str, tuple[int, float]] = field(default_factory=dict)   # key -> (step, value), qexp's rule
    run_tags: dict[str, str] = field(default_factory=dict)
    artifact: Any = None


class WandbMirror:
    """Mirrors qexp runs into W&B runs of ``target.project``. Thread-safe; one W&B run per qexp run id."""

    def __init__(self, target: WandbTarget):
        self.target = target
        self._runs: dict[str, _RunState] = {}
        self._lock = threading.Lock()
        self._mode: str | None = None
        self._managers: dict[str, Any] = {}
        _live.add(self)

    def __repr__(self) -> str:
        return f"WandbMirror(project={self.target.project!r}, entity={self.target.entity!r})"

    # ---- hook implementations (mirror mode) -------------------------------------------------------
    def _mine(self, recorder: Any) -> bool:
        link = link_of(recorder)
        return link is None or not link.mirror.target.same_wandb(self.target)

    @hookimpl
    def recorder_started(self, recorder: Any) -> None:
        if self._mine(recorder):
            self.on_started(recorder)

    @hookimpl
    def recorder_params_logged(self, recorder: Any, params: dict) -> None:
        if self._mine(recorder):
            self.on_params(recorder, params)

    @hookimpl
    def recorder_metrics_logged(self, recorder: Any, metrics: dict, step: int | None) -> None:
        if self._mine(recorder):
            self.on_metrics(recorder, metrics, step)

    @hookimpl
    def recorder_tags_set(self, recorder: Any, tags: dict) -> None:
        if self._mine(recorder):
            self.on_tags(recorder, tags)

    @hookimpl
    def recorder_artifact_logged(self, recorder: Any, local_path: str, artifact_path: str | None) -> None:
        if self._mine(recorder):
            self.on_artifact(recorder, local_path, artifact_path)

    @hookimpl
    def recorder_ended(self, recorder: Any, status: str) -> None:
        if self._mine(recorder):
            self.on_ended(recorder, status)

    # ---- events ---------------------------------------------------------------------------------
    def on_started(self, recorder: Any) -> None:
        """Open (or resume) the W&B run of ``recorder``."""
        self._state(recorder)

    def on_params(self, recorder: Any, params: dict[str, str]) -> None:
        config = params_to_config(params)
        self._do(self._state(recorder), "logging params",
                 lambda st: st.run.config.update(config, allow_val_change=True))

    def on_metrics(self, recorder: Any, metrics: dict[str, float], step: int | None) -> None:
        step = 0 if step is None else int(step)

        def log(st: _RunState) -> None:
            st.run.log(history_row(metrics, step))
            for k, v in metrics.items():
                prev = st.latest.get(k)
                if prev is None or step >= prev[0]:
                    st.latest[k] = (step, v)

        self._do(self._state(recorder), "logging metrics", log)

    def on_tags(self, recorder: Any, tags: dict[str, str]) -> None:
        config, run_tags = tags_to_config(tags), wandb_run_tags(tags)
        if not config and not run_tags:
            return  # e.g. the wandb.* link tags this mirror writes itself

        def set_tags(st: _RunState) -> None:
            if config:
                st.run.config.update(config, allow_val_change=True)
            if run_tags:
                st.run_tags.update(run_tags)  # a tag set again replaces its old key=value
                st.run.tags = tuple(sorted(st.run_tags.values()))

        self._do(self._state(recorder), "setting tags", set_tags)

    def on_artifact(self, recorder: Any, local_path: str, artifact_path: str | None) -> None:
        if not self.target.artifacts:
            return
        name = posixpath.join(artifact_path or "", os.path.basename(os.path.normpath(local_path)))

        def add(st: _RunState) -> None:
            if st.artifact is None:
                wandb = import_wandb()
                st.artifact = wandb.Artifact(name=f"qexp-{st.qexp_id}", type="qexp-run",
                                             metadata={"qexp.run_id": st.qexp_id})
            # added now (W&B copies the file into its staging area): the source may be a temp file
            if os.path.isdir(local_path):
                st.artifact.add_dir(local_path, name=name)
            else:
                st.artifact.add_file(local_path, name=name)

        self._do(self._state(recorder), "adding an artifact", add)

    def on_ended(self, recorder: Any, status: str) -> None:
        with self._lock:
            st = self._runs.pop(recorder.id, None)
        if st is not None:  # a run never mirrored in this process has nothing to finish
            self._finish(st, status)

    def finish_all(self, status: str = "FINISHED") -> int:
        """Finish every W&B run this mirror holds open (at exit, or in tests/benchmarks); returns how many."""
        with self._lock:
            states = list(self._runs.values())
            self._runs.clear()
        for st in states:
            self._finish(st, status)
        return len(states)

    def open_run_ids(self) -> list[str]:
        """The qexp run ids whose W&B run is open."""
        with self._lock:
            return list(self._runs)

    # ---- internals ------------------------------------------------------------------------------
    def mode(self) -> str:
        """The W&B mode runs are started in now (decided at the first run; online falls back to offline)."""
        if self._mode is None:
            self._mode = resolve_mode(self.target.mode)
        return self._mode

    def _state(self, recorder: Any) -> _RunState:
        rid = recorder.id
        with self._lock:
            st = self._runs.get(rid)
            if st is not None:
                return st
            st = _RunState(rid)
            st.lock.acquire()  # held until the run is open, so other threads wait for it
            self._runs[rid] = st
        try:
            self._open(st, recorder)
        except Exception as exc:
            self._fail(st, "starting the W&B run", exc)
        finally:
            st.lock.release()
        return st

    def _do(self, st: _RunState, what: str, fn: Callable[[_RunState], None]) -> None:
        with st.lock:
            if st.run is None or st.failed:
                return
            try:
                fn(st)
            except Exception as exc:
                self._fail(st, what, exc)

    def _fail(self, st: _RunState, what: str, exc: BaseException) -> None:
        if st.failed:
            return
        st.failed = True
        warnings.warn(f"qexp: W&B mirroring of run {st.qexp_id} (project {self.target.project!r}) failed while "
                      f"{what}: {type(exc).__name__}: {exc}. The run goes on in the local qexp store; later W&B "
                      f"writes for this run are skipped.", RuntimeWarning, stacklevel=2)

    def _open(self, st: _RunState, recorder: Any) -> None:
        mode = self.mode()
        if mode == "disabled":
            st.failed = True  # W&B switched off on purpose: skip quietly
            return
        wandb = import_wandb("mirroring runs to W&B")
        try:
            # the tags the run has already (context tags the backend wrote with the start, or all of a
            # resumed run's) go into the W&B run at init, and tell whether it has a W&B run to resume
            tags = recorder.list_tags()
        except Exception:
            tags = {}
        st.run_tags = wandb_run_tags(tags)
        kwargs = self._init_kwargs(wandb, recorder, tags, sorted(st.run_tags.values()))
        run = None
        online_failed = False
        if mode == "online":
            if not has_credentials():
                self._to_offline(f"no W&B credentials are configured; {CREDENTIALS_HINT}")
            else:
                try:
                    run = wandb.init(mode="online", **kwargs)
                except Exception as exc:
                    online_failed = True
                    self._to_offline(f"starting the online W&B run failed ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''})")
        if run is None:
            if online_failed and kwargs["resume"] is None:
                kwargs["id"] = new_run_id()  # W&B's service keeps the failed attempt's id "in use"
            try:
                run = wandb.init(mode="offline", **kwargs)
            except Exception:
                if not (online_failed and kwargs["resume"]):
                    raise
                # a resumed run whose id the failed online attempt still holds: a new W&B run then
                kwargs.update(id=new_run_id(), resume=None)
                run = wandb.init(mode="offline", **kwargs)
        st.run = run
        _install_atexit()
        # W&B's step must only grow; qexp's may repeat or go back, so it is a column and every metric's x-axis
        run.define_metric(STEP_KEY)
        run.define_metric("*", step_metric=STEP_KEY)
        links = {"wandb.run_id": run.id, "wandb.project": self.target.project,
                 "wandb.mode": run.settings.mode,
                 "wandb.dir": run.settings.sync_dir}
        if self.target.entity:
            links["wandb.entity"] = self.target.entity
        url = getattr(run, "url", None)
        if url:
            links["wandb.url"] = url
        recorder.set_tags(**links)

    def _to_offline(self, why: str) -> None:
        self._mode = "offline"
        warnings.warn(f"qexp: {why}; W&B runs of project {self.target.project!r} are written offline instead "
                      f"(the local qexp record is complete). Upload them later with `qexp runs sync-wandb`.",
                      RuntimeWarning, stacklevel=4)

    def _resume_id(self, tags: dict[str, str]) -> str | None:
        """The W&B run id a resumed qexp run already has in this project, if any."""
        if tags.get("wandb.project") == self.target.project and tags.get("wandb.entity") == self.target.entity:
            return tags.get("wandb.run_id") or None
        return None

    def _init_kwargs(self, wandb: Any, recorder: Any, tags: dict[str, str], run_tags: list[str]) -> dict[str, Any]:
        exp_name = self._experiment_name(recorder)
        config: dict[str, Any] = {"qexp.run_id": recorder.id, "qexp.experiment_id": recorder.experiment_id,
                                  "qexp.experiment": exp_name, "qexp.store": recorder.uri, **tags_to_config(tags)}
        if recorder.parent_id:
            config["qexp.parent_run_id"] = recorder.parent_id
        resume_id = self._resume_id(tags)
        settings: dict[str, Any] = {
            "console": "off",  # a library must not redirect the process's output, once per concurrent run
            "x_disable_stats": not self.target.system,   # a sampler per run; qexp records its own context
            "x_disable_meta": not self.target.system,
            # W&B reads the metadata of every installed package at each init (~0.5 s in a large venv)
            "x_save_requirements": self.target.system,
        }
        if self.target.init_timeout is not None:
            settings["init_timeout"] = self.target.init_timeout
        if os.environ.get("WANDB_BASE_URL"):  # read per run, like the credentials check (W&B reads it once)
            settings["base_url"] = os.environ["WANDB_BASE_URL"]
        # passed on every init: W&B reads $WANDB_DIR once per process, at its first run
        folder = self.target.dir or os.environ.get("WANDB_DIR") or None
        if folder:
            os.makedirs(folder, exist_ok=True)
        return dict(project=self.target.project, entity=self.target.entity, name=recorder.name,
                    group=exp_name, job_type="qexp", config=config, tags=run_tags,
                    notes=f"qexp run {recorder.id} of experiment {exp_name!r} in {recorder.uri}",
                    id=resume_id or new_run_id(), resume="allow" if resume_id else None,
                    dir=folder, reinit="create_new", settings=wandb.Settings(**settings))

    def _experiment_name(self, recorder: Any) -> str:
        link = link_of(recorder)
        if link is not None and link.experiment_name:
            return link.experiment_name
        try:  # mirror mode: ask the recorder's own store (one manager per store, cached)
            manager = self._managers.get(recorder.uri)
            if manager is None:
                from qexp.ext import create_manager
                manager = self._managers[recorder.uri] = create_manager(recorder.uri)
            return manager.get_exp(experiment_id=recorder.experiment_id, create=False).name
        except Exception:
            return f"experiment-{recorder.experiment_id}"

    def _finish(self, st: _RunState, status: str) -> None:
        with st.lock:
            if st.run is None:
                return
            if not st.failed:
                try:
                    # W&B's summary keeps the last value logged; qexp's latest is the one at the highest step
                    st.run.summary.update({**{k: v for k, (_, v) in st.latest.items()}, "qexp.status": status})
                    if st.artifact is not None:
                        st.run.log_artifact(st.artifact)
                except Exception as exc:
                    self._fail(st, "writing the run summary", exc)
            try:
                st.run.finish(exit_code=1 if status == FAILED else 0)
            except Exception as exc:
                self._fail(st, "finishing the W&B run", exc)
            st.run = None


# ---- process exit ---------------------------------------------------------------------------------
_live: weakref.WeakSet[WandbMirror] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_installed = False


def _install_atexit() -> None:
    # registered after the first wandb.init, so it runs before W&B's own exit handler (atexit is LIFO)
    # and before qexp's (registered at qexp.init), which would end the runs after W&B has shut down
    global _atexit_installed
    with _atexit_lock:
        if not _atexit_installed:
            _atexit_installed = True
            atexit.register(finish_all_mirrors)


def finish_all_mirrors(status: str = "FINISHED") -> int:
    """Finish every open W&B run of every mirror (qexp ends runs left open at exit as FINISHED too)."""
    return sum(m.finish_all(status) for m in list(_live))
