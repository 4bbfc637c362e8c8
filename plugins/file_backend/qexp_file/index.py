"""A SQLite index over the run folders, for fast listing and search.

The run folders are the truth; the index is a cache rebuilt from them whenever it is missing, corrupt
or of another format version (``qexp index rebuild`` forces it). Latest metric values, params and tags
are kept as JSON objects per run and filtered with SQLite's JSON functions.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
import warnings
import weakref
from typing import Any, Iterable

from qexp.ext import Clause, Order, QexpError, chmod_like_umask

INDEX_VERSION = "2"  # 2: +-inf metrics kept (as +-9e999), NaN as null
MAX_SORT_INDEXES = 32  # expression indexes made for sorted keys (see RunIndex._ensure_sort_index)
SORT_INDEX_MIN_RUNS = 5000  # below this many runs a sort reads every row in milliseconds: no index
SORT_INDEX_RECHECK_S = 60.0  # a key found missing (or a store found small) is looked at again after this
USE_TOUCH_S = 3600.0  # an index's last use is written at most this often per process
RUN_COLUMNS = ("run_id", "experiment_id", "run_name", "status", "start_time", "end_time", "artifact_uri",
               "user_id", "pid", "host", "pid_start")
PARENT_SQL = """json_extract(tags, '$."mlflow.parentRunId"')"""
_ATTR_COLUMN = {"status": "status", "run_name": "run_name", "run_id": "run_id", "artifact_uri": "artifact_uri",
                "user_id": "user_id", "experiment_id": "experiment_id", "start_time": "start_time",
                "end_time": "end_time"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs(
  run_id TEXT PRIMARY KEY, experiment_id TEXT NOT NULL, run_name TEXT, status TEXT, start_time INTEGER,
  end_time INTEGER, artifact_uri TEXT, user_id TEXT, pid INTEGER, host TEXT, pid_start INTEGER,
  params TEXT NOT NULL DEFAULT '{}', metrics TEXT NOT NULL DEFAULT '{}', tags TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS runs_by_exp ON runs(experiment_id, start_time);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_by_exp_status ON runs(experiment_id, status, start_time, end_time);
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs(json_extract(tags, '$."mlflow.parentRunId"'));
CREATE TABLE IF NOT EXISTS sort_index_use(name TEXT PRIMARY KEY, last_used INTEGER NOT NULL);
"""


def _json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def metric_json(v: float) -> str:
    """A metric value as JSON text SQLite compares as a number: +-inf as +-9e999 (SQLite and Python read it
    back as infinity, so ``metrics.x > 1`` finds inf), NaN as null (a NaN compares false, as in MLflow)."""
    v = float(v)
    if math.isfinite(v):
        return repr(v)
    if math.isnan(v):
        return "null"
    return "9e999" if v > 0 else "-9e999"


def metrics_json(metrics: dict | None) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{metric_json(v)}" for k, v in (metrics or {}).items()) + "}"


def load_metrics(text: str) -> dict:
    """The metrics column back as a dict: a key present with null was logged as NaN (never-logged keys are
    absent)."""
    out = json.loads(text)
    if "null" in text:
        for k, v in out.items():
            if v is None:
                out[k] = math.nan
    return out


_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the index file is damaged (rebuilt), not that it cannot be written (kept)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _CORRUPT_CODES
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


