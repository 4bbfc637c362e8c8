"""Executors on Dask ``distributed``: ``dask://HOST:PORT`` (a running scheduler), ``dask+local://N`` (a
LocalCluster of N single-thread worker processes on 127.0.0.1 for as long as the executor lives) and
``dask+file://PATH`` (a scheduler found through its ``--scheduler-file``).

Options in the query: ``timeout=S`` (seconds to reach the scheduler and find a worker, default 5);
for ``dask+local``: ``threads=T`` per worker (default 1) and ``resources=GPU:1`` per worker.

A worker that dies mid-call is noticed through the scheduler's ``remove-worker`` event: the runs it had
open end FAILED with ``qexp.failure_reason`` and Dask runs the call again elsewhere, up to ``retries`` times
(and at most the scheduler's ``distributed.scheduler.allowed-failures``, 3 by default).
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from qexp.ext import (
    CallSpec,
    ConfigError,
    Executor,
    QexpError,
    RunTracker,
    WorkerDied,
    call_settings,
    file_uri_to_path,
    new_call_id,
    parse_resources,
    probe_reach,
    reach_error,
    reach_spec,
    require_extra,
    uri_scheme,
    worker_settings,
)

from .worker import TOPIC, dask_call

logger = logging.getLogger("qexp.dask")
DEFAULT_TIMEOUT = 5.0


class DaskCallFuture(cf.Future):
    """A :class:`concurrent.futures.Future` for a call on Dask: ``running()`` once a worker has begun it;
    ``cancel()`` also cancels the Dask task."""

    def __init__(self, executor: DaskExecutor, call_id: str) -> None:
        super().__init__()
        self._executor = executor
        self.call_id = call_id

    def cancel(self) -> bool:
        cancelled = super().cancel()
        if cancelled:
            self._executor._cancel_task(self.call_id)
        return cancelled


@dataclass(eq=False)
class _Call:
    call_id: str
    key: str
    future: DaskCallFuture
    task: Any = None
    retries: int = 0
    deaths: int = 0
    worker: str = ""


def _query(uri: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(uri).query).items()}


class DaskExecutor(Executor):
    """Calls on a Dask cluster; see the module docstring for the URIs and options."""

    def __init__(self, uri: str, *, timeout: float | None = None, **cluster_kwargs: Any) -> None:
        self._distributed = require_extra("distributed", "dask", f"the {uri_scheme(uri)}:// executor")
        self.uri = uri
        query = _query(uri)
        where = f"executor URI {uri!r}"
        known = {"timeout", "threads", "resources"}
        unknown = sorted(set(query) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            self._timeout = float(timeout if timeout is not None else query.get("timeout", DEFAULT_TIMEOUT))
        except ValueError:
            raise ConfigError(f"{where}: timeout must be a number of seconds") from None
        self._cluster: Any = None
        self._local = False
        self._client = self._connect(uri, query, where, cluster_kwargs)
        self._calls: dict[str, _Call] = {}
        self._lock = threading.Lock()
        self._tracker = RunTracker()
        self._io = cf.ThreadPoolExecutor(1, thread_name_prefix="qexp-dask-runs")
        self._reached: set[str] = set()
        self._closed = False
        self._client.subscribe_topic(TOPIC, self._on_call_event)
        self._client.subscribe_topic("all", self._on_cluster_event)

    # ---- connecting ------------------------------------------------------------------------------
    def _connect(self, uri: str, query: dict[str, str], where: str, cluster_kwargs: dict) -> Any:
        distributed = self._distributed
        scheme = uri_scheme(uri)
        netloc = urlsplit(uri).netloc
        if scheme == "dask+local":
            try:
                n = int(netloc) if netloc else None
                threads = int(query.get("threads", 1))
            except ValueError:
                n = threads = 0
            if (n is not None and n < 1) or threads < 1:
                raise ConfigError(f"{where}: the number of workers and threads must be whole numbers >= 1, e.g. "
                                  f"dask+local://2?threads=1")
            resources = parse_resources(query.get("resources", ""), where)
            from .cluster import start_local_cluster
            self._cluster = start_local_cluster(n, threads, resources, **cluster_kwargs)
            self._local = True
            return distributed.Client(self._cluster, set_as_default=False)
        if scheme == "dask+file":
            path = file_uri_to_path("file:" + uri.split(":", 1)[1].split("?", 1)[0])
            address, kwargs = f"the scheduler file {path}", {"scheduler_file": path}
        else:
            if not netloc:
                raise ConfigError(f"{where}: give the scheduler's address, e.g. dask://127.0.0.1:8786")
            address, kwargs = f"tcp://{netloc}", {"address": f"tcp://{netloc}"}
        try:
            client = distributed.Client(timeout=self._timeout, set_as_default=False, **kwargs)
        except (OSError, TimeoutError, ValueError) as exc:
            raise QexpError(f"no Dask scheduler answers at {address} (waited {self._timeout:g} s): start one with "
                            f"`dask scheduler --host HOST --port PORT` and workers with `dask worker tcp://HOST:PORT`, "
                            f"or fix the address ({type(exc).__name__}: {exc})") from None
        try:
            client.wait_for_workers(1, timeout=self._timeout)
        except (TimeoutError, OSError):
            client.close()
            raise QexpError(f"the Dask scheduler at {address} has no workers (waited {self._timeout:g} s): start "
                            f"some with `dask worker {client.scheduler.address}`") from None
        return client

    @property
    def max_workers(self) -> int:
        return max(1, sum(self._client.nthreads().values()))

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (for its dashboard link, or plain Dask work beside qexp's)."""
        return self._client

    # ---- reach ------------------------------------------------------------------------------------
    def check_reach(self, settings: dict | None = None, paths: Iterable[str] = ()) -> None:
        settings = worker_settings(settings)
        paths = sorted(str(p) for p in paths)
        key = json.dumps([settings, paths], sort_keys=True, default=str)
        if key in self._reached:
            return
        if not self._local:  # a LocalCluster's workers share this machine's folders
            with reach_spec(settings, paths) as spec:
                results = self._client.run(probe_reach, spec)
            error = reach_error({str(w): list(p) for w, p in results.items()})
            if error is not None:
                raise error
        self._reached.add(key)

    # ---- submitting -------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, resources: dict[str, float] | None = None,
               retries: int = 0, key: str | None = None, **kwargs: Any) -> cf.Future:
        if self._closed:
            raise RuntimeError(f"{self!r} is shut down; create another executor")
        settings = call_settings(fn, args, kwargs)
        if settings is not None:
            self.check_reach(settings)
        need = {k: float(v) for k, v in (resources or {}).items() if v}
        if need:
            self._check_resources(need)
        call_id = new_call_id(key, fn)
        call = _Call(call_id, key or call_id, DaskCallFuture(self, call_id), retries=int(retries))
        with self._lock:
            self._calls[call_id] = call
        # retries=0 for Dask: an exception is not retried; a dead worker's call is (the scheduler reschedules it)
        call.task = self._client.submit(dask_call, CallSpec(call_id, settings, call.key), fn, args, kwargs,
                                        key=call_id, pure=False, resources=need or None, retries=0)
        call.task.add_done_callback(lambda task, c=call_id: self._on_done(c, task))
        return call.future

    def _check_resources(self, need: dict[str, float]) -> None:
        workers = self._client.scheduler_info(n_workers=-1).get("workers", {})
        offered = [w.get("resources") or {} for w in workers.values()]
        if not any(all(res.get(k, 0) >= v for k, v in need.items()) for res in offered):
            have = sorted({f"{k}={v:g}" for res in offered for k, v in res.items()}) or ["none"]
            want = ", ".join(f"{k}={v:g}" for k, v in need.items())
            raise QexpError(f"no Dask worker offers the resources {want} (workers offer: {', '.join(have)}); start "
                            f"workers with `dask worker ... --resources \"GPU=1\"`")

    # ---- events from the cluster (run on the client's event loop: keep them short) ----------------
    def _on_call_event(self, event: tuple) -> None:
        _, msg = event
        call = self._calls.get(msg.get("call", ""))
        if call is None:
            return
        what = tuple(msg.get("event") or ())
        if what[:1] == ("begin",):
            call.worker = msg.get("worker", "")
            if not call.future.running() and not call.future.done():
                call.future.set_running_or_notify_cancel()
        else:
            self._tracker.event(call.call_id, what, worker=msg.get("worker", ""))

    def _on_cluster_event(self, event: tuple) -> None:
        _, msg = event
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker" or msg.get("expected"):
            return
        worker = str(msg.get("worker", ""))
        for key in msg.get("processing-tasks") or ():
            call = self._calls.get(str(key))
            if call is not None:
                call.deaths += 1
                try:
                    self._io.submit(self._worker_died, call, worker)
                except RuntimeError:  # shut down meanwhile
                    pass

    def _worker_died(self, call: _Call, worker: str) -> None:
        last = call.deaths > call.retries
        reason = (f"Dask worker {worker} died while running {call.key!r}"
                  + ("" if last else f"; the call was retried (try {call.deaths + 1} of {call.retries + 1})"))
        logger.warning("%s", reason)
        self._tracker.fail(call.call_id, reason, worker=worker, died=True)
        if last and not call.future.done():
            self._cancel_task(call.call_id)
            self._set(call, exc=WorkerDied(f"{reason}; it was tried {call.deaths} time(s) (retries={call.retries}): "
                                           f"a worker that dies every time usually ran out of memory"))

    # ---- results (Dask runs done-callbacks in a thread of its own) ----------------------------------
    def _on_done(self, call_id: str, task: Any) -> None:
        call = self._calls.get(call_id)
        if call is None:
            return
        status = task.status
        if status == "finished":
            try:
                self._set(call, result=task.result())
            except Exception as exc:
                self._set(call, exc=exc)
        elif status == "error":
            error = task.exception()
            if type(error).__name__ == "KilledWorker":
                error = WorkerDied(f"the Dask workers running {call.key!r} died {call.deaths or 'several'} time(s), "
                                   f"as many as the scheduler allows (allowed-failures): {error}")
                # the runs its last worker had open, should the remove-worker event have been missed
                reason = f"the Dask worker running {call.key!r} died before the run ended"
                try:
                    self._io.submit(self._tracker.fail, call_id, reason, None, True)
                except RuntimeError:  # shut down meanwhile
                    pass
            self._set(call, exc=error)
        elif status == "cancelled" and not call.future.done():
            self._set(call, exc=cf.CancelledError(f"{call.key!r} was cancelled"))
        # a finished or failed call ended its runs in the worker (run_call); "ended" reports may still be on
        # their way, so they are not looked up in the store
        try:
            self._io.submit(self._tracker.forget, call_id)
        except RuntimeError:
            pass
        with self._lock:
            self._calls.pop(call_id, None)

    @staticmethod
    def _set(call: _Call, result: Any = None, exc: BaseException | None = None) -> None:
        future = call.future
        if future.done():
            return
        if not future.running() and not future.set_running_or_notify_cancel():
            return
        try:
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)
        except cf.InvalidStateError:
            pass

    def _cancel_task(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is not None and call.task is not None:
            try:
                self._client.cancel([call.task])
            except Exception:  # closing: the scheduler forgets the task with the client
                pass

    # ---- shutting down ----------------------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, reason: str | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            calls = list(self._calls.values())
        if cancel_futures:
            why = reason or "cancelled: the executor was shut down"
            started = [c for c in calls if c.future.running()]
            for c in calls:
                if not c.future.cancel():
                    self._set(c, exc=QexpError(f"{c.key!r} was stopped: {why}"))
            try:
                self._client.cancel([c.task for c in calls if c.task is not None])
            except Exception:
                pass
            for c in started:
                self._tracker.fail(c.call_id, f"{why} while {c.key!r} ran on Dask worker {c.worker or '?'}")
        elif wait:
            cf.wait([c.future for c in calls])
        self._io.shutdown(wait=True)
        for topic in (TOPIC, "all"):
            try:
                self._client.unsubscribe_topic(topic)
            except Exception:
                pass
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
