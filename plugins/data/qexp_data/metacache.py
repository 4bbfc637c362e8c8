"""Calendars and instrument lists of a data folder as small entries of the active cache store.

A process that finds them there (another process, or another machine sharing a Redis cache store, read them
first) parses no ``calendars/*.txt`` or ``instruments/*.txt`` file. An entry's key covers the file's path,
size and modification time, so a folder whose calendar or market file changed is read again, never served
stale. Values are raw arrays (datetime64 days, fixed-width code strings) behind a JSON header, never pickled.

They go through the store whenever a disk cache is on (the dataset or the expression cache, and
``default_disk_cache`` is not 0); ``default_disk_cache=2`` reads the files again and stores what it read.
A store that cannot be used (an unreachable server is the store's own business; a foreign cache folder, a
corrupt entry) means the file is read, as without cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from qexp.ext import QexpError

from . import binfmt

log = logging.getLogger("qexp.data.cache")

FORMAT = 1
"""Version of the calendar/instrument entry layout (part of every key)."""


def entry_key(kind: str, path: Path) -> str | None:
    """The key of ``path``'s entry of ``kind`` (``calendar`` or ``instruments``); None when it cannot be
    stat'ed (the caller reads the file and reports what is wrong with it)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    payload = ["qexp-data", kind, FORMAT, os.path.abspath(path), st.st_size, st.st_mtime_ns]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:40]


def _store_wanted() -> Any:
    """The active cache store when a disk cache is on, else None."""
    from . import cache as data_cache
    if not (data_cache.enabled() or data_cache.expression_cache_enabled()):
        return None
    try:
        return data_cache.active_store()
    except (QexpError, OSError, ValueError) as exc:
        log.debug("cache store unusable for calendars and instrument lists (%s); reading files", exc)
        return None


def _through_store(kind: str, path: Path, read: Callable[[Path], Any], encode: Callable[[Any], dict],
                   decode: Callable[[dict], Any]) -> Any:
    from . import cache as data_cache
    store = _store_wanted()
    key = entry_key(kind, path) if store is not None else None
    if store is None or key is None:
        return read(path)
    if not data_cache.rebuilding():
        try:
            got = store.get_arrays(key)
            if got is not None:
                return decode(got[0])
        except Exception as exc:  # noqa: BLE001 - a bad entry or store: the file is the truth
            log.warning("cache: %s entry of %s unreadable (%s); reading the file", kind, path, exc)
    value = read(path)
    try:
        store.put_arrays(key, encode(value), {"kind": kind, "path": os.path.abspath(path)})
    except Exception as exc:  # noqa: BLE001 - caching is an optimisation, never a failure
        log.debug("cache: could not store the %s of %s (%s)", kind, path, exc)
    return value


def _encode_calendar(cal: pd.DatetimeIndex) -> dict:
    return {"days": np.asarray(cal.values)}


def _decode_calendar(arrays: dict) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.array(arrays["days"]))


def _encode_spans(spans: binfmt.Spans) -> dict:
    codes, starts, ends = [], [], []
    for code, pairs in spans.items():
        for s, e in pairs:
            codes.append(code)
            starts.append(pd.Timestamp(s).value)
            ends.append(pd.Timestamp(e).value)
    return {"codes": np.array(codes, dtype=str) if codes else np.zeros(0, dtype="<U1"),
            "starts": np.array(starts, dtype="datetime64[ns]"), "ends": np.array(ends, dtype="datetime64[ns]")}


def _decode_spans(arrays: dict) -> binfmt.Spans:
    spans: binfmt.Spans = {}
    for code, s, e in zip(arrays["codes"].tolist(), arrays["starts"], arrays["ends"]):
        spans.setdefault(str(code), []).append((pd.Timestamp(s), pd.Timestamp(e)))
    return spans


def read_calendar(path: Path) -> pd.DatetimeIndex:
    """``binfmt.read_calendar(path)``, through the cache store."""
    return _through_store("calendar", path, lambda p: binfmt.read_calendar(p), _encode_calendar, _decode_calendar)


def read_instruments(path: Path) -> binfmt.Spans:
    """``binfmt.read_instruments(path)``, through the cache store."""
    return _through_store("instruments", path, lambda p: binfmt.read_instruments(p), _encode_spans, _decode_spans)
