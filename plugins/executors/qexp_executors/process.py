"""``process://N``: a pool of N worker processes on this machine (N defaults to the usable cores).

Unlike :class:`concurrent.futures.ProcessPoolExecutor`, a worker that dies (SIGKILL, out of memory) breaks
only its own call: the runs it had open end FAILED with ``qexp.failure_reason``, the call is retried on
another worker up to ``retries`` times, and a new worker takes the dead one's place.

Options in the query: ``max_tasks_per_child=K`` (replace a worker after K calls, for leaky libraries) and
``resources=GPU:2,MEM:64`` (what the pool has in all; a call submitted with ``resources={"GPU": 1}`` waits
until one GPU is free). Resources are counted, not pinned: set ``CUDA_VISIBLE_DEVICES`` yourself if needed.
"""
from __future__ import annotations

import atexit
import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import pickle
import signal
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_ready
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from qexp.ext import (
    ConfigError,
    Executor,
    QexpError,
    RunTracker,
    WorkerDied,
    call_settings,
    new_call_id,
    parse_resources,
    usable_cores,
)

from . import _pool_worker
from ._pool_worker import dumps

logger = logging.getLogger("qexp.executor")


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (set as the ``__cause__`` of the re-raised one)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def parse_process_uri(uri: str) -> tuple[int, int | None, dict[str, float]]:
    """``process://4?max_tasks_per_child=1&resources=GPU:2`` -> (4, 1, {"GPU": 2.0})."""
    parts = urlsplit(uri)
    where = f"executor URI {uri!r}"
    n_text = (parts.netloc or parts.path.strip("/")) or ""
    try:
        n = int(n_text) if n_text else usable_cores()
    except ValueError:
        raise ConfigError(f"{where}: the number of workers must be an integer, e.g. process://4") from None
    if n < 1:
        raise ConfigError(f"{where}: needs at least 1 worker")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"max_tasks_per_child", "resources"})
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; known: max_tasks_per_child, resources")
    mtpc = None
    if "max_tasks_per_child" in query:
        mtpc = check_max_tasks_per_child(query["max_tasks_per_child"], where)
    return n, mtpc, parse_resources(query.get("resources", ""), where)


def check_max_tasks_per_child(value: Any, where: str) -> int:
    """``max_tasks_per_child`` as a whole number >= 1 (a worker is replaced after that many calls)."""
    try:
        n = int(str(value))
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{where}: max_tasks_per_child must be a whole number >= 1 (a worker is replaced after "
                          f"that many calls), got {value!r}; leave it out to keep workers for the pool's life")
    return n


@dataclass(eq=False)
class _Call:
    call_id: str
    key: str
    payload: bytes
    settings: dict | None
    resources: dict[str, float]
    retries: int
    future: cf.Future
    attempts: int = 0


@dataclass(eq=False)
class _Worker:
    proc: Any
    conn: Any
    pid: int | None = None
    ready: bool = False
    call: _Call | None = None
    done_calls: int = 0
    stopping: bool = False
    history: list[str] = field(default_factory=list)


