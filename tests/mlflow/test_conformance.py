"""The shipped conformance suite on the MLflow backend: SQLite, PostgreSQL, MySQL/MariaDB and a real
``mlflow server`` (each set up once per session and emptied per test; skipped when unavailable)."""
from __future__ import annotations

import pytest

from qexp.testing import BackendConformance

from .stores import mlflow_server_store, mysql_store, postgresql_store, sqlite_store

STORES = {"sqlite": sqlite_store, "postgresql": postgresql_store, "mysql": mysql_store,
          "mlflow-server": mlflow_server_store}


class TestMlflowBackend(BackendConformance):
    @pytest.fixture(params=sorted(STORES))
    def store_uri(self, request: pytest.FixtureRequest, tmp_path) -> str:
        return STORES[request.param](tmp_path, request)
