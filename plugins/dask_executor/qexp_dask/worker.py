"""What runs on a Dask worker for each call: qexp's worker side, reporting to the driver through Dask events."""
from __future__ import annotations

from typing import Any, Callable

from qexp.ext import CallSpec, run_call

TOPIC = "qexp-calls"
"""The Dask event topic on which workers report each call's start and the runs it opens and ends."""

GONE_STATES = ("cancelled", "released", "forgotten", "error", "memory")


def dask_call(spec: CallSpec, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Run one call on this worker (see :func:`qexp.ext.run_call`)."""
    from distributed import get_worker
    worker = get_worker()
    key = spec.call_id

    def notify(event: tuple) -> None:
        worker.log_event(TOPIC, {"call": key, "worker": worker.address, "event": [str(e) for e in event]})

    def cancelled() -> bool:
        # the driver cancelled the future (or went away): the worker forgets the task, the thread runs on
        ts = worker.state.tasks.get(key)
        return ts is None or ts.state in GONE_STATES

    notify(("begin",))
    return run_call(spec, fn, args, kwargs, notify=notify, cancelled=cancelled)
