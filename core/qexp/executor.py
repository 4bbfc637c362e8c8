"""The Executor contract: where many runs go at once (this process, a process pool, a Dask cluster).

Executors are chosen by URI scheme like backends: ``local`` (in this process, in order; the default),
``process://N``, ``dask://HOST:PORT``, ``dask+local://N``, or a third party's scheme registered through the
``register_executors`` hook. The contract is the part of :class:`concurrent.futures.Executor` a driver
needs, plus resources and retries: submit a picklable call, get a :class:`concurrent.futures.Future`,
wait for results as they complete, cancel, shut down.

The driver-side helpers below are shared by executors that run calls in other processes: the settings
that travel with each call, the runs their workers report (so that a dead worker's runs end FAILED with a
reason), and the check that workers reach the driver's store and data.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import re
import socket
import threading
import uuid
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

from . import registry
from .backends import create_manager
from .exceptions import ConfigError, QexpError
from .plugins import load_plugins
from .recorder import Recorder
from .uri import local_path, mask_uri, uri_scheme
from .worker import FAILURE_TAG, folder_listing, worker_settings

DEFAULT_EXECUTOR = "local"
logger = logging.getLogger("qexp.executor")


class WorkerDied(QexpError):
    """The worker running a call died (killed, out of memory) as many times as the call may be retried."""


class Executor(ABC):
    """Runs picklable calls and hands back futures. Use it as a context manager, or call :meth:`shutdown`.

    Leaving the ``with`` block by an exception (Ctrl-C included) cancels the calls that have not started
    and stops the running ones; their runs end FAILED with ``qexp.failure_reason``.
    """

    uri: str = DEFAULT_EXECUTOR

    @property
    def max_workers(self) -> int:
        """How many calls can run at the same time."""
        return 1

    @abstractmethod
    def submit(self, fn: Callable[..., Any], /, *args: Any, resources: dict[str, float] | None = None,
               retries: int = 0, key: str | None = None, **kwargs: Any) -> cf.Future:
        """Schedule ``fn(*args, **kwargs)``. ``resources`` (``{"GPU": 1}``) limits where it may run, ``retries``
        how many more times a call whose worker died is tried (an exception is never retried: it would fail
        again), ``key`` names it in logs and dashboards.

        Executors whose workers are other processes run the call under this session's ``qexp.init``
        settings (see :func:`worker_settings`), or those ``fn.qexp_call_settings(*args, **kwargs)`` names (see
        :func:`call_settings`); calls with other settings never run at once in one worker process."""

    def as_completed(self, futures: Iterable[cf.Future], timeout: float | None = None) -> Iterator[cf.Future]:
        """Yield ``futures`` as they finish (failed ones too: check ``future.exception()``)."""
        return cf.as_completed(list(futures), timeout=timeout)

    def wait(self, futures: Iterable[cf.Future], timeout: float | None = None) -> tuple[set[cf.Future], set[cf.Future]]:
        """Block until at least one of ``futures`` is done; return ``(done, not_done)`` (as
        :func:`concurrent.futures.wait` with ``FIRST_COMPLETED``), so a driver that keeps submitting while
        others run needs no new ``as_completed`` per result."""
        done, not_done = cf.wait(list(futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done, not_done

    def cancel(self, futures: Iterable[cf.Future]) -> int:
        """Cancel the calls that have not started; return how many were cancelled."""
        return sum(1 for f in futures if f.cancel())

    def check_reach(self, settings: dict | None = None, paths: Iterable[str] = ()) -> None:
        """Raise :class:`QexpError` naming what the workers cannot reach: the store and data of ``settings``
        (default: this session's), and the folders ``paths``. Executors on this machine reach everything."""
        return None

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, reason: str | None = None) -> None:
        """Release the workers (after the running calls when ``wait``). With ``cancel_futures`` the queued
        calls are cancelled and the running ones stopped, their runs ended FAILED with ``reason``."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.shutdown(wait=True)
        else:
            what = "Ctrl-C" if issubclass(exc_type, KeyboardInterrupt) else exc_type.__name__
            self.shutdown(wait=False, cancel_futures=True, reason=f"cancelled: the driver stopped ({what})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class DeferredFuture(cf.Future):
    """A future whose call runs in the thread that first waits for it (``result()``, ``exception()``, or
    :meth:`run`), so an in-process executor keeps the caller's order, thread and active runs."""

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        super().__init__()
        self._call: tuple[Callable[..., Any], tuple, dict] | None = (fn, args, kwargs)

    def run(self) -> None:
        """Run the call now, unless it already ran or was cancelled. KeyboardInterrupt is recorded and re-raised."""
        call, self._call = self._call, None
        if call is None or not self.set_running_or_notify_cancel():
            return
        fn, args, kwargs = call
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.set_result(result)

    def result(self, timeout: float | None = None) -> Any:
        self.run()
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self.run()
        return super().exception(timeout)


