"""MlflowRecorder: one MLflow run, written through ``MlflowClient`` (never the fluent API).

Params and metrics are buffered and written together with ``log_batch`` (within MLflow's limits) when a
batch is full, on ``flush()``/``end_run``/any read of the run/a search in this process, at interpreter exit,
and by a background thread for anything older than a few seconds (``QEXP_MLFLOW_FLUSH_INTERVAL``). A bad
name, or a param changed against a value this recorder knows, fails the call that logged it; a clash with a
value logged meanwhile by another process surfaces at the flush. Tags are written at once.
"""
from __future__ import annotations

import io
import os
import pickle
import posixpath
import shutil
import tempfile
import threading
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from qexp.ext import ExpNotFoundError, Metric, QexpError, Recorder, now_ms

from . import limits, sql
from .client import is_not_found, log_batch, retry
from .flusher import FLUSHER
from .liveness import TAG_FAILURE, TAG_OWNER, failure_reason, owner_dead, owner_tags
from .search import inf_back
from .store import MlflowStore

TAG_RUN_NAME = "mlflow.runName"
TAG_PARENT = "mlflow.parentRunId"


class MlflowRecorder(Recorder):
    """A run in an MLflow tracking store (SQLite, PostgreSQL, an MLflow server, ...)."""

    def __init__(self, store: MlflowStore, experiment_id: str, name: str | None = None):
        super().__init__(experiment_id, name, uri=store.uri)
        self.store = store
        self.client = store.client
        self._artifact_uri_value: str | None = None
        self._pending: list[Metric] = []
        self._pending_params: dict[str, str] = {}   # as MLflow stores them (long ones shortened)
        self._pending_long: dict[str, str] = {}     # whole values of shortened params, artifacts after the batch
        self._pending_since: float | None = None
        self._buf_lock = threading.Lock()     # guards the buffer; held only briefly
        self._flush_lock = threading.Lock()   # one write-out at a time, so flush() returning means stored
        self._known_params: dict[str, str] = {}
        self._valid_metric_keys: set[str] = set()
        self._preset_times: tuple[int | None, int | None] | None = None

    # ---- loading -----------------------------------------------------------------------------
    @classmethod
    def from_run(cls, store: MlflowStore, run: Any) -> MlflowRecorder:
        rec = cls(store, str(run.info.experiment_id), run.info.run_name)
        rec._load(run)
        rec.reap_if_dead(run.data.tags)
        return rec

    def _load(self, run: Any) -> None:
        info, data = run.info, run.data
        self.id = info.run_id
        self.name = info.run_name or data.tags.get(TAG_RUN_NAME)
        self.experiment_id = str(info.experiment_id)
        self.status = info.status
        self._start_ms = info.start_time
        # MLflow keeps the previous end time when a run is resumed; a RUNNING run has no end
        self._end_ms = None if info.status == self.STATUS_R else info.end_time
        self._artifact_uri_value = info.artifact_uri
        self.parent_id = data.tags.get(TAG_PARENT)
        self._known_params = {**data.params, **self._pending_params}  # buffered ones are known too

    def refresh(self) -> MlflowRecorder:
        run = self._get_run()
        self._load(run)
        self.reap_if_dead(run.data.tags)
        return self

    def _get_run(self) -> Any:
        return retry(self.client.get_run, self._require_id())

    def reap_if_dead(self, tags: dict[str, str]) -> bool:
        """Mark this RUNNING run FAILED when the process that owns it is gone (killed, crashed)."""
        if self.status != self.STATUS_R or self.id is None or not owner_dead(tags):
            return False
        fresh = self._get_run()  # look again: another process may have resumed it meanwhile
        if fresh.info.status != self.STATUS_R or not owner_dead(fresh.data.tags):
            self._load(fresh)
            return False
        tags = fresh.data.tags
        end = now_ms()
        reason = failure_reason(tags)
        self._write_tags({TAG_FAILURE: reason})
        retry(self.client.set_terminated, self.id, self.STATUS_FA, end_time=end)
        self._drop_owner_tag()
        self.status, self._end_ms = self.STATUS_FA, end
        return True

    # ---- lifecycle ---------------------------------------------------------------------------
    def preserve_times(self, start_ms: int | None, end_ms: int | None) -> bool:
        if self.id is not None:
            return False  # MLflow sets a start time only when it creates the run
        self._preset_times = (start_ms, end_ms)
        return True

    def _start_run(self) -> None:
        if self.id is None:
            tags = {TAG_RUN_NAME: self.name or "", **owner_tags()}
            if self.parent_id:
                tags[TAG_PARENT] = self.parent_id
            tags.update(self._take_initial_tags())
            start = self._preset_times[0] if self._preset_times else None
            try:
                run = retry(self.client.create_run, self.experiment_id, start_time=start, tags=tags,
                            run_name=self.name or None)
            except Exception as exc:
                if "must be in the 'active' state" in str(exc):
                    self.store.forget_experiment(self.experiment_id)
                    raise ExpNotFoundError(f"experiment {self.experiment_id} was deleted (by another process?) "
                                           f"before this run could start in it; start the run again") from exc
                raise
            self._load(run)
        else:
            self._flush_quiet()
            retry(self.client.update_run, self.id, status=self.STATUS_R)
            self._write_tags(owner_tags())
            self._end_ms = None
        self.status = self.STATUS_R

    def _take_initial_tags(self) -> dict[str, str]:
        """The context tags core hands over at start (``_initial_tags``) that can go into ``create_run``;
        long or invalid ones stay for ``set_tags``, which stores or reports them."""
        initial: dict[str, str] = getattr(self, "_initial_tags", None) or {}
        limit = limits.value_limits()["tag"]
        take = {}
        for k, v in list(initial.items()):
            if len(v) <= limit and limits.is_valid_name(k):
                take[k] = v
                del initial[k]
        return take

    def _end_run(self, status: str) -> None:
        self.flush()
        end = self._preset_times[1] if self._preset_times and self._preset_times[1] is not None else now_ms()
        retry(self.client.set_terminated, self._require_id(), status, end_time=end)
        self._drop_owner_tag()
        self._end_ms = end
        FLUSHER.discard(self)

    def _drop_owner_tag(self) -> None:
        # only a RUNNING run needs its owner; an ended run without it stays lighter in every search
        # (one tag row per run is ~20% of a search over runs with few tags). Removed after the status
        # is final, so a crash in between leaves a harmless tag, never an unjudgeable RUNNING run.
        self._delete_tags([TAG_OWNER])

    # ---- params / tags -----------------------------------------------------------------------
    def _log_params(self, params: dict[str, str]) -> None:
        for k in params:
            limits.check_name(k, "param")
        limit = limits.value_limits()["param"]
        stored = {k: limits.stored_value("params", k, v, limit) for k, v in params.items()}
        with self._buf_lock:
            # values this run already holds need no write (nor a second long-value warning)
            new = [k for k in params if self._known_params.get(k) != stored[k]]
            clash = next((k for k in new if k in self._known_params), None)
            if clash is not None:
                old = self._known_params[clash]
            else:
                for k in new:
                    self._known_params[k] = self._pending_params[k] = stored[k]
                    if len(params[k]) > limit:
                        self._pending_long[k] = params[k]
        if clash is not None:
            raise _immutable(self.id, clash, self._whole_value(old), params[clash])
        limits.warn_long("params", [k for k in new if len(params[k]) > limit], limit, self.id)
        if new:
            self._buffered(len(self._pending_params) >= self.store.batch_limits["params"])

    def _set_tags(self, tags: dict[str, str]) -> None:
        for k in tags:
            limits.check_name(k, "tag")
        self._write_tags(tags)

    def _write_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag
        stored, whole = limits.split_long("tags", tags, limits.value_limits()["tag"], self.id)
        for k, v in whole.items():
            self.log_bytes(v.encode("utf-8"), limits.artifact_for("tags", k))
        log_batch(self.client, self._require_id(), tags=[RunTag(k, v) for k, v in stored.items()])

    def _delete_tags(self, keys: list[str]) -> None:
        for k in keys:
            try:
                retry(self.client.delete_tag, self._require_id(), k)
            except Exception as exc:
                if not is_not_found(exc):  # deleting a missing tag is a no-op, as in the file backend
                    raise

    def _list_params(self) -> dict[str, str]:
        self.flush()
        params = dict(self._get_run().data.params)
        self._known_params.update(params)
        return {k: self._whole_value(v) for k, v in params.items()}

    def _list_tags(self) -> dict[str, str]:
        return {k: self._whole_value(v) for k, v in self._get_run().data.tags.items()}

    def _whole_value(self, stored: str) -> str:
        """The whole value of a param or tag that was stored truncated (read from its artifact)."""
        path = limits.truncated_artifact(stored)
        if path is None:
            return stored
        try:
            return self._read_artifact(path).decode("utf-8")
        except (OSError, QexpError, UnicodeDecodeError):
            return stored  # the artifact was never written (process died in between): the stored prefix

    # ---- metrics -----------------------------------------------------------------------------
    def _log_metrics(self, metrics: list[Metric]) -> None:
        for m in metrics:
            if m.key not in self._valid_metric_keys:
                limits.check_name(m.key, "metric")
                self._valid_metric_keys.add(m.key)
        with self._buf_lock:
            self._pending.extend(metrics)
            full = len(self._pending) >= self.store.batch_limits["metrics"]
        self._buffered(full)

    def _buffered(self, full: bool) -> None:
        """Something was added to the buffer: write a full batch now, else let the flusher know."""
        with self._buf_lock:
            first = self._pending_since is None
            if first:
                self._pending_since = time.monotonic()
        if first:
            self.store.track(self)  # a search in this process flushes it first
        if full:
            self.flush()
        elif first:
            FLUSHER.add(self)

    def pending_age(self) -> float:
        """Seconds the oldest buffered value has waited (0 when none)."""
        since = self._pending_since
        return 0.0 if since is None else time.monotonic() - since

    def flush(self) -> None:
        """Write every buffered param and metric; when this returns they are stored."""
        if self.id is None:
            return
        with self._flush_lock:
            with self._buf_lock:
                metrics, params, long = self._pending, self._pending_params, self._pending_long
                self._pending, self._pending_params, self._pending_long = [], {}, {}
                self._pending_since = None
            if not metrics and not params:
                return
            from mlflow.entities import Metric as MlflowMetric, Param
            try:
                log_batch(self.client, self.id, params=[Param(k, v) for k, v in params.items()],
                          metrics=[MlflowMetric(m.key, m.value, m.timestamp, m.step) for m in metrics])
            except BaseException as exc:
                clash = self._param_clash(exc, params) if isinstance(exc, Exception) else None
                attempted = (long.get(clash[0]) or params[clash[0]]) if clash is not None else ""
                with self._buf_lock:  # keep what was not written for the next try
                    if clash is not None:
                        params = {k: v for k, v in params.items() if k != clash[0]}
                        long = {k: v for k, v in long.items() if k != clash[0]}
                    self._pending = metrics + self._pending
                    self._pending_params = {**params, **self._pending_params}
                    self._pending_long = {**long, **self._pending_long}
                    self._pending_since = self._pending_since or time.monotonic()
                if clash is not None:
                    raise _immutable(self.id, clash[0], self._whole_value(clash[1]), attempted) from None
                raise
            # the whole values after their params: a refused change must not overwrite the artifact
            for k, v in long.items():
                self.log_bytes(v.encode("utf-8"), limits.artifact_for("params", k))

    def _param_clash(self, exc: Exception, params: dict[str, str]) -> tuple[str, str] | None:
        """``(key, stored value)`` when ``exc`` is MLflow refusing to change a param another process logged."""
        if "Changing param values is not allowed" not in str(exc):
            return None
        current = dict(self._get_run().data.params)
        for k, v in params.items():
            if k in current and current[k] != v:
                with self._buf_lock:
                    self._known_params[k] = current[k]
                return k, current[k]
        return None

    def _flush_quiet(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            warnings.warn(f"qexp: could not write buffered metrics of run {self.id}: {exc}", RuntimeWarning,
                          stacklevel=2)

    def _list_metrics(self) -> dict[str, float]:
        self.flush()
        return {k: inf_back(v) for k, v in self._get_run().data.metrics.items()}

    def _metric_history(self, key: str) -> list[Metric]:
        self.flush()
        points = retry(self.client.get_metric_history, self._require_id(), key)
        return [Metric(p.key, inf_back(float(p.value)), int(p.timestamp), int(p.step)) for p in points]

    def get_metric_history(self, key: str) -> pd.DataFrame:
        """As every backend's; on a database store read in one query (a million points in about a second,
        where MLflow's client builds an object per point)."""
        engine = sql.engine_of(self.client)
        if engine is None:
            return super().get_metric_history(key)
        self.flush()
        steps, values, stamps = retry(sql.metric_history, engine, self._require_id(), key)
        return pd.DataFrame({"step": steps, "value": values, "timestamp": stamps})

    def metric_history_since(self, key: str, cursor: Any = None) -> tuple[pd.DataFrame, Any]:
        """New points of ``key`` since ``cursor``. On a database store only the points at or after the last
        timestamp seen are read (plus a count that catches points logged with an older timestamp, which
        restart the read); through a server, the whole history (the default)."""
        engine = sql.engine_of(self.client)
        if engine is None:
            return super().metric_history_since(key, cursor)
        self.flush()
        run_id = self._require_id()
        if isinstance(cursor, tuple) and len(cursor) == 3 and cursor[0] == "sql":
            _, seen, (last_ts, at_last) = cursor
            steps, values, stamps = retry(sql.metric_history, engine, run_id, key, last_ts)
            same = int(np.count_nonzero(stamps == last_ts))
            total = retry(sql.metric_count, engine, run_id, key)
            if same == at_last and total == seen + len(steps) - same:  # only points after the last one seen
                new = pd.DataFrame({"step": steps[same:], "value": values[same:], "timestamp": stamps[same:]})
                new.attrs["restart"] = False
                return new, ("sql", total, _last(stamps, (last_ts, at_last)))
        steps, values, stamps = retry(sql.metric_history, engine, run_id, key)
        whole = pd.DataFrame({"step": steps, "value": values, "timestamp": stamps})
        whole.attrs["restart"] = True
        return whole, ("sql", len(steps), _last(stamps, (None, 0)))

    def last_heartbeat_ms(self) -> int | None:
        """MLflow keeps no heartbeat: the latest metric point this run logged (the flusher writes points
        within a second), else its start."""
        engine = sql.engine_of(self.client)
        if engine is not None:
            latest = retry(sql.last_metric_ms, engine, self._require_id())
        else:
            objs = getattr(self._get_run().data, "_metric_objs", None) or []
            latest = max((int(m.timestamp) for m in objs), default=None)
        return latest if latest is not None else self._start_ms

    def metric_keys(self) -> list[str]:
        """Every metric key logged in this run."""
        return sorted(self._list_metrics())

    # ---- artifacts ---------------------------------------------------------------------------
    def _artifact_uri(self) -> str:
        if self._artifact_uri_value is None:
            self._artifact_uri_value = self._get_run().info.artifact_uri
        return self._artifact_uri_value

    def get_local_dir(self) -> str:
        """The run's folder when its artifacts are on the local disk (the parent of ``artifacts/``)."""
        self._require_id()
        root = self._local_artifact_root()
        if root is not None:
            return os.path.dirname(root.rstrip("/"))
        uri = self._artifact_uri()
        raise RuntimeError(f"run {self.id} keeps its artifacts at {uri}, not on the local disk; use "
                           f"download_artifact() to get a local copy")

    def _log_artifact(self, local_path: str, artifact_path: str | None) -> None:
        self.client.log_artifact(self._require_id(), local_path, artifact_path)

    def _save_object(self, obj: Any, artifact_file: str) -> None:
        # pickled straight into the file MLflow uploads: no second in-memory copy of a large frame
        parent, name = posixpath.split(artifact_file)
        with tempfile.TemporaryDirectory(prefix="qexp-mlflow-") as tmp:
            p = os.path.join(tmp, name)
            with open(p, "wb") as f:
                pickle.dump(obj, f, protocol=4)
            self._log_artifact(p, parent or None)

    def _open_artifact(self, path: str) -> Any:
        """The artifact as a binary file: read in place when the run's artifacts are on the local disk,
        otherwise downloaded to a temp folder that goes away when the file is closed."""
        local_root = self._local_artifact_root()
        if local_root is not None:
            p = os.path.join(local_root, *path.split("/"))
            if os.path.isdir(p):
                raise IsADirectoryError(f"artifact {path!r} of run {self.id} is a folder")
            return open(p, "rb")  # FileNotFoundError for a missing one, as load_object expects
        tmp = tempfile.mkdtemp(prefix="qexp-mlflow-")
        try:
            local = self._download_artifact(path, tmp)
            if os.path.isdir(local):
                raise IsADirectoryError(f"artifact {path!r} of run {self.id} is a folder")
            return _TempFile(local, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _local_artifact_root(self) -> str | None:
        uri = self._artifact_uri()
        if uri.startswith("file:"):
            from qexp.ext import file_uri_to_path
            return file_uri_to_path(uri)
        return uri if uri.startswith("/") else None

    def _read_artifact(self, path: str) -> bytes:
        with self._open_artifact(path) as f:
            return f.read()

    def _download_artifact(self, path: str, dst: str) -> str:
        try:
            return self.client.download_artifacts(self._require_id(), path, dst_path=dst)
        except Exception as exc:
            if is_not_found(exc) or isinstance(exc, FileNotFoundError) or "No such file" in str(exc):
                raise FileNotFoundError(f"run {self.id} has no artifact {path!r}") from exc
            raise

    def _artifact_exists(self, path: str) -> bool:
        parent = os.path.dirname(path) or None
        return any(i.path == path for i in self.client.list_artifacts(self._require_id(), parent))

    def _list_artifacts(self, path: str | None, recursive: bool) -> list[str]:
        run_id = self._require_id()
        infos = self.client.list_artifacts(run_id, path)
        if not infos and path:
            # a file, not a folder: MLflow lists nothing under it
            return [path] if self._artifact_exists(path) else []
        if not recursive:
            return sorted(i.path for i in infos)
        out, stack = [], list(infos)
        while stack:
            info = stack.pop()
            if info.is_dir:
                stack.extend(self.client.list_artifacts(run_id, info.path))
            else:
                out.append(info.path)
        return sorted(out)


def _last(stamps: np.ndarray, before: tuple[int | None, int]) -> tuple[int | None, int]:
    """``(largest timestamp, how many points have it)`` after reading ``stamps`` (in timestamp order)."""
    if not len(stamps):
        return before
    last = int(stamps[-1])
    return last, int(np.count_nonzero(stamps == last))


class _TempFile(io.BufferedReader):
    """A read-only file in a temp folder that is removed on close."""

    def __init__(self, path: str, folder: str):
        super().__init__(io.FileIO(path, "rb"), buffer_size=1 << 20)
        self._folder = folder

    def close(self) -> None:
        try:
            super().close()
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)


def _immutable(run_id: str | None, key: str, old: str, new: str) -> QexpError:
    return QexpError(f"param {key!r} of run {run_id} is already {_short(old)!r} and cannot change to "
                     f"{_short(new)!r}: params are immutable (as in MLflow); log a tag or a metric for values "
                     f"that change, or start a new run")


def _short(v: str) -> str:
    return v if len(v) <= 200 else v[:200] + "..."