class RunIndex:
    """The index of one store. One connection per process, shared by its threads under a lock."""

    def __init__(self, path: str, rebuild: Any, sort_indexes: bool = True):
        self.path = path
        self._rebuild_from_folders = rebuild  # callable(index) that re-inserts every run
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.make_sort_indexes = sort_indexes  # False: use the sort indexes there are, make none
        self._sort_used: dict[str, float] = {}  # index -> when this process last recorded its use (monotonic)
        self._sort_skip: dict[str, float] = {}  # index not to make -> until when (monotonic)
        _live_indexes.add(self)

    # ---- connection ---------------------------------------------------------------------------
    def _connect(self, _retried: bool = False) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        fresh = not os.path.exists(self.path)
        conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        if fresh:
            # SQLite creates its files 0644 whatever the umask; the -wal and -shm files copy the database's
            # mode, so setting it now makes all three follow the umask as the rest of the store does
            chmod_like_umask(self.path)
        try:
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA case_sensitive_like=ON")
            conn.executescript(SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if not _is_corrupt(exc) or _retried:
                # never delete on a read-only or permission error: the index is shared with teammates who
                # can write it; read it as it is, or say what is wrong
                return self._connect_read_only(exc)
            warnings.warn(f"qexp: the run index {self.path} is corrupt ({exc}); rebuilding it from the run "
                          f"folders", RuntimeWarning, stacklevel=2)
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass
                except OSError as unlink_exc:
                    raise QexpError(f"the run index {self.path} is corrupt ({exc}) and cannot be removed "
                                    f"({unlink_exc}); ask whoever can write the store to run `qexp index "
                                    f"rebuild`") from None
            return self._connect(_retried=True)
        self._conn, self._pid = conn, os.getpid()
        if fresh or row is None or row[0] != INDEX_VERSION:
            self.rebuild()
        return conn

    def _connect_read_only(self, cause: sqlite3.DatabaseError) -> sqlite3.Connection:
        """The index opened for reading only (a teammate without write access to it): searches work,
        writes fail with SQLite's read-only error. A clear error when even that is impossible."""
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60, check_same_thread=False,
                                   isolation_level=None)
            conn.execute("PRAGMA case_sensitive_like=ON")
            row = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise QexpError(f"cannot open the run index {self.path} ({cause}; read-only: {exc}); check that you "
                            f"may read and write the store's .qexp folder (a shared store needs group write "
                            f"access, e.g. chmod -R g+w), or rebuild it with `qexp index rebuild` as its owner"
                            ) from None
        if row is None or row[0] != INDEX_VERSION:
            conn.close()
            raise QexpError(f"the run index {self.path} is of another version and you cannot rewrite it "
                            f"({cause}); ask whoever can write the store to run `qexp index rebuild`")
        warnings.warn(f"qexp: the run index {self.path} is read-only for you ({cause}); reading it as it is",
                      RuntimeWarning, stacklevel=3)
        self._conn, self._pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def rebuild(self) -> int:
        """Re-create the index from the run folders; returns the number of runs indexed."""
        with self._lock:
            conn = self._connect() if self._conn is None else self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM runs")
                n = self._rebuild_from_folders(_Inserter(conn))
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('version', ?)", (INDEX_VERSION,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return n

    def _exec(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._connect().execute(sql, tuple(args))

    # ---- writes -------------------------------------------------------------------------------
    def upsert_run(self, info: dict, params: dict | None = None, metrics: dict | None = None,
                   tags: dict | None = None) -> None:
        cols = list(RUN_COLUMNS) + ["params", "metrics", "tags"]
        vals = [info.get(c) for c in RUN_COLUMNS] + [
            json.dumps(params or {}), metrics_json(metrics), json.dumps(tags or {})]
        self._exec(f"INSERT OR REPLACE INTO runs({', '.join(cols)}) VALUES({', '.join('?' * len(cols))})", vals)

    def update_info(self, run_id: str, **fields: Any) -> None:
        if fields:
            sets = ", ".join(f"{k}=?" for k in fields)
            self._exec(f"UPDATE runs SET {sets} WHERE run_id=?", [*fields.values(), run_id])

    def patch(self, run_id: str, column: str, values: dict) -> None:
        """Merge ``values`` into the JSON column (``params``, ``metrics`` or ``tags``)."""
        dump = metric_json if column == "metrics" else json.dumps
        # json_set keeps explicit nulls (json_patch would delete keys set to null, e.g. a NaN metric);
        # one call takes many path/value pairs, chunked under SQLite's function-argument limit
        items = list(values.items())
        with self._lock:
            for i in range(0, len(items), 60):
                chunk = items[i:i + 60]
                pairs = ", ".join("?, json(?)" for _ in chunk)
                args: list[Any] = []
                for k, v in chunk:
                    args += [_json_path(k), dump(v)]
                self._exec(f"UPDATE runs SET {column}=json_set({column}, {pairs}) WHERE run_id=?", [*args, run_id])

    def remove_keys(self, run_id: str, column: str, keys: list[str]) -> None:
        if keys:
            paths = ", ".join("?" * len(keys))
            self._exec(f"UPDATE runs SET {column}=json_remove({column}, {paths}) WHERE run_id=?",
                       [*(_json_path(k) for k in keys), run_id])

    def delete_run(self, run_id: str) -> None:
        self._exec("DELETE FROM runs WHERE run_id=?", [run_id])

    def delete_experiment(self, experiment_id: str) -> None:
        self._exec("DELETE FROM runs WHERE experiment_id=?", [experiment_id])

    # ---- reads --------------------------------------------------------------------------------
    def run_location(self, run_id: str) -> str | None:
        row = self._exec("SELECT experiment_id FROM runs WHERE run_id=?", [run_id]).fetchone()
        return row[0] if row else None

    def running(self, experiment_ids: list[str] | None) -> list[dict]:
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE status='RUNNING'"
        args: list[Any] = []
        if experiment_ids is not None:
            sql += f" AND experiment_id IN ({', '.join('?' * len(experiment_ids))})"
            args = list(experiment_ids)
        return [dict(zip(RUN_COLUMNS, r)) for r in self._exec(sql, args).fetchall()]

    def stats(self, experiment_ids: list[str] | None) -> dict[str, dict[str, Any]]:
        """Per experiment: run counts by status, total and last activity (latest start or end, ms)."""
        sql = "SELECT experiment_id, status, COUNT(*), MAX(start_time), MAX(end_time) FROM runs"
        args: list[Any] = []
        if experiment_ids is not None:
            sql += f" WHERE experiment_id IN ({', '.join('?' * len(experiment_ids))})"
            args = list(experiment_ids)
        out: dict[str, dict[str, Any]] = {}
        for exp_id, status, n, started, ended in self._exec(sql + " GROUP BY experiment_id, status", args):
            s = out.setdefault(exp_id, {"counts": {}, "total": 0, "last_activity": None})
            s["counts"][status] = n
            s["total"] += n
            last = max((t for t in (started, ended, s["last_activity"]) if t is not None), default=None)
            s["last_activity"] = last
        return out

    def _ensure_sort_index(self, expr: str, by_experiment: bool) -> None:
        """An index on a sorted metric/param/tag, so the first page of 100,000 runs sorted by a metric is an
        index walk, not a sort of every row. Made only for a key some run has, in a store of at least
        SORT_INDEX_MIN_RUNS runs; at most MAX_SORT_INDEXES per store (each costs writers a little), the least
        recently used one dropped for a new one. A process opened with ``sort_indexes=False`` (a read-only
        ``qexp ui``) makes none and records no use; a read-only store just sorts."""
        cols = f"experiment_id, {expr}" if by_experiment else expr
        name = "sort_" + hashlib.sha1(cols.encode()).hexdigest()[:16]
        now = time.monotonic()
        if not self.make_sort_indexes or now < self._sort_skip.get(name, 0.0):
            return
        if name in self._sort_used:
            if now - self._sort_used[name] >= USE_TOUCH_S:
                self._touch_sort_index(name)
            return
        with self._lock:
            conn = self._connect()
            try:
                have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND "
                                                   "name LIKE 'sort\\_%' ESCAPE '\\'")}
                if name in have:
                    self._touch_sort_index(name)
                    return
                big = conn.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM runs LIMIT {SORT_INDEX_MIN_RUNS})"
                                   ).fetchone()[0] >= SORT_INDEX_MIN_RUNS
                if not big or conn.execute(f"SELECT 1 FROM runs WHERE {expr} IS NOT NULL LIMIT 1").fetchone() is None:
                    self._sort_skip[name] = now + SORT_INDEX_RECHECK_S  # small store or a key no run has
                    return
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for old in self._least_used(conn, have, len(have) - MAX_SORT_INDEXES + 1):
                        conn.execute(f'DROP INDEX IF EXISTS "{old}"')
                        conn.execute("DELETE FROM sort_index_use WHERE name = ?", (old,))
                    conn.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON runs({cols})')
                    conn.execute("INSERT OR REPLACE INTO sort_index_use(name, last_used) VALUES(?, ?)",
                                 (name, int(time.time())))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                self._sort_used[name] = now
            except sqlite3.OperationalError:  # read-only or busy: this search sorts without it
                self._sort_skip[name] = now + SORT_INDEX_RECHECK_S

    def _touch_sort_index(self, name: str) -> None:
        """Record that a search used the index (for least-recently-used eviction), at most hourly."""
        self._sort_used[name] = time.monotonic()
        try:
            self._exec("INSERT OR REPLACE INTO sort_index_use(name, last_used) VALUES(?, ?)", [name, int(time.time())])
        except sqlite3.OperationalError:
            pass

    @staticmethod
    def _least_used(conn: sqlite3.Connection, have: set[str], n: int) -> list[str]:
        """The ``n`` sort indexes used least recently (ones never recorded first)."""
        if n <= 0:
            return []
        used = dict(conn.execute("SELECT name, last_used FROM sort_index_use").fetchall())
        return sorted(have, key=lambda x: (used.get(x, 0), x))[:n]

    def sort_index_names(self) -> list[str]:
        """The sort indexes of this store (for tests and ``qexp index``)."""
        return sorted(r[0] for r in self._exec("SELECT name FROM sqlite_master WHERE type='index' AND name LIKE "
                                               "'sort\\_%' ESCAPE '\\'"))

    def search(self, experiment_ids: list[str] | None, clauses: list[Clause], orders: list[Order],
               max_results: int | None, with_data: bool = True, offset: int = 0) -> list[dict]:
        where, args = [], []
        if experiment_ids is not None:
            if not experiment_ids:
                return []
            where.append(f"experiment_id IN ({', '.join('?' * len(experiment_ids))})")
            args += experiment_ids
        for c in clauses:
            sql, a = _clause_sql(c)
            where.append(sql)
            args += a
        order_sql = []
        for o in orders:
            expr, a = _value_sql(o.entity, o.key)
            if o.entity != "attributes" and not a:
                self._ensure_sort_index(expr, by_experiment=experiment_ids is not None)
            # NULLS LAST: missing values last both ways (MLflow's rule), in a form an index can serve
            order_sql.append(f"{expr} {'ASC' if o.ascending else 'DESC'} NULLS LAST")
            args += a
        order_sql += ["start_time DESC", "run_id ASC"]
        # the parent link lives in the tags; read it alone so that listings without data still have it
        cols = list(RUN_COLUMNS) + [PARENT_SQL] + (["params", "metrics", "tags"] if with_data else [])
        sql = f"SELECT {', '.join(cols)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + ", ".join(order_sql)
        if max_results is not None or offset:
            sql += f" LIMIT {-1 if max_results is None else int(max_results)} OFFSET {int(offset)}"
        rows = self._exec(sql, args).fetchall()
        out = []
        loads = json.loads
        n = len(RUN_COLUMNS) + 1
        for r in rows:
            d = dict(zip(RUN_COLUMNS + ("parent_run_id",), r[:n]))
            if with_data:
                d["params"], d["metrics"], d["tags"] = loads(r[n]), load_metrics(r[n + 1]), loads(r[n + 2])
            out.append(d)
        return out


