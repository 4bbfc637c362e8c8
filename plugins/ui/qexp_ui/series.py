"""Metric histories for charts: read once per run and metric, kept in memory (bounded by bytes), followed while
a run is live through ``Recorder.metric_history_since`` (only the new points), and downsampled on the server
so a million-point metric costs the browser a few thousand points.

Downsampling keeps, per bucket of consecutive points, the one with the smallest and the one with the
largest value (plus the first and last points), so every spike and the global extremes stay in the chart.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

DEFAULT_POINTS = 2000
DEFAULT_CACHE_BYTES = 512 << 20


class Series:
    """One metric's history: ``steps``, ``values``, ``timestamps`` (ms), in the order the backend logged it."""

    __slots__ = ("steps", "values", "timestamps")

    def __init__(self, steps: np.ndarray, values: np.ndarray, timestamps: np.ndarray):
        self.steps, self.values, self.timestamps = steps, values, timestamps

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def nbytes(self) -> int:
        return int(self.steps.nbytes + self.values.nbytes + self.timestamps.nbytes)

    @classmethod
    def empty(cls) -> Series:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))

    @classmethod
    def of(cls, frame: Any) -> Series:
        """From a ``get_metric_history``-shaped frame (``step``, ``value``, ``timestamp``)."""
        return cls(frame["step"].to_numpy(np.int64), frame["value"].to_numpy(np.float64),
                   frame["timestamp"].to_numpy(np.int64))

    def extended(self, more: Series) -> Series:
        if not len(more):
            return self
        if not len(self):
            return more
        return Series(np.concatenate([self.steps, more.steps]), np.concatenate([self.values, more.values]),
                      np.concatenate([self.timestamps, more.timestamps]))

    def ordered(self) -> Series:
        """Sorted by step, then time (histories are in log order; a resumed run may go back in steps)."""
        if len(self) < 2 or bool(np.all(np.diff(self.steps) >= 0)):
            return self
        order = np.lexsort((self.timestamps, self.steps))
        return Series(self.steps[order], self.values[order], self.timestamps[order])


def downsample_indices(values: np.ndarray, max_points: int = DEFAULT_POINTS) -> np.ndarray:
    """Indices of the points to draw: all when there are at most ``max_points``, else the minimum and the
    maximum of each of about ``max_points // 2`` buckets of consecutive points, plus the first and last point
    (sorted, unique). NaN points are skipped inside a bucket (a bucket of NaN only keeps its first point)."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 4) // 2)  # plus the remainder bucket and the first/last points
    width = n // buckets
    main = width * buckets
    keep = [np.array([0, n - 1])]
    # equal buckets as rows of a view: argmin/argmax per row in one vectorised pass; the remainder
    # (fewer than ``buckets`` points) is one more bucket
    for start, block in ((0, values[:main].reshape(buckets, width)), (main, values[main:].reshape(1, -1))):
        if block.size == 0:
            continue
        nan = np.isnan(block)
        if nan.any():
            lo = np.where(nan, np.inf, block).argmin(axis=1)
            hi = np.where(nan, -np.inf, block).argmax(axis=1)
        else:
            lo, hi = block.argmin(axis=1), block.argmax(axis=1)
        base = start + np.arange(block.shape[0]) * block.shape[1]
        keep += [base + lo, base + hi]
    return np.unique(np.concatenate(keep))


def chart_payload(key: str, series: Series, max_points: int = DEFAULT_POINTS) -> dict[str, Any]:
    """What the browser draws: downsampled steps/values/timestamps, min and max of the finite values, the
    last value and the point count. JSON has no NaN or infinity: a non-finite point is ``null`` in
    ``values`` (a gap) and named in ``flags`` (``"inf"``, ``"-inf"``, ``"NaN"``) so the chart can mark it
    without letting it stretch the axis; ``last`` stays a float (the page's JSON writes it as such a word)."""
    s = series.ordered()
    idx = downsample_indices(s.values, max_points)
    shown = s.values[idx]
    finite_mask = np.isfinite(s.values)
    finite = s.values[finite_mask]
    out: dict[str, Any] = {
        "key": key, "n": len(s), "shown": int(len(idx)),
        "steps": s.steps[idx].tolist(), "values": shown.tolist(), "timestamps": s.timestamps[idx].tolist(),
        "min": float(finite.min()) if len(finite) else None, "max": float(finite.max()) if len(finite) else None,
        "last": float(s.values[-1]) if len(s) else None,
        "last_timestamp": int(s.timestamps.max()) if len(s) else None,
    }
    bad = ~np.isfinite(shown)
    if bad.any():
        out["values"] = [None if b else v for v, b in zip(out["values"], bad.tolist())]
        out["flags"] = [nonfinite_word(v) if b else None for v, b in zip(shown.tolist(), bad.tolist())]
    return out


def nonfinite_word(v: float) -> str:
    return "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")


class _Entry:
    __slots__ = ("series", "cursor", "version", "lock")

    def __init__(self) -> None:
        self.series = Series.empty()
        self.cursor: Any = None
        self.version: Any = None
        self.lock = threading.Lock()


class HistoryCache:
    """Metric histories of recently viewed runs, bounded by ``max_bytes`` of arrays (least recently used go
    first). A run that is not RUNNING and has not changed since it was read is served from memory; a live one
    asks its backend for the points logged since the last read."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def series(self, recorder: Any, key: str) -> Series:
        """The history of ``key`` of ``recorder``'s run."""
        ck = (str(recorder.id), key)
        with self._lock:
            entry = self._entries.get(ck)
            if entry is None:
                entry = self._entries[ck] = _Entry()
            self._entries.move_to_end(ck)
        version = (recorder.status, getattr(recorder, "end_time", None))
        with entry.lock:
            if entry.cursor is None or version != entry.version or recorder.status == "RUNNING":
                part, cursor = recorder.metric_history_since(key, entry.cursor)
                more = Series.of(part)
                entry.series = more if part.attrs.get("restart", True) else entry.series.extended(more)
                entry.cursor, entry.version = cursor, version
            s = entry.series
        self._trim()
        return s

    def counts(self, recorder: Any) -> dict[str, int]:
        """Points per metric of the run's histories in memory, brought up to date (the live poll of a run's
        page: a chart is redrawn when its count changes)."""
        run_id = str(recorder.id)
        with self._lock:
            keys = [k for (r, k) in self._entries if r == run_id]
        return {k: len(self.series(recorder, k)) for k in keys}

    def known_count(self, run_id: str, key: str) -> int | None:
        """Points of a history already in memory (None: not read yet); reads nothing."""
        with self._lock:
            entry = self._entries.get((run_id, key))
        return None if entry is None or entry.cursor is None else len(entry.series)

    def _trim(self) -> None:
        with self._lock:
            total = sum(e.series.nbytes for e in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                _, old = self._entries.popitem(last=False)
                total -= old.series.nbytes

    def nbytes(self) -> int:
        with self._lock:
            return sum(e.series.nbytes for e in self._entries.values())
