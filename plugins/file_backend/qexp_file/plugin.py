"""Entry point of the built-in file backend: schemes ``file:`` and bare paths."""
from __future__ import annotations

from qexp.ext import SchemeRegister, hookimpl


@hookimpl
def register_backends(register: SchemeRegister) -> None:
    from .manager import FileExpManager
    register(["file", ""], FileExpManager, description="plain files and a rebuildable SQLite index")


@hookimpl
def register_artifact_stores(register: SchemeRegister) -> None:
    from .artifact_store import local_store_factory
    register(["file", ""], local_store_factory, description="local folder")
