"""``TaskManager``: Qlib's task queue (``qlib/workflow/task/manage.py``) on a task store chosen by URI.

A pool holds tasks shaped like Qlib's documents: ``task["_id"]``, ``task["def"]`` (the task),
``task["filter"]`` (its JSON), ``task["status"]`` (waiting, running, part_done, done), ``task["res"]``.
Fetching is atomic, so N workers on one pool never run a task twice and lose none. Beyond Qlib:

- a running task holds a lease (``lease_s``, 30 s by default) that a heartbeat thread renews; a task whose
  worker died goes back to the status it was fetched from when the lease ends (no ``reset_waiting``);
- a result that is a Recorder is stored as its id (and store URI), not pickled;
- the default store needs no server: ``DIR/.qexp/tasks.sqlite`` beside a file tracking store DIR.
"""
from __future__ import annotations

import builtins
import json
import logging
import os
import pickle
import socket
import threading
import time
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..exceptions import QexpError
from ..pickling import RestrictedUnpickler
from ..progress import bar
from ..recorder import Recorder
from ..uri import mask_uri
from .store import (
    STATUS_DONE,
    STATUS_PART_DONE,
    STATUS_RUNNING,
    STATUS_WAITING,
    NewTask,
    StoredTask,
    TaskStore,
    TaskStoreError,
    canonical_json,
    content_hash,
    default_tasks_uri,
    open_task_store,
    parse_query,
)
from .subproc import recorder_from_ref, recorder_ref

logger = logging.getLogger("qexp.tasks")

DEFAULT_LEASE_S = 30.0


class _TaskUnpickler(RestrictedUnpickler):
    """Task definitions and results: data containers and qexp's own classes (a shared pool must not be able
    to run arbitrary code in its workers)."""

    def find_class(self, module: str, name: str) -> Any:
        root = module.split(".", 1)[0]
        if root == "qexp" or root.startswith("qexp_"):
            return pickle.Unpickler.find_class(self, module, name)
        return super().find_class(module, name)


def _loads(data: bytes, what: str) -> Any:
    import io
    try:
        return _TaskUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise QexpError(f"the task's {what} could not be read safely: {exc}. Task definitions and results "
                        f"hold plain data (dicts, lists, numbers, dates, pandas objects) and qexp classes") from None


class LeaseLost(TaskStoreError):
    """A result came from a worker whose lease on the task had ended: it was not stored."""


def _result(row: StoredTask) -> Any:
    if row.res_ref:
        return recorder_from_ref(json.loads(row.res_ref))
    return None if row.res is None else _loads(row.res, "result")


@dataclass(frozen=True)
class InsertResult:
    """What ``insert_task``/``insert_task_def`` return (pymongo's ``InsertOneResult`` shape)."""

    inserted_id: str


# ---- the heartbeat: one thread per process renews every lease this process holds --------------------
class _Heartbeat:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, tuple[weakref.ref, set[str]]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next = float("inf")  # when the next beat is due (time.monotonic)

    def hold(self, tm: TaskManager, task_id: str) -> None:
        with self._lock:
            entry = self._held.setdefault(id(tm), (weakref.ref(tm), set()))
            entry[1].add(task_id)
            due = time.monotonic() + tm.lease_s / 3
            if due < self._next:  # a shorter lease than the one the next beat was planned for: beat earlier
                self._next = due
                self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="qexp-task-heartbeat", daemon=True)
                self._thread.start()

    def release(self, tm: TaskManager, task_id: str) -> None:
        with self._lock:
            entry = self._held.get(id(tm))
            if entry is not None:
                entry[1].discard(task_id)
                if not entry[1]:
                    del self._held[id(tm)]

    def _run(self) -> None:
        while True:
            with self._lock:
                for key in [k for k, (ref, _) in self._held.items() if ref() is None]:
                    del self._held[key]  # a manager that is gone holds nothing
                if not self._held:
                    self._thread, self._next = None, float("inf")
                    return
                wait = self._next - time.monotonic()
            if wait > 0:
                if self._wake.wait(wait):
                    self._wake.clear()
                continue  # a hold moved the beat earlier, or it is due now: look again
            with self._lock:
                entries = [(ref(), set(ids)) for ref, ids in self._held.values()]
                leases = [tm.lease_s for tm, _ in entries if tm is not None]
                self._next = time.monotonic() + max(min(leases, default=DEFAULT_LEASE_S) / 3, 0.05)
            for tm, ids in entries:
                if tm is None or not ids:
                    continue
                try:
                    if tm.store.renew(sorted(ids), tm.owner, tm.lease_s) == 0:
                        for tid in ids:  # reset or removed meanwhile: the leases are gone, stop renewing them
                            self.release(tm, tid)
                except Exception as exc:  # a lost connection must not kill the thread: the next beat retries
                    logger.warning("could not renew the lease of %d task(s) in %s: %s", len(ids),
                                   mask_uri(tm.uri), exc)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._held.clear()
        self._thread = None
        self._next = float("inf")


