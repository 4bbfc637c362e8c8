"""Entry point of the built-in task stores: ``sqlite:///PATH`` (default) and ``postgresql://...``."""
from __future__ import annotations

from qexp.ext import SchemeRegister, hookimpl


@hookimpl
def register_task_stores(register: SchemeRegister) -> None:
    from .postgres import PostgresTaskStore
    from .sqlite import SQLiteTaskStore
    register(["sqlite", ""], SQLiteTaskStore, description="one SQLite file, no server (the default)")
    register(["postgresql", "postgres"], PostgresTaskStore,
             description="PostgreSQL, for workers on many machines (extra: postgres)")
