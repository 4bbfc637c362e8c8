"""Metric histories for charts: read once per run, kept in memory, tailed while a run is live, and
downsampled on the server so a million-point metric costs the browser a few thousand points.

Downsampling keeps, per bucket of consecutive points, the one with the smallest and the one with the
largest value (plus the first and last points), so every spike and the global extremes stay in the chart.

Runs of the file store (``Recorder.get_local_dir()`` is a run folder with ``meta.json``) are read from its
documented append-only ``metrics.jsonl``: only the bytes added since the last read are parsed, so polling a live run costs the new
lines, not the whole history. Other stores go through ``Recorder.get_metric_history``, cached until the
run's latest metric values change.
"""
from __future__ import annotations

import io
import json
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

DEFAULT_POINTS = 2000
METRICS_FILE = "metrics.jsonl"
RUN_META = "meta.json"
_BIG_CHUNK = 1 << 18  # above this many new bytes, parse with pyarrow's JSON reader


class Series:
    """One metric's history: ``steps``, ``values``, ``timestamps`` (ms), in step order."""

    __slots__ = ("steps", "values", "timestamps")

    def __init__(self, steps: np.ndarray, values: np.ndarray, timestamps: np.ndarray):
        self.steps, self.values, self.timestamps = steps, values, timestamps

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def empty(cls) -> Series:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))

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
    """What the browser draws: downsampled steps/values/timestamps plus min, max, last and the point count."""
    s = series.ordered()
    idx = downsample_indices(s.values, max_points)
    finite = s.values[np.isfinite(s.values)]
    last = float(s.values[-1]) if len(s) else None
    return {
        "key": key, "n": len(s), "shown": int(len(idx)),
        "steps": s.steps[idx].tolist(), "values": _json_floats(s.values[idx]),
        "timestamps": s.timestamps[idx].tolist(),
        "min": float(finite.min()) if len(finite) else None, "max": float(finite.max()) if len(finite) else None,
        "last": _json_float(last), "last_timestamp": int(s.timestamps.max()) if len(s) else None,
    }


def _json_float(v: float | None) -> float | None:
    return v if v is None or np.isfinite(v) else None


def _json_floats(a: np.ndarray) -> list[float | None]:
    # JSON has no NaN/Infinity: a gap in the line is what the browser should show
    out: list[float | None] = a.tolist()
    if not np.isfinite(a).all():
        out = [v if np.isfinite(v) else None for v in out]  # type: ignore[arg-type]
    return out


class _Tail:
    """Every metric of one run, parsed from its ``metrics.jsonl`` up to ``offset`` (a whole-line boundary)."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.ident: tuple[int, int] | None = None
        self.chunks: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self.lock = threading.Lock()
        self.nbytes = 0

    def update(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        ident = (st.st_dev, st.st_ino)
        if ident != self.ident or st.st_size < self.offset:  # replaced or truncated: start over
            self.ident, self.offset, self.chunks, self.nbytes = ident, 0, {}, 0
        if st.st_size == self.offset:
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(st.st_size - self.offset)
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        if end == 0:
            return
        self._parse(data[:end])
        self.offset += end

    def _parse(self, data: bytes) -> None:
        parsed = _parse_big(data) if len(data) > _BIG_CHUNK else None
        if parsed is None:
            parsed = _parse_lines(data)
        for key, (steps, values, stamps) in parsed.items():
            self.chunks.setdefault(key, []).append((steps, values, stamps))
            self.nbytes += steps.nbytes + values.nbytes + stamps.nbytes

    def series(self, key: str) -> Series:
        parts = self.chunks.get(key)
        if not parts:
            return Series.empty()
        if len(parts) > 1:  # merge once, so later reads are a plain lookup
            merged = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                      np.concatenate([p[2] for p in parts]))
            parts = self.chunks[key] = [merged]
        steps, values, stamps = parts[0]
        return Series(steps, values, stamps)

    def keys(self) -> list[str]:
        return sorted(self.chunks)


def _parse_lines(data: bytes) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    cols: dict[str, tuple[list[int], list[float], list[int]]] = {}
    loads = json.loads
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            rec = loads(line)
            key, value, ts, step = rec["key"], float(rec["value"]), int(rec["timestamp"]), int(rec["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: the store's own readers skip it too
        c = cols.get(key)
        if c is None:
            c = cols[key] = ([], [], [])
        c[0].append(step)
        c[1].append(value)
        c[2].append(ts)
    return {k: (np.asarray(s, np.int64), np.asarray(v, np.float64), np.asarray(t, np.int64))
            for k, (s, v, t) in cols.items()}


def _parse_big(data: bytes) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """Many lines at once with pyarrow's multithreaded JSON reader; None when it cannot (falls back to lines)."""
    if b"Infinity" in data:
        return None  # JSON readers know NaN as null only; the line parser keeps +-inf exact
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.json as pj
    except ImportError:
        return None
    schema = pa.schema([("key", pa.string()), ("value", pa.float64()), ("timestamp", pa.int64()),
                        ("step", pa.int64())])
    try:
        table = pj.read_json(io.BytesIO(data.replace(b":NaN,", b":null,")),
                             parse_options=pj.ParseOptions(explicit_schema=schema,
                                                           unexpected_field_behavior="ignore"))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    out = {}
    keys = table.column("key")
    for key in pc.unique(keys).to_pylist():
        if key is None:
            continue
        part = table.filter(pc.equal(keys, key))
        values = part.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
        out[key] = (part.column("step").to_numpy(zero_copy_only=False).astype(np.int64), values,
                    part.column("timestamp").to_numpy(zero_copy_only=False).astype(np.int64))
    return out


