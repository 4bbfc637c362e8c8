"""On-disk dataset cache: a loader's raw frame, keyed by the data version and the loader config.

Layout: ``$QEXP_CACHE_DIR/datasets/<key>/`` (default ``~/.cache/qexp/datasets``) holding ``values.npy`` (one
column-major float block, read back without a pickle round trip), ``index.npz`` (the MultiIndex levels and
codes) and ``meta.json`` (columns, written last). An entry is built in a temporary folder and renamed into
place, so readers never see half an entry; a per-key file lock makes concurrent builders of the same entry
wait for the first one instead of computing it again.

The key covers the provider URI and its data version (``provider.data_version()``/``version()`` when the
provider offers one, else sizes and mtimes of the calendar, instrument and used feature files of a local
folder), the loader config (expressions, names, instruments, times, freq, filters) and the qexp version.
Disable with ``QEXP_DATASET_CACHE=0`` or ``cache=False`` on the handler / loader.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CACHE_FORMAT = 2
LOCK_TIMEOUT_S = 1800.0  # a slow cold build of a large universe may hold the lock for minutes


def enabled(flag: bool | None = None) -> bool:
    """The explicit ``flag`` if given, else ``QEXP_DATASET_CACHE`` (on unless ``0``/``false``/``off``/``no``)."""
    if flag is not None:
        return bool(flag)
    return os.environ.get("QEXP_DATASET_CACHE", "1").strip().lower() not in {"0", "false", "off", "no"}


def cache_root() -> Path:
    """``$QEXP_CACHE_DIR/datasets`` or ``~/.cache/qexp/datasets``."""
    base = os.environ.get("QEXP_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "qexp")
    return Path(base) / "datasets"


def clear() -> int:
    """Delete every cache entry; returns how many were removed."""
    root = cache_root()
    if not root.is_dir():
        return 0
    n = 0
    for entry in root.iterdir():
        if entry.is_dir() and not entry.name.startswith("."):
            shutil.rmtree(entry, ignore_errors=True)
            n += 1
    return n


# ---- keys ------------------------------------------------------------------------------------------
def _local_dir(uri: Any) -> Path | None:
    if uri is None:
        return None
    text = os.fspath(uri) if isinstance(uri, (str, os.PathLike)) else str(uri)
    if text.startswith("file://"):
        from qexp.ext import file_uri_to_path
        text = file_uri_to_path(text)
    elif "://" in text:
        return None
    path = Path(text).expanduser()
    return path if path.is_dir() else None


def _stat_tree(folder: Path, root: Path) -> list[tuple[str, int, int]]:
    """``(relative path, size, mtime_ns)`` of every file under ``folder``; one ``-1`` entry if it is missing.

    ``os.scandir`` rather than ``Path`` objects: a 505-stock universe has thousands of files and this runs on
    every handler construction.
    """
    out: list[tuple[str, int, int]] = []
    prefix = os.path.relpath(folder, root)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return [(prefix, -1, -1)]
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            out.extend(_stat_tree(Path(entry.path), root))
        else:
            st = entry.stat()
            out.append((f"{prefix}/{entry.name}", st.st_size, st.st_mtime_ns))
    return out


def data_version(provider: Any, instruments: Any = "all", start_time: Any = None, end_time: Any = None) -> str | None:
    """A string that changes whenever the data behind ``provider`` changes; None if it cannot be known.

    A provider may expose ``data_version()`` (or ``version()``); otherwise a local folder is fingerprinted
    by the sizes and mtimes of its calendar and instrument files and the feature files of the instruments
    used (the whole folder when its layout is not Qlib's ``features/<code>/``).
    """
    for attr in ("data_version", "version"):
        fn = getattr(provider, attr, None)
        if callable(fn):
            value = fn()
            if value is not None:
                return f"{attr}:{value}"
    root = _local_dir(getattr(provider, "uri", None))
    if root is None:
        # e.g. the lazy synthetic market: a "synth:" URI over a generated local folder
        try:
            root = _local_dir(getattr(provider, "root", None))
        except Exception:  # noqa: BLE001 - a provider property may fail; then there is no fingerprint
            root = None
    if root is None:
        return None
    features = root / "features"
    if not features.is_dir():
        entries = _stat_tree(root, root)
    else:
        entries = _stat_tree(root / "calendars", root) + _stat_tree(root / "instruments", root)
        if isinstance(instruments, str) or (isinstance(instruments, dict) and "market" in instruments):
            codes = provider.list_instruments(instruments, start_time, end_time, as_list=True)
        else:
            codes = list(instruments)
        for code in sorted({str(c) for c in codes}):
            folder = features / code.lower()
            if not folder.is_dir() and (features / f"_qlib_{code.lower()}").is_dir():
                folder = features / f"_qlib_{code.lower()}"  # Qlib's prefix for reserved names (CON, PRN, ...)
            entries.extend(_stat_tree(folder, root))
    digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    return f"files:{digest}"


def entry_key(provider: Any, config: dict, *, instruments: Any = "all", start_time: Any = None,
              end_time: Any = None) -> str | None:
    """The cache key for ``config`` on ``provider``'s current data; None when the data version is unknown."""
    version = data_version(provider, instruments, start_time, end_time)
    if version is None:
        log.debug("dataset cache: provider %r exposes no data version and is not a local folder; not caching",
                  provider)
        return None
    import qexp
    payload = {"format": CACHE_FORMAT, "qexp": qexp.__version__, "uri": str(getattr(provider, "uri", "")),
               "engine": str(getattr(provider, "engine_version", "")), "data": version, "config": config}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


# ---- entries ---------------------------------------------------------------------------------------
def entry_dir(key: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / key


def load(key: str, root: Path | None = None) -> pd.DataFrame | None:
    """The cached frame for ``key``, or None when there is no complete entry."""
    folder = entry_dir(key, root)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None
        values = np.load(folder / "values.npy", allow_pickle=False)
        with np.load(folder / "index.npz", allow_pickle=False) as z:
            index = _index_from_arrays(meta, z)
        columns = _columns_from_meta(meta)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("dataset cache: entry %s is unreadable (%s); recomputing", folder, exc)
        return None
    # values.npy holds the transposed block (one contiguous row per column), so this is no copy
    return pd.DataFrame(values.T, index=index, columns=columns, copy=False)


def store(key: str, df: pd.DataFrame, root: Path | None = None) -> bool:
    """Write ``df`` as the entry for ``key`` atomically; False (and no entry) if it cannot be cached."""
    dtypes = set(df.dtypes)
    if len(dtypes) > 1 or not all(np.issubdtype(dt, np.floating) for dt in dtypes) \
            or not isinstance(df.index, pd.MultiIndex) or df.index.nlevels != 2:
        log.debug("dataset cache: frame is not a 2-level, single float dtype frame; not caching")
        return False
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = entry_dir(key, root)
    if (final / "meta.json").is_file():
        return True
    _remove_stale_temps(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=root))
    try:
        block = np.ascontiguousarray(df.to_numpy().T)
        np.save(tmp / "values.npy", block, allow_pickle=False)
        del block
        arrays, meta = _index_to_arrays(df.index)
        np.savez(tmp / "index.npz", **arrays)
        meta.update(format=CACHE_FORMAT, shape=list(df.shape), columns=_columns_to_meta(df.columns))
        # meta.json last: its presence marks a complete entry
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, final)
        except OSError:
            # another process renamed its copy first; ours is redundant
            shutil.rmtree(tmp, ignore_errors=True)
            if not (final / "meta.json").is_file():
                raise
        return True
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("dataset cache: could not write %s (%s); continuing without cache", final, exc)
        return False


