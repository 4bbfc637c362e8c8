"""Task store fixtures: a SQLite file and a PostgreSQL database made for the test and dropped after."""
from __future__ import annotations

import os
import uuid

import pytest

from ..services import import_client, service_missing

PG_ADMIN = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=5)


def _pg_admin():
    psycopg2 = import_client("psycopg2")
    try:
        conn = psycopg2.connect(**PG_ADMIN)
    except psycopg2.OperationalError as exc:  # pragma: no cover - CI starts the server
        service_missing(f"PostgreSQL is not running on 127.0.0.1:5432 ({str(exc).strip().splitlines()[0]})")
    conn.autocommit = True
    return conn


@pytest.fixture
def pg_uri():
    """``postgresql://postgres@127.0.0.1:5432/qexp_task_test_<random>``, dropped after the test."""
    name = f"qexp_task_test_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        from qexp.task import manage, store
        manage._heartbeat._held.clear()  # leases still held in the dropped database are not renewed
        for key, s in list(store._stores.items()):
            if name in key[1]:
                s.close()
                del store._stores[key]
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def sqlite_uri(tmp_path):
    return "sqlite:///" + os.path.join(str(tmp_path), "tasks", "tasks.sqlite")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_uri(request, tmp_path):
    """Each store the plugin serves."""
    if request.param == "sqlite":
        return "sqlite:///" + os.path.join(str(tmp_path), "tasks", "tasks.sqlite")
    return request.getfixturevalue("pg_uri")
