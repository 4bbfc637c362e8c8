"""Entry point of the MLflow backend: ``sqlite:``, ``postgresql:``, ``mysql:``, ``mssql:``, ``http(s):``,
``databricks`` and ``mlflow+file:`` (MLflow's legacy file store).

This module imports without mlflow; the factory imports it on first use and, when it is missing, raises
:class:`qexp.MissingExtraError` with the install command.
"""
from __future__ import annotations

from typing import Any

from qexp import hookimpl

SCHEMES = ["sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "mlflow+file"]


def create_manager(uri: str, default_exp_name: str = "Experiment", **kwargs: Any) -> Any:
    """An :class:`~qexp_mlflow.manager.MlflowExpManager` for ``uri``."""
    from .client import import_mlflow
    import_mlflow()
    from .manager import MlflowExpManager
    return MlflowExpManager(uri, default_exp_name=default_exp_name, **kwargs)


@hookimpl
def register_backends(register) -> None:  # type: ignore[no-untyped-def]
    register(SCHEMES, create_manager, description="MLflow tracking stores through MlflowClient")
