"""The dataset cache: a loader's raw frame, keyed by the data version and the loader config, kept in the
active cache store; and the on-disk cache store itself.

The store is chosen at ``qexp.init`` (``cache_uri`` / ``QEXP_CACHE_URI``, Qlib's ``redis_*`` keys,
``local_cache_path``; see :func:`qexp.ext.cache_uri_from_settings`); by default it is the folder
``$QEXP_CACHE_DIR/datasets`` (``~/.cache/qexp/datasets``). On disk an entry is ``<root>/<key>/`` holding
``values.npy`` (one column-major float block, memory-mapped back without a pickle round trip), ``index.npz``
and ``meta.json`` (written last, with CRC32 checksums): built in a temporary folder and renamed into place,
so readers never see half an entry, and a corrupt entry is detected, removed and rebuilt. A per-key file
lock makes concurrent builders of the same entry wait for the first one instead of computing it again.
The store is capped (``QEXP_CACHE_MAX_GB``, default 5 GB; ``?max_gb=`` on its URI): least recently used
entries are evicted after each frame write, and at most once a minute (or per 5% of the cap written) for
small entries.

Only what qexp wrote is ever deleted. A store marks its folder with the file ``.qexp-cache`` when it creates
it (or finds it empty); a non-empty folder without the mark is refused (:class:`CacheFolderError`) unless
everything in it is cache content (a store made before the mark existed, which is then marked). Eviction
and ``clear`` remove only entries: folders named like a key holding a ``meta.json`` of a qexp frame for that
key, and ``.small/<k>/<key>.qxc`` files starting with qexp's magic -- never anything else in the folder.

The key covers the provider URI and its data version (``provider.data_version()``/``version()`` when the
provider offers one, else sizes and mtimes of the calendar, instrument and used feature files of a local
folder), the loader config (expressions, names, instruments, times, freq, filters) and the qexp version.
Qlib's switches apply: ``dataset_cache=None`` (or ``QEXP_DATASET_CACHE=0``, or ``cache=False`` on the handler
/ loader) turns it off, ``default_disk_cache`` 0 skips it, 2 rebuilds every entry it meets.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from qexp.ext import (
    SMALL_MAGIC,
    CacheEntryError,
    CacheLock,
    CacheStore,
    QexpError,
    atomic_write_bytes,
    cache_base_dir,
    dataset_cache_default,
    default_max_bytes,
    entry_size,
    pack_small,
    read_frame_dir,
    remove_dir,
    remove_stale_temps,
    unpack_small,
    wait_for_cache_writes,
    write_frame_dir,
)

log = logging.getLogger("qexp.data.cache")

CACHE_FORMAT = 3
LOCK_TIMEOUT_S = 1800.0  # a slow cold build of a large universe may hold the lock for minutes
SMALL_DIR = ".small"
SMALL_TOUCH_S = 3600.0  # small entries record their last use at most hourly (one utime per hit otherwise)
EVICT_EVERY_S = 60.0    # small writes check the size cap at most this often
STALE_TEMP_S = 6 * 3600
EVICT_EVERY_FRACTION = 20  # ... or after 1/20 of the cap was written in small entries since the last check
MARKER = ".qexp-cache"
"""The file that marks a folder as a qexp cache store (written when the store creates the folder)."""
KEY_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,127}$")
"""What a cache key looks like (``entry_key`` gives 40 hex digits); keys name entry folders and files."""
_HELPER_DIRS = frozenset({SMALL_DIR, ".locks"})


class CacheFolderError(QexpError):
    """The cache folder holds files qexp did not write: it is neither used nor cleared."""


# ---- the on-disk store -------------------------------------------------------------------------------
class FileCacheLock(CacheLock):
    """A ``filelock`` lock file under ``<root>/.locks``; released by any thread (a background writer)."""

    def __init__(self, path: Path) -> None:
        from filelock import FileLock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(path), thread_local=False)

    def acquire(self, timeout: float | None = None) -> bool:
        from filelock import Timeout
        try:
            self._lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()


class DiskCacheStore(CacheStore):
    """The cache store in one folder; locks are lock files (processes of one machine, or a filesystem
    with working ``flock``)."""

    def __init__(self, root: str | os.PathLike, max_bytes: int | None | str = "default") -> None:
        """``max_bytes``: the size cap (None: no cap; ``"default"``: ``QEXP_CACHE_MAX_GB``, default 5 GB).

        :class:`CacheFolderError` when ``root`` is a non-empty folder that is not a qexp cache."""
        self.root = Path(root).expanduser()
        self.uri = str(self.root)
        self.max_bytes: int | None = default_max_bytes() if isinstance(max_bytes, str) else max_bytes
        self.lock_timeout_s = LOCK_TIMEOUT_S
        self._last_evict = 0.0
        self._written_since_evict = 0
        self._evict_lock = threading.Lock()
        self._marked = False
        self.check_folder()

    # -- the folder belongs to qexp
    def check_folder(self) -> None:
        """Accept a missing or empty folder, a marked one, or one holding only cache content (marked now);
        refuse any other with :class:`CacheFolderError` naming what it holds."""
        if self._marked or (self.root / MARKER).is_file():
            self._marked = True
            return
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return  # created (and marked) by the first write
        except NotADirectoryError:
            raise CacheFolderError(f"the cache store {self.root} is a file, not a folder; give a new or empty "
                                   f"folder (cache_uri / local_cache_path / QEXP_CACHE_DIR)") from None
        foreign = sorted(n for n in names if not self._is_cache_content(n))
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise CacheFolderError(
                f"the cache folder {self.root} is not empty and is not a qexp cache (it holds {shown}); qexp "
                f"never uses or clears a folder it did not create. Give a new or empty folder as the cache store "
                f"(cache_uri / local_cache_path / --uri / QEXP_CACHE_DIR)")
        if names:
            self._mark()  # a cache made before the mark existed

    def _is_cache_content(self, name: str) -> bool:
        if name in _HELPER_DIRS or name == MARKER or name.startswith((".tmp-", ".trash-")):
            return True
        return self._frame_bytes(self.root / name) is not None

    def _mark(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / MARKER).is_file():
            body = json.dumps({"what": "qexp cache store", "format": CACHE_FORMAT, "created": time.time()})
            atomic_write_bytes(self.root / MARKER, body.encode())
        self._marked = True

    def _ensure_root(self) -> None:
        """Before a write: create and mark the folder, or check again that it is ours."""
        if self._marked:
            return
        self.check_folder()
        if not self._marked:
            self._mark()

    def _frame_bytes(self, folder: Path) -> int | None:
        """Bytes of the frame entry ``folder``; None when it is not an entry qexp wrote (its name is not a key,
        or it holds no ``meta.json`` of a qexp frame for that key)."""
        if not KEY_RE.match(folder.name):
            return None
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        # entries of earlier qexp releases (format 2) carry no "key"; their key-named folder is enough
        if not isinstance(meta, dict) or meta.get("key", folder.name) != folder.name \
                or not isinstance(meta.get("format"), int) or "shape" not in meta:
            return None
        try:
            return int(meta["nbytes"])
        except (KeyError, TypeError, ValueError):
            return entry_size(folder)

    # -- paths
    def _frame_dir(self, key: str) -> Path:
        return self.root / key

    def _small_path(self, key: str) -> Path:
        return self.root / SMALL_DIR / key[:2] / f"{key}.qxc"

    # -- frames
    def get_frame(self, key: str) -> pd.DataFrame | None:
        folder = self._frame_dir(key)
        try:
            df = read_frame_dir(folder)
        except CacheEntryError as exc:
            log.warning("dataset cache: entry %s is corrupt (%s); removing it and recomputing", folder, exc)
            remove_dir(folder)
            return None
        if df is not None:
            _touch(folder)
        return df

    def put_frame(self, key: str, df: pd.DataFrame) -> bool:
        _check_key(key)
        try:
            self._ensure_root()
            size = write_frame_dir(self._frame_dir(key), df, {"key": key})
        except OSError as exc:
            log.warning("dataset cache: could not write %s (%s); continuing without cache", self._frame_dir(key), exc)
            return False
        if size is None:
            log.debug("dataset cache: frame is not a 2-level, single float dtype frame; not caching")
            return False
        self.evict(keep=key)
        return True

    def frame_path(self, key: str) -> Path:
        """Where the frame ``key`` lives (a Redis store keeps frames in a disk store on shared storage)."""
        return self._frame_dir(key)

    # -- small entries
    def get_arrays(self, key: str) -> tuple[dict, dict] | None:
        path = self._small_path(key)
        try:
            blob = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            log.warning("cache: cannot read %s (%s)", path, exc)
            return None
        try:
            out = unpack_small(blob)
        except CacheEntryError as exc:
            log.warning("cache: entry %s is corrupt (%s); removing it", path, exc)
            _unlink(path)
            return None
        try:
            if time.time() - path.stat().st_mtime > SMALL_TOUCH_S:
                os.utime(path)
        except OSError:
            pass
        return out

    def put_arrays(self, key: str, arrays: dict, meta: dict | None = None) -> bool:
        return self.put_many_arrays([(key, arrays, meta)]) == 1

    def put_many_arrays(self, items: Any) -> int:
        written = [self._write_small(k, a, m) for k, a, m in items]
        n = sum(1 for w in written if w)
        self._written_since_evict += sum(written)
        # a scan of the whole store per batch would dominate a cold expression-cache build (thousands of
        # small entries in dozens of batches): check the cap at most once a minute, or sooner when much was
        # written since the last check
        if n and (time.monotonic() - self._last_evict > EVICT_EVERY_S or (
                self.max_bytes is not None
                and self._written_since_evict > self.max_bytes // EVICT_EVERY_FRACTION)):
            self.evict()
        return n

    def _write_small(self, key: str, arrays: dict, meta: dict | None) -> int:
        """Bytes written (0: not stored)."""
        _check_key(key)
        path = self._small_path(key)
        try:
            blob = pack_small(arrays, meta)
            self._ensure_root()
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, blob, tmp_prefix=f".{path.name}.tmp-")
        except (OSError, ValueError) as exc:
            log.warning("cache: could not write %s (%s)", path, exc)
            return 0
        return len(blob)

    # -- locks, deletion, housekeeping
    def lock(self, name: str) -> CacheLock:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return FileCacheLock(self.root / ".locks" / f"{safe}.lock")

    def delete(self, key: str) -> bool:
        removed = remove_dir(self._frame_dir(key))
        return _unlink(self._small_path(key)) or removed

    def _entries(self) -> list[tuple[float, int, Path, bool]]:
        """``(last use, bytes, path, is_frame)`` of every entry qexp wrote (see the module docstring); nothing
        else in the folder is ever listed, so nothing else is ever evicted or cleared."""
        out: list[tuple[float, int, Path, bool]] = []
        if not self.root.is_dir():
            return out
        with os.scandir(self.root) as it:
            for entry in it:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                size = self._frame_bytes(Path(entry.path))
                if size is None:
                    continue
                try:
                    out.append((entry.stat().st_mtime, size, Path(entry.path), True))
                except OSError:
                    pass
        small = self.root / SMALL_DIR
        if small.is_dir() and not small.is_symlink():
            for sub in os.scandir(small):
                if not sub.is_dir(follow_symlinks=False) or len(sub.name) != 2:
                    continue
                for f in os.scandir(sub.path):
                    key = f.name[:-4]
                    if not (f.name.endswith(".qxc") and key[:2] == sub.name and KEY_RE.match(key)
                            and f.is_file(follow_symlinks=False)):
                        continue
                    try:
                        st = f.stat()
                    except OSError:
                        continue
                    out.append((st.st_mtime, st.st_size, Path(f.path), False))
        return out

    def _remove(self, path: Path, is_frame: bool) -> bool:
        """Delete one listed entry, checking its format once more (a small entry's magic is read only here,
        not while listing thousands of them)."""
        if is_frame:
            return self._frame_bytes(path) is not None and remove_dir(path)
        try:
            with open(path, "rb") as f:
                if f.read(len(SMALL_MAGIC)) != SMALL_MAGIC:
                    return False
        except OSError:
            return False
        return _unlink(path)

    def evict(self, keep: str | None = None) -> int:
        """Remove least recently used entries until the store is under its cap; never ``keep``."""
        self._last_evict = time.monotonic()
        self._written_since_evict = 0
        if self.max_bytes is None:
            return 0
        with self._evict_lock:
            entries = self._entries()
            total = sum(e[1] for e in entries)
            if total <= self.max_bytes:
                return 0
            removed = 0
            for _mtime, size, path, is_frame in sorted(entries, key=lambda e: e[0]):
                if total <= self.max_bytes:
                    break
                if keep is not None and path.name == keep:
                    continue
                if self._remove(path, is_frame):
                    removed += 1
                    total -= size
            if removed:
                log.info("cache %s: evicted %d least recently used entr%s to stay under %.2f GB", self.root,
                         removed, "y" if removed == 1 else "ies", self.max_bytes / 1024 ** 3)
            return removed

    def stats(self) -> dict[str, Any]:
        entries = self._entries()
        frames = [e for e in entries if e[3]]
        small = [e for e in entries if not e[3]]
        return {"uri": self.uri, "kind": "disk", "entries": len(frames), "bytes": sum(e[1] for e in frames),
                "small_entries": len(small), "small_bytes": sum(e[1] for e in small),
                "total_bytes": sum(e[1] for e in entries), "max_bytes": self.max_bytes,
                "oldest_use": min((e[0] for e in entries), default=None),
                "newest_use": max((e[0] for e in entries), default=None)}

    def clear(self) -> int:
        """Remove every entry qexp wrote here (see the module docstring); nothing else in the folder."""
        self.check_folder()
        n = 0
        for _, _, path, is_frame in self._entries():
            if self._remove(path, is_frame):
                n += 1
        if self._marked:
            remove_stale_temps(self.root)
        return n


def _touch(folder: Path) -> None:
    try:
        os.utime(folder)  # the folder's mtime is the entry's last use (the LRU order)
    except OSError:
        pass


def _check_key(key: str) -> None:
    if not KEY_RE.match(key):
        raise ValueError(f"cache key {key!r} is not a key: letters, digits, '-' and '_' only (at most 128), "
                         f"not starting with '-' or '_'")


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return False


def make_disk_store(uri: str, **_: Any) -> DiskCacheStore:
    """``/path``, ``~/path``, ``disk:`` (the default folder) or ``disk:///path``; ``?max_gb=N`` (0: no cap)."""
    parts = urlsplit(uri) if "://" in uri or uri.startswith("disk:") else None
    max_bytes: int | None | str = "default"
    if parts is not None:
        query = parse_qs(parts.query)
        if "max_gb" in query:
            gb = float(query["max_gb"][-1])
            max_bytes = None if gb <= 0 else int(gb * 1024 ** 3)
        path = parts.path or ""
        if parts.scheme == "file":
            from qexp.ext import file_uri_to_path
            path = file_uri_to_path(uri.split("?", 1)[0])
        root = Path(path) if path else cache_base_dir() / "datasets"
    else:
        root = Path(uri)
    return DiskCacheStore(root.expanduser(), max_bytes=max_bytes)


