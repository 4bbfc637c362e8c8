"""Fresh, empty MLflow stores for tests: SQLite files, PostgreSQL and MySQL/MariaDB databases and a real
``mlflow server``.

Each store kind is set up once per test session (MLflow's schema migrations take seconds) and handed to
every test empty: a SQLite file is copied from a migrated template, and the PostgreSQL databases (the
direct one and the server's) have their tables truncated. Everything is removed at session end.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from ..services import import_client, service_missing

PG_ADMIN_URI = os.environ.get("QEXP_TEST_PG_URI", "postgresql://postgres@127.0.0.1:5432/test")
# rows MLflow seeds that the store needs (the schema version and the default workspace)
KEEP_TABLES = {"alembic_version", "workspaces"}

_session: dict[str, Any] = {}


def _once(request: pytest.FixtureRequest, key: str, make: Callable[[], Any]) -> Any:
    """``make()`` once per test session; a failure (skip or a missing service's fail included) is remembered
    and repeated."""
    if key not in _session:
        try:
            _session[key] = ("ok", make())
        except BaseException as exc:  # pytest.skip and pytest.fail raise BaseException subclasses
            _session[key] = ("err", exc)
        request.config.add_cleanup(lambda: _session.pop(key, None))
    status, value = _session[key]
    if status == "err":
        raise value
    return value


def _quiet_mlflow_logs() -> None:
    import logging
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


# ---- SQLite -------------------------------------------------------------------------------------
def sqlite_store(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new SQLite database file (copied from a migrated template) under the test's tmp dir."""
    pytest.importorskip("mlflow")
    template = _once(request, "sqlite-template", lambda: _sqlite_template(request))
    db = tmp_path / "mlflow.db"
    shutil.copyfile(template, db)
    return f"sqlite:///{db}"


def _sqlite_template(request: pytest.FixtureRequest) -> Path:
    _quiet_mlflow_logs()
    from mlflow import MlflowClient
    folder = request.getfixturevalue("tmp_path_factory").mktemp("mlflow-sqlite-template")
    path = folder / "template.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


# ---- PostgreSQL ---------------------------------------------------------------------------------
def _psycopg2() -> Any:
    return import_client("psycopg2", reason="PostgreSQL tests need psycopg2 (pip install \"qexp[mlflow]\")")


def _admin_connection() -> Any:
    psycopg2 = _psycopg2()
    try:
        conn = psycopg2.connect(PG_ADMIN_URI, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        service_missing(f"PostgreSQL is unreachable at {PG_ADMIN_URI} ({str(exc).strip()}); start it (e.g. "
                        f"pg_ctlcluster --skip-systemctl-redirect <version> main start) or set QEXP_TEST_PG_URI")
    conn.autocommit = True
    return conn


def _db_uri(name: str, driver: bool = False) -> str:
    base = PG_ADMIN_URI.rsplit("/", 1)[0]
    if driver:
        base = base.replace("postgresql://", "postgresql+psycopg2://", 1)
    return f"{base}/{name}"


class PgDatabase:
    """A database created for this session, migrated by MLflow, emptied by :meth:`reset`."""

    def __init__(self, request: pytest.FixtureRequest, prefix: str, migrate: bool = True):
        pytest.importorskip("mlflow")
        self.admin = _admin_connection()
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self.admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.name}"')
        request.config.add_cleanup(self.drop)
        self.uri = _db_uri(self.name)
        if migrate:
            self.migrate()
        self._conn: Any = None

    def migrate(self) -> None:
        # in a child process, so no pooled connection of this one lingers on the session database
        code = ("import logging; logging.disable(logging.INFO); from mlflow import MlflowClient; "
                f"MlflowClient({_db_uri(self.name, driver=True)!r}).search_experiments()")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)

    def connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = _psycopg2().connect(self.uri, connect_timeout=5)
            self._conn.autocommit = True
        return self._conn

    def reset(self) -> None:
        """Empty every table MLflow writes (experiments, runs, metrics, ...), keeping the schema."""
        with self.connection().cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = [t for (t,) in cur.fetchall() if t not in KEEP_TABLES]
            if tables:
                cur.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")

    def drop(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        try:
            with self.admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            self.admin.close()


def postgresql_store(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The session's PostgreSQL database, emptied; artifacts go to the test's tmp dir."""
    db: PgDatabase = _once(request, "pg-direct", lambda: PgDatabase(request, "qexp_test"))
    db.reset()
    request.getfixturevalue("monkeypatch").setenv("QEXP_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    return db.uri


# ---- MySQL / MariaDB ----------------------------------------------------------------------------
MYSQL_ADMIN = os.environ.get("QEXP_TEST_MYSQL_URI", "mysql://root@127.0.0.1:3306/test")


def _mysql_connect(database: str | None = None) -> Any:
    pymysql = import_client("pymysql", reason="MySQL tests need PyMySQL (pip install \"qexp[mlflow]\")")
    from urllib.parse import unquote, urlparse
    u = urlparse(MYSQL_ADMIN)
    try:
        return pymysql.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306, user=unquote(u.username or "root"),
                               password=unquote(u.password or ""), database=database, autocommit=True,
                               connect_timeout=3)
    except pymysql.err.OperationalError as exc:
        service_missing(f"MySQL/MariaDB is unreachable at {MYSQL_ADMIN} ({exc}); start it (e.g. service mariadb "
                        f"start) or set QEXP_TEST_MYSQL_URI")


class MysqlDatabase:
    """A MySQL/MariaDB database created for this session, migrated by MLflow, emptied by :meth:`reset`."""

    def __init__(self, request: pytest.FixtureRequest):
        pytest.importorskip("mlflow")
        self.admin = _mysql_connect()
        self.name = f"qexp_test_{uuid.uuid4().hex[:10]}"
        with self.admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.name}`")
        request.config.add_cleanup(self.drop)
        self.uri = MYSQL_ADMIN.rsplit("/", 1)[0] + f"/{self.name}"  # a bare mysql:// as users write it
        code = ("import logging; logging.disable(logging.INFO); from qexp_mlflow.client import tracking_uri; "
                f"from mlflow import MlflowClient; MlflowClient(tracking_uri({self.uri!r})).search_experiments()")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
        self._conn: Any = None

    def reset(self) -> None:
        if self._conn is None or not self._conn.open:
            self._conn = _mysql_connect(self.name)
        with self._conn.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (self.name,))
            tables = [t for (t,) in cur.fetchall() if t not in KEEP_TABLES]
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            for t in tables:
                cur.execute(f"DELETE FROM `{t}`")
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")

    def drop(self) -> None:
        if self._conn is not None and self._conn.open:
            self._conn.close()
        try:
            with self.admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
        finally:
            self.admin.close()


def mysql_store(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The session's MySQL/MariaDB database, emptied; artifacts go to the test's tmp dir."""
    db: MysqlDatabase = _once(request, "mysql", lambda: MysqlDatabase(request))
    db.reset()
    request.getfixturevalue("monkeypatch").setenv("QEXP_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    return db.uri


# ---- mlflow server ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on a fresh PostgreSQL database, serving artifacts from a tmp folder."""

    def __init__(self, request: pytest.FixtureRequest):
        self.db = PgDatabase(request, "qexp_srv", migrate=False)
        folder = request.getfixturevalue("tmp_path_factory").mktemp("mlflow-server")
        self.artifacts = folder / "artifacts"
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", _db_uri(self.db.name, driver=True),
             "--artifacts-destination", str(self.artifacts), "--serve-artifacts", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        request.config.add_cleanup(self.stop)
        self._wait_healthy(folder / "server.log")

    def _wait_healthy(self, log_path: Path, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer /health within {timeout:.0f}s:\n"
                           f"{log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def mlflow_server_store(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The session's MLflow server with its database emptied."""
    server: MlflowServer = _once(request, "mlflow-server", lambda: MlflowServer(request))
    server.db.reset()
    return server.uri