def default_executor_uri() -> str:
    """``$QEXP_EXECUTOR``, else ``local``."""
    return os.environ.get("QEXP_EXECUTOR") or DEFAULT_EXECUTOR


def get_executor(uri: str | Executor | None = None, **kwargs: Any) -> Executor:
    """The executor for ``uri`` (an :class:`Executor` is returned as is; ``None``: ``$QEXP_EXECUTOR``, else
    ``local``). An unknown scheme lists the known ones and the extra that provides a missing one."""
    if isinstance(uri, Executor):
        return uri
    load_plugins()
    uri = uri or default_executor_uri()
    # a bare scheme name ("local", "process") means that scheme with its defaults
    if ":" not in uri:
        uri = f"{uri}:"
    executor: Executor = registry.executors.create(uri, **kwargs)
    return executor


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_resources(text: str, where: str) -> dict[str, float]:
    """``"GPU:2,MEM:64"`` (or ``GPU=2``; a bare ``GPU`` is 1) -> ``{"GPU": 2.0, "MEM": 64.0}``; anything else is a
    :class:`ConfigError` that names ``where`` (the executor URI) and the expected form."""
    out: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in str(text).split(","))):
        name, sep, amount = item.replace("=", ":", 1).partition(":")
        name = name.strip()
        try:
            value = float(amount) if sep else 1.0
        except ValueError:
            value = float("nan")
        if not name or not value >= 0 or value == float("inf"):
            raise ConfigError(f"{where}: resource {item!r} must be NAME:AMOUNT with a number >= 0, e.g. GPU:2 "
                              f"(several: resources=GPU:2,MEM:64)")
        out[name] = value
    return out


# ---- helpers for executors whose workers are other processes ------------------------------------------
def new_call_id(key: str | None, fn: Callable[..., Any]) -> str:
    """A unique id for one submitted call, readable in logs: ``<key or function name>-<8 hex>``."""
    base = key or getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(base))[:60]}-{uuid.uuid4().hex[:8]}"


def call_settings(fn: Callable[..., Any], args: tuple = (), kwargs: dict | None = None) -> dict | None:
    """The settings to ship with the call ``fn(*args, **kwargs)``: ``fn.qexp_call_settings(*args, **kwargs)``
    when ``fn`` says which ``qexp.init`` settings it runs under (a workflow run: its config's), else this
    session's; None when ``fn.qexp_own_session`` (it initialises qexp itself, so a worker runs it alone)."""
    own = getattr(fn, "qexp_call_settings", None)
    if callable(own):
        return worker_settings(own(*args, **(kwargs or {})))
    return None if getattr(fn, "qexp_own_session", False) else worker_settings()


@contextmanager
def reach_spec(settings: dict | None, paths: Iterable[str] = ()) -> Iterator[dict]:
    """What a worker checks with :func:`qexp.worker.probe_reach`: the store folder (marked with a token file
    for the block, so that another disk with the same path is told apart), the data folder (by a listing)
    and ``paths``; servers (PostgreSQL, an MLflow server) by host and port."""
    settings = worker_settings(settings) if settings is not None else worker_settings()
    folders: list[dict] = []
    servers: list[dict] = []
    tokens: list[str] = []
    store = local_path(settings["uri"])
    if store is not None:
        folders.append(_token_folder("the tracking store", store, tokens))
    else:
        servers += _server("the tracking store", settings["uri"])
    artifacts = settings.get("artifact_root")
    folder = local_path(os.fspath(artifacts)) if artifacts else None
    if folder is not None:
        folders.append(_token_folder("the artifact root", folder, tokens))
    provider = settings.get("provider_uri")
    for uri in (provider.values() if isinstance(provider, dict) else [provider] if provider else []):
        folder = local_path(os.fspath(uri))
        if folder is not None and os.path.isdir(folder):
            folders.append({"what": "the data (provider_uri)", "path": folder, "listing": folder_listing(folder)})
    for path in paths:
        folders.append(_token_folder("the folder", os.path.abspath(path), tokens))
    try:
        yield {"driver_host": socket.gethostname(), "folders": folders, "servers": servers}
    finally:
        for token in tokens:
            try:
                os.remove(token)
            except OSError:
                pass