# ---- the active store and Qlib's switches ---------------------------------------------------------------
_UNSET: Any = object()
_runtime: dict[str, Any] = {"uri": None, "dataset_cache": _UNSET, "default_disk_cache": 1,
                            "expression_cache": None}
_stores: dict[str, CacheStore] = {}
_stores_lock = threading.Lock()


def configure(*, uri: str | None = None, dataset_cache: Any = _UNSET, default_disk_cache: int = 1,
              expression_cache: str | None = None) -> None:
    """Set the store and switches from ``qexp.init`` (called by the data plugin's init hook)."""
    with _stores_lock:
        current = _stores.get(_runtime["uri"]) if _runtime["uri"] else None
        # another store, or the same one that lost its server: a new qexp.init connects afresh
        if current is not None and (uri != _runtime["uri"] or getattr(current, "degraded", False)):
            _stores.pop(_runtime["uri"], None)
            current.close()
        _runtime.update(uri=uri, dataset_cache=dataset_cache, default_disk_cache=default_disk_cache,
                        expression_cache=expression_cache)


def reset_runtime() -> None:
    """Back to the defaults (the environment decides), as before any ``qexp.init``."""
    configure()


def active_store() -> CacheStore:
    """The store set at ``qexp.init``, else the disk store in :func:`cache_root` (read at each call, so a
    changed ``QEXP_CACHE_DIR`` takes effect)."""
    uri = _runtime["uri"]
    if uri is None:
        root = str(cache_root())
        with _stores_lock:
            store = _stores.get(root)
            if store is None:
                store = _stores[root] = DiskCacheStore(root)
        return store
    with _stores_lock:
        store = _stores.get(uri)
        if store is None:
            from qexp.ext import create_by_scheme
            store = _stores[uri] = create_by_scheme("cache_store", uri)
        return store