STALE_TEMP_S = 6 * 3600  # a temp entry this old belongs to a writer that died


def _remove_stale_temps(root: Path) -> None:
    now = time.time()
    for tmp in root.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > STALE_TEMP_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


_writers: set[threading.Thread] = set()
_writers_lock = threading.Lock()


def background_writes() -> bool:
    """Whether new entries are written by a background thread.

    Only in a main process: a multiprocessing worker may be terminated as soon as it returns its result
    (``Pool.__exit__``), which would kill a pending write. ``QEXP_CACHE_SYNC_WRITE=1`` turns it off.
    """
    import multiprocessing
    if os.environ.get("QEXP_CACHE_SYNC_WRITE", "").strip().lower() in {"1", "true", "on", "yes"}:
        return False
    return multiprocessing.parent_process() is None


def wait_for_writes(timeout: float | None = None) -> bool:
    """Block until the pending background cache writes of this process are done; False on timeout."""
    with _writers_lock:
        pending = list(_writers)
    deadline = None if timeout is None else time.monotonic() + timeout
    for t in pending:
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in pending)


def get_or_create(key: str, compute: Callable[[], pd.DataFrame], background: bool | None = None) -> pd.DataFrame:
    """The cached frame for ``key``, computing and storing it under a per-key lock when missing.

    With ``background`` (default: :func:`background_writes`) the computed frame is returned at once and a
    non-daemon thread writes the entry and then releases the lock: other processes asking for the same key
    wait for the complete entry, and the interpreter finishes the write before it exits.
    """
    from filelock import FileLock, Timeout
    root = cache_root()
    try:
        (root / ".locks").mkdir(parents=True, exist_ok=True)
        # not thread-local: the writer thread releases what this thread acquired
        lock = FileLock(str(root / ".locks" / f"{key}.lock"), timeout=LOCK_TIMEOUT_S, thread_local=False)
        lock.acquire()
    except (OSError, Timeout) as exc:
        log.warning("dataset cache: cannot lock %s (%s); computing without cache", root, exc)
        return compute()
    handed_off = False
    try:
        hit = load(key, root)
        if hit is not None:
            return hit
        df = compute()
        if background if background is not None else background_writes():
            # a shallow copy keeps a pandas reference to the data, so copy-on-write protects the block being
            # written from in-place changes made through the returned frame
            snapshot = df.copy(deep=False)
            # the root is fixed now: QEXP_CACHE_DIR may change before the thread runs
            writer = threading.Thread(target=_store_and_release, args=(key, snapshot, lock, root),
                                      name=f"qexp-dataset-cache-{key[:8]}", daemon=False)
            with _writers_lock:
                _writers.add(writer)
            writer.start()
            handed_off = True
        else:
            store(key, df, root)
        return df
    finally:
        if not handed_off:
            lock.release()


