"""FileRecorder: a run as a folder of plain files."""
from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
import warnings
from typing import Any

import pandas as pd
from filelock import FileLock

from qexp.ext import ArtifactStore, Metric, QexpError, Recorder, create_by_scheme, now_ms

from .flusher import FLUSHER
from .fsutil import append_lines, atomic_write_json, read_json, replay
from .liveness import HEARTBEAT, owner_alive, owner_info
from .store import HEARTBEAT_FILE, META, METRICS, PARAMS, TAGS, FileStore, index_info, iter_metric_lines, latest_metrics

FLUSH_POINTS = 20_000  # buffered metric points before a write; the flush thread writes the rest within 1 s


class FileRecorder(Recorder):
    """A run stored under ``<root>/<exp_id>/<run_id>/``; metrics are buffered and appended as JSON lines."""

    def __init__(self, experiment_id: str, name: str | None, store: FileStore, meta: dict | None = None,
                 complete: bool = True):
        """``meta``: the run's meta.json, or with ``complete=False`` the part of it an index row holds."""
        super().__init__(experiment_id, name, uri=store.uri)
        self.store = store
        self._buffer: list[Metric] = []
        self._buf_lock = threading.Lock()
        self._buf_pid = os.getpid()
        self._pending_since: float | None = None  # when the oldest buffered point was logged (monotonic)
        self._latest: dict[str, tuple[float, int, int]] | None = None
        self._params: dict[str, str] | None = None
        self._initial_tags: dict[str, str] = {}
        self._preset_times: tuple[int | None, int | None] | None = None
        self._meta: dict = {}
        self._meta_complete = False
        self._artifact_store: ArtifactStore | None = None
        if meta is not None:
            self._load_meta(meta, complete)

    def _load_meta(self, meta: dict, complete: bool = True) -> None:
        self.id = meta["run_id"]
        self.name = meta.get("run_name")
        self.experiment_id = meta["experiment_id"]
        self.status = meta.get("status", self.STATUS_S)
        self._start_ms = meta.get("start_time")
        self._end_ms = meta.get("end_time")
        self.parent_id = meta.get("parent_run_id")
        self._meta = meta
        self._meta_complete = complete

    # ---- paths -------------------------------------------------------------------------------
    @property
    def run_dir(self) -> str:
        return self.store.run_dir(self.experiment_id, self._require_id())

    def _path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def _run_lock(self) -> FileLock:
        return FileLock(self._path(".lock"), timeout=60)

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store of this run, chosen by the scheme of its artifact URI (a local folder unless
        the run was created with an artifact root elsewhere)."""
        uri = self._artifact_uri()
        if self._artifact_store is None or self._artifact_store.root_uri != uri:
            self._artifact_store = create_by_scheme("artifact_store", uri)
        return self._artifact_store

    def get_local_dir(self) -> str:
        return self.run_dir

    def _artifact_uri(self) -> str:
        run_id = self._require_id()
        if not self._meta_complete:  # an index row does not say where the artifacts are
            self._load_meta(self.store.read_run_meta(self.experiment_id, run_id))
        return self.store.artifact_uri(self.experiment_id, run_id, self._meta)

    def _touch_heartbeat(self) -> None:
        with open(self._path(HEARTBEAT_FILE), "a"):
            os.utime(self._path(HEARTBEAT_FILE))

    # ---- lifecycle ---------------------------------------------------------------------------
    def preserve_times(self, start_ms: int | None, end_ms: int | None) -> bool:
        if self.id is not None:
            return False  # only a run not yet created takes another start time
        self._preset_times = (start_ms, end_ms)
        return True

    def _start_run(self) -> None:
        now = now_ms()
        if self.id is None:
            if self._preset_times and self._preset_times[0] is not None:
                now = int(self._preset_times[0])
            self.id = uuid.uuid4().hex
            os.makedirs(self.run_dir)
            meta = {"run_id": self.id, "run_name": self.name, "experiment_id": self.experiment_id,
                    "status": self.STATUS_R, "start_time": now, "end_time": None,
                    "user_id": os.environ.get("USER") or None, "parent_run_id": self.parent_id, **owner_info()}
            artifact_uri = self.store.new_artifact_uri(self.experiment_id, self.id)
            if artifact_uri is not None:
                meta["artifact_uri"] = artifact_uri
            tags = {"mlflow.runName": self.name or "", **self._initial_tags}
            if self.parent_id:
                tags["mlflow.parentRunId"] = self.parent_id
            self._initial_tags = {}
            # params/metrics/artifacts appear on first use: file creation dominates a run's cost
            append_lines(self._path(TAGS), [{"key": k, "value": v} for k, v in tags.items()])
            atomic_write_json(self._path(META), meta)
            self._latest, self._params = {}, {}
            self.store.index.upsert_run(index_info(meta, self.store.artifact_uri(self.experiment_id, self.id, meta)),
                                        {}, {}, tags)
        else:
            with self._run_lock():
                meta = self.store.read_run_meta(self.experiment_id, self.id)
                meta.update(status=self.STATUS_R, end_time=None, **owner_info())
                atomic_write_json(self._path(META), meta)
            self.store.index.update_info(self.id, status=self.STATUS_R, end_time=None, **owner_info())
        self._load_meta(meta)
        HEARTBEAT.add(self)

    def _end_run(self, status: str) -> None:
        HEARTBEAT.discard(self)
        FLUSHER.discard(self)
        now = now_ms()
        if self._preset_times is not None:
            end, self._preset_times = self._preset_times[1], None
            now = now if end is None else int(end)
        meta = dict(self._meta)
        if self._meta_complete and meta.get("pid") == os.getpid() and meta.get("status") == self.STATUS_R:
            # the owner ends its own run: nobody else writes this meta while its owner lives
            meta.update(status=status, end_time=now)
            atomic_write_json(self._path(META), meta)
        else:
            with self._run_lock():
                meta = self.store.read_run_meta(self.experiment_id, self._require_id())
                meta.update(status=status, end_time=now)
                atomic_write_json(self._path(META), meta)
        self.store.index.update_info(self._require_id(), status=status, end_time=now)
        self._load_meta(meta)

    def refresh(self) -> FileRecorder:
        meta = self.store.read_run_meta(self.experiment_id, self._require_id())
        self._load_meta(meta)
        self.reap_if_dead()
        return self

    def reap_if_dead(self) -> bool:
        """Mark a RUNNING run FAILED when the process that owns it is gone (killed, crashed)."""
        if self.status != self.STATUS_R or self.id is None:
            return False
        if owner_alive(self._meta, self._path(HEARTBEAT_FILE), self._path(META)):
            return False
        with self._run_lock():
            meta = self.store.read_run_meta(self.experiment_id, self.id)
            if meta.get("status") != self.STATUS_R or owner_alive(meta, self._path(HEARTBEAT_FILE), self._path(META)):
                self._load_meta(meta)
                return False
            try:
                end = int(os.path.getmtime(self._path(HEARTBEAT_FILE)) * 1000)
            except OSError:
                end = now_ms()
            meta.update(status=self.STATUS_FA, end_time=end)
            atomic_write_json(self._path(META), meta)
            reason = (f"process {meta.get('pid')} on {meta.get('host')} stopped without ending the run "
                      f"(killed or crashed)")
            append_lines(self._path(TAGS), [{"key": "qexp.failure_reason", "value": reason}])
        self.store.index.update_info(self.id, status=self.STATUS_FA, end_time=end)
        self.store.index.patch(self.id, "tags", {"qexp.failure_reason": reason})
        self._load_meta(meta)
        return True

    # ---- params / tags: append-only JSON lines, replayed on read (later lines win) ---------------
    def _log_params(self, params: dict[str, str]) -> None:
        current = self._list_params() if self._params is None else self._params
        clash = {k: (current[k], v) for k, v in params.items() if k in current and current[k] != v}
        if clash:
            k, (old, new) = next(iter(clash.items()))
            raise QexpError(f"param {k!r} of run {self.id} is already {old!r} and cannot change to {new!r}: "
                            f"params are immutable (as in MLflow); log a tag or a metric for values that "
                            f"change, or start a new run")
        new_params = {k: v for k, v in params.items() if k not in current}
        if new_params:
            ts = now_ms()
            append_lines(self._path(PARAMS), [{"key": k, "value": v, "timestamp": ts} for k, v in new_params.items()])
            current.update(new_params)
            self._params = current
            self.store.index.patch(self._require_id(), "params", new_params)

    def _set_tags(self, tags: dict[str, str]) -> None:
        append_lines(self._path(TAGS), [{"key": k, "value": v} for k, v in tags.items()])
        self.store.index.patch(self._require_id(), "tags", tags)

    def _delete_tags(self, keys: list[str]) -> None:
        append_lines(self._path(TAGS), [{"key": k, "deleted": True} for k in keys])
        self.store.index.remove_keys(self._require_id(), "tags", keys)

    def _list_params(self) -> dict[str, str]:
        self._params = replay(self._path(PARAMS), first_wins=True)
        return dict(self._params)

    def _list_tags(self) -> dict[str, str]:
        return replay(self._path(TAGS))

    # ---- metrics -----------------------------------------------------------------------------
    def _log_metrics(self, metrics: list[Metric]) -> None:
        if self._buf_pid != os.getpid():  # forked: the lock may have been held by a parent thread
            self._buf_lock, self._buf_pid = threading.Lock(), os.getpid()
        with self._buf_lock:
            self._buffer.extend(metrics)
            full = len(self._buffer) >= FLUSH_POINTS
            first = self._pending_since is None
            if first:
                self._pending_since = time.monotonic()
        if full:
            self.flush()
        elif first:
            FLUSHER.add(self)  # written within QEXP_METRIC_FLUSH_INTERVAL even if nothing else is logged

    def pending_age(self) -> float:
        """Seconds the oldest buffered point has waited (0 when none)."""
        since = self._pending_since
        return 0.0 if since is None else time.monotonic() - since

    def flush(self) -> None:
        if self._buf_pid != os.getpid():  # forked: the lock may have been held by a parent thread
            self._buf_lock, self._buf_pid = threading.Lock(), os.getpid()
        with self._buf_lock:
            if not self._buffer or self.id is None:
                return
            batch, self._buffer, self._pending_since = self._buffer, [], None
            if self._latest is None:
                self._latest = latest_metrics(self._path("metrics.jsonl"))
            dumps = json.dumps
            lines = "".join(
                f'{{"key":{dumps(m.key)},"value":{_num(m.value)},"timestamp":{m.timestamp},"step":{m.step}}}\n'
                for m in batch)
            # one O_APPEND write: concurrent writers to the same run interleave whole lines
            fd = os.open(self._path("metrics.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                data = lines.encode("utf-8")
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
            changed = {}
            latest = self._latest
            for m in batch:
                cur = latest.get(m.key)
                if cur is None or (m.step, m.timestamp) >= (cur[1], cur[2]):
                    latest[m.key] = (m.value, m.step, m.timestamp)
                    changed[m.key] = m.value
        if changed:
            self.store.index.patch(self.id, "metrics", changed)

    def _list_metrics(self) -> dict[str, float]:
        self.flush()
        return {k: v[0] for k, v in latest_metrics(self._path("metrics.jsonl")).items()}

    def _metric_history(self, key: str) -> list[Metric]:
        return [Metric(k, v, ts, st) for k, v, ts, st in iter_metric_lines(self._path("metrics.jsonl"))
                if k == key]

    def metric_keys(self) -> list[str]:
        self.flush()
        return sorted({k for k, *_ in iter_metric_lines(self._path("metrics.jsonl"))})

    def metric_history_since(self, key: str, cursor: Any = None) -> tuple[pd.DataFrame, Any]:
        """New points of ``key`` since ``cursor``: only the bytes appended to ``metrics.jsonl`` since the last
        read of this run in this process are parsed (every metric at once, kept in memory per store)."""
        self.flush()
        log = self.store.metric_logs.get(self._path(METRICS))
        with log.lock:
            log.update()
            n = log.count(key)
            ok = isinstance(cursor, tuple) and len(cursor) == 2 and cursor[0] == log.ident \
                and isinstance(cursor[1], int) and 0 <= cursor[1] <= n
            steps, values, stamps = log.arrays(key, cursor[1] if ok else 0)
            ident = log.ident
        out = pd.DataFrame({"step": steps, "value": values, "timestamp": stamps})
        out.attrs["restart"] = not ok
        return out, (ident, n)

    def last_heartbeat_ms(self) -> int | None:
        """The latest of the heartbeat file (touched by the owner's heartbeat thread) and the metrics log
        (written within a second of a point being logged); the run's start when neither exists yet."""
        times = []
        for name in (HEARTBEAT_FILE, METRICS):
            try:
                times.append(os.path.getmtime(self._path(name)))
            except OSError:
                pass
        if not times:
            try:
                times.append(os.path.getmtime(self._path(META)))
            except OSError:
                return None
        return int(max(times) * 1000)

    # ---- artifacts ----------------------------------------------------------------------------
    # The ArtifactStore contract is put/get_bytes/list/download; a store may also offer put_bytes, open,
    # put_pickle and put_link (the local folder does), which save a temp file or a copy in memory.
    def _log_artifact(self, local_path: str, artifact_path: str | None) -> None:
        self.artifacts.put(local_path, artifact_path)

    def _log_bytes(self, data: bytes, artifact_file: str) -> None:
        put_bytes = getattr(self.artifacts, "put_bytes", None)
        if put_bytes is None:
            super()._log_bytes(data, artifact_file)
        else:
            put_bytes(data, artifact_file)

    def _save_object(self, obj: Any, artifact_file: str) -> None:
        put_pickle = getattr(self.artifacts, "put_pickle", None)
        if put_pickle is None:
            super()._save_object(obj, artifact_file)
        else:
            put_pickle(obj, artifact_file)

    def _open_artifact(self, path: str) -> Any:
        opener = getattr(self.artifacts, "open", None)
        return None if opener is None else opener(path)

    def _log_bytes_dedup(self, data: bytes, artifact_file: str) -> None:
        put_link = getattr(self.artifacts, "put_link", None)
        if put_link is None:
            self._log_bytes(data, artifact_file)
        else:
            put_link(self.store.blob(data), artifact_file)

    def _read_artifact(self, path: str) -> bytes:
        return self.artifacts.get_bytes(path)

    def _download_artifact(self, path: str, dst: str) -> str:
        return self.artifacts.download(path, dst)

    def _list_artifacts(self, path: str | None, recursive: bool) -> list[str]:
        return self.artifacts.list(path, recursive)


def _num(v: float) -> str:
    if math.isfinite(v):
        return repr(v)
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def delete_remote_artifacts(run_dirs: list[str]) -> None:
    """Delete the artifacts kept outside the run folders ``run_dirs`` (runs made with ``artifact_root``): a
    deleted run's folder takes only its own ``artifacts/`` with it. A store that cannot delete, or a failure,
    is a warning naming what was left, after the run itself is gone."""
    for run_dir in run_dirs:
        try:
            uri = (read_json(os.path.join(run_dir, META)) or {}).get("artifact_uri")
        except (OSError, ValueError, AttributeError):
            continue
        if not uri:
            continue  # artifacts in the run folder: they go with it
        try:
            store = create_by_scheme("artifact_store", uri)
            delete = getattr(store, "delete", None)
            if delete is None:
                raise QexpError(f"the {type(store).__name__} store cannot delete (it has no delete method)")
            delete(None)
        except Exception as exc:  # noqa: BLE001 - the run is deleted; say what stays behind
            warnings.warn(f"qexp: the artifacts of the deleted run in {run_dir} stay at {uri}: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)
