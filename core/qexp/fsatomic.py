"""Atomic file writes and umask-respecting temporary folders, shared by the stores, the caches and the data
commands (a reader never sees a half-written file; a teammate sharing a folder can read what qexp wrote).

``tempfile.mkstemp``/``mkdtemp`` create 0600/0700 entries whatever the umask; these create files with mode
0666 and folders with 0777 and let the umask decide, as a plain ``open()``/``mkdir`` does.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new empty folder ``<parent>/<prefix><random>``, created with the umask."""
    for _ in range(100):
        path = Path(parent) / f"{prefix}{secrets.token_hex(6)}"
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary folder in {parent}")


def _create_temp(folder: str, prefix: str) -> tuple[int, str]:
    while True:
        tmp = os.path.join(folder, f"{prefix}{secrets.token_hex(8)}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, tmp_prefix: str = ".tmp-") -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` by a rename when the block ends, or vanishes on error. The temp
    file (``<tmp_prefix><random>`` in the same folder, so the rename stays on one file system) and the result
    take their mode from the umask."""
    path = os.fspath(path)
    fd, tmp = _create_temp(os.path.dirname(path) or ".", tmp_prefix)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, tmp_prefix: str = ".tmp-") -> None:
    """Write ``data`` to a temp file beside ``path``, then rename it over ``path``."""
    with atomic_writer(path, tmp_prefix) as f:
        f.write(data)


def umask() -> int:
    """The process umask: from ``/proc/self/status`` where Linux gives it (setting and restoring it, the
    fallback, briefly changes it for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_like_umask(path: str | os.PathLike, mode: int = 0o666) -> None:
    """Give ``path`` the mode a plain ``open()`` would have given it (files a library creates with a fixed
    mode, such as SQLite's database and its ``-wal``/``-shm`` files, then follow the umask too)."""
    with contextlib.suppress(OSError):
        os.chmod(path, mode & ~umask())