def _store_and_release(key: str, df: pd.DataFrame, lock: Any, root: Path) -> None:
    try:
        store(key, df, root)
    except Exception as exc:  # noqa: BLE001 - a failed cache write must never surface in the user's thread
        log.warning("dataset cache: writing entry %s failed (%s)", key, exc)
    finally:
        lock.release()
        with _writers_lock:
            _writers.discard(threading.current_thread())


# ---- (de)serialising the index and columns -----------------------------------------------------------
def _level_array(level: pd.Index) -> tuple[np.ndarray, str]:
    if isinstance(level, pd.DatetimeIndex) and level.tz is None:
        # keep the unit: pandas 3 builds datetime64[us] indexes by default, and a reloaded frame must
        # compare equal to a freshly computed one
        return level.asi8, str(level.dtype)
    # the dtype name ("object", "str", ...) so the reloaded level has the dtype of the computed one
    return np.asarray(level.astype(str), dtype=str), f"labels:{level.dtype}"


def _index_to_arrays(index: pd.MultiIndex) -> tuple[dict[str, np.ndarray], dict]:
    arrays: dict[str, np.ndarray] = {}
    kinds = []
    for i, (level, codes) in enumerate(zip(index.levels, index.codes)):
        arrays[f"level{i}"], kind = _level_array(level)
        arrays[f"codes{i}"] = np.asarray(codes, dtype=np.int32)
        kinds.append(kind)
    return arrays, {"index_names": list(index.names), "level_kinds": kinds}


def _level_from_array(raw: np.ndarray, kind: str) -> pd.Index:
    if kind.startswith("datetime64["):
        return pd.DatetimeIndex(raw.view(kind))
    dtype = kind.split(":", 1)[1] if kind.startswith("labels:") else "object"
    labels = pd.Index(raw.astype(object), dtype=object)
    return labels if dtype == "object" else labels.astype(dtype)


def _index_from_arrays(meta: dict, z: Any) -> pd.MultiIndex:
    levels = []
    codes = []
    for i, kind in enumerate(meta["level_kinds"]):
        levels.append(_level_from_array(z[f"level{i}"], kind))
        codes.append(z[f"codes{i}"])
    return pd.MultiIndex(levels=levels, codes=codes, names=meta["index_names"], verify_integrity=False)


def _columns_to_meta(columns: pd.Index) -> dict:
    if isinstance(columns, pd.MultiIndex):
        return {"multi": True, "values": [list(map(str, c)) for c in columns]}
    return {"multi": False, "values": [str(c) for c in columns]}


def _columns_from_meta(meta: dict) -> pd.Index:
    cols = meta["columns"]
    if cols["multi"]:
        return pd.MultiIndex.from_tuples([tuple(c) for c in cols["values"]])
    return pd.Index(cols["values"])
