"""The backends the conformance suite runs against. A backend plugin adds an entry here; the tests in
test_backend_conformance.py run unchanged on every entry.

Each entry maps an id to a function ``(tmp_path, request) -> uri`` that returns a fresh, empty store.
It may call ``pytest.skip`` with a reason when its service or extra is unavailable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

BackendFactory = Callable[[Path, pytest.FixtureRequest], str]


def file_store(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return str(tmp_path / "store")


def file_uri_store(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return "file://" + str(tmp_path / "store_uri")


BACKENDS: dict[str, BackendFactory] = {
    "file": file_store,
    "file-uri": file_uri_store,
}

# MLflow stores of the qexp_mlflow plugin (set up once per session, emptied per test): tests/mlflow/stores.py
from ..mlflow.stores import mlflow_server_store, postgresql_store, sqlite_store  # noqa: E402

BACKENDS.update({"sqlite": sqlite_store, "postgresql": postgresql_store, "mlflow-server": mlflow_server_store})
