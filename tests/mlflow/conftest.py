from __future__ import annotations

import pytest

from .stores import sqlite_store


@pytest.fixture
def sqlite_uri(tmp_path, request) -> str:
    """A fresh, empty MLflow SQLite store (copied from a migrated template)."""
    return sqlite_store(tmp_path, request)


@pytest.fixture
def mlflow_store(sqlite_uri):
    """qexp initialised on a fresh SQLite MLflow store; yields the manager's (absolute) URI."""
    import qexp
    from qexp import R
    qexp.init(uri=sqlite_uri)
    yield R.get_uri()


@pytest.fixture
def client(mlflow_store):
    """A plain MlflowClient on the same store, to check what MLflow itself sees."""
    from mlflow import MlflowClient
    return MlflowClient(tracking_uri=mlflow_store)