_heartbeat = _Heartbeat()
os.register_at_fork(after_in_child=_heartbeat.reset_after_fork)


class TaskManager:
    """A pool of tasks in a task store: create, fetch (atomically), commit results, query and wait.

    ``uri``: the task store (``sqlite:///PATH``, ``postgresql://USER@HOST:PORT/DB``); None uses
    ``$QEXP_TASKS_URI``, else the store beside the tracking store (see :func:`default_tasks_uri`).
    ``lease_s``: how long a fetched task stays ``running`` without a heartbeat.
    """

    STATUS_WAITING = STATUS_WAITING
    STATUS_RUNNING = STATUS_RUNNING
    STATUS_DONE = STATUS_DONE
    STATUS_PART_DONE = STATUS_PART_DONE

    ENCODE_FIELDS_PREFIX = ["def", "res"]

    def __init__(self, task_pool: str, uri: str | None = None, lease_s: float = DEFAULT_LEASE_S):
        if not isinstance(task_pool, str) or not task_pool.strip():
            raise QexpError(f"a task pool needs a non-empty name, got {task_pool!r}")
        if lease_s <= 0:
            raise QexpError(f"lease_s must be a positive number of seconds, got {lease_s!r}")
        self.task_pool = task_pool
        self.uri = uri or default_tasks_uri()
        self.lease_s = float(lease_s)
        self._owner: tuple[int, str] | None = None

    @property
    def store(self) -> TaskStore:
        return open_task_store(self.uri)

    @property
    def owner(self) -> str:
        """This process's lease owner name (host, pid and a random part)."""
        if self._owner is None or self._owner[0] != os.getpid():
            self._owner = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
        return self._owner[1]

    def __str__(self) -> str:
        return f"TaskManager({self.task_pool!r} in {mask_uri(self.uri)})"

    __repr__ = __str__

    def __getstate__(self) -> dict:
        return {"task_pool": self.task_pool, "uri": self.uri, "lease_s": self.lease_s, "_owner": None}

    @staticmethod
    def list(uri: str | None = None) -> list[str]:
        """The pools of the task store (the default one when ``uri`` is None)."""
        return open_task_store(uri or default_tasks_uri()).pools()

    # ---- encoding ------------------------------------------------------------------------------
    def _new_task(self, task_def: Any, status: str = STATUS_WAITING) -> NewTask:
        try:
            definition = pickle.dumps(task_def, protocol=4)
        except Exception as exc:
            raise QexpError(f"task definition cannot be pickled: {type(exc).__name__}: {exc}") from None
        return NewTask(hash=content_hash(task_def), definition=definition, filter=canonical_json(task_def),
                       status=status)

    @staticmethod
    def _encode_res(res: Any) -> tuple[bytes | None, str | None]:
        if isinstance(res, Recorder):
            return None, json.dumps(recorder_ref(res))
        return pickle.dumps(res, protocol=4), None

    def _decode_task(self, row: StoredTask, decode: bool = True) -> dict:
        task: dict[str, Any] = {"_id": row.id, "status": row.status, "filter": json.loads(row.filter),
                                "priority": row.priority, "attempts": row.attempts}
        if decode:
            task["def"] = _loads(row.definition, "definition")
            task["res"] = _result(row)
        else:
            task["def"] = row.definition
            task["res"] = json.loads(row.res_ref) if row.res_ref else row.res
        return task

    # ---- creating tasks ------------------------------------------------------------------------
    def replace_task(self, task: dict, new_task: dict) -> None:
        """Replace ``task`` (by ``_id``) with the document ``new_task`` (``def``, ``status``, ``res``)."""
        res, ref = self._encode_res(new_task.get("res"))
        if new_task.get("res") is None:
            res = None
        self.store.replace(self.task_pool, str(task["_id"]), self._new_task(new_task["def"]),
                           new_task.get("status", STATUS_WAITING), res, ref)

    def insert_task(self, task: dict) -> InsertResult:
        """Insert a document (``def`` and optionally ``status``); an equal task already there keeps its id and
        is left as it is (it may be another worker's running task)."""
        status = task.get("status") or STATUS_WAITING
        if status not in (STATUS_WAITING, STATUS_PART_DONE, STATUS_DONE):
            raise QexpError(f"insert_task: status {status!r} cannot be inserted; use {STATUS_WAITING!r}, "
                            f"{STATUS_PART_DONE!r} or {STATUS_DONE!r} (a task becomes running by fetch_task)")
        created = self.store.insert(self.task_pool, [self._new_task(task["def"], status)])
        return InsertResult(created[0][0])

    def insert_task_def(self, task_def: dict) -> InsertResult:
        """Insert a task definition as waiting (an equal task already in the pool keeps its id)."""
        return InsertResult(self.store.insert(self.task_pool, [self._new_task(task_def)])[0][0])

    def create_task(self, task_def_l: builtins.list[dict], dry_run: bool = False,
                    print_nt: bool = False) -> builtins.list[str]:
        """Insert the tasks that are new to the pool (equal content = the same task) in one transaction and
        return every task's ``_id`` in order; ``dry_run`` inserts nothing and returns ``[]``."""
        news = [self._new_task(t) for t in task_def_l]  # every task encodes before anything is written
        if dry_run:
            known = self.store.lookup(self.task_pool, [n.hash for n in news])
            new_defs = [t for t, n in zip(task_def_l, news) if n.hash not in known]
            ids: builtins.list[str] = []
        else:
            created = self.store.insert(self.task_pool, news)
            new_defs = [t for t, (_, is_new) in zip(task_def_l, created) if is_new]
            ids = [tid for tid, _ in created]
        logger.info("Total Tasks: %d, New Tasks: %d", len(task_def_l), len(new_defs))
        if print_nt:
            for t in new_defs:
                print(t)
        return ids

    # ---- fetching ------------------------------------------------------------------------------
    def fetch_task(self, query: dict | None = None, status: str = STATUS_WAITING) -> dict | None:
        """Take one task in ``status`` matching ``query`` (highest priority first): it becomes running, leased
        to this process. None when none matches."""
        row = self.store.fetch(self.task_pool, parse_query(query), status, self.owner, self.lease_s)
        if row is None:
            return None
        _heartbeat.hold(self, row.id)
        try:
            return self._decode_task(row)
        except BaseException:
            self.return_task({"_id": row.id}, status=status)
            raise

    @contextmanager
    def safe_fetch_task(self, query: dict | None = None, status: str = STATUS_WAITING) -> Iterator[dict | None]:
        """Fetch a task for the block (None when none waits); on an exception or KeyboardInterrupt the task
        goes back to ``status`` and the error is re-raised."""
        task = self.fetch_task(query=query, status=status)
        try:
            yield task
        except (Exception, KeyboardInterrupt):
            if task is not None:
                logger.info("returning task %s to %s before raising the error", task["_id"], status)
                self.return_task(task, status=status)
            raise

    def task_fetcher_iter(self, query: dict | None = None) -> Iterator[dict]:
        """Yield waiting tasks one by one until none is left (each returned to waiting on an error)."""
        while True:
            with self.safe_fetch_task(query=query) as task:
                if task is None:
                    break
                yield task

    # ---- reading -------------------------------------------------------------------------------
    def query(self, query: dict | None = None, decode: bool = True) -> Iterator[dict]:
        """Tasks matching ``query``, oldest first (a list read at once: no cursor to time out)."""
        for row in self.store.find(self.task_pool, parse_query(query)):
            yield self._decode_task(row, decode=decode)

    def results(self, ids: builtins.list[str]) -> dict[str, Any]:
        """``{_id: res}`` of the tasks ``ids``, in one query, decoding only the results (a trainer reading
        back what its tasks returned)."""
        out: dict[str, Any] = {}
        for row in self.store.find(self.task_pool, parse_query({"_id": {"$in": list(ids)}})):
            out[row.id] = _result(row)
        return out

    def re_query(self, _id: str) -> dict:
        """The task with ``_id``."""
        rows = self.store.find(self.task_pool, parse_query({"_id": _id}))
        if not rows:
            raise QexpError(f"pool {self.task_pool!r} of {mask_uri(self.uri)} has no task with _id {_id!r}")
        return self._decode_task(rows[0])

    def task_stat(self, query: dict | None = None) -> dict[str, int]:
        """``{status: number of tasks}``."""
        return self.store.count(self.task_pool, parse_query(query))

    # ---- changing tasks ------------------------------------------------------------------------
    def commit_task_res(self, task: dict, res: Any, status: str | None = STATUS_DONE) -> None:
        """Store ``res`` as the result of a task this manager fetched and set ``status`` (done by default).

        Raises :class:`LeaseLost` (and writes nothing) when the task's lease is no longer this process's: it
        expired while the process stalled and the task went back to the queue or to another worker, whose
        result must not be overwritten."""
        blob, ref = self._encode_res(res)
        tid = str(task["_id"])
        try:
            changed = self.store.finish(self.task_pool, tid, status or STATUS_DONE, blob, ref, owner=self.owner)
        finally:
            _heartbeat.release(self, tid)
        if not changed:
            raise LeaseLost(f"lease lost, result dropped: task {tid} of pool {self.task_pool!r} in "
                            f"{mask_uri(self.uri)} is no longer leased to this worker (its lease of "
                            f"{self.lease_s:g} s ran out, so it went back to the queue or to another worker, "
                            f"or it was reset or removed)")

    def return_task(self, task: dict, status: str | None = STATUS_WAITING) -> None:
        """Put a task this process fetched back in ``status`` (waiting by default)."""
        tid = str(task["_id"])
        self.store.set_status(self.task_pool, parse_query({"_id": tid}), status or STATUS_WAITING, owner=self.owner)
        _heartbeat.release(self, tid)

    def remove(self, query: dict | None = None) -> int:
        """Delete the tasks matching ``query`` (every task of the pool for ``{}``); return how many."""
        return self.store.delete(self.task_pool, parse_query(query))

    def reset_waiting(self, query: dict | None = None) -> int:
        """Running tasks (or those matching ``query``) back to waiting, e.g. after a crash."""
        query = dict(query or {})
        query.setdefault("status", STATUS_RUNNING)
        return self.reset_status(query, STATUS_WAITING)

    def reset_status(self, query: dict, status: str) -> int:
        """Set ``status`` on every task matching ``query``; return how many."""
        n = self.store.set_status(self.task_pool, parse_query(query), status)
        logger.info("%d task(s) of pool %r set to %s", n, self.task_pool, status)
        return n

    def prioritize(self, task: dict, priority: int) -> None:
        """Tasks with a higher priority are fetched first."""
        self.store.set_priority(self.task_pool, parse_query({"_id": str(task["_id"])}), priority)

    # ---- waiting -------------------------------------------------------------------------------
    def _get_undone_n(self, task_stat: dict) -> int:
        return task_stat.get(STATUS_WAITING, 0) + task_stat.get(STATUS_RUNNING, 0) + \
            task_stat.get(STATUS_PART_DONE, 0)

    def _get_total(self, task_stat: dict) -> int:
        return sum(task_stat.values())

    def wait(self, query: dict | None = None, timeout: float | None = None) -> None:
        """Block until no matching task is waiting, running or part_done, with a progress bar (Qlib polls
        every 10 s; this polls from 50 ms up to 2 s)."""
        stat = self.task_stat(query)
        total, undone = self._get_total(stat), self._get_undone_n(stat)
        if undone == 0:
            return
        logger.info("waiting for %d undone task(s) of pool %r; make sure workers run", undone, self.task_pool)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, last_log = 0.05, time.monotonic()
        with bar(total=total, initial=total - undone, desc=f"pool {self.task_pool}", unit="task") as pbar:
            while undone:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{undone} task(s) of pool {self.task_pool!r} still undone after {timeout} s")
                time.sleep(delay)
                delay = min(delay * 1.5, 2.0)
                now_undone = self._get_undone_n(self.task_stat(query))
                pbar.update(undone - now_undone)
                undone = now_undone
                if pbar.disable and time.monotonic() - last_log > 30:
                    logger.info("pool %r: %d of %d task(s) undone", self.task_pool, undone, total)
                    last_log = time.monotonic()


