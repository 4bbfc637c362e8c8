"""``local``: every call runs in this process, in submission order, when the driver waits for it."""
from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Callable, Iterable, Iterator

from qexp.ext import DeferredFuture, Executor


class LocalExecutor(Executor):
    """Runs each call in the calling thread, in the order submitted. Nothing is pickled, so active runs,
    open files and the caller's ``qexp.init`` settings are simply there."""

    def __init__(self, uri: str = "local", **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"the local executor takes no options, got {', '.join(sorted(kwargs))}")
        self.uri = "local"
        self._pending: list[DeferredFuture] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, resources: dict[str, float] | None = None,
               retries: int = 0, key: str | None = None, **kwargs: Any) -> cf.Future:
        future = DeferredFuture(fn, args, kwargs)
        self._pending.append(future)
        return future

    def as_completed(self, futures: Iterable[cf.Future], timeout: float | None = None) -> Iterator[cf.Future]:
        for future in list(futures):
            if isinstance(future, DeferredFuture):
                future.run()
            yield future

    def wait(self, futures: Iterable[cf.Future], timeout: float | None = None) -> tuple[set[cf.Future], set[cf.Future]]:
        futures = list(futures)
        if not any(f.done() for f in futures):
            deferred = [f for f in futures if isinstance(f, DeferredFuture)]
            if not deferred:  # futures of another executor
                return super().wait(futures, timeout)
            deferred[0].run()  # the first call not yet run, in submission order
        done = {f for f in futures if f.done()}
        return done, set(futures) - done

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, reason: str | None = None) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            if cancel_futures:
                future.cancel()
            elif wait:
                future.run()
