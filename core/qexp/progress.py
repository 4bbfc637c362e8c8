"""Progress reporting for long jobs: tqdm bars on a terminal, plain lines everywhere.

Phase lines (``dataset ...``, ``fit LGBModel: done in 8.6 s``) and the models' epoch lines go through the
``qexp.progress`` logger when logging is configured (``qexp.init`` installs a handler), else straight to
stderr, so a pipe, a log file or CI shows them too; bars are drawn only on a terminal. ``QEXP_PROGRESS=0``
silences both, ``QEXP_PROGRESS=1`` draws bars off a terminal too.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

log = logging.getLogger("qexp.progress")
OFF = ("0", "false", "no", "off")


def _flag() -> str | None:
    flag = os.environ.get("QEXP_PROGRESS")
    return None if flag is None else flag.strip().lower()


def enabled() -> bool:
    """Whether bars are drawn: on a terminal, unless ``QEXP_PROGRESS`` says otherwise."""
    flag = _flag()
    if flag is not None:
        return flag not in OFF and flag != ""
    return sys.stderr.isatty()


def lines_enabled() -> bool:
    """Whether progress lines are written (always, unless ``QEXP_PROGRESS=0``)."""
    return _flag() not in OFF


def progress_line(msg: str) -> None:
    """One progress line: to the ``qexp.progress`` logger (INFO) when logging has a handler for it, else
    plain on stderr. Nothing with ``QEXP_PROGRESS=0``."""
    if not lines_enabled():
        return
    if log.hasHandlers():
        log.info("%s", msg)
    else:
        print(msg, file=sys.stderr, flush=True)


def bar(iterable: Iterable | None = None, **kwargs: Any) -> Any:
    """A tqdm bar that is disabled off a terminal."""
    from tqdm.auto import tqdm
    kwargs.setdefault("disable", not enabled())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


# (name, seconds) of every finished phase in this process, for benchmarks and summaries
timings: list[tuple[str, float]] = []


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Announce a phase of a long job and report its time (or its failure) as progress lines."""
    t0 = time.perf_counter()
    progress_line(f"{name} ...")
    ok = False
    try:
        yield
        ok = True
    finally:
        took = time.perf_counter() - t0
        timings.append((name, took))
        progress_line(f"{name}: {'done in' if ok else 'stopped by an error after'} {took:.1f} s")