def _manager_of(task_pool: str | TaskManager) -> TaskManager:
    return task_pool if isinstance(task_pool, TaskManager) else TaskManager(task_pool)


def run_task(task_func: Callable, task_pool: str | TaskManager, query: dict | None = None,
             force_release: bool = False, before_status: str = STATUS_WAITING, after_status: str = STATUS_DONE,
             **kwargs: Any) -> bool:
    """Fetch and run tasks of ``task_pool`` (a name, or a :class:`TaskManager` for another store) until
    none in ``before_status`` matches ``query``; return whether any ran.

    ``task_func(task["def"], **kwargs)`` for waiting tasks, ``task_func(task["res"], **kwargs)`` for part_done
    ones; its result is committed with ``after_status``. ``force_release`` runs each call in a fresh process
    so its memory is freed. A failing call returns its task to ``before_status`` and raises.
    """
    if before_status not in (STATUS_WAITING, STATUS_PART_DONE):
        raise ValueError("The fetched task must be `STATUS_WAITING` or `STATUS_PART_DONE`!")
    tm = _manager_of(task_pool)
    func = task_func
    if force_release:
        from .subproc import call_in_subproc
        func = call_in_subproc(task_func)
    ever_run = False
    while True:
        with tm.safe_fetch_task(query=query, status=before_status) as task:
            if task is None:
                break
            logger.info("running task %s of pool %r", task["_id"], tm.task_pool)
            param = task["def"] if before_status == STATUS_WAITING else task["res"]
            res = func(param, **kwargs)
            try:
                tm.commit_task_res(task, res, status=after_status)
            except LeaseLost as exc:  # the task is someone else's now: go on with the next one
                logger.warning("%s", exc)
            ever_run = True
    return ever_run


__all__ = ["TaskManager", "run_task", "InsertResult", "TaskStoreError", "LeaseLost"]
