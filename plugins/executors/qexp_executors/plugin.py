"""Entry point of the built-in executors."""
from __future__ import annotations

from qexp.ext import SchemeRegister, hookimpl


@hookimpl
def register_executors(register: SchemeRegister) -> None:
    from .local import LocalExecutor
    from .process import ProcessExecutor
    register("local", LocalExecutor, description="in this process, in submission order")
    register("process", ProcessExecutor, description="a pool of N worker processes on this machine "
             "(process://N, N defaults to the cores)")
