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


def wandb_store(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """wandb:// offline over a local file store; W&B's folders go to tmp_path too."""
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install \"qexp[wandb]\")")
    monkeypatch = request.getfixturevalue("monkeypatch")
    for var, sub in (("WANDB_DIR", "wandb"), ("WANDB_CACHE_DIR", "wandb-cache"), ("WANDB_DATA_DIR", "wandb-data"),
                     ("WANDB_CONFIG_DIR", "wandb-config"), ("WANDB_ARTIFACT_DIR", "wandb-artifacts")):
        (tmp_path / sub).mkdir(exist_ok=True)
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    from qexp_wandb.mirror import finish_all_mirrors
    request.addfinalizer(finish_all_mirrors)  # W&B runs reopened by writes to finished recorders
    return f"wandb://qexp-test?mode=offline&store={tmp_path / 'local'}"


BACKENDS: dict[str, BackendFactory] = {
    "file": file_store,
    "file-uri": file_uri_store,
    "wandb": wandb_store,
}

# MLflow stores of the qexp_mlflow plugin (set up once per session, emptied per test): tests/mlflow/stores.py
from ..mlflow.stores import mlflow_server_store, mysql_store, postgresql_store, sqlite_store  # noqa: E402

BACKENDS.update({"sqlite": sqlite_store, "postgresql": postgresql_store, "mysql": mysql_store,
                 "mlflow-server": mlflow_server_store})
