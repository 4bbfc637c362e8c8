"""The on-disk layout of a file store and its lock.

    <root>/.qexp/store.json        format version
    <root>/.qexp/lock              filelock around experiment create/delete and index rebuilds
    <root>/.qexp/index.sqlite      search index (a cache, rebuilt from the folders)
    <root>/<exp_id>/meta.json      {"id", "name", "lifecycle", "creation_time"}
    <root>/<exp_id>/<run_id>/meta.json, params.jsonl, tags.jsonl, metrics.jsonl, heartbeat, artifacts/
    (params, tags and metrics are append-only JSON lines; files appear on first use)
    A run created with an artifact root keeps its artifacts at ``<artifact root>/<exp_id>/<run_id>`` instead
    of ``artifacts/``; its meta.json records that URI (``artifact_uri``), so reads need no setting.
    <root>/.trash/                 deleted experiments and runs
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Any, Iterator

from filelock import FileLock

from qexp.ext import QexpError, create_by_scheme, file_uri_to_path, local_path, path_to_file_uri

from .fsutil import atomic_write_bytes, atomic_write_json, iter_json_lines, read_json, replay
from .history import MetricsLogs
from .index import RunIndex

STORE_FORMAT = 1
META = "meta.json"
PARAMS = "params.jsonl"
TAGS = "tags.jsonl"
METRICS = "metrics.jsonl"
HEARTBEAT_FILE = "heartbeat"


class CorruptMetaError(QexpError):
    """A meta.json that cannot be read."""


def require_store(uri: str) -> None:
    """Raise :class:`StoreNotFoundError` unless ``uri`` is an existing file store (its ``.qexp`` folder is
    there); creates nothing, so a mistyped path in a read is an error, not a new empty store."""
    from qexp.ext import StoreNotFoundError
    root = os.path.abspath(file_uri_to_path(uri))
    if os.path.isdir(os.path.join(root, ".qexp")):
        return
    if os.path.isdir(root):
        raise StoreNotFoundError(f"{root} is a folder but not a qexp store (it has no .qexp/ inside)")
    raise StoreNotFoundError(f"no qexp store at {root} (the folder does not exist)")


class FileStore:
    """Paths, the store lock and the index of one root folder."""

    def __init__(self, uri: str, artifact_root: str | None = None, sort_indexes: bool = True,
                 reap_interval: float = 0.0):
        self.root = os.path.abspath(file_uri_to_path(uri))
        self.uri = uri
        # a local path becomes an absolute file: URI, so the URI recorded per run never depends on the cwd
        self.artifact_root = _artifact_root_uri(artifact_root) if artifact_root else None
        if self.artifact_root is not None:
            create_by_scheme("artifact_store", self.artifact_root)  # an unknown scheme fails now, not mid-run
        self.system_dir = os.path.join(self.root, ".qexp")
        os.makedirs(self.system_dir, exist_ok=True)
        self._lock: FileLock | None = None
        self._lock_pid = -1
        fmt_path = os.path.join(self.system_dir, "store.json")
        if not os.path.exists(fmt_path):
            with self.lock:
                if not os.path.exists(fmt_path):
                    atomic_write_json(fmt_path, {"format": STORE_FORMAT, "created": int(time.time() * 1000)})
        self.index = RunIndex(os.path.join(self.system_dir, "index.sqlite"), self._index_all_runs,
                              sort_indexes=sort_indexes)
        self.reap_interval = reap_interval  # seconds between looks for dead run owners (0: every search)
        self.reaped_at: dict[tuple[str, ...] | None, float] = {}
        self.metric_logs = MetricsLogs()  # parsed metric histories of runs read incrementally

    @property
    def lock(self) -> FileLock:
        """The store lock: absolute, inside the store, so processes with different working directories
        share it (Qlib's was CWD-relative). A forked child makes its own (file locks do not cross a fork)."""
        if self._lock is None or self._lock_pid != os.getpid():
            self._lock = FileLock(os.path.join(self.system_dir, "lock"), timeout=120)
            self._lock_pid = os.getpid()
        return self._lock

    # ---- paths -------------------------------------------------------------------------------
    def exp_dir(self, exp_id: str) -> str:
        return os.path.join(self.root, exp_id)

    def run_dir(self, exp_id: str, run_id: str) -> str:
        return os.path.join(self.root, exp_id, run_id)

    def trash_dir(self) -> str:
        d = os.path.join(self.root, ".trash")
        os.makedirs(d, exist_ok=True)
        return d

    def blob(self, data: bytes) -> str:
        """The path of an immutable, content-addressed copy of ``data`` (written once per content)."""
        import hashlib
        digest = hashlib.sha256(data).hexdigest()
        folder = os.path.join(self.system_dir, "blobs")
        path = os.path.join(folder, digest)
        if not os.path.exists(path):
            os.makedirs(folder, exist_ok=True)
            atomic_write_bytes(path, data)
        return path

    def artifact_uri(self, exp_id: str, run_id: str, meta: dict | None = None) -> str:
        """Where a run keeps its artifacts: the URI its meta records, else ``artifacts/`` in its folder
        (left out of meta.json, so a store folder can be moved)."""
        recorded = (meta or {}).get("artifact_uri")
        return recorded or path_to_file_uri(os.path.join(self.run_dir(exp_id, run_id), "artifacts"))

    def new_artifact_uri(self, exp_id: str, run_id: str) -> str | None:
        """The artifact URI to record for a new run: None when it keeps them in its folder."""
        if self.artifact_root is None:
            return None
        return f"{self.artifact_root.rstrip('/')}/{exp_id}/{run_id}"

    # ---- experiments -------------------------------------------------------------------------
    def iter_experiment_metas(self) -> Iterator[dict]:
        """Metas of every experiment folder; broken ones are reported with a warning and skipped."""
        try:
            entries = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return
        for e in entries:
            if e.startswith("."):
                continue
            p = os.path.join(self.root, e, META)
            if not os.path.isfile(p):
                continue
            try:
                meta = read_json(p)
                if not isinstance(meta, dict) or "name" not in meta:
                    raise ValueError("not an experiment meta")
            except (OSError, ValueError) as exc:
                warnings.warn(f"qexp: skipping experiment folder {os.path.join(self.root, e)}: its meta.json is "
                              f"unreadable ({exc}); `qexp index rebuild --repair` rewrites it from its runs",
                              RuntimeWarning, stacklevel=2)
                continue
            meta["id"] = e
            yield meta

    def next_experiment_id(self) -> str:
        """One more than any id used so far, deleted ones included (ids are never reused).

        Call with the store lock held; the high-water mark is kept in ``.qexp/last_experiment_id``."""
        mark = os.path.join(self.system_dir, "last_experiment_id")
        try:
            with open(mark) as f:
                last = int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            last = 0
        used = [int(e) for e in os.listdir(self.root) if e.isdigit()]
        new_id = max(used + [last]) + 1
        atomic_write_bytes(mark, str(new_id).encode())
        return str(new_id)

    # ---- runs --------------------------------------------------------------------------------
    def read_run_meta(self, exp_id: str, run_id: str) -> dict:
        p = os.path.join(self.run_dir(exp_id, run_id), META)
        try:
            meta = read_json(p)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise CorruptMetaError(f"run meta file {p} is unreadable ({exc}); `qexp index rebuild --repair` "
                                   f"rewrites it from the run's files (or fix or remove that folder)") from exc
        if not isinstance(meta, dict) or meta.get("run_id") != run_id:
            raise CorruptMetaError(f"run meta file {p} does not describe run {run_id}; `qexp index rebuild "
                                   f"--repair` rewrites it from the run's files (or fix or remove that folder)")
        return meta

    def read_run_data(self, exp_id: str, run_id: str) -> tuple[dict, dict, dict]:
        """``(params, tags, latest metrics)`` of a run, read from its files."""
        d = self.run_dir(exp_id, run_id)
        params = replay(os.path.join(d, PARAMS), first_wins=True)
        tags = replay(os.path.join(d, TAGS))
        latest = {k: v[0] for k, v in latest_metrics(os.path.join(d, METRICS)).items()}
        return params, tags, latest

    def _index_all_runs(self, inserter: Any) -> int:
        n = 0
        for exp in self.iter_experiment_metas():
            if exp.get("lifecycle", "active") != "active":
                continue
            exp_dir = self.exp_dir(exp["id"])
            for run_id in sorted(os.listdir(exp_dir)):
                if not os.path.isfile(os.path.join(exp_dir, run_id, META)):
                    continue
                try:
                    meta = self.read_run_meta(exp["id"], run_id)
                    params, tags, metrics = self.read_run_data(exp["id"], run_id)
                except (OSError, ValueError, QexpError) as exc:
                    warnings.warn(f"qexp: run {run_id} in {exp_dir} is skipped by the index: {exc}", RuntimeWarning,
                                  stacklevel=2)
                    continue
                inserter.upsert_run(index_info(meta, self.artifact_uri(exp["id"], run_id, meta)), params, metrics,
                                    tags)
                n += 1
        return n


def _artifact_root_uri(root: str) -> str:
    local = local_path(root)
    return path_to_file_uri(local) if local is not None else root


def index_info(meta: dict, artifact_uri: str) -> dict:
    return {"run_id": meta["run_id"], "experiment_id": meta["experiment_id"], "run_name": meta.get("run_name"),
            "status": meta.get("status"), "start_time": meta.get("start_time"), "end_time": meta.get("end_time"),
            "artifact_uri": artifact_uri, "user_id": meta.get("user_id"), "pid": meta.get("pid"),
            "host": meta.get("host"), "pid_start": meta.get("pid_start")}


def iter_metric_lines(path: str) -> Iterator[tuple[str, float, int, int]]:
    """``(key, value, timestamp, step)`` per line of a metrics log."""
    for rec in iter_json_lines(path):
        yield rec["key"], float(rec["value"]), int(rec["timestamp"]), int(rec["step"])


def latest_metrics(path: str) -> dict[str, tuple[float, int, int]]:
    """``{key: (value, step, timestamp)}`` with MLflow's rule: the largest step, then the latest timestamp."""
    latest: dict[str, tuple[float, int, int]] = {}
    for key, value, ts, step in iter_metric_lines(path):
        cur = latest.get(key)
        if cur is None or (step, ts) >= (cur[1], cur[2]):
            latest[key] = (value, step, ts)
    return latest
