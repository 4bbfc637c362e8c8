"""QEXP_REQUIRE_SERVICES=1 (set by .ci/run): a missing service fails its tests instead of skipping them."""
from __future__ import annotations

import pytest

from ..services import import_client, service_missing


def test_a_missing_service_skips_by_default_and_fails_when_required(monkeypatch):
    monkeypatch.delenv("QEXP_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no server"):
        service_missing("no server")
    with pytest.raises(pytest.skip.Exception, match="nonexistent_client_lib"):
        import_client("nonexistent_client_lib")
    monkeypatch.setenv("QEXP_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match=r"no server \[QEXP_REQUIRE_SERVICES=1"):
        service_missing("no server")
    with pytest.raises(pytest.fail.Exception, match="nonexistent_client_lib"):
        import_client("nonexistent_client_lib")
    assert import_client("json").dumps([]) == "[]"


@pytest.mark.parametrize("required, outcome", [("0", pytest.skip.Exception), ("1", pytest.fail.Exception)])
def test_the_postgresql_fixture_helpers_obey_it(required, outcome, monkeypatch):
    pytest.importorskip("psycopg2")
    from tests.mlflow import stores as mlflow_stores
    from tests.task import stores as task_stores
    monkeypatch.setenv("QEXP_REQUIRE_SERVICES", required)
    monkeypatch.setitem(task_stores.PG_ADMIN, "port", 1)             # nothing listens there
    with pytest.raises(outcome, match="PostgreSQL is not running on 127.0.0.1:5432"):
        task_stores._pg_admin()
    monkeypatch.setattr(mlflow_stores, "PG_ADMIN_URI", "postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(outcome, match="PostgreSQL is unreachable"):
        mlflow_stores._admin_connection()
    monkeypatch.setattr(mlflow_stores, "MYSQL_ADMIN", "mysql://root@127.0.0.1:1/test")
    with pytest.raises(outcome, match="MySQL/MariaDB is unreachable"):
        mlflow_stores._mysql_connect()


@pytest.mark.parametrize("required, outcome", [("0", pytest.skip.Exception), ("1", pytest.fail.Exception)])
def test_the_redis_fixture_helper_obeys_it(required, outcome, monkeypatch):
    redis = pytest.importorskip("redis")
    from tests.runtime import conftest as runtime_conftest
    monkeypatch.setenv("QEXP_REQUIRE_SERVICES", required)

    class Down(redis.Redis):
        def ping(self, *a, **k):
            raise redis.exceptions.ConnectionError("connection refused")

    monkeypatch.setattr(redis, "Redis", Down)
    with pytest.raises(outcome, match="no Redis server at 127.0.0.1:6379"):
        next(runtime_conftest._redis_db(13))
