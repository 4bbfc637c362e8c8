"""The TaskStore contract: where task pools live, chosen by URI scheme like tracking stores.

``sqlite:///PATH`` (the embedded default) and ``postgresql://USER@HOST:PORT/DB`` come with qexp's
``task_stores`` plugin; a third party registers more schemes through the ``register_task_stores`` hook and
implements :class:`TaskStore`. :class:`qexp.task.TaskManager` speaks Qlib's API on top of it.

A store keeps rows, one per task: the pickled definition, its canonical JSON (``filter``, for queries and
de-duplication by content hash), a status, a result and a lease. It must make :meth:`TaskStore.fetch`
atomic (N workers never get the same task) and treat a ``running`` task whose lease has expired as being
in the status it was fetched from again. Reads of a store that does not exist yet see nothing and create
nothing.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterable

from ..exceptions import QexpError

STATUS_WAITING = "waiting"
STATUS_RUNNING = "running"
STATUS_PART_DONE = "part_done"
STATUS_DONE = "done"
STATUSES = (STATUS_WAITING, STATUS_RUNNING, STATUS_PART_DONE, STATUS_DONE)

TASKS_URI_ENV = "QEXP_TASKS_URI"


class TaskStoreError(QexpError):
    """A task store cannot be reached or used; the message names its URI."""


@dataclass
class StoredTask:
    """One row of a pool. ``status`` is the effective one (an expired lease reads as its earlier status)."""

    id: str
    pool: str
    definition: bytes
    filter: str
    status: str
    res: bytes | None = None
    res_ref: str | None = None
    priority: int | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: float | None = None
    created: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True)
class NewTask:
    """A task to insert: content hash (for de-duplication), pickled definition, canonical JSON and the status
    it starts in (waiting unless given)."""

    hash: str
    definition: bytes
    filter: str
    status: str = STATUS_WAITING


@dataclass(frozen=True)
class Cond:
    """One condition of a query: ``field`` is ``_id``, ``status``, ``priority`` or ``filter`` (then ``path``
    into the task JSON); ``op`` is ``eq``, ``ne``, ``in``, ``nin`` or ``exists``. Values of ``filter``
    conditions are canonical JSON text; ``_id`` values are strings."""

    field: str
    op: str
    value: Any
    path: tuple[str, ...] = ()


# ---- canonical JSON and queries -------------------------------------------------------------------
def plain(obj: Any) -> Any:
    """``obj`` as JSON data: dates as ISO text, tuples as lists, numpy scalars as numbers, dict keys as text,
    non-finite floats as text, anything else as its ``repr``."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((plain(v) for v in obj), key=repr)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    item = getattr(obj, "item", None)
    if callable(item) and type(obj).__module__ == "numpy":
        return plain(item())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


