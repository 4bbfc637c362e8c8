"""JSON files and JSON-lines logs over qexp's atomic writes (:func:`qexp.ext.atomic_writer`): a reader never
sees a half-written file."""
from __future__ import annotations

import json
import os
from typing import Any, Iterator

from qexp.ext import atomic_write_bytes, atomic_writer

__all__ = ["atomic_writer", "atomic_write_bytes", "atomic_write_json", "read_json", "append_lines",
           "iter_json_lines", "replay"]


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