def _token_folder(what: str, path: str, tokens: list[str]) -> dict:
    # the token goes into the folder's .qexp/ (qexp's own corner of a store), or into the folder itself when
    # it is such a .qexp/ already (the sweep's study folder): never a DIR/.qexp/.qexp/
    sub = "" if os.path.basename(os.path.normpath(path)) == ".qexp" else ".qexp"
    os.makedirs(os.path.join(path, sub), exist_ok=True)
    name = os.path.join(sub, f"reach-{uuid.uuid4().hex}")
    with open(os.path.join(path, name), "w") as f:
        f.write(socket.gethostname())
    tokens.append(os.path.join(path, name))
    return {"what": what, "path": path, "token": name}


_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "http": 80, "https": 443, "redis": 6379}


def _server(what: str, uri: str) -> list[dict]:
    parts = urlsplit(uri)
    scheme = uri_scheme(uri)
    if not parts.hostname or scheme not in _DEFAULT_PORTS:
        return []
    return [{"what": what, "uri": mask_uri(uri), "host": parts.hostname,
             "port": parts.port or _DEFAULT_PORTS[scheme]}]


def reach_error(results: dict[str, list[str]]) -> QexpError | None:
    """One error naming every worker's problems (from :func:`qexp.worker.probe_reach`), or None."""
    lines = [f"{worker}: {p}" for worker, problems in sorted(results.items()) for p in problems]
    if not lines:
        return None
    return QexpError("the workers cannot reach what the runs need, so nothing was submitted:\n  " + "\n  ".join(lines)
                     + "\nGive every worker the same folders (a shared disk mounted at the same path) and a "
                       "tracking store they all reach (PostgreSQL or an MLflow server), with absolute paths.")


class RunTracker:
    """The runs each call's workers reported as started and not yet ended, so the driver can end them FAILED
    with ``qexp.failure_reason`` when their worker dies or the driver gives the call up."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, tuple[str, str]]] = {}  # call -> run id -> (store uri, worker)
        self._lock = threading.Lock()
        self._managers: dict[str, Any] = {}

    def event(self, call_id: str, event: tuple | list, worker: str = "") -> None:
        """Record ``("started", run_id, uri)`` or ``("ended", run_id, status)`` from a call's worker."""
        kind = event[0]
        with self._lock:
            if kind == "started":
                self._open.setdefault(call_id, {})[str(event[1])] = (str(event[2]), worker)
            elif kind == "ended":
                self._open.get(call_id, {}).pop(str(event[1]), None)

    def open_runs(self, call_id: str) -> dict[str, tuple[str, str]]:
        with self._lock:
            return dict(self._open.get(call_id, {}))

    def forget(self, call_id: str) -> None:
        with self._lock:
            self._open.pop(call_id, None)

    def fail(self, call_id: str, reason: str, worker: str | None = None, died: bool = False) -> list[str]:
        """End FAILED, with ``reason``, the open runs of ``call_id`` (only those on ``worker`` when given).
        ``died``: their worker is known dead, so a run the store already failed gets this reason instead of
        the store's generic one. Returns the ids of the runs it ended."""
        with self._lock:
            runs = self._open.get(call_id, {})
            chosen = {rid: v for rid, v in runs.items() if worker is None or v[1] == worker}
            for rid in chosen:
                runs.pop(rid, None)
        done = []
        for run_id, (uri, _) in chosen.items():
            if self._fail_run(uri, run_id, reason, died):
                done.append(run_id)
        return done

    def _fail_run(self, uri: str, run_id: str, reason: str, died: bool) -> bool:
        try:
            manager = self._managers.get(uri)
            if manager is None:
                manager = self._managers[uri] = create_manager(uri)
            rec = manager.get_recorder_by_id(run_id)
            if rec.status == Recorder.STATUS_R:
                rec.set_tags(**{FAILURE_TAG: reason})
                rec.end_run(Recorder.STATUS_FA)
                return True
            if died and rec.status == Recorder.STATUS_FA:
                rec.set_tags(**{FAILURE_TAG: reason})  # the store noticed the dead owner first: say more
                return True
        except Exception as exc:  # the driver must go on with the other calls
            logger.warning("could not end run %s of a stopped call FAILED: %s: %s", run_id, type(exc).__name__, exc)
        return False
