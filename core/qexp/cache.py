"""Cache stores: the contract every store implements, and the codecs they share.

A cache store keeps two kinds of immutable entries, both addressed by a key that already encodes what the
value depends on (data version, config, engine version):

* small entries -- a few named numpy arrays plus JSON metadata (calendars, instrument lists, one instrument's
  expression series), stored as raw bytes behind a JSON header, **never pickled**;
* frames -- a loader's whole feature frame (a 2-level ``(datetime, instrument)`` index, one float dtype),
  kept as a folder ``values.npy`` + ``index.npz`` + ``meta.json`` written to a temporary folder and renamed
  into place, with checksums in ``meta.json`` (:func:`checksum64` of the values, CRC32 of the index) so a
  corrupt or half-written entry is detected and rebuilt, never returned.

Stores are chosen by URI through the ``register_cache_stores`` hook (``qexp.ext.create_by_scheme("cache_store",
uri)``): the data plugin serves bare paths and ``disk:`` (file locks), ``qexp_redis`` serves ``redis://``
(lease locks, small entries in Redis, frames on shared disk). :meth:`CacheStore.get_or_create_frame` gives
single-flight builds on top of any store's lock: N processes asking for the same key, one computes.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import threading
import time
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from .exceptions import QexpError
from .fsatomic import make_temp_dir

FRAME_FORMAT = 3
"""Version of the frame folder layout (2 had no checksums)."""
SMALL_MAGIC = b"QXC1"
DEFAULT_MAX_GB = 5.0
"""Default size cap of a cache store (``QEXP_CACHE_MAX_GB`` or the URI's ``max_gb=`` change it; 0: no cap)."""
STALE_TEMP_S = 6 * 3600
"""A temporary entry folder this old belongs to a writer that died."""


class CacheEntryError(QexpError):
    """A cache entry is corrupt or incomplete; the caller treats it as missing and rebuilds it."""


def default_max_bytes() -> int | None:
    """``QEXP_CACHE_MAX_GB`` (default 5) in bytes; None when it is 0 (no cap)."""
    raw = os.environ.get("QEXP_CACHE_MAX_GB", "").strip()
    try:
        gb = float(raw) if raw else DEFAULT_MAX_GB
    except ValueError:
        raise QexpError(f"QEXP_CACHE_MAX_GB={raw!r} is not a number; give the cache size cap in GB "
                        f"(0 turns the cap off)") from None
    return None if gb <= 0 else int(gb * 1024 ** 3)


def cache_base_dir() -> Path:
    """``$QEXP_CACHE_DIR`` or ``~/.cache/qexp``: the folder qexp's caches live in."""
    return Path(os.environ.get("QEXP_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "qexp"))


def default_cache_uri() -> str:
    """``$QEXP_CACHE_URI``, else the on-disk store in ``$QEXP_CACHE_DIR/datasets``."""
    return os.environ.get("QEXP_CACHE_URI") or str(cache_base_dir() / "datasets")


# ---- small entries: raw arrays behind a JSON header ------------------------------------------------
def encode_arrays(arrays: dict[str, np.ndarray], meta: dict | None = None) -> tuple[bytes, bytes]:
    """``(header, payload)``: a JSON header (layout, dtypes, shapes, CRC32, ``meta``) and the raw bytes.

    Object arrays are refused: entries are never pickled, so reading one can never run code.
    """
    layout = []
    chunks = []
    offset = 0
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.hasobject:
            raise ValueError(f"cache entry array {name!r} has dtype object; only numeric, bool, datetime and "
                             f"fixed-width string arrays can be cached (entries are never pickled)")
        raw = a.tobytes()
        layout.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                       "nbytes": len(raw)})
        chunks.append(raw)
        offset += len(raw)
    payload = b"".join(chunks)
    header = {"arrays": layout, "meta": meta or {}, "crc": zlib.crc32(payload), "nbytes": len(payload)}
    return json.dumps(header, separators=(",", ":")).encode(), payload


def decode_arrays(header: bytes | str, payload: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and metadata of :func:`encode_arrays`; :class:`CacheEntryError` when they do not match."""
    try:
        head = json.loads(header)
        if len(payload) != head["nbytes"] or zlib.crc32(payload) != head["crc"]:
            raise CacheEntryError("checksum mismatch (corrupt or half-written entry)")
        out = {}
        for item in head["arrays"]:
            buf = payload[item["offset"]:item["offset"] + item["nbytes"]]
            out[item["name"]] = np.frombuffer(buf, dtype=np.dtype(item["dtype"])).reshape(item["shape"])
        return out, head.get("meta") or {}
    except CacheEntryError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheEntryError(f"unreadable entry header: {exc}") from None


def pack_small(arrays: dict[str, np.ndarray], meta: dict | None = None) -> bytes:
    """One blob (for a file): magic, header length, header, payload."""
    header, payload = encode_arrays(arrays, meta)
    return SMALL_MAGIC + struct.pack("<I", len(header)) + header + payload


def unpack_small(blob: bytes) -> tuple[dict[str, np.ndarray], dict]:
    if len(blob) < 8 or blob[:4] != SMALL_MAGIC:
        raise CacheEntryError("not a qexp cache entry (bad magic)")
    (n,) = struct.unpack("<I", blob[4:8])
    return decode_arrays(blob[8:8 + n], blob[8 + n:])


# ---- frames: (de)serialising the index and columns without pickle ------------------------------------
def cacheable_frame(df: pd.DataFrame) -> bool:
    """A 2-level MultiIndex frame with one float dtype (what a loader returns)."""
    dtypes = set(df.dtypes)
    return (len(dtypes) <= 1 and all(np.issubdtype(dt, np.floating) for dt in dtypes)
            and isinstance(df.index, pd.MultiIndex) and df.index.nlevels == 2)


def _level_array(level: pd.Index) -> tuple[np.ndarray, str]:
    if isinstance(level, pd.DatetimeIndex) and level.tz is None:
        # keep the unit: pandas 3 builds datetime64[us] indexes by default, and a reloaded frame must
        # compare equal to a freshly computed one
        return level.asi8, str(level.dtype)
    # the dtype name ("object", "str", ...) so the reloaded level has the dtype of the computed one
    return np.asarray(level.astype(str), dtype=str), f"labels:{level.dtype}"


def index_to_arrays(index: pd.MultiIndex) -> tuple[dict[str, np.ndarray], dict]:
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


def index_from_arrays(meta: dict, z: Any) -> pd.MultiIndex:
    levels, codes = [], []
    for i, kind in enumerate(meta["level_kinds"]):
        levels.append(_level_from_array(z[f"level{i}"], kind))
        codes.append(z[f"codes{i}"])
    return pd.MultiIndex(levels=levels, codes=codes, names=meta["index_names"], verify_integrity=False)


def columns_to_meta(columns: pd.Index) -> dict:
    if isinstance(columns, pd.MultiIndex):
        return {"multi": True, "values": [list(map(str, c)) for c in columns]}
    return {"multi": False, "values": [str(c) for c in columns]}


def columns_from_meta(meta: dict) -> pd.Index:
    cols = meta["columns"]
    if cols["multi"]:
        return pd.MultiIndex.from_tuples([tuple(c) for c in cols["values"]])
    return pd.Index(cols["values"])


# ---- frames on disk --------------------------------------------------------------------------------
def checksum64(arr: np.ndarray) -> int:
    """The wrapping sum of the array's bytes read as 64-bit words (the tail zero-padded), plus its length.

    It catches what a cache entry meets in practice -- a flipped bit, a truncated or half-written file, a block
    overwritten with other data -- but it is no CRC: changes that cancel out in the sum pass (two 8-byte words
    swapped, or one word raised by as much as another is lowered). It runs at memory speed (a 400 MB Alpha158
    frame in about 0.05 s, several times faster than CRC32), so a warm read can afford to check every byte."""
    raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    n = len(raw) // 8 * 8
    total = int(np.add.reduce(raw[:n].view(np.uint64), dtype=np.uint64)) if n else 0
    tail = int.from_bytes(raw[n:].tobytes().ljust(8, b"\0"), "little") if n < len(raw) else 0
    return (total + tail + len(raw)) % (1 << 64)


def write_frame_dir(final: Path, df: pd.DataFrame, extra: dict | None = None) -> int | None:
    """Write ``df`` as the frame folder ``final`` (temp folder + rename; ``meta.json`` written last).

    Returns the entry's size in bytes, or None when ``df`` cannot be cached (see :func:`cacheable_frame`).
    Another writer that renamed its copy first wins; ours is dropped (entries with one key are equal).
    """
    if not cacheable_frame(df):
        return None
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    if (final / "meta.json").is_file():
        return entry_size(final)
    remove_stale_temps(root)
    tmp = make_temp_dir(root, f".tmp-{final.name[:12]}-")
    try:
        block = np.ascontiguousarray(df.to_numpy().T)
        np.save(tmp / "values.npy", block, allow_pickle=False)
        sum_values = checksum64(block)
        del block
        arrays, meta = index_to_arrays(df.index)
        np.savez(tmp / "index.npz", **arrays)  # type: ignore[arg-type]
        crc_index = zlib.crc32((tmp / "index.npz").read_bytes())
        meta.update(extra or {})
        meta.update(format=FRAME_FORMAT, shape=list(df.shape), columns=columns_to_meta(df.columns),
                    sum64_values=sum_values, crc_index=crc_index, created=time.time())
        meta["nbytes"] = sum(p.stat().st_size for p in tmp.iterdir())
        (tmp / "meta.json").write_text(json.dumps(meta))
        if final.exists() and not (final / "meta.json").is_file():
            remove_dir(final)  # an incomplete entry (its meta.json lost): ours replaces it
        try:
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process renamed its (equal) copy first
            if not (final / "meta.json").is_file():
                raise
        return int(meta["nbytes"])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_frame_dir(folder: Path, verify: bool = True) -> pd.DataFrame | None:
    """The frame stored in ``folder``; None when there is no complete entry, :class:`CacheEntryError` when
    the entry is corrupt. Values are memory-mapped copy-on-write: a warm read costs the checksum, not a copy,
    and changes made through the frame never reach the file."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FRAME_FORMAT:
            raise CacheEntryError(f"format {meta.get('format')} is not {FRAME_FORMAT}")
        values = np.load(folder / "values.npy", mmap_mode="c", allow_pickle=False)
        if list(values.shape[::-1]) != list(meta["shape"]):
            raise CacheEntryError(f"values shape {values.shape[::-1]} != {meta['shape']}")
        index_bytes = (folder / "index.npz").read_bytes()
        if verify and (checksum64(values) != meta["sum64_values"] or zlib.crc32(index_bytes) != meta["crc_index"]):
            raise CacheEntryError("checksum mismatch (corrupt or half-written entry)")
        import io
        with np.load(io.BytesIO(index_bytes), allow_pickle=False) as z:
            index = index_from_arrays(meta, z)
        columns = columns_from_meta(meta)
    except CacheEntryError:
        raise
    except FileNotFoundError:
        return None  # evicted or cleared between the meta check and the read
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheEntryError(str(exc)) from None
    # values.npy holds the transposed block (one contiguous row per column), so this is no copy
    return pd.DataFrame(values.T, index=index, columns=columns, copy=False)


def entry_size(folder: Path) -> int:
    """Bytes of an entry folder (from its ``meta.json`` when it says, else the files)."""
    try:
        return int(json.loads((folder / "meta.json").read_text())["nbytes"])
    except (OSError, ValueError, KeyError, TypeError):
        total = 0
        for p in folder.glob("*"):
            try:
                total += p.stat().st_size
            except OSError:
                pass
        return total


def remove_dir(folder: Path) -> bool:
    """Remove an entry folder so no reader ever sees half of it: rename aside, then delete."""
    trash = folder.parent / f".trash-{folder.name[:24]}-{os.getpid()}-{threading.get_ident()}"
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return False
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return True
    shutil.rmtree(trash, ignore_errors=True)
    return True


def remove_stale_temps(root: Path) -> None:
    now = time.time()
    for pattern in (".tmp-*", ".trash-*"):
        for tmp in root.glob(pattern):
            try:
                if pattern == ".trash-*" or now - tmp.stat().st_mtime > STALE_TEMP_S:
                    shutil.rmtree(tmp, ignore_errors=True)
            except OSError:
                pass


# ---- the contract -----------------------------------------------------------------------------------
class CacheLock(ABC):
    """A lock on one cache key shared by every process using the store. It may be released by another
    thread than the one that acquired it (a background writer releases what the caller took)."""

    @abstractmethod
    def acquire(self, timeout: float | None = None) -> bool:
        """Block until held (True) or ``timeout`` seconds passed (False)."""

    @abstractmethod
    def release(self) -> None:
        """Release; a lock that already expired (its holder was too slow) is released without error."""

    def __enter__(self) -> CacheLock:
        if not self.acquire():
            raise TimeoutError("cache lock not acquired")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class CacheStore(ABC):
    """Where cached values live. Entries are immutable: a key always maps to the same value, so a write
    that loses a race is simply dropped and readers take no lock."""

    uri: str = ""
    lock_timeout_s: float = 1800.0
    """How long a builder waits for another process's build of the same key (a slow cold build of a large
    universe may hold the lock for minutes)."""

    # -- small entries
    @abstractmethod
    def get_arrays(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        """The arrays and metadata stored under ``key``, or None (missing, corrupt or evicted)."""

    @abstractmethod
    def put_arrays(self, key: str, arrays: dict[str, np.ndarray], meta: dict | None = None) -> bool:
        """Store a small entry; False when it could not be stored (the caller goes on without cache)."""

    def get_many_arrays(self, keys: list[str]) -> list[tuple[dict[str, np.ndarray], dict] | None]:
        """:meth:`get_arrays` for many keys (stores with round trips override it with one batch)."""
        return [self.get_arrays(k) for k in keys]

    def put_many_arrays(self, items: Iterable[tuple[str, dict[str, np.ndarray], dict]]) -> int:
        """:meth:`put_arrays` for many entries; returns how many were stored."""
        return sum(bool(self.put_arrays(k, a, m)) for k, a, m in items)

    # -- frames
    @abstractmethod
    def get_frame(self, key: str) -> pd.DataFrame | None:
        """The frame stored under ``key``, or None (missing, corrupt -- it is then removed -- or evicted)."""

    @abstractmethod
    def put_frame(self, key: str, df: pd.DataFrame) -> bool:
        """Store a frame; False when it cannot be cached (not a 2-level float frame) or the write failed."""

    def delete(self, key: str) -> bool:
        """Remove the entry ``key`` (frame or small); True if something was removed."""
        return False

    # -- locks and single-flight builds
    @abstractmethod
    def lock(self, name: str) -> CacheLock:
        """The lock named ``name`` (usually ``"build:<key>"``), shared by every process of this store."""

    def get_or_create_frame(self, key: str, compute: Callable[[], pd.DataFrame], *, rebuild: bool = False,
                            background: bool = False) -> pd.DataFrame:
        """The frame for ``key``, computing it at most once across processes: the first caller takes the
        key's lock and builds; the others wait on the lock and then read what it wrote.

        ``rebuild`` recomputes and replaces the entry (Qlib's ``disk_cache=2``). With ``background`` the
        frame is returned as soon as it is computed and a non-daemon thread writes it and then releases the
        lock, so waiting processes still read the complete entry.
        """
        lock = self.lock(f"build:{key}")
        try:
            got = lock.acquire(timeout=self.lock_timeout_s)
        except Exception as exc:  # noqa: BLE001 - a broken lock must not fail the run
            self._warn(f"cannot lock cache entry {key[:12]} ({type(exc).__name__}: {exc}); computing without cache")
            return compute()
        if not got:
            self._warn(f"waited {self.lock_timeout_s:.0f} s for another process to build cache entry {key[:12]}; "
                       f"computing it here")
            return compute()
        handed_off = False
        try:
            if not rebuild:
                hit = self.get_frame(key)
                if hit is not None:
                    return hit
            else:
                self.delete(key)
            df = compute()
            if background:
                writer = threading.Thread(target=_write_and_release, args=(self, key, df.copy(deep=False), lock),
                                          name=f"qexp-cache-write-{key[:8]}", daemon=False)
                with _writers_lock:
                    _writers.add(writer)
                writer.start()
                handed_off = True
            else:
                self.put_frame(key, df)
            return df
        finally:
            if not handed_off:
                _release_quietly(lock)

    # -- housekeeping
    def evict(self) -> int:
        """Enforce the size cap (least recently used entries go first); returns how many were removed."""
        return 0

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """``{"uri", "kind", "entries", "bytes", "max_bytes", ...}`` for ``qexp cache stats``."""

    @abstractmethod
    def clear(self) -> int:
        """Remove every entry; returns how many were removed."""

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release connections and helper threads."""

    def _warn(self, message: str) -> None:
        import warnings
        warnings.warn(f"qexp cache ({self.uri}): {message}", RuntimeWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


_writers: set[threading.Thread] = set()
_writers_lock = threading.Lock()


def _release_quietly(lock: CacheLock) -> None:
    try:
        lock.release()
    except Exception:  # noqa: BLE001 - an expired or unreachable lock frees itself
        pass


def _write_and_release(store: CacheStore, key: str, df: pd.DataFrame, lock: CacheLock) -> None:
    try:
        store.put_frame(key, df)
    except Exception as exc:  # noqa: BLE001 - a failed cache write must never surface in the user's thread
        import logging
        logging.getLogger("qexp.cache").warning("writing cache entry %s failed (%s)", key, exc)
    finally:
        _release_quietly(lock)
        with _writers_lock:
            _writers.discard(threading.current_thread())


def wait_for_writes(timeout: float | None = None) -> bool:
    """Block until this process's background cache writes are done; False on timeout."""
    with _writers_lock:
        pending = list(_writers)
    deadline = None if timeout is None else time.monotonic() + timeout
    for t in pending:
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in pending)


def open_cache_store(uri: str | None = None) -> CacheStore:
    """The store for ``uri`` (default: :func:`default_cache_uri`) through the ``cache_store`` scheme table."""
    from . import registry
    from .plugins import load_plugins
    load_plugins()
    store: CacheStore = registry.cache_stores.create(uri or default_cache_uri())
    return store

