"""Per-iteration metrics to the active recorder, as one batched write (not one write per point), and the
per-epoch progress lines of long fits."""
from __future__ import annotations

from typing import Any, Iterable

from qexp import NoActiveRecorderError, R
from qexp.ext import progress_line


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


def epoch_line(model: str, epoch: int, n_epochs: int, train_loss: float, valid_loss: float | None,
               seconds: float) -> None:
    """One line per epoch for logs and pipes (``ALSTM epoch 3/20: train loss ..., valid loss ..., 110.2 s``);
    a terminal also has the bar. Silenced by ``QEXP_PROGRESS=0``."""
    valid = "" if valid_loss is None else f", valid loss {valid_loss:.6f}"
    progress_line(f"{model} epoch {epoch + 1}/{n_epochs}: train loss {train_loss:.6f}{valid}, {seconds:.1f} s")


def model_note(model: str, text: str) -> None:
    """A progress note of a model's fit (early stopping, ...), as :func:`epoch_line`."""
    progress_line(f"{model}: {text}")
