"""A progress bar for feature computation: shown on a terminal, silent in logs, pipes and CI."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator


def progress_enabled() -> bool:
    """True when stderr is a terminal and ``QEXP_PROGRESS`` is not ``0``/``false``/``off``."""
    flag = os.environ.get("QEXP_PROGRESS", "").strip().lower()
    if flag in {"0", "false", "off", "no"}:
        return False
    if flag in {"1", "true", "on", "yes"}:
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


@contextlib.contextmanager
def feature_progress(total: int, desc: str = "features") -> Iterator[Callable[[int], None]]:
    """Yield ``update(n)``; it advances a tqdm bar when progress is enabled and does nothing otherwise."""
    if not progress_enabled() or total <= 0:
        yield lambda n: None
        return
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=desc, unit="field", leave=False, file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()
