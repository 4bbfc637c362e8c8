"""Atomic file writes and JSON helpers: a reader never sees a half-written file."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to a temp file in the same folder, then rename over ``path``."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def replay(path: str, first_wins: bool = False) -> dict:
    """The key -> value state of a JSON-lines log (``{"key", "value"}`` or ``{"key", "deleted": true}``);
    a torn last line from a crash is ignored."""
    out: dict = {}
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return out
    with f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            key = rec.get("key")
            if rec.get("deleted"):
                out.pop(key, None)
            elif not (first_wins and key in out):
                out[key] = rec.get("value")
    return out