class HistoryCache:
    """Metric histories of recently viewed runs, bounded by ``max_bytes`` (least recently used go first)."""

    def __init__(self, max_bytes: int = 512 << 20):
        self.max_bytes = max_bytes
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self._generic: OrderedDict[tuple[str, str], tuple[Any, Series]] = OrderedDict()
        self._lock = threading.Lock()

    def _tail(self, recorder: Any) -> _Tail | None:
        run_id = recorder.id
        with self._lock:
            tail = self._tails.get(run_id)
            if tail is not None:
                self._tails.move_to_end(run_id)
                return tail
        try:
            folder = recorder.get_local_dir()
        except (RuntimeError, NotImplementedError, AttributeError):
            return None
        path = os.path.join(folder, METRICS_FILE)
        if not os.path.isfile(os.path.join(folder, RUN_META)):  # not a file-store run folder
            return None
        tail = _Tail(path)
        with self._lock:
            tail = self._tails.setdefault(run_id, tail)
            self._trim()
        return tail

    def _trim(self) -> None:
        total = sum(t.nbytes for t in self._tails.values())
        while total > self.max_bytes and len(self._tails) > 1:
            _, old = self._tails.popitem(last=False)
            total -= old.nbytes
        while len(self._generic) > 2000:
            self._generic.popitem(last=False)

    def series(self, recorder: Any, key: str, version: Any = None) -> Series:
        """The history of ``key``; ``version`` (e.g. the run's status and latest values, or a callable that
        returns them) invalidates the cache of stores that cannot be tailed."""
        tail = self._tail(recorder)
        if tail is not None:
            with tail.lock:
                tail.update()
                return tail.series(key)
        ck = (recorder.id, key)
        if callable(version):
            version = version()
        with self._lock:
            hit = self._generic.get(ck)
        if hit is not None and hit[0] == version and version is not None:
            return hit[1]
        df = recorder.get_metric_history(key)
        s = Series(df["step"].to_numpy(np.int64), df["value"].to_numpy(np.float64),
                   df["timestamp"].to_numpy(np.int64))
        with self._lock:
            self._generic[ck] = (version, s)
            self._trim()
        return s

    def counts(self, recorder: Any) -> dict[str, int] | None:
        """Points per metric of a tailable run (None for other stores)."""
        tail = self._tail(recorder)
        if tail is None:
            return None
        with tail.lock:
            tail.update()
            return {k: sum(len(p[0]) for p in parts) for k, parts in tail.chunks.items()}

    def cached_counts(self, recorder: Any) -> dict[str, int]:
        """Points per metric of a run already in memory (no file is read: an HTML page must not wait for
        a long history to be parsed; its charts fetch the history afterwards)."""
        with self._lock:
            tail = self._tails.get(recorder.id)
        if tail is None:
            return {}
        with tail.lock:
            return {k: sum(len(p[0]) for p in parts) for k, parts in tail.chunks.items()}

    def keys(self, recorder: Any) -> list[str] | None:
        """Every metric key of a tailable run (None for other stores: use the run's latest metrics)."""
        tail = self._tail(recorder)
        if tail is None:
            return None
        with tail.lock:
            tail.update()
            return tail.keys()
