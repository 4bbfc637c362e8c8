"""The shipped conformance suite on the MLflow backend: SQLite, PostgreSQL, MySQL/MariaDB and a real
``mlflow server`` (each set up once per session and emptied per test; skipped when unavailable)."""
from __future__ import annotations

import uuid

import pytest

from qexp.testing import BackendConformance

from .stores import mlflow_server_store, mysql_store, postgresql_store, sqlite_store

STORES = {"sqlite": sqlite_store, "postgresql": postgresql_store, "mysql": mysql_store,
          "mlflow-server": mlflow_server_store}


class TestMlflowBackend(BackendConformance):
    @pytest.fixture(params=sorted(STORES))
    def store_uri(self, request: pytest.FixtureRequest, tmp_path) -> str:
        return STORES[request.param](tmp_path, request)

    @pytest.fixture
    def missing_store_uri(self, request: pytest.FixtureRequest, store_uri: str, tmp_path) -> str:
        """The session's databases exist already: a missing one is a new file or database name."""
        kind = request.node.callspec.params["store_uri"]
        if kind == "mlflow-server":
            pytest.skip("a tracking server always has its store (an unreachable one is another error)")
        if kind == "sqlite":
            return f"sqlite:///{tmp_path}/missing/mlflow.db"
        return f"{store_uri.rsplit('/', 1)[0]}/qexp_missing_{uuid.uuid4().hex[:8]}"
