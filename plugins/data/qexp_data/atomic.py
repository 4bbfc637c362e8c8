"""Atomic folder and file writes: build beside the destination, rename at the end.

An interrupted write leaves the destination as it was (an old folder stays intact, no half-written folder
appears). Temp folders are named ``.<name>.tmp-<random>`` beside the destination so the rename stays on one
file system; a crash can leave such a folder behind, and the next write to the same destination removes it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator


def _stale_temps(dst: Path) -> list[Path]:
    return [p for p in dst.parent.glob(f".{dst.name}.tmp-*") if p.is_dir()]


@contextlib.contextmanager
def atomic_dir(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder beside ``dst``; on success it replaces ``dst`` (swap by renames).

    On an exception the temp folder is removed and ``dst`` is untouched.
    """
    dst = Path(dst).expanduser().absolute()
    dst.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temps(dst):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, dst)


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing an existing ``dst`` with two renames.

    POSIX cannot swap a non-empty folder in one step: the old folder is first renamed aside, then the new one
    renamed in, then the old one deleted. Between the two renames ``dst`` is briefly absent, never partial.
    """
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(old, dst)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
