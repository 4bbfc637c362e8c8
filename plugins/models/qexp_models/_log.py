"""Per-iteration metrics to the active recorder, as one batched write (not one write per point)."""
from __future__ import annotations

from typing import Any, Iterable

from qexp import NoActiveRecorderError, R


def active_recorder() -> Any | None:
    """The recorder of the innermost ``R.start`` in this thread, or None: models log only inside a run."""
    if not R.has_active():
        return None
    try:
        return R.get_recorder()
    except NoActiveRecorderError:
        return None


def log_points(points: Iterable[tuple[str, float, int, int]]) -> int:
    """Log ``(key, value, timestamp_ms, step)`` points to the active recorder; returns how many were logged."""
    rec = active_recorder()
    batch = [(k, float(v), int(ts), int(st)) for k, v, ts, st in points]
    if rec is None or not batch:
        return 0
    rec.log_metric_batch(batch)
    return len(batch)
