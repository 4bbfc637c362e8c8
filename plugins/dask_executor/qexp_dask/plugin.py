"""Entry point of qexp_dask: the ``dask://``, ``dask+local://`` and ``dask+file://`` executors."""
from __future__ import annotations

from typing import Any

from qexp.ext import SchemeRegister, hookimpl


def _make(uri: str, **kwargs: Any) -> Any:
    from .executor import DaskExecutor
    return DaskExecutor(uri, **kwargs)


@hookimpl
def register_executors(register: SchemeRegister) -> None:
    register("dask", _make, description="a running Dask scheduler: dask://HOST:PORT")
    register("dask+local", _make, description="a Dask LocalCluster of N workers on 127.0.0.1 for the call")
    register("dask+file", _make, description="a Dask scheduler found through its scheduler file")
