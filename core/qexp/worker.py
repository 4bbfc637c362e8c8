"""The worker side of executors: run one call with the caller's session, report the runs it opens, stop
it when the driver cancelled it, and check that the driver's store and data are in reach.

A process-pool or Dask worker calls :func:`run_call` for every call it receives. Nothing here imports an
executor plugin; the plugins hand in how to report (``notify``) and how to ask about cancellation.
"""
from __future__ import annotations

import copy
import hashlib
import os
import socket
import threading
from collections import deque
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .api import R
from .hookspecs import hookimpl
from .plugins import get_plugin, register
from .recorder import Recorder
from .session import get_settings, init
from .uri import resolve_uri, uri_scheme

FAILURE_TAG = "qexp.failure_reason"
"""The tag saying why a run ended FAILED without an exception of its own (its worker died, it was cancelled)."""

Notify = Callable[[tuple], None]
"""Called with ``("started", run_id, store_uri)`` and ``("ended", run_id, status)`` for each run a call opens."""


class CallCancelled(BaseException):
    """Raised inside a call whose driver cancelled it. A BaseException, so that a call's own ``except
    Exception`` (or a plugin-event guard) does not swallow it; ``R.start`` ends the run FAILED."""


@dataclass(frozen=True)
class CallSpec:
    """What travels with each call: an id unique to the call, the caller's ``qexp.init`` settings (None: the
    call initialises qexp itself) and the caller's name for it."""
    call_id: str
    settings: dict | None = None
    key: str = ""


