"""Calls that run elsewhere (a fresh process, an executor's worker) in this session: they re-create the
driver's ``qexp.init`` there, and a Recorder they return travels as its id (Recorders do not pickle).

``call_in_subproc`` is Qlib's helper to free memory, wrapped once rather than once more per task.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from typing import Any, Callable

from ..recorder import Recorder

_REF = "__qexp_recorder__"


def recorder_ref(rec: Recorder) -> dict:
    """What identifies a run anywhere: its id, experiment id and store URI."""
    from ..api import R
    uri = getattr(rec, "uri", None) or (R.get_uri() if R.is_registered() else None)
    return {"recorder_id": rec.id, "experiment_id": rec.experiment_id, "uri": uri}


def recorder_from_ref(ref: dict) -> Recorder:
    """The run ``ref`` names, through the session's store when it is the same one."""
    from ..api import R
    from ..backends import create_manager
    from ..uri import resolve_uri
    uri = ref.get("uri")
    if R.is_registered() and (uri is None or resolve_uri(uri) == resolve_uri(R.get_uri())):
        manager = R.exp_manager
    elif uri is not None:
        manager = create_manager(uri)
    else:
        manager = R.exp_manager
    return manager.get_recorder_by_id(ref["recorder_id"])


def portable(result: Any) -> Any:
    """``result`` ready to cross a process boundary (Recorders, alone or in a list, become references)."""
    if isinstance(result, Recorder):
        return {_REF: recorder_ref(result)}
    if isinstance(result, list) and result and all(isinstance(r, Recorder) for r in result):
        return [{_REF: recorder_ref(r)} for r in result]
    return result


def unportable(result: Any) -> Any:
    """The inverse of :func:`portable`."""
    if isinstance(result, dict) and set(result) == {_REF}:
        return recorder_from_ref(result[_REF])
    if isinstance(result, list) and result and all(isinstance(r, dict) and set(r) == {_REF} for r in result):
        return [recorder_from_ref(r[_REF]) for r in result]
    return result


class Portable:
    """``func`` for an executor's worker (the executor brings the driver's session there): it takes its
    arguments :func:`portable` (Recorders as references) and gives its result back the same way."""

    def __init__(self, func: Callable):
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(unportable(a) for a in args)
        kwargs = {k: unportable(v) for k, v in kwargs.items()}
        return portable(self.func(*args, **kwargs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self.func, '__qualname__', self.func)!r})"


class InSession(Portable):
    """A :class:`Portable` call that first calls ``qexp.init`` with the driver's settings (store, data
    provider) when the process it runs in has other settings (a fresh process)."""

    def __init__(self, func: Callable, settings: dict | None = None):
        from ..session import get_settings
        super().__init__(func)
        self.settings = dict(get_settings() if settings is None else settings)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from ..session import get_settings, init
        if self.settings and get_settings() != self.settings:
            init(**self.settings)
        return super().__call__(*args, **kwargs)


class SubprocCall:
    """Calls ``func`` in a new single-use process (spawned: no inherited threads or locks) in this session."""

    def __init__(self, func: Callable, settings: dict | None = None):
        self.func = func if isinstance(func, InSession) else InSession(func, settings)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            return unportable(pool.submit(self.func, *args, **kwargs).result())

    def __repr__(self) -> str:
        return f"SubprocCall({self.func.func!r})"


def call_in_subproc(func: Callable, settings: dict | None = None) -> Callable:
    """``func`` wrapped to run in a fresh process per call; wrapping a wrapped function does not nest."""
    if isinstance(func, SubprocCall):
        return func
    return SubprocCall(func, settings)