def expression_cache_enabled() -> bool:
    return _runtime["expression_cache"] == "DiskExpressionCache" and _runtime["default_disk_cache"] != 0


def enabled(flag: bool | None = None) -> bool:
    """The explicit ``flag`` if given; else off when ``dataset_cache`` is None or ``default_disk_cache`` is 0;
    else ``QEXP_DATASET_CACHE`` (on unless ``0``/``false``/``off``/``no``)."""
    if flag is not None:
        return bool(flag)
    if _runtime["default_disk_cache"] == 0:
        return False
    mode = _runtime["dataset_cache"]
    if mode is _UNSET:
        return dataset_cache_default() is not None
    return mode is not None


def rebuilding() -> bool:
    """Qlib's ``default_disk_cache=2``: every entry met is recomputed and replaced."""
    return _runtime["default_disk_cache"] == 2


def cache_root() -> Path:
    """``$QEXP_CACHE_DIR/datasets`` or ``~/.cache/qexp/datasets``: the default disk store."""
    return cache_base_dir() / "datasets"


def clear() -> int:
    """Delete every entry of the active store; returns how many were removed."""
    return active_store().clear()


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


def _stat_tree(folder: Path, root: Path, prefix: str | None = None) -> list[tuple[str, int, int]]:
    """``(relative path, size, mtime_ns)`` of every file under ``folder``; one ``-1`` entry if it is missing.

    ``os.scandir`` and plain strings rather than ``Path`` objects: a 505-stock universe has thousands of files and
    this runs on every handler construction, warm cache reads included.
    """
    out: list[tuple[str, int, int]] = []
    if prefix is None:
        prefix = os.path.relpath(folder, root)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return [(prefix, -1, -1)]
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            out.extend(_stat_tree(Path(entry.path), root, f"{prefix}/{entry.name}"))
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
        feature_dirs = {e.name for e in os.scandir(features) if e.is_dir(follow_symlinks=False)}
        for code in sorted({str(c) for c in codes}):
            name = code.lower()
            if name not in feature_dirs and f"_qlib_{name}" in feature_dirs:
                name = f"_qlib_{name}"  # Qlib's prefix for reserved names (CON, PRN, ...)
            entries.extend(_stat_tree(features / name, root, f"features/{name}"))
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


# ---- entries (the loader's interface) ----------------------------------------------------------------
def entry_dir(key: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / key


def load(key: str, root: Path | None = None) -> pd.DataFrame | None:
    """The cached frame for ``key``, or None when there is no complete, intact entry (or when rebuilding)."""
    if rebuilding():
        return None
    store = DiskCacheStore(root) if root is not None else active_store()
    return store.get_frame(key)


def store(key: str, df: pd.DataFrame, root: Path | None = None) -> bool:
    """Write ``df`` as the entry for ``key`` atomically; False (and no entry) if it cannot be cached."""
    target = DiskCacheStore(root) if root is not None else active_store()
    return target.put_frame(key, df)


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
    return wait_for_cache_writes(timeout)


def get_or_create(key: str, compute: Callable[[], pd.DataFrame], background: bool | None = None) -> pd.DataFrame:
    """The cached frame for ``key``, computing and storing it under the key's lock when missing (single-flight
    across processes). With ``background`` (default: :func:`background_writes`) the computed frame is returned
    at once and a non-daemon thread writes the entry and then releases the lock."""
    bg = background if background is not None else background_writes()
    return active_store().get_or_create_frame(key, compute, rebuild=rebuilding(), background=bg)
