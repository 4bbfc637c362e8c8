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
from typing import Any, Iterator

from qexp.ext import Cond, NewTask, StoredTask, TaskStore, TaskStoreError

logger = logging.getLogger("qexp.tasks")

COLUMNS = ("id, def, filter, status, prev_status, res, res_ref, priority, attempts, lease_owner, lease_until, "
           "created, updated")
CHUNK = 500


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
    def _conn(self, create: bool = False) -> Any | None:
        """This thread's connection; None when the store does not exist and ``create`` is False."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # never share a connection across a fork
            local.conn, local.pid = None, os.getpid()
        if local.conn is None:
            if not create and not self.exists():
                return None
            local.conn = self._connect(create)
        if create and not self._schema_ready:
            if not self._table_exists(local.conn):
                self._create_schema(local.conn)
            self._schema_ready = True
        return local.conn

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
        conn = self._conn()
        if conn is None or not self._table_exists(conn):
            return []
        return [r[0] for r in self._execute(conn, "SELECT DISTINCT pool FROM qexp_tasks ORDER BY pool").fetchall()]

    def insert(self, pool: str, tasks: list[NewTask]) -> list[tuple[str, bool]]:
        if not tasks:
            return []
        conn = self._conn(create=True)
        ph = self.ph
        before: dict[str, str] = {}
        with self._transaction(conn):
            hashes = list(dict.fromkeys(t.hash for t in tasks))
            before = self._lookup(conn, pool, hashes)
            new = {t.hash: t for t in tasks if t.hash not in before}
            sql = (f"INSERT INTO qexp_tasks (pool, hash, def, filter, status, attempts, created, updated) "
                   f"VALUES ({ph}, {ph}, {ph}, {self.json_param()}, 'waiting', 0, {self.now_sql()}, "
                   f"{self.now_sql()}) ON CONFLICT (pool, hash) DO NOTHING")
            self._insert_many(conn, sql, [(pool, t.hash, self.blob(t.definition), t.filter) for t in new.values()])
            after = self._lookup(conn, pool, hashes)
        missing = [h for h in hashes if h not in after]
        if missing:  # pragma: no cover - only if a concurrent remove() ran inside our transaction
            raise TaskStoreError(f"{len(missing)} task(s) vanished while being inserted into pool {pool!r}")
        seen: set[str] = set()
        out = []
        for t in tasks:
            out.append((after[t.hash], t.hash not in before and t.hash not in seen))
            seen.add(t.hash)
        return out

    def _insert_many(self, conn: Any, sql: str, rows: list[tuple]) -> None:
        cur = conn.cursor()
        cur.executemany(sql, rows)

    def lookup(self, pool: str, hashes: list[str]) -> dict[str, str]:
        conn = self._conn()
        if conn is None or not self._table_exists(conn):
            return {}
        return self._lookup(conn, pool, hashes)

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
        conn = self._conn()
        if conn is None:
            return None
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
        conn = self._conn()
        ints = [i for i in (_int_id(x) for x in ids) if i is not None]
        if conn is None or not ints:
            return 0
        ph, now = self.ph, self.now_sql()
        marks = ", ".join([ph] * len(ints))
        cur = self._execute(conn, f"UPDATE qexp_tasks SET lease_until = {now} + {ph} WHERE id IN ({marks}) "
                                  f"AND lease_owner = {ph} AND status = 'running'", [float(lease_s), *ints, owner])
        return cur.rowcount

    def finish(self, pool: str, task_id: str, status: str, res: bytes | None, res_ref: str | None) -> bool:
        conn = self._conn()
        tid = _int_id(task_id)
        if conn is None or tid is None:
            return False
        ph, now = self.ph, self.now_sql()
        cur = self._execute(conn, f"UPDATE qexp_tasks SET status = {ph}, res = {ph}, res_ref = {ph}, "
                                  f"prev_status = NULL, lease_owner = NULL, lease_until = NULL, updated = {now} "
                                  f"WHERE pool = {ph} AND id = {ph}", [status, self.blob(res), res_ref, pool, tid])
        return cur.rowcount > 0

    def set_status(self, pool: str, conds: list[Cond], status: str, owner: str | None = None) -> int:
        conn = self._conn()
        if conn is None or not self._table_exists(conn):
            return 0
        ph, now = self.ph, self.now_sql()
        where, params = self.where(pool, conds)
        if owner is not None:
            where += f" AND lease_owner = {ph} AND status = 'running'"
            params.append(owner)
        cur = self._execute(conn, f"UPDATE qexp_tasks SET status = {ph}, prev_status = NULL, lease_owner = NULL, "
                                  f"lease_until = NULL, updated = {now} WHERE {where}", [status, *params])
        return cur.rowcount

    def find(self, pool: str, conds: list[Cond]) -> list[StoredTask]:
        conn = self._conn()
        if conn is None or not self._table_exists(conn):
            return []
        where, params = self.where(pool, conds)
        cols = self.returning().replace("status, prev_status", f"{self.effective_status()}, prev_status", 1)
        cur = self._execute(conn, f"SELECT {cols} FROM qexp_tasks WHERE {where} ORDER BY id", params)
        return [self._row(pool, r) for r in cur.fetchall()]

    def count(self, pool: str, conds: list[Cond]) -> dict[str, int]:
        conn = self._conn()
        if conn is None or not self._table_exists(conn):
            return {}
        where, params = self.where(pool, conds)
        eff = self.effective_status()
        cur = self._execute(conn, f"SELECT {eff}, COUNT(*) FROM qexp_tasks WHERE {where} GROUP BY {eff}", params)
        return {status: int(n) for status, n in cur.fetchall()}

    def delete(self, pool: str, conds: list[Cond]) -> int:
        conn = self._conn()
        if conn is None or not self._table_exists(conn):
            return 0
        where, params = self.where(pool, conds)
        return self._execute(conn, f"DELETE FROM qexp_tasks WHERE {where}", params).rowcount

    def set_priority(self, pool: str, conds: list[Cond], priority: int | None) -> int:
        conn = self._conn()
        if conn is None or not self._table_exists(conn):
            return 0
        where, params = self.where(pool, conds)
        return self._execute(conn, f"UPDATE qexp_tasks SET priority = {self.ph} WHERE {where}",
                             [priority, *params]).rowcount

    def replace(self, pool: str, task_id: str, task: NewTask, status: str, res: bytes | None,
                res_ref: str | None) -> None:
        conn = self._conn(create=True)
        ph, now = self.ph, self.now_sql()
        cur = self._execute(conn, f"UPDATE qexp_tasks SET hash = {ph}, def = {ph}, filter = {self.json_param()}, "
                                  f"status = {ph}, res = {ph}, res_ref = {ph}, prev_status = NULL, lease_owner = NULL, "
                                  f"lease_until = NULL, updated = {now} WHERE pool = {ph} AND id = {ph}",
                            [task.hash, self.blob(task.definition), task.filter, status, self.blob(res), res_ref,
                             pool, _int_id(task_id)])
        if cur.rowcount == 0:
            raise TaskStoreError(f"pool {pool!r} of {self.uri} has no task with _id {task_id!r}")


class _Tx:
    """BEGIN ... COMMIT on an autocommit connection, ROLLBACK on any error (nothing half-written)."""

    def __init__(self, store: SQLTaskStore, conn: Any):
        self.store, self.conn = store, conn

    def __enter__(self) -> _Tx:
        self.store.begin_write(self.conn)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        cur = self.conn.cursor()
        cur.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _int_id(value: Any) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def batched(rows: list, size: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]