def canonical_json(obj: Any) -> str:
    """The one JSON text of ``obj``: sorted keys, no spaces (equal tasks give equal text)."""
    return json.dumps(plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(obj: Any) -> str:
    """SHA-256 of :func:`canonical_json`: two tasks with the same content are the same task."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


_OPS = {"$in": "in", "$nin": "nin", "$ne": "ne", "$eq": "eq", "$exists": "exists"}
_FIELDS = ("_id", "status", "priority")


def parse_query(query: dict | None) -> list[Cond]:
    """Qlib's MongoDB query subset: ``{"_id": id | {"$in": [...]}, "status": ..., "priority": ...,
    "filter.<path>": value}`` with ``$in``, ``$nin``, ``$ne``, ``$eq`` and (filter paths) ``$exists``."""
    conds: list[Cond] = []
    for key, spec in (query or {}).items():
        if key in _FIELDS:
            field, path = key, ()
        elif key == "filter" or key.startswith("filter."):
            field, path = "filter", tuple(p for p in key.split(".")[1:] if p)
        else:
            raise TaskStoreError(f"task query: unsupported key {key!r}; task stores understand _id, status, "
                                 f"priority and filter.<path> (with $in, $nin, $ne, $eq, $exists)")
        ops = spec if isinstance(spec, dict) and spec and all(str(k).startswith("$") for k in spec) else {"$eq": spec}
        for op_key, value in ops.items():
            op = _OPS.get(op_key)
            if op is None:
                raise TaskStoreError(f"task query {key}: unsupported operator {op_key!r}; use one of "
                                     f"{', '.join(_OPS)}")
            if op == "exists" and field != "filter":
                raise TaskStoreError(f"task query {key}: $exists only applies to filter.<path>")
            if op in ("in", "nin"):
                if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                    raise TaskStoreError(f"task query {key}: {op_key} needs a list, got {value!r}")
                value = tuple(_encode_value(field, v) for v in value)
            elif op == "exists":
                value = bool(value)
            else:
                value = _encode_value(field, value)
            conds.append(Cond(field, op, value, path))
    return conds


def _encode_value(field: str, value: Any) -> Any:
    if field == "_id":
        return str(value)
    if field == "filter":
        return canonical_json(value)
    return value


# ---- the contract ---------------------------------------------------------------------------------
class TaskStore(ABC):
    """Task pools in one place. Implementations are picklable by URI (they reconnect in each process)."""

    uri: str

    @abstractmethod
    def exists(self) -> bool:
        """Whether the store has been created (no write has happened otherwise)."""

    @abstractmethod
    def pools(self) -> list[str]:
        """Names of the pools holding at least one task."""

    @abstractmethod
    def insert(self, pool: str, tasks: list[NewTask]) -> list[tuple[str, bool]]:
        """Insert the tasks whose hash the pool does not hold, all in one transaction; return
        ``(id, created)`` per task, in order (an existing task gives its id). ``created`` is True only for the
        rows this call inserted: of several drivers inserting the same task at once, one says True."""

    @abstractmethod
    def lookup(self, pool: str, hashes: list[str]) -> dict[str, str]:
        """``{hash: id}`` of the given hashes the pool holds."""

    @abstractmethod
    def fetch(self, pool: str, conds: list[Cond], status: str, owner: str, lease_s: float) -> StoredTask | None:
        """Atomically take the highest-priority, oldest task in ``status`` matching ``conds``: it becomes
        ``running``, leased to ``owner`` for ``lease_s`` seconds, ``attempts`` + 1. None when none waits."""

    @abstractmethod
    def renew(self, ids: list[str], owner: str, lease_s: float) -> int:
        """Extend the leases ``owner`` holds on ``ids``; return how many it still holds."""

    @abstractmethod
    def finish(self, pool: str, task_id: str, status: str, res: bytes | None, res_ref: str | None,
               owner: str | None = None) -> bool:
        """Store a result and a status, ending the lease; with ``owner``, only while the task is running under
        that owner's lease. Returns whether a task changed (False: the lease was lost, nothing written)."""

    @abstractmethod
    def set_status(self, pool: str, conds: list[Cond], status: str, owner: str | None = None) -> int:
        """Set ``status`` (ending leases) on matching tasks; with ``owner``, only on tasks it has leased."""

    @abstractmethod
    def find(self, pool: str, conds: list[Cond]) -> list[StoredTask]:
        """Matching tasks, oldest first."""

    @abstractmethod
    def count(self, pool: str, conds: list[Cond]) -> dict[str, int]:
        """``{status: number of matching tasks}``."""

    @abstractmethod
    def delete(self, pool: str, conds: list[Cond]) -> int:
        """Remove matching tasks; return how many."""

    @abstractmethod
    def set_priority(self, pool: str, conds: list[Cond], priority: int | None) -> int:
        """Set the priority of matching tasks (higher is fetched first)."""

    @abstractmethod
    def replace(self, pool: str, task_id: str, task: NewTask, status: str, res: bytes | None,
                res_ref: str | None) -> None:
        """Replace one task's definition, status and result."""

    def close(self) -> None:  # noqa: B027 - optional: stores without connections have nothing to close
        """Close this process's connections."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


# ---- where the tasks of a tracking store live -----------------------------------------------------
def qexp_home() -> str:
    """The user's qexp folder: ``$QEXP_HOME``, else ``~/.qexp``."""
    return os.environ.get("QEXP_HOME") or os.path.join(os.path.expanduser("~"), ".qexp")


def sqlite_uri(path: str) -> str:
    """``sqlite:///PATH`` for a file (four slashes for an absolute path, as SQLAlchemy writes it)."""
    return "sqlite:///" + os.path.abspath(path)


def sqlite_path(uri: str) -> str:
    """The file of ``sqlite:///PATH`` (``sqlite:////abs/file`` or ``sqlite:///rel/file``, SQLAlchemy's form) or
    of a bare path, absolute; a query (``?timeout=...``) is left out. Anything else is a :class:`QexpError`."""
    if uri.startswith("sqlite:"):
        rest = uri[len("sqlite:"):]
        if not rest.startswith("///"):
            raise TaskStoreError(f"SQLite URI {uri!r}: expected sqlite:///PATH (three slashes, then the path; "
                                 f"four for an absolute one)")
        path = rest[3:]
    else:
        path = uri
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        raise TaskStoreError(f"SQLite URI {uri!r}: needs a file path (workers in other processes must reach it)")
    return os.path.abspath(os.path.expanduser(path))


def default_tasks_uri(tracking_uri: str | None = None) -> str:
    """``$QEXP_TASKS_URI``; else, for a file tracking store DIR, ``DIR/.qexp/tasks.sqlite``; else a SQLite
    file in the user's qexp folder named by a hash of the tracking URI."""
    env = os.environ.get(TASKS_URI_ENV)
    if env:
        return env
    from ..uri import default_uri, local_path, resolve_uri
    if tracking_uri is None:
        from ..api import R
        tracking_uri = R.get_uri() if R.is_registered() else default_uri()
    tracking = resolve_uri(tracking_uri)
    folder = local_path(tracking)
    if folder is not None:
        return sqlite_uri(os.path.join(folder, ".qexp", "tasks.sqlite"))
    name = hashlib.sha256(tracking.encode()).hexdigest()[:16]
    return sqlite_uri(os.path.join(qexp_home(), "tasks", f"{name}.sqlite"))


_stores: dict[tuple[int, str], TaskStore] = {}


def open_task_store(uri: str | None = None) -> TaskStore:
    """The store for ``uri`` (:func:`default_tasks_uri` when None), one per URI and process."""
    from .. import registry
    from ..plugins import load_plugins
    uri = uri or default_tasks_uri()
    key = (os.getpid(), uri)
    store = _stores.get(key)
    if store is None:
        load_plugins()
        store = registry.task_stores.create(uri)
        _stores[key] = store
    return store
