"""``sqlite:///PATH``: task pools in one SQLite file, the embedded default (no server).

Writes take the database lock up front (``BEGIN IMMEDIATE``), so a fetch is one atomic step among any
number of processes on the machine; WAL mode lets readers run beside the writer.
"""
from __future__ import annotations

import os
import sqlite3
from typing import Any

from qexp.ext import TaskStoreError, sqlite_path

from .sql import SQLTaskStore

BUSY_TIMEOUT_S = 120.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS qexp_tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pool TEXT NOT NULL,
    hash TEXT NOT NULL,
    def BLOB NOT NULL,
    filter TEXT NOT NULL,
    status TEXT NOT NULL,
    prev_status TEXT,
    res BLOB,
    res_ref TEXT,
    priority INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    UNIQUE (pool, hash)
);
CREATE INDEX IF NOT EXISTS qexp_tasks_fetch ON qexp_tasks (pool, status, priority DESC, id);
"""


class SQLiteTaskStore(SQLTaskStore):
    """Task pools in the SQLite file of ``sqlite:///PATH``."""

    def __init__(self, uri: str):
        super().__init__(uri)
        self.path = sqlite_path(uri)

    def _can_open(self) -> bool:
        return os.path.isfile(self.path)

    def _connect(self, create: bool) -> Any:
        if create:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            conn = sqlite3.connect(self.path if create else f"file:{self.path}?mode=rw", uri=not create,
                                   timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise TaskStoreError(f"cannot open the task store {self.uri}: {exc}") from None
        return conn

    def db_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def _table_exists(self, conn: Any) -> bool:
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'qexp_tasks'").fetchone()
        return row is not None

    def _create_schema(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def now_sql(self) -> str:
        return "((julianday('now') - 2440587.5) * 86400.0)"

    def path_sql(self, path: tuple[str, ...]) -> str:
        json_path = "$" + "".join(f"[{p}]" if p.isdigit() else '."' + p.replace('"', '\\"') + '"' for p in path)
        return "filter -> '" + json_path.replace("'", "''") + "'"

    def begin_write(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _execute(self, conn: Any, sql: str, params: list | tuple = ()) -> Any:
        return conn.execute(sql, params)

    def _fetch_one(self, conn: Any, reclaim: str, reclaim_params: list, take: str, take_params: list) -> tuple | None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(reclaim, reclaim_params)
            row = conn.execute(take, take_params).fetchone()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return row
