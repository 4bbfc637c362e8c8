"""Atomic folder and file writes: build beside the destination, rename at the end.

An interrupted write leaves the destination as it was (an old folder stays intact, no half-written folder
appears). Temp folders are named ``.<name>.tmp-<random>`` beside the destination so the rename stays on one
file system; a crash can leave such a folder behind, and the next write to the same destination removes it.

Only what qexp wrote is ever replaced: a destination must be missing, empty, or a data folder (nothing but
``calendars/``, ``features/`` and ``instruments/``); any other folder is refused, as are a non-empty current
folder and the folders holding it (an empty current folder is filled in place: renaming it away would leave
the shell in a deleted folder). A symbolic link is followed: the data goes into the folder it points to and
the link stays. Files and folders are created with the process umask (no private 0600/0700).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from qexp.ext import make_temp_dir

from .errors import DataError

DATA_ENTRIES = frozenset({"calendars", "features", "instruments"})
"""The entries of a Qlib-format data folder; a folder holding anything else is not replaced."""


class OutputFolderError(DataError, FileExistsError):
    """The output folder holds something qexp did not write, or is the current folder."""


def folder_kind(dst: str | os.PathLike) -> str:
    """``"missing"``, ``"empty"``, ``"data"`` (only Qlib data entries, a calendar among them), ``"other"``
    (a non-empty folder holding anything else) or ``"file"``."""
    p = Path(dst).expanduser()
    if not p.exists() and not p.is_symlink():
        return "missing"
    if not p.is_dir():
        return "file"
    entries = set(os.listdir(p))
    if not entries:
        return "empty"
    if entries <= DATA_ENTRIES and "calendars" in entries:
        return "data"
    return "other"


def describe_data_folder(dst: str | os.PathLike) -> str:
    """A few words on what a data folder holds, for a confirmation prompt."""
    p = Path(dst).expanduser()
    try:
        days = (p / "calendars" / "day.txt").read_text(encoding="utf-8").split()
        span = f", {len(days)} days ({days[0]}..{days[-1]})" if days else ""
    except OSError:
        span = ""
    n = len(os.listdir(p / "features")) if (p / "features").is_dir() else 0
    return f"{n} instruments{span}"


def check_output_folder(dst: str | os.PathLike, replace_data: bool = True) -> str:
    """Refuse an output folder whose content is not ours; returns its :func:`folder_kind`.

    A missing or empty folder is fine; a data folder is replaced only with ``replace_data``; a file, a
    folder holding anything else, and the current folder (or one holding it) raise
    :class:`OutputFolderError` naming what is there."""
    p = _real(dst)
    cwd = Path.cwd().resolve()
    if (p == cwd and folder_kind(p) != "empty") or p in cwd.parents:
        raise OutputFolderError(f"the output folder {p} is the current folder or holds it; qexp writes a data "
                                f"folder by replacing it whole, so write into a new subfolder, e.g. --out "
                                f"{p / 'qlib_data'}")
    kind = folder_kind(p)
    if kind == "file":
        raise OutputFolderError(f"the output {p} is a file, not a folder; give a new folder")
    if kind == "other":
        foreign = sorted(set(os.listdir(p)) - DATA_ENTRIES)
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputFolderError(f"the output folder {p} is not empty and is not a data folder (it holds {shown}); "
                                f"qexp never replaces what it did not write, even with --force. Give a new or "
                                f"empty folder")
    if kind == "data" and not replace_data:
        raise OutputFolderError(f"the output folder {p} already holds a data folder "
                                f"({describe_data_folder(p)}); pass --force to replace it")
    return kind


def _stale_temps(dst: Path) -> list[Path]:
    return [p for p in dst.parent.glob(f".{dst.name}.tmp-*") if p.is_dir()]


def _real(dst: str | os.PathLike) -> Path:
    """The absolute path with symbolic links resolved: ``--out LINK`` writes into the folder the link names
    (replacing the link itself would leave the data where it was and a stray ``.LINK.old-*`` link)."""
    return Path(dst).expanduser().resolve()


@contextlib.contextmanager
def atomic_dir(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder beside ``dst``; on success it replaces ``dst`` (swap by renames).

    ``dst`` must be missing, empty or a data folder (:func:`check_output_folder`), checked before and again
    just before the swap. On an exception the temp folder is removed and ``dst`` is untouched.
    """
    dst = _real(dst)
    check_output_folder(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temps(dst):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = make_temp_dir(dst.parent, f".{dst.name}.tmp-")
    try:
        yield tmp
        check_output_folder(dst)  # someone may have put files there meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, dst)


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing an existing ``dst`` with two renames.

    POSIX cannot swap a non-empty folder in one step: the old folder is first renamed aside, then the new one
    renamed in, then the old one deleted. Between the two renames ``dst`` is briefly absent, never partial.
    The current folder (empty, see :func:`check_output_folder`) is filled in place instead: its entries are
    moved in one by one, so the shell that runs the command stays in a folder that exists.
    """
    if dst.is_dir() and dst.resolve() == Path.cwd().resolve():
        for entry in os.listdir(src):
            os.replace(src / entry, dst / entry)
        os.rmdir(src)
        return
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(old, dst)
            raise
        if old.is_symlink():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