@dataclass
class _CallState:
    spec: CallSpec
    notify: Notify
    cancelled: Callable[[], bool] | None
    recorders: list[Recorder] = field(default_factory=list)

    def check(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise CallCancelled(f"call {self.spec.key or self.spec.call_id} was cancelled by its driver")


_state: ContextVar[_CallState | None] = ContextVar("qexp_call", default=None)


class _RunWatcher:
    """Reports the runs a call opens and ends, and stops a cancelled call at its next write."""

    @hookimpl
    def recorder_started(self, recorder: Recorder) -> None:
        st = _state.get()
        if st is not None and recorder.id is not None:
            st.recorders.append(recorder)
            st.notify(("started", recorder.id, recorder.uri or R.get_uri()))

    @hookimpl
    def recorder_ended(self, recorder: Recorder, status: str) -> None:
        st = _state.get()
        if st is not None and recorder.id is not None:
            st.notify(("ended", recorder.id, status))

    # a cancelled call stops at its next write (never inside start/end: a run must not be left half-open)
    @hookimpl
    def recorder_metrics_logged(self, recorder: Recorder, metrics: dict, step: int | None) -> None:
        self._check()

    @hookimpl
    def recorder_params_logged(self, recorder: Recorder, params: dict) -> None:
        self._check()

    @hookimpl
    def recorder_artifact_logged(self, recorder: Recorder, local_path: str, artifact_path: str | None) -> None:
        self._check()

    @staticmethod
    def _check() -> None:
        st = _state.get()
        if st is not None:
            st.check()


_WATCHER_NAME = "qexp-worker"
_watcher_lock = threading.Lock()


def _ensure_watcher() -> None:
    with _watcher_lock:
        if get_plugin(_WATCHER_NAME) is None:
            register(_RunWatcher(), name=_WATCHER_NAME)


# ---- the session: the caller's qexp.init settings, applied once per process while they do not change ---------
# The store, the data provider and the caches are process-wide, so calls that run at once in one worker (a Dask
# worker with several threads) must share their settings: a call with other settings waits until the running
# ones finish, and calls enter in arrival order (so a call with other settings is not starved by a stream of
# calls that match the running ones). A call that initialises qexp itself (``settings`` None) runs alone.
_gate = threading.Condition()
_gate_settings: dict | None = None   # the shipped settings last applied
_gate_applied: dict | None = None    # get_settings() right after applying them, in comparable form
_gate_users = 0                      # calls running under _gate_settings
_gate_alone = False                  # a call that initialises qexp itself is running
_gate_queue: deque[object] = deque()  # calls waiting to enter, first come first served


def worker_settings(settings: dict | None = None) -> dict:
    """The ``qexp.init`` settings that travel with each call (default: this session's, see
    :func:`qexp.get_settings`), with the store and a local ``provider_uri`` as absolute paths, so a worker in
    another folder finds the same ones."""
    settings = dict(get_settings() if settings is None else settings)
    manager = settings.get("exp_manager")
    if not settings.get("uri") and isinstance(manager, dict):  # Qlib's way of naming the store
        settings["uri"] = (manager.get("kwargs") or {}).get("uri")
    settings["uri"] = resolve_uri(settings.get("uri"))
    provider = settings.get("provider_uri")
    if isinstance(provider, (str, os.PathLike)):
        settings["provider_uri"] = _absolute(provider)
    elif isinstance(provider, dict):
        settings["provider_uri"] = {k: _absolute(v) for k, v in provider.items()}
    return settings


def _absolute(uri: Any) -> Any:
    if isinstance(uri, (str, os.PathLike)) and uri_scheme(uri) in ("", "file"):
        return resolve_uri(uri)
    return uri


def _comparable(settings: dict) -> dict:
    try:
        return worker_settings(settings)
    except Exception:  # noqa: BLE001 - a value resolve_uri refuses: compare it as it is
        return dict(settings)


def _may_enter(settings: dict | None) -> bool:
    if _gate_alone:
        return False
    if settings is None:
        return _gate_users == 0
    return _gate_users == 0 or _gate_settings == settings


@contextmanager
def session(settings: dict | None) -> Iterator[None]:
    """Run the block under ``qexp.init(**settings)``. The init happens only when the settings differ from
    the ones applied last (or a call re-initialised qexp meanwhile with other settings), so a worker keeps its
    store, data provider and caches between calls; calls with other settings wait until the running ones
    finish. ``settings`` None: the call initialises qexp itself, so it runs with no other call beside it."""
    global _gate_settings, _gate_applied, _gate_users, _gate_alone
    ticket = object()
    with _gate:
        _gate_queue.append(ticket)
        try:
            while _gate_queue[0] is not ticket or not _may_enter(settings):
                _gate.wait()
        finally:
            _gate_queue.remove(ticket)
            _gate.notify_all()
        if settings is None:
            _gate_alone = True
            _gate_settings = _gate_applied = None  # whatever it sets up, the next call applies its own
        else:
            if _gate_settings != settings or _comparable(get_settings()) != _gate_applied:
                try:
                    init(**copy.deepcopy(settings))
                except BaseException:
                    _gate_settings = _gate_applied = None
                    _gate.notify_all()
                    raise
                _gate_settings, _gate_applied = copy.deepcopy(settings), _comparable(get_settings())
            _gate_users += 1
    try:
        yield
    finally:
        with _gate:
            if settings is None:
                _gate_alone = False
            else:
                _gate_users -= 1
            _gate.notify_all()


def run_call(spec: CallSpec, fn: Callable[..., Any], args: tuple = (), kwargs: dict | None = None, *,
             notify: Notify | None = None, cancelled: Callable[[], bool] | None = None) -> Any:
    """Run ``fn(*args, **kwargs)`` in a worker under the caller's session.

    Runs the call leaves open are ended (FINISHED when it returned, FAILED when it raised), so a worker
    never leaves a run RUNNING. ``notify`` receives each run started and ended; ``cancelled()`` says whether
    the driver gave the call up, in which case it stops at its next write and its runs end FAILED.
    """
    with session(spec.settings):
        _ensure_watcher()
        st = _CallState(spec, notify or (lambda event: None), cancelled)
        token = _state.set(st)
        ok = False
        try:
            st.check()
            result = fn(*args, **(kwargs or {}))
            ok = True
        except CallCancelled:
            _fail_recorders(st.recorders, "cancelled by its driver while it ran")
            raise
        finally:
            status = Recorder.STATUS_FI if ok else Recorder.STATUS_FA
            while R.has_active():
                R.end_exp(status)
            _state.reset(token)
        if cancelled is not None and cancelled():
            # it finished after its driver gave it up (no write came to stop it): it counts as stopped
            _fail_recorders(st.recorders, "cancelled by its driver while it ran")
            raise CallCancelled(f"call {spec.key or spec.call_id} was cancelled by its driver")
        return result


def _fail_recorders(recorders: list[Recorder], reason: str) -> None:
    """End the runs FAILED with ``reason``, unless the driver already gave one (it knows more)."""
    for rec in recorders:
        try:
            if FAILURE_TAG not in rec.list_tags():
                rec.set_tags(**{FAILURE_TAG: reason})
            if rec.status != Recorder.STATUS_FA:
                rec.end_run(Recorder.STATUS_FA)
        except Exception:  # the store may be gone; the driver's own report stands
            pass


# ---- shared preparation between calls of one worker ---------------------------------------------------------
_prep: ContextVar[dict | None] = ContextVar("qexp_preparation", default=None)


@contextmanager
def reuse_preparation(cache: dict) -> Iterator[dict]:
    """Inside the block, :func:`preparation_cache` returns ``cache``: calls that share preparation (a sweep's
    trials in one worker) keep what they built there for the next call."""
    token = _prep.set(cache)
    try:
        yield cache
    finally:
        _prep.reset(token)


def preparation_cache() -> dict | None:
    """The cache of the innermost :func:`reuse_preparation` block in this thread, else None. Models keep
    deterministic, expensive preparation there (LightGBM's binned Dataset), keyed by all it depends on."""
    return _prep.get()


# ---- per-step metrics as they come, for a listener that may stop the fit -------------------------------------
_live_steps: ContextVar[bool] = ContextVar("qexp_live_steps", default=False)


@contextmanager
def live_step_metrics() -> Iterator[None]:
    """Inside the block (in this thread), models log each training step's metrics as the step ends instead
    of in one batch after the fit, so a listener on ``recorder_metrics_logged`` (a sweep's pruner) sees them
    in time and can stop the fit by raising from the hook."""
    token = _live_steps.set(True)
    try:
        yield
    finally:
        _live_steps.reset(token)


def live_step_metrics_wanted() -> bool:
    """Whether the innermost :func:`live_step_metrics` block of this thread is open."""
    return _live_steps.get()


# ---- can this worker reach the driver's store and data? ---------------------------------------------------
def folder_listing(path: str) -> str:
    """A fingerprint of a folder's top level (names and file sizes), to tell two copies of a path apart."""
    h = hashlib.sha1()
    for name in sorted(os.listdir(path))[:500]:
        full = os.path.join(path, name)
        size = os.path.getsize(full) if os.path.isfile(full) else -1
        h.update(f"{name}\0{size}\n".encode())
    return h.hexdigest()


def probe_reach(spec: dict) -> list[str]:
    """Run on a worker: every way in which the store, data and folders of ``spec`` (made by the driver's
    :func:`qexp.executor.reach_spec`) are out of this worker's reach, one line each; empty when all is fine."""
    host = socket.gethostname()
    problems = []
    for item in spec.get("folders", []):
        what, path = item["what"], item["path"]
        if not os.path.isdir(path):
            problems.append(f"{what} {path} does not exist on {host}")
        elif item.get("token") and not os.path.exists(os.path.join(path, item["token"])):
            problems.append(f"{what} {path} on {host} is another folder than the driver's (a local disk, not a "
                            f"shared one)")
        elif item.get("listing") and folder_listing(path) != item["listing"]:
            problems.append(f"{what} {path} on {host} holds other files than the driver's copy")
    for item in spec.get("servers", []):
        what, uri, server, port = item["what"], item["uri"], item["host"], item["port"]
        if server in LOOPBACK and host != spec.get("driver_host"):
            problems.append(f"{what} {uri} names {server}, which on {host} is that machine itself, not the "
                            f"driver's ({spec.get('driver_host')})")
            continue
        try:
            socket.create_connection((server, port), timeout=3).close()
        except OSError as exc:
            problems.append(f"{what} {uri}: {server}:{port} does not answer from {host} ({exc})")
    return problems


LOOPBACK = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
