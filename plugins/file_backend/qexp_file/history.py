"""Metric histories read incrementally from a run's append-only ``metrics.jsonl``, for readers that follow
live runs (``Recorder.metric_history_since``, the UI's charts).

Every metric of a run is parsed in one pass and kept in memory as arrays; the next read parses only the bytes
appended since (whole lines: one still being written waits). A file replaced or truncated is read again from
the start. The logs of a store are kept least recently used first, bounded by bytes.
"""
from __future__ import annotations

import io
import json
import os
import threading
from collections import OrderedDict

import numpy as np

_BIG_CHUNK = 1 << 18  # above this many new bytes, parse with pyarrow's JSON reader
DEFAULT_CACHE_BYTES = 256 << 20

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # steps (int64), values (float64), timestamps (int64)


class MetricsLog:
    """Every metric of one ``metrics.jsonl``, parsed up to ``offset`` (a whole-line boundary)."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.ident: tuple[int, int] | None = None
        self.chunks: dict[str, list[Arrays]] = {}
        self.nbytes = 0
        self.lock = threading.Lock()

    def update(self) -> None:
        """Parse what was appended since the last read (call with ``lock`` held)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.ident is not None:
                self._reset(None)
            return
        ident = (st.st_dev, st.st_ino)
        if ident != self.ident or st.st_size < self.offset:  # replaced or truncated: start over
            self._reset(ident)
        if st.st_size == self.offset:
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(st.st_size - self.offset)
        end = data.rfind(b"\n") + 1
        if end == 0:
            return
        parsed = parse_big(data[:end]) if end > _BIG_CHUNK else None
        for key, arrays in (parsed if parsed is not None else parse_lines(data[:end])).items():
            self.chunks.setdefault(key, []).append(arrays)
            self.nbytes += sum(a.nbytes for a in arrays)
        self.offset += end

    def _reset(self, ident: tuple[int, int] | None) -> None:
        self.ident, self.offset, self.chunks, self.nbytes = ident, 0, {}, 0

    def count(self, key: str) -> int:
        return sum(len(p[0]) for p in self.chunks.get(key, ()))

    def arrays(self, key: str, start: int = 0) -> Arrays:
        """The points of ``key`` from its ``start``-th on, in file (log) order."""
        parts = self.chunks.get(key)
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64)
        if len(parts) > 1:  # merged once, so later reads are a plain slice
            merged: Arrays = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                              np.concatenate([p[2] for p in parts]))
            parts = self.chunks[key] = [merged]
        steps, values, stamps = parts[0]
        return steps[start:], values[start:], stamps[start:]


class MetricsLogs:
    """The :class:`MetricsLog` of recently read runs, least recently used dropped past ``max_bytes``."""

    def __init__(self, max_bytes: int | None = None):
        env = os.environ.get("QEXP_METRIC_HISTORY_CACHE_MB")
        self.max_bytes = max_bytes if max_bytes is not None else (int(float(env) * (1 << 20)) if env
                                                                  else DEFAULT_CACHE_BYTES)
        self._logs: OrderedDict[str, MetricsLog] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> MetricsLog:
        with self._lock:
            log = self._logs.get(path)
            if log is None:
                log = self._logs[path] = MetricsLog(path)
            self._logs.move_to_end(path)
            total = sum(x.nbytes for x in self._logs.values())
            while total > self.max_bytes and len(self._logs) > 1:
                _, old = self._logs.popitem(last=False)
                total -= old.nbytes
            return log


def parse_lines(data: bytes) -> dict[str, Arrays]:
    """Metric lines -> per key arrays; torn or foreign lines are skipped (as every reader of the log does)."""
    cols: dict[str, tuple[list[int], list[float], list[int]]] = {}
    loads = json.loads
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            rec = loads(line)
            key, value, ts, step = rec["key"], float(rec["value"]), int(rec["timestamp"]), int(rec["step"])
        except (ValueError, KeyError, TypeError):
            continue
        c = cols.get(key)
        if c is None:
            c = cols[key] = ([], [], [])
        c[0].append(step)
        c[1].append(value)
        c[2].append(ts)
    return {k: (np.asarray(s, np.int64), np.asarray(v, np.float64), np.asarray(t, np.int64))
            for k, (s, v, t) in cols.items()}


def parse_big(data: bytes) -> dict[str, Arrays] | None:
    """Many lines at once with pyarrow's multithreaded JSON reader; None when it cannot (the caller falls back
    to :func:`parse_lines`)."""
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
    if table.column("value").null_count and b"null" in data.replace(b":NaN,", b""):
        return None  # a written null is a torn or foreign line the line parser skips, not a NaN
    out = {}
    keys = table.column("key")
    for key in pc.unique(keys).to_pylist():
        if key is None:
            continue
        part = table.filter(pc.equal(keys, key))
        values = part.column("value").to_numpy(zero_copy_only=False).astype(np.float64)  # null -> NaN
        out[key] = (part.column("step").to_numpy(zero_copy_only=False).astype(np.int64), values,
                    part.column("timestamp").to_numpy(zero_copy_only=False).astype(np.int64))
    return out
