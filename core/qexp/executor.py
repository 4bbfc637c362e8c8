"""The Executor contract: where many runs go at once (this process, a process pool, a Dask cluster).

Executors are chosen by URI scheme like backends: ``local`` (in this process, in order; the default),
``process://N``, ``dask://HOST:PORT``, ``dask+local://N``, or a third party's scheme registered through the
``register_executors`` hook. The contract is the part of :class:`concurrent.futures.Executor` a driver
needs, plus resources and retries: submit a picklable call, get a :class:`concurrent.futures.Future`,
wait for results as they complete, cancel, shut down.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Iterator

from . import registry
from .plugins import load_plugins

DEFAULT_EXECUTOR = "local"


class Executor(ABC):
    """Runs picklable calls and hands back futures. Use it as a context manager, or call :meth:`shutdown`."""

    uri: str = DEFAULT_EXECUTOR

    @property
    def max_workers(self) -> int:
        """How many calls can run at the same time."""
        return 1

    @abstractmethod
    def submit(self, fn: Callable[..., Any], /, *args: Any, resources: dict[str, float] | None = None,
               retries: int = 0, key: str | None = None, **kwargs: Any) -> cf.Future:
        """Schedule ``fn(*args, **kwargs)``. ``resources`` (``{"GPU": 1}``) limits where it may run, ``retries``
        how many more times a call whose worker died is tried, ``key`` names it in logs and dashboards."""

    def as_completed(self, futures: Iterable[cf.Future], timeout: float | None = None) -> Iterator[cf.Future]:
        """Yield ``futures`` as they finish (failed ones too: check ``future.exception()``)."""
        return cf.as_completed(list(futures), timeout=timeout)

    def cancel(self, futures: Iterable[cf.Future]) -> int:
        """Cancel the calls that have not started; return how many were cancelled."""
        return sum(1 for f in futures if f.cancel())

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Release the workers (after the running calls when ``wait``)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class DeferredFuture(cf.Future):
    """A future whose call runs in the thread that first waits for it (``result()``, ``exception()``, or
    :meth:`run`), so an in-process executor keeps the caller's order, thread and active runs."""

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        super().__init__()
        self._call: tuple[Callable[..., Any], tuple, dict] | None = (fn, args, kwargs)

    def run(self) -> None:
        """Run the call now, unless it already ran or was cancelled. KeyboardInterrupt is recorded and re-raised."""
        call, self._call = self._call, None
        if call is None or not self.set_running_or_notify_cancel():
            return
        fn, args, kwargs = call
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.set_result(result)

    def result(self, timeout: float | None = None) -> Any:
        self.run()
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self.run()
        return super().exception(timeout)


def default_executor_uri() -> str:
    """``$QEXP_EXECUTOR``, else ``local``."""
    return os.environ.get("QEXP_EXECUTOR") or DEFAULT_EXECUTOR


def get_executor(uri: str | Executor | None = None, **kwargs: Any) -> Executor:
    """The executor for ``uri`` (an :class:`Executor` is returned as is; ``None``: ``$QEXP_EXECUTOR``, else
    ``local``). An unknown scheme lists the known ones and the extra that provides a missing one."""
    if isinstance(uri, Executor):
        return uri
    load_plugins()
    uri = uri or default_executor_uri()
    # a bare scheme name ("local", "process") means that scheme with its defaults
    if ":" not in uri:
        uri = f"{uri}:"
    executor: Executor = registry.executors.create(uri, **kwargs)
    return executor
