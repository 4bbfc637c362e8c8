"""Atomic file writes and JSON helpers: a reader never sees a half-written file."""
from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator


def _create_temp(folder: str) -> tuple[int, str]:
    # not tempfile.mkstemp: it makes the file 0600 whatever the umask, so a teammate sharing the store could
    # not read the artifacts and metas; O_EXCL with mode 0666 lets the umask decide, as a plain open() does
    while True:
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_writer(path: str) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` by a rename when the block ends, or vanishes on error. Its mode
    comes from the umask (0644 under the usual 022)."""
    folder = os.path.dirname(path) or "."
    fd, tmp = _create_temp(folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to a temp file in the same folder, then rename over ``path``."""
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=True).encode("utf-8"))


def read_json(path: str) -> Any:
    with open(path, "rb") as f:
        return json.loads(f.read())


def append_lines(path: str, records: list[dict]) -> None:
    """Append JSON lines in one O_APPEND write, so concurrent writers interleave whole lines."""
    if not records:
        return
    data = "".join(json.dumps(r, allow_nan=True) + "\n" for r in records).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask decides, as for open()
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def iter_json_lines(path: str) -> Iterator[dict]:
    """The records of a JSON-lines log; a torn last line (a crash mid-write) ends it, a bad line is skipped."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                yield json.loads(line)
            except ValueError:
                continue


def replay(path: str, first_wins: bool = False) -> dict:
    """The key -> value state of a JSON-lines log (``{"key", "value"}`` or ``{"key", "deleted": true}``)."""
    out: dict = {}
    for rec in iter_json_lines(path):
        key = rec.get("key")
        if rec.get("deleted"):
            out.pop(key, None)
        elif not (first_wins and key in out):
            out[key] = rec.get("value")
    return out
