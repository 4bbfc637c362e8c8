"""Entry point of the MLflow backend: ``sqlite:``, ``postgresql:``, ``mysql:``, ``mssql:``, ``http(s):``,
``databricks`` and ``mlflow+file:`` (MLflow's legacy file store).

This module imports without mlflow; the factory imports it on first use and, when it is missing, raises
:class:`qexp.MissingExtraError` with the install command.
"""
from __future__ import annotations

from typing import Any

from qexp.ext import SchemeRegister, hookimpl

SCHEMES = ["sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "mlflow+file"]


def create_manager(uri: str, default_exp_name: str = "Experiment", create: bool = True, **kwargs: Any) -> Any:
    """An :class:`~qexp_mlflow.manager.MlflowExpManager` for ``uri``; with ``create=False`` (reads) a store
    that does not exist is a :class:`qexp.ext.StoreNotFoundError` instead of a new one."""
    from .client import check_uri, import_mlflow, is_server, normalize_uri, probe_server, require_store
    import_mlflow()
    check_uri(uri)
    if is_server(uri):
        probe_server(uri)  # a dead server fails here in seconds, not after MLflow's minutes of retries
    if not create:
        require_store(normalize_uri(uri))
    from .manager import MlflowExpManager
    return MlflowExpManager(uri, default_exp_name=default_exp_name, **kwargs)


@hookimpl
def register_backends(register: SchemeRegister) -> None:
    register(SCHEMES, create_manager, description="MLflow tracking stores through MlflowClient")
