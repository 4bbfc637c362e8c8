"""What the SQLite and PostgreSQL task stores share: one table, queries built from conditions, leases.

Table ``qexp_tasks``: one row per task with ``UNIQUE(pool, hash)`` (de-duplication by content in the
database itself, so two drivers creating the same tasks at once insert them once). A fetched task is
``running`` with ``prev_status`` = the status it was fetched from and a lease (``lease_owner``,
``lease_until`` in epoch seconds of the database's clock); an expired lease reads as ``prev_status`` and is
turned back into it by the next fetch.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from abc import abstractmethod
from typing import Any, Callable, Iterator, TypeVar

from qexp.ext import Cond, NewTask, StoredTask, TaskStore, TaskStoreError, mask_uri

logger = logging.getLogger("qexp.tasks")

COLUMNS = ("id, def, filter, status, prev_status, res, res_ref, priority, attempts, lease_owner, lease_until, "
           "created, updated")
CHUNK = 500
T = TypeVar("T")


class SQLTaskStore(TaskStore):
    """A task store on a SQL database; subclasses give the connection and the dialect's pieces."""

    ph = "?"  # parameter placeholder
    lock_clause = ""  # FOR UPDATE SKIP LOCKED where the database has it
    filter_select = "filter"

    def __init__(self, uri: str):
        self.uri = uri
        self._local = threading.local()
        self._schema_ready = False

    # ---- dialect ---------------------------------------------------------------------------------
    @abstractmethod
    def _connect(self, create: bool) -> Any:
        """A new connection (autocommit); with ``create`` the database file may be created."""

    @abstractmethod
    def _table_exists(self, conn: Any) -> bool:
        """Whether ``qexp_tasks`` exists."""

    @abstractmethod
    def _create_schema(self, conn: Any) -> None:
        """Create the table and its indexes (safe when several processes do it at once)."""

    @abstractmethod
    def now_sql(self) -> str:
        """SQL for the database's clock in epoch seconds."""

    @abstractmethod
    def path_sql(self, path: tuple[str, ...]) -> str:
        """SQL for the JSON value at ``path`` of ``filter`` (NULL when absent); ``path`` is inlined as a
        quoted literal."""

    def json_param(self) -> str:
        """How a JSON text parameter compares with :meth:`path_sql` (a cast where needed)."""
        return self.ph

    def blob(self, data: bytes | None) -> Any:
        return data

    def begin_write(self, conn: Any) -> None:
        conn.execute("BEGIN")

    # ---- connections -----------------------------------------------------------------------------
    def lost_errors(self) -> tuple[type[BaseException], ...]:
        """Errors after which the connection is dropped and the statement run once more on a new one (a
        server that restarted or ended our session); none for an embedded database."""
        return ()

    def db_errors(self) -> tuple[type[BaseException], ...]:
        """The driver's errors, reported as :class:`TaskStoreError` naming the store."""
        return ()

    def _is_closed(self, conn: Any) -> bool:
        return False

    def _can_open(self) -> bool:
        """Whether a connection may be opened without creating anything (a SQLite file that is not there:
        False; a server database: True, its table is asked on the connection)."""
        return True

    def exists(self) -> bool:
        """Whether the store was created: the file or database is there and holds the tasks table."""
        return self._use(lambda conn: True, False)

    def _conn(self, create: bool = False) -> Any | None:
        """This thread's connection; None when the store does not exist and ``create`` is False."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # never share a connection across a fork
            local.conn, local.pid = None, os.getpid()
        if local.conn is not None and self._is_closed(local.conn):
            local.conn = None
        if local.conn is None:
            if not create and not self._can_open():
                return None
            local.conn = self._connect(create)
        if create and not self._schema_ready:
            if not self._table_exists(local.conn):
                self._create_schema(local.conn)
            self._schema_ready = True
        return local.conn

    def _drop_conn(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is gone already
                pass

    def _use(self, body: Callable[[Any], T], default: T, create: bool = False) -> T:
        """``body(conn)`` on this thread's connection. Without ``create``, a store or table that does not exist
        gives ``default`` (reading never creates). A lost connection is reopened and ``body`` run once more;
        the driver's errors become :class:`TaskStoreError` naming the store (password masked)."""
        for attempt in (1, 2):
            try:
                conn = self._conn(create)
                if conn is None:
                    return default
                if not create and not self._schema_ready:
                    if not self._table_exists(conn):
                        return default
                    self._schema_ready = True  # it exists: no need to ask again
                return body(conn)
            except self.lost_errors() as exc:
                self._drop_conn()
                self._schema_ready = False
                if attempt == 2:
                    raise TaskStoreError(f"task store {mask_uri(self.uri)}: the connection was lost and a new one "
                                         f"failed too: {_first_line(exc)}") from None
                logger.warning("task store %s: the connection was lost (%s); reconnecting", mask_uri(self.uri),
                               _first_line(exc))
            except self.db_errors() as exc:
                raise TaskStoreError(f"task store {mask_uri(self.uri)}: {_first_line(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            try:
                conn.close()
            finally:
                self._local.conn = None

    def __getstate__(self) -> dict:
        return {"uri": self.uri}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["uri"])  # type: ignore[misc]

    def _execute(self, conn: Any, sql: str, params: list | tuple = ()) -> Any:
        cur = conn.cursor()
        cur.execute(sql, params)
        return cur

    def _transaction(self, conn: Any) -> _Tx:
        return _Tx(self, conn)

    # ---- SQL pieces ------------------------------------------------------------------------------
    def effective_status(self) -> str:
        return (f"(CASE WHEN status = 'running' AND lease_until < {self.now_sql()} THEN prev_status "
                f"ELSE status END)")

    def where(self, pool: str, conds: list[Cond]) -> tuple[str, list]:
        parts, params = ["pool = " + self.ph], [pool]
        for c in conds:
            sql, ps = self._cond_sql(c)
            parts.append(sql)
            params.extend(ps)
        return " AND ".join(parts), params

    def _cond_sql(self, c: Cond) -> tuple[str, list]:
        ph = self.ph
        if c.field == "_id":
            ids = [_int_id(v) for v in (c.value if c.op in ("in", "nin") else (c.value,))]
            ids = [i for i in ids if i is not None]
            expr, values = "id", ids
        elif c.field == "status":
            expr, values = self.effective_status(), list(c.value) if c.op in ("in", "nin") else [c.value]
        elif c.field == "priority":
            expr, values = "priority", list(c.value) if c.op in ("in", "nin") else [c.value]
        else:
            expr = self.path_sql(c.path)
            if c.op == "exists":
                return f"({expr}) IS {'NOT ' if c.value else ''}NULL", []
            values = list(c.value) if c.op in ("in", "nin") else [c.value]
            jp = self.json_param()
            if c.op in ("in", "nin"):
                if not values:
                    return ("1 = 0" if c.op == "in" else "1 = 1"), []
                marks = ", ".join([jp] * len(values))
                if c.op == "nin":  # as in MongoDB, a task without the field matches $nin
                    return f"(({expr}) IS NULL OR ({expr}) NOT IN ({marks}))", values
                return f"({expr}) IN ({marks})", values
            if c.op == "ne":
                return f"(({expr}) IS NULL OR ({expr}) <> {jp})", values
            return f"({expr}) = {jp}", values
        if c.op in ("in", "nin"):
            if not values:
                return ("1 = 0" if c.op == "in" else "1 = 1"), []
            marks = ", ".join([ph] * len(values))
            return f"{expr} {'NOT ' if c.op == 'nin' else ''}IN ({marks})", values
        value = values[0] if values else None
        if c.field == "_id" and not values:
            return ("1 = 0" if c.op == "eq" else "1 = 1"), []
        if value is None:
            return f"{expr} IS {'NOT ' if c.op == 'ne' else ''}NULL", []
        if c.op == "ne":
            return f"({expr} IS NULL OR {expr} <> {ph})", [value]
        return f"{expr} = {ph}", [value]

    def _row(self, pool: str, r: tuple) -> StoredTask:
        (rid, definition, flt, status, prev_status, res, res_ref, priority, attempts, owner, until,
         created, updated) = r
        return StoredTask(id=str(rid), pool=pool, definition=bytes(definition), filter=str(flt), status=status,
                          res=None if res is None else bytes(res), res_ref=res_ref, priority=priority,
                          attempts=attempts, lease_owner=owner, lease_until=until, created=created, updated=updated)

    # ---- the contract ----------------------------------------------------------------------------
    def pools(self) -> list[str]:
        return self._use(lambda conn: [r[0] for r in self._execute(
            conn, "SELECT DISTINCT pool FROM qexp_tasks ORDER BY pool").fetchall()], [])

    def insert(self, pool: str, tasks: list[NewTask]) -> list[tuple[str, bool]]:
        if not tasks:
            return []
        return self._use(lambda conn: self._insert(conn, pool, tasks), [], create=True)

    def _insert(self, conn: Any, pool: str, tasks: list[NewTask]) -> list[tuple[str, bool]]:
        ph = self.ph
        with self._transaction(conn):
            hashes = list(dict.fromkeys(t.hash for t in tasks))
            before = self._lookup(conn, pool, hashes)
            new = {t.hash: t for t in tasks if t.hash not in before}
            sql = (f"INSERT INTO qexp_tasks (pool, hash, def, filter, status, attempts, created, updated) "
                   f"VALUES ({ph}, {ph}, {ph}, {self.json_param()}, {ph}, 0, {self.now_sql()}, "
                   f"{self.now_sql()}) ON CONFLICT (pool, hash) DO NOTHING")
            inserted = self._insert_many(conn, sql, [(pool, t.hash, self.blob(t.definition), t.filter, t.status)
                                                     for t in new.values()])
            after = self._lookup(conn, pool, hashes)
        missing = [h for h in hashes if h not in after]
        if missing:  # pragma: no cover - only if a concurrent remove() ran inside our transaction
            raise TaskStoreError(f"{len(missing)} task(s) vanished while being inserted into pool {pool!r}")
        seen: set[str] = set()
        out = []
        for t in tasks:
            out.append((after[t.hash], t.hash in inserted and t.hash not in seen))
            seen.add(t.hash)
        return out

    def _insert_many(self, conn: Any, sql: str, rows: list[tuple]) -> set[str]:
        """Insert ``rows`` (pool, hash, ...); return the hashes this statement inserted. Here the write lock is
        held from the lookup on, so every row not there before is ours."""
        cur = conn.cursor()
        cur.executemany(sql, rows)
        return {r[1] for r in rows}

    def lookup(self, pool: str, hashes: list[str]) -> dict[str, str]:
        return self._use(lambda conn: self._lookup(conn, pool, hashes), {})

    def _lookup(self, conn: Any, pool: str, hashes: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(hashes), CHUNK):
            chunk = hashes[i:i + CHUNK]
            marks = ", ".join([self.ph] * len(chunk))
            cur = self._execute(conn, f"SELECT hash, id FROM qexp_tasks WHERE pool = {self.ph} AND hash IN "
                                      f"({marks})", [pool, *chunk])
            out.update({h: str(i_) for h, i_ in cur.fetchall()})
        return out

    def fetch(self, pool: str, conds: list[Cond], status: str, owner: str, lease_s: float) -> StoredTask | None:
        return self._use(lambda conn: self._fetch(conn, pool, conds, status, owner, lease_s), None)

    def _fetch(self, conn: Any, pool: str, conds: list[Cond], status: str, owner: str,
               lease_s: float) -> StoredTask | None:
        ph, now = self.ph, self.now_sql()
        conds = [c for c in conds if c.field != "status"]  # the fetched status decides, as in Qlib
        where, params = self.where(pool, conds)
        reclaim = (f"UPDATE qexp_tasks SET status = prev_status, prev_status = NULL, lease_owner = NULL, "
                   f"lease_until = NULL, updated = {now} WHERE pool = {ph} AND status = 'running' "
                   f"AND lease_until < {now}")
        take = (f"UPDATE qexp_tasks SET status = 'running', prev_status = {ph}, lease_owner = {ph}, "
                f"lease_until = {now} + {ph}, attempts = attempts + 1, updated = {now} "
                f"WHERE id = (SELECT id FROM qexp_tasks WHERE {where} AND status = {ph} "
                f"ORDER BY priority DESC NULLS LAST, id LIMIT 1 {self.lock_clause}) RETURNING {self.returning()}")
        take_params = [status, owner, float(lease_s), *params, status]
        row = self._fetch_one(conn, reclaim, [pool], take, take_params)
        if row is None and self.lock_clause:
            # SKIP LOCKED also skips a row another statement holds for an instant (a heartbeat's UPDATE keeps its
            # lock on a row it rechecked and did not change until it commits): None must mean nothing waits
            probe = f"SELECT 1 FROM qexp_tasks WHERE {where} AND status = {ph} LIMIT 1"
            delay = 0.001
            while row is None and self._execute(conn, probe, [*params, status]).fetchone() is not None:
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                row = self._fetch_one(conn, reclaim, [pool], take, take_params)
        return None if row is None else self._row(pool, row)

    def returning(self) -> str:
        return COLUMNS.replace("filter", self.filter_select)

    @abstractmethod
    def _fetch_one(self, conn: Any, reclaim: str, reclaim_params: list, take: str, take_params: list) -> tuple | None:
        """Run the reclaim and the take atomically; the taken row or None."""

    def renew(self, ids: list[str], owner: str, lease_s: float) -> int:
        ints = [i for i in (_int_id(x) for x in ids) if i is not None]
        if not ints:
            return 0
        ph, now = self.ph, self.now_sql()
        marks = ", ".join([ph] * len(ints))
        sql = (f"UPDATE qexp_tasks SET lease_until = {now} + {ph} WHERE id IN ({marks}) AND lease_owner = {ph} "
               f"AND status = 'running'")
        return self._use(lambda conn: self._execute(conn, sql, [float(lease_s), *ints, owner]).rowcount, 0)

    def finish(self, pool: str, task_id: str, status: str, res: bytes | None, res_ref: str | None,
               owner: str | None = None) -> bool:
        tid = _int_id(task_id)
        if tid is None:
            return False
        ph, now = self.ph, self.now_sql()
        where, params = f"pool = {ph} AND id = {ph}", [pool, tid]
        if owner is not None:  # only while the lease is ours: a worker that lost it must not overwrite
            where += f" AND lease_owner = {ph} AND status = 'running'"
            params.append(owner)
        sql = (f"UPDATE qexp_tasks SET status = {ph}, res = {ph}, res_ref = {ph}, prev_status = NULL, "
               f"lease_owner = NULL, lease_until = NULL, updated = {now} WHERE {where}")
        return self._use(lambda conn: self._execute(conn, sql, [status, self.blob(res), res_ref, *params]).rowcount
                         > 0, False)

    def set_status(self, pool: str, conds: list[Cond], status: str, owner: str | None = None) -> int:
        ph, now = self.ph, self.now_sql()
        where, params = self.where(pool, conds)
        if owner is not None:
            where += f" AND lease_owner = {ph} AND status = 'running'"
            params.append(owner)
        sql = (f"UPDATE qexp_tasks SET status = {ph}, prev_status = NULL, lease_owner = NULL, lease_until = NULL, "
               f"updated = {now} WHERE {where}")
        return self._use(lambda conn: self._execute(conn, sql, [status, *params]).rowcount, 0)

    def find(self, pool: str, conds: list[Cond]) -> list[StoredTask]:
        where, params = self.where(pool, conds)
        cols = self.returning().replace("status, prev_status", f"{self.effective_status()}, prev_status", 1)
        sql = f"SELECT {cols} FROM qexp_tasks WHERE {where} ORDER BY id"
        return self._use(lambda conn: [self._row(pool, r) for r in self._execute(conn, sql, params).fetchall()], [])

    def count(self, pool: str, conds: list[Cond]) -> dict[str, int]:
        where, params = self.where(pool, conds)
        eff = self.effective_status()
        sql = f"SELECT {eff}, COUNT(*) FROM qexp_tasks WHERE {where} GROUP BY {eff}"
        return self._use(lambda conn: {status: int(n) for status, n in self._execute(conn, sql, params).fetchall()},
                         {})

    def delete(self, pool: str, conds: list[Cond]) -> int:
        where, params = self.where(pool, conds)
        return self._use(lambda conn: self._execute(conn, f"DELETE FROM qexp_tasks WHERE {where}", params).rowcount,
                         0)

    def set_priority(self, pool: str, conds: list[Cond], priority: int | None) -> int:
        where, params = self.where(pool, conds)
        sql = f"UPDATE qexp_tasks SET priority = {self.ph} WHERE {where}"
        return self._use(lambda conn: self._execute(conn, sql, [priority, *params]).rowcount, 0)

    def replace(self, pool: str, task_id: str, task: NewTask, status: str, res: bytes | None,
                res_ref: str | None) -> None:
        ph, now = self.ph, self.now_sql()
        sql = (f"UPDATE qexp_tasks SET hash = {ph}, def = {ph}, filter = {self.json_param()}, status = {ph}, "
               f"res = {ph}, res_ref = {ph}, prev_status = NULL, lease_owner = NULL, lease_until = NULL, "
               f"updated = {now} WHERE pool = {ph} AND id = {ph}")
        params = [task.hash, self.blob(task.definition), task.filter, status, self.blob(res), res_ref, pool,
                  _int_id(task_id)]
        if self._use(lambda conn: self._execute(conn, sql, params).rowcount, 0, create=True) == 0:
            raise TaskStoreError(f"pool {pool!r} of {mask_uri(self.uri)} has no task with _id {task_id!r}")


class _Tx:
    """BEGIN ... COMMIT on an autocommit connection, ROLLBACK on any error (nothing half-written)."""

    def __init__(self, store: SQLTaskStore, conn: Any):
        self.store, self.conn = store, conn

    def __enter__(self) -> _Tx:
        self.store.begin_write(self.conn)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.conn.cursor().execute("COMMIT")
            return
        try:
            self.conn.cursor().execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - a lost connection rolled back already; the first error counts
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _int_id(value: Any) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def batched(rows: list, size: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]
