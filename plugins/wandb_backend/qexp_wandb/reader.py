"""Read an offline W&B run (``offline-run-*/run-<id>.wandb``) back without a server.

wandb 0.31 no longer ships a Python reader for its transaction log, so this is one: the file is W&B's
LevelDB-style log (header ``:W&B`` + magic 0xBEE1 + version 0; 32 KiB blocks of records with a 7-byte header
crc32/length/type; FULL/FIRST/MIDDLE/LAST fragments) whose payloads are ``wandb_internal_pb2.Record``
protobufs. Used by the tests and by ``qexp runs sync-wandb`` to check what it found.
"""
from __future__ import annotations

import json
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class WandbFileError(ValueError):
    """A file is not a readable W&B transaction log."""


@dataclass
class OfflineRun:
    """What an offline W&B run recorded."""

    path: str
    run_id: str = ""
    project: str = ""
    entity: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    notes: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    step_metrics: dict[str, str] = field(default_factory=dict)   # metric glob/name -> its x-axis
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None   # None: the run never finished (no exit record)

    def metric_history(self, key: str, step_key: str = "qexp/step") -> list[tuple[Any, Any]]:
        """``(step, value)`` of ``key`` in log order, the step read from the ``step_key`` column."""
        return [(row.get(step_key), row[key]) for row in self.history if key in row]


def run_file(path: str) -> str:
    """The ``.wandb`` file of a run folder (or ``path`` itself when it is the file)."""
    if os.path.isfile(path):
        return path
    names = sorted(n for n in os.listdir(path) if n.endswith(".wandb")) if os.path.isdir(path) else []
    if not names:
        raise WandbFileError(f"{path} holds no .wandb file; expected a W&B run folder such as "
                             f"wandb/offline-run-YYYYMMDD_HHMMSS-<id>")
    return os.path.join(path, names[0])


def iter_payloads(path: str) -> Iterator[bytes]:
    """The record payloads of a ``.wandb`` file, in order; a torn tail (a run still writing) is ignored."""
    with open(path, "rb") as f:
        buf = f.read()
    if not buf.startswith(HEADER):
        raise WandbFileError(f"{path} is not a W&B transaction log (bad header {buf[:7]!r})")
    pos, pending = len(HEADER), b""
    while pos + 7 <= len(buf):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", buf[pos:pos + 7])
        data = buf[pos + 7:pos + 7 + length]
        if len(data) < length:
            return
        if zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            raise WandbFileError(f"{path}: checksum mismatch at byte {pos}")
        pos += 7 + length
        if kind == _FULL:
            yield data
        elif kind == _FIRST:
            pending = data
        elif kind == _MIDDLE:
            pending += data
        elif kind == _LAST:
            yield pending + data
            pending = b""


def iter_records(path: str) -> Iterator[Any]:
    """``wandb_internal_pb2.Record`` messages of a run folder or ``.wandb`` file."""
    from wandb.proto import wandb_internal_pb2 as pb
    for data in iter_payloads(run_file(path)):
        rec = pb.Record()  # type: ignore[attr-defined]  # the stub of this generated module lists no messages
        rec.ParseFromString(data)
        yield rec


def _key(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


def _value(item: Any) -> Any:
    try:
        return json.loads(item.value_json)
    except ValueError:
        return item.value_json


def wait_for_offline_run(path: str, timeout: float = 15.0) -> OfflineRun:
    """Read a run once W&B has written its exit record: ``run.finish()`` returns before W&B's service has
    flushed the file, so a reader in the same process must wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        run = read_offline_run(path)
        if run.exit_code is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def _apply(target: dict, record: Any) -> None:
    """A config or summary record's updates and removals, applied to ``target``."""
    for item in record.update:
        target[_key(item)] = _value(item)
    for item in getattr(record, "remove", ()):
        target.pop(_key(item), None)


def read_offline_run(path: str) -> OfflineRun:
    """Replay the transaction log of a W&B run folder into an :class:`OfflineRun`."""
    out = OfflineRun(path=run_file(path))
    for rec in iter_records(out.path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.run_id, out.project, out.entity = r.run_id, r.project, r.entity
            out.name, out.group, out.job_type, out.notes = r.display_name, r.run_group, r.job_type, r.notes
            out.tags = list(r.tags)
            _apply(out.config, r.config)
        elif kind == "config":
            _apply(out.config, rec.config)
        elif kind == "history":
            out.history.append({_key(i): _value(i) for i in rec.history.item})
        elif kind == "summary":
            _apply(out.summary, rec.summary)
        elif kind == "metric":
            m = rec.metric
            if m.step_metric:
                out.step_metrics[m.name or m.glob_name] = m.step_metric
        elif kind == "artifact":
            a = rec.artifact
            out.artifacts.append({"name": a.name, "type": a.type,
                                  "files": sorted(c.path for c in a.manifest.contents)})
        elif kind == "exit":
            out.exit_code = rec.exit.exit_code
    out.config.pop("_wandb", None)
    return out