class ProcessExecutor(Executor):
    """A pool of spawned worker processes; see the module docstring for the options."""

    def __init__(self, uri: str = "process:", *, max_workers: int | None = None,
                 max_tasks_per_child: int | None = None, resources: dict[str, float] | None = None) -> None:
        n, mtpc, res = parse_process_uri(uri)
        self._n = max_workers or n
        if max_tasks_per_child is not None:
            mtpc = check_max_tasks_per_child(max_tasks_per_child, f"executor {uri!r}")
        self._mtpc = mtpc
        self._capacity = dict(resources or res)
        self.uri = f"process://{self._n}"
        self._ctx = mp.get_context("spawn")
        self._lock = threading.RLock()
        self._queue: deque[_Call] = deque()
        self._workers: list[_Worker] = []
        self._used: dict[str, float] = {}
        self._tracker = RunTracker()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._start_failures = 0
        atexit.register(_shutdown_at_exit, weakref.ref(self))

    @property
    def max_workers(self) -> int:
        return self._n

    # ---- submitting ----------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, resources: dict[str, float] | None = None,
               retries: int = 0, key: str | None = None, **kwargs: Any) -> cf.Future:
        if self._closing:
            raise RuntimeError(f"{self!r} is shut down; create another executor")
        need = {k: float(v) for k, v in (resources or {}).items() if v}
        for name, amount in need.items():
            have = self._capacity.get(name)
            if have is None:
                raise QexpError(f"{self.uri}: no worker offers the resource {name!r}; declare what the machine "
                                f"has, e.g. process://{self._n}?resources={name}:1")
            if amount > have:
                raise QexpError(f"{self.uri}: the call needs {name}={amount:g} but the pool has {name}={have:g}")
        payload = dumps((fn, args, kwargs))  # an unpicklable call fails here, in the caller
        call_id = new_call_id(key, fn)
        call = _Call(call_id, key or call_id, payload, call_settings(fn, args, kwargs), need, int(retries), cf.Future())
        with self._lock:
            self._queue.append(call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="qexp-process-pool", daemon=True)
                self._thread.start()
        self._wake()
        return call.future

    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"x")
        except OSError:
            pass

    # ---- the pool's thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._lock:
                self._dispatch()
                busy = any(w.call is not None for w in self._workers)
                if self._closing and not self._queue and not busy:
                    break
                waits = [self._wake_r] + [w.conn for w in self._workers] + [w.proc.sentinel for w in self._workers]
            ready = wait_ready(waits)
            with self._lock:
                if self._wake_r in ready:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                for w in list(self._workers):
                    if w.conn in ready:
                        self._read(w)
                for w in list(self._workers):
                    if w.proc.sentinel in ready and w in self._workers:
                        self._read(w)  # what it sent before it went
                        self._gone(w)
        self._stop_workers()

    def _read(self, w: _Worker) -> None:
        try:
            while w.conn.poll():
                self._handle(w, w.conn.recv())
        except (EOFError, OSError):
            pass

    def _handle(self, w: _Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            w.pid, w.ready = msg[1], True
            self._start_failures = 0
        elif kind == "event":
            self._tracker.event(msg[1], msg[2], worker=str(w.pid))
        elif kind == "done":
            call = w.call
            if call is None or call.call_id != msg[1]:
                return
            w.call = None
            w.done_calls += 1
            self._release(call)
            self._tracker.forget(call.call_id)
            if msg[2]:
                _settle(call.future, result=msg[3])
            else:
                _settle(call.future, error=msg[3])
            if self._mtpc and w.done_calls >= self._mtpc:
                self._retire(w)

    def _gone(self, w: _Worker) -> None:
        """A worker process ended: normal after a stop, a death otherwise."""
        self._workers.remove(w)
        w.proc.join(timeout=1)
        code = w.proc.exitcode
        call, w.call = w.call, None
        _close(w.conn)
        if not w.ready and not w.stopping:
            self._start_failed(code)
        if call is None:
            return
        self._release(call)
        how = _describe_exit(code)
        tries = call.attempts
        if tries <= call.retries and not self._closing:
            reason = (f"worker process {w.pid} died ({how}) while running {call.key!r}; the call was retried "
                      f"(try {tries + 1} of {call.retries + 1})")
            self._tracker.fail(call.call_id, reason, worker=str(w.pid), died=True)
            logger.warning("%s", reason)
            self._queue.appendleft(call)
        else:
            reason = f"worker process {w.pid} died ({how}) while running {call.key!r}"
            self._tracker.fail(call.call_id, reason, worker=str(w.pid), died=True)
            self._tracker.forget(call.call_id)
            _settle(call.future, exc=WorkerDied(
                f"{reason}; it was tried {tries} time(s) (retries={call.retries}): a worker that dies every time "
                f"usually ran out of memory"))

    def _start_failed(self, code: int | None) -> None:
        self._start_failures += 1
        if self._start_failures < 3:
            return
        # workers that die before they start would be replaced forever: fail what waits instead
        error = QexpError(f"{self.uri}: worker processes exit before they start ({_describe_exit(code)}); run "
                          f"`python -c 'import qexp_executors._pool_worker'` to see why")
        for call in self._queue:
            if call.attempts == 0 and not call.future.set_running_or_notify_cancel():
                continue
            _settle(call.future, exc=error)
        self._queue.clear()
        self._start_failures = 0

    def _dispatch(self) -> None:
        if self._closed:
            return
        idle = [w for w in self._workers if w.ready and w.call is None and not w.stopping]
        while idle and self._queue:
            call = self._next_fitting()
            if call is None:
                break
            if call.attempts == 0 and not call.future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            w = idle.pop(0)
            call.attempts += 1
            for k, v in call.resources.items():
                self._used[k] = self._used.get(k, 0.0) + v
            w.call = call
            w.history.append(call.call_id)
            try:
                w.conn.send((call.call_id, call.settings, call.key, call.payload))
            except OSError:
                pass  # it died: its sentinel says so next
        wanted = min(self._n, len(self._queue) + sum(1 for w in self._workers if w.call is not None))
        alive = [w for w in self._workers if not w.stopping]
        for _ in range(wanted - len(alive)):
            self._spawn()

    def _next_fitting(self) -> _Call | None:
        for call in self._queue:
            if all(self._used.get(k, 0.0) + v <= self._capacity.get(k, 0.0) + 1e-9 for k, v in call.resources.items()):
                self._queue.remove(call)
                return call
        return None

    def _release(self, call: _Call) -> None:
        for k, v in call.resources.items():
            self._used[k] = self._used.get(k, 0.0) - v

    def _spawn(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_pool_worker.main, args=(child, os.getpid()), name="qexp-worker")
        proc.start()
        child.close()
        self._workers.append(_Worker(proc, parent))

    def _retire(self, w: _Worker) -> None:
        w.stopping = True
        try:
            w.conn.send(None)
        except OSError:
            pass

    def _stop_workers(self) -> None:
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            self._retire(w)
        for w in workers:
            w.proc.join(timeout=5)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
            _close(w.conn)
        with self._lock:
            self._workers.clear()

    # ---- shutting down ---------------------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, reason: str | None = None) -> None:
        running: list[tuple[_Worker, _Call]] = []
        with self._lock:
            self._closing = True
            thread = self._thread
            if cancel_futures:
                for call in self._queue:
                    if not call.future.cancel():
                        _settle(call.future, exc=QexpError(reason or "cancelled: the executor was shut down"))
                self._queue.clear()
                # detached first, so the pool's thread sees idle workers dying, not calls to retry
                running = [(w, w.call) for w in self._workers if w.call is not None]
                for w, _ in running:
                    w.call, w.stopping = None, True
                    w.proc.kill()
        if cancel_futures:
            why = reason or "cancelled: the executor was shut down"
            for w, call in running:
                w.proc.join(timeout=5)
                self._tracker.fail(call.call_id, f"{why} while {call.key!r} ran in worker process {w.pid}",
                                   died=True)
                _settle(call.future, exc=QexpError(f"{call.key!r} was stopped: {why}"))
        self._wake()
        if thread is None:
            self._closed = True
            return
        if wait or cancel_futures:
            thread.join()
            self._closed = True


def _settle(future: cf.Future, result: bytes | None = None, error: tuple | None = None,
            exc: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        data, text = error
        try:
            exc = pickle.loads(data) if data is not None else None
        except Exception:
            exc = None
        if exc is None:
            exc = QexpError(text.strip().splitlines()[-1] if text.strip() else "the call failed in its worker")
        exc.__cause__ = RemoteTraceback(f'\n"""\n{text}"""')
    if exc is not None:
        future.set_exception(exc)
        return
    try:
        value = pickle.loads(result) if result is not None else None
    except Exception as load_exc:
        future.set_exception(QexpError(f"the call's result could not be unpickled here: {load_exc}"))
        return
    future.set_result(value)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _close(conn: Any) -> None:
    try:
        conn.close()
    except OSError:
        pass


def _shutdown_at_exit(ref: weakref.ref[ProcessExecutor]) -> None:
    # before multiprocessing's own exit handler, which would wait for our idle workers forever
    ex = ref()
    if ex is not None and not ex._closed:
        ex.shutdown(wait=False, cancel_futures=True, reason="cancelled: the driver exited")