_live_indexes: weakref.WeakSet[RunIndex] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # a lock held by another thread at fork time would never be released in the child;
    # the parent's SQLite connection must not be used there either
    for idx in list(_live_indexes):
        idx._lock = threading.RLock()
        idx._conn = None


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Inserter:
    """Handed to the folder scan during a rebuild: inserts inside the rebuild's transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def upsert_run(self, info: dict, params: dict | None = None, metrics: dict | None = None,
                   tags: dict | None = None) -> None:
        cols = list(RUN_COLUMNS) + ["params", "metrics", "tags"]
        vals = [info.get(c) for c in RUN_COLUMNS] + [
            json.dumps(params or {}), metrics_json(metrics), json.dumps(tags or {})]
        self.conn.execute(f"INSERT OR REPLACE INTO runs({', '.join(cols)}) VALUES({', '.join('?' * len(cols))})",
                          vals)


def _order_expr(entity: str, key: str) -> str:
    """The sort expression with its JSON path written out (a bound parameter would hide it from indexes)."""
    if entity == "attributes":
        return _ATTR_COLUMN[key]
    return f"json_extract({entity}, {_sql_string(_json_path(key))})"


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _value_sql(entity: str, key: str) -> tuple[str, list[Any]]:
    if entity == "attributes":
        return _ATTR_COLUMN[key], []
    if "\x00" in key:  # SQL text cannot hold NUL: bind it (no index can serve such a key anyway)
        return f"json_extract({entity}, ?)", [_json_path(key)]
    # the path written out, so an index on the expression (the parent link, sorted keys) can serve filters
    return _order_expr(entity, key), []


def _clause_sql(c: Clause) -> tuple[str, list[Any]]:
    expr, args = _value_sql(c.entity, c.key)
    if c.op in ("IN", "NOT IN"):
        return f"{expr} {c.op} ({', '.join('?' * len(c.value))})", [*args, *c.value]
    if c.op == "LIKE":
        return f"{expr} LIKE ?", [*args, c.value]
    if c.op == "ILIKE":
        return f"lower({expr}) LIKE lower(?)", [*args, c.value]
    if c.entity == "attributes" and c.key == "run_name" and c.op in ("=", "!="):
        return f"{expr} {c.op} ?", [*args, c.value]
    if c.op == "!=":
        return f"({expr} IS NOT NULL AND {expr} != ?)", [*args, *args, c.value]
    return f"{expr} {c.op} ?", [*args, c.value]
