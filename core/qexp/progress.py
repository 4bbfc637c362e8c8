"""Progress reporting: tqdm bars and phase timings on a terminal, quiet otherwise (``QEXP_PROGRESS=1`` forces,
``0`` silences)."""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator


def enabled() -> bool:
    flag = os.environ.get("QEXP_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return sys.stderr.isatty()


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
    """Announce a phase of a long job and report its time (stderr, on a terminal)."""
    show = enabled()
    t0 = time.perf_counter()
    if show:
        print(f"▶ {name} ...", file=sys.stderr, flush=True)
    yield
    took = time.perf_counter() - t0
    timings.append((name, took))
    if show:
        print(f"  {name}: done in {took:.1f} s", file=sys.stderr, flush=True)
