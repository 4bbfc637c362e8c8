"""``postgresql://USER@HOST:PORT/DB``: task pools in PostgreSQL, for workers on many machines.

A fetch is one round trip: the expired leases of the pool are turned back, then ``UPDATE ... WHERE id =
(SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`` takes one task, so concurrent workers skip each other's rows
instead of waiting. Times come from the server's clock (leases do not depend on the workers' clocks).
"""
from __future__ import annotations

from typing import Any

from qexp.ext import TaskStoreError, mask_uri, require_extra

from .sql import SQLTaskStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS qexp_tasks (
    id BIGSERIAL PRIMARY KEY,
    pool TEXT NOT NULL,
    hash TEXT NOT NULL,
    def BYTEA NOT NULL,
    filter JSONB NOT NULL,
    status TEXT NOT NULL,
    prev_status TEXT,
    res BYTEA,
    res_ref TEXT,
    priority INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    UNIQUE (pool, hash)
);
CREATE INDEX IF NOT EXISTS qexp_tasks_fetch ON qexp_tasks (pool, status, priority DESC NULLS LAST, id);
"""
SCHEMA_LOCK = 7_242_027_001  # advisory lock: one process creates the table, the others wait for it


def _dsn(uri: str) -> str:
    # postgresql+psycopg2://... (SQLAlchemy's dialect form) is accepted as well
    scheme, sep, rest = uri.partition("://")
    return f"postgresql://{rest}" if sep else uri


class PostgresTaskStore(SQLTaskStore):
    """Task pools in the PostgreSQL database of ``uri`` (table ``qexp_tasks``)."""

    ph = "%s"
    lock_clause = "FOR UPDATE SKIP LOCKED"
    filter_select = "filter::text"

    def _psycopg2(self) -> Any:
        return require_extra("psycopg2", "postgres", "the postgresql:// task store")

    def _connect(self, create: bool) -> Any:
        psycopg2 = self._psycopg2()
        try:
            conn = psycopg2.connect(_dsn(self.uri), connect_timeout=10)
        except psycopg2.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TaskStoreError(f"cannot reach the task store {mask_uri(self.uri)}: {first}. Check that "
                                 f"PostgreSQL runs there and the URI (postgresql://USER@HOST:PORT/DB) is right") from None
        conn.autocommit = True
        if "synchronous_commit" not in self.uri:
            # a fetch or a result is one short transaction: waiting for its WAL flush (several ms per commit)
            # would bound the queue, and a server crash can lose only the last few commits, which the queue
            # survives (a lost fetch is fetched again, a lost result's task re-runs when its lease ends).
            # ?options=-c%20synchronous_commit%3Don in the URI keeps the server's setting.
            conn.cursor().execute("SET synchronous_commit TO off")
        return conn

    def _table_exists(self, conn: Any) -> bool:
        cur = conn.cursor()
        cur.execute("SELECT to_regclass('qexp_tasks') IS NOT NULL")
        return bool(cur.fetchone()[0])

    def _create_schema(self, conn: Any) -> None:
        cur = conn.cursor()
        cur.execute("BEGIN")
        try:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            cur.execute(SCHEMA)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def now_sql(self) -> str:
        return "extract(epoch from clock_timestamp())::double precision"

    def path_sql(self, path: tuple[str, ...]) -> str:
        items = ", ".join("'" + p.replace("'", "''") + "'" for p in path)
        return f"filter #> ARRAY[{items}]::text[]" if path else "filter"

    def json_param(self) -> str:
        return "%s::jsonb"

    def blob(self, data: bytes | None) -> Any:
        return None if data is None else self._psycopg2().Binary(data)

    def _insert_many(self, conn: Any, sql: str, rows: list[tuple]) -> set[str]:
        if not rows:
            return set()
        self._psycopg2()
        import psycopg2.extras as extras
        head, _, tail = sql.partition(" VALUES ")
        values, _, conflict = tail.partition(") ON CONFLICT")
        template = values.strip() + ")"
        cur = conn.cursor()
        # another driver may insert the same tasks at once (READ COMMITTED: our lookup did not see its rows, and
        # ON CONFLICT skips them after it commits): only the hashes RETURNING gives back were created here
        got = extras.execute_values(cur, f"{head} VALUES %s ON CONFLICT{conflict} RETURNING hash", rows,
                                    template=template, page_size=500, fetch=True)
        return {r[0] for r in got}

    def begin_write(self, conn: Any) -> None:
        conn.cursor().execute("BEGIN")

    def _fetch_one(self, conn: Any, reclaim: str, reclaim_params: list, take: str, take_params: list) -> tuple | None:
        cur = conn.cursor()
        # one round trip: both statements run in the implicit transaction of a multi-statement query
        cur.execute(f"{reclaim}; {take}", [*reclaim_params, *take_params])
        return cur.fetchone()

    def lost_errors(self) -> tuple[type[BaseException], ...]:
        psycopg2 = self._psycopg2()
        return (psycopg2.OperationalError, psycopg2.InterfaceError)

    def db_errors(self) -> tuple[type[BaseException], ...]:
        return (self._psycopg2().Error,)

    def _is_closed(self, conn: Any) -> bool:
        return bool(conn.closed)
