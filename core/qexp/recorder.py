"""The abstract Recorder: one run. Backends implement the underscore primitives; this class adds
Qlib's public semantics, validation, auto-logging and the lifecycle events."""
from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import posixpath
import shutil
import tempfile
import time
from typing import Any, Iterable, Iterator, NamedTuple

import pandas as pd

from . import pickling
from .autolog import log_code_artifacts, run_context_tags
from .exceptions import ArtifactNotFoundError, ArtifactPathError, LoadObjectError, QexpError
from .plugins import fire, has_impls


class Metric(NamedTuple):
    key: str
    value: float
    timestamp: int  # milliseconds since the epoch
    step: int


def now_ms() -> int:
    return int(time.time() * 1000)


def format_time(ms: int | None) -> str | None:
    """Qlib's recorder time format, in local time."""
    if ms is None:
        return None
    return _dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def validate_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise QexpError(f"{what} name must be a non-empty string, got {key!r}")
    if any(c in key for c in "\n\r\t\x00"):
        raise QexpError(f"{what} name {key!r} contains a control character; use letters, digits, '.', '_', "
                        f"'-', '/' or spaces")
    if len(key) > 250:
        raise QexpError(f"{what} name is {len(key)} characters long; the limit is 250")
    return key


def metric_value(key: str, v: Any) -> float:
    """``v`` as a metric value: a real number (int, float, numpy or torch scalar); NaN and +-inf are kept.

    Text and booleans are refused, not coerced: ``"0.5"`` is a param or a tag, and ``True`` would become
    1.0 without a word."""
    if isinstance(v, (str, bytes, bool)) or type(v).__name__ in ("bool_", "bool"):
        raise QexpError(f"metric {key!r} must be a number, got {type(v).__name__} {v!r}; log text as a tag or a "
                        f"param, and write a flag as 0/1 if you mean a number")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise QexpError(f"metric {key!r} must be a number, got {type(v).__name__} {v!r}") from None


def clean_artifact_path(path: str | None, what: str = "artifact path") -> str | None:
    """Normalise a relative artifact path; reject absolute paths, '..' that would escape the run, and control
    characters (a NUL makes every file API fail; no store can hold one)."""
    if path is None or path == "" or path == ".":
        return None
    path = os.fspath(path).replace("\\", "/")
    bad = next((c for c in path if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ArtifactPathError(f"{what} {path!r} contains the control character {bad!r}; use printable "
                                f"characters only")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise ArtifactPathError(f"{what} {path!r} is absolute; give a path relative to the run's artifact "
                                f"root, e.g. 'plots/ic.png'")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ArtifactPathError(f"{what} {path!r} contains '..'; artifact paths must stay inside the run")
    return "/".join(parts) or None


class Recorder:
    """One run: params, step metrics, tags, artifacts and a status.

    Statuses follow Qlib: ``SCHEDULED`` (created, not started), ``RUNNING``, ``FINISHED``, ``FAILED``.
    A finished recorder can still be written to, as in Qlib.
    """

    STATUS_S = "SCHEDULED"
    STATUS_R = "RUNNING"
    STATUS_FI = "FINISHED"
    STATUS_FA = "FAILED"
    STATUSES = (STATUS_S, STATUS_R, STATUS_FI, STATUS_FA)

    def __init__(self, experiment_id: str, name: str | None = None, uri: str | None = None):
        self.id: str | None = None
        self.name: str | None = name
        self.experiment_id = experiment_id
        self.uri = uri
        self.status: str = self.STATUS_S
        self._start_ms: int | None = None
        self._end_ms: int | None = None
        self.parent_id: str | None = None
        self.autolog = True

    # ---- description -------------------------------------------------------------------------
    @property
    def start_time(self) -> str | None:
        return format_time(self._start_ms)

    @property
    def end_time(self) -> str | None:
        return format_time(self._end_ms)

    @property
    def info(self) -> dict:
        return {"class": "Recorder", "id": self.id, "name": self.name, "experiment_id": self.experiment_id,
                "start_time": self.start_time, "end_time": self.end_time, "status": self.status}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(info={self.info})"

    def __str__(self) -> str:
        return str(self.info)

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recorder) and self.id is not None and self.id == other.id

    def _require_id(self) -> str:
        if self.id is None:
            raise QexpError("this recorder has not been started yet; call start_run() (or use R.start) first")
        return self.id

    # ---- lifecycle ---------------------------------------------------------------------------
    def start_run(self) -> Recorder:
        """Start the run (or resume it when it already exists); status becomes RUNNING."""
        resumed = self.id is not None
        # context tags travel with the start so a backend can write them in the same operation
        self._initial_tags: dict[str, str] = {}
        if not resumed and self.autolog:
            self._initial_tags = run_context_tags()
        self._start_run()
        self.status = self.STATUS_R
        if self._initial_tags:  # the backend did not consume them
            self.set_tags(**self._initial_tags)
        if not resumed and self.autolog:
            log_code_artifacts(self)
        fire("recorder_started", recorder=self)
        return self

    def end_run(self, status: str = STATUS_FI) -> None:
        """End the run with ``status``; buffered writes are flushed first."""
        if status not in self.STATUSES:
            raise QexpError(f"unknown status {status!r}; use one of {', '.join(self.STATUSES)}")
        self._require_id()
        self.flush()
        self._end_run(status)
        self.status = status
        fire("recorder_ended", recorder=self, status=status)

    # ---- writes ------------------------------------------------------------------------------
    def log_params(self, **kwargs: Any) -> None:
        """Log parameters; values are stored as strings. A param cannot change once logged."""
        self._require_id()
        if not kwargs:
            return
        params = {validate_key(k, "param"): _param_str(v) for k, v in kwargs.items()}
        self._log_params(params)
        fire("recorder_params_logged", recorder=self, params=params)

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        """Log metric values at ``step`` (0 when not given); every step is kept in the history."""
        self._require_id()
        if not kwargs:
            return
        ts = now_ms()
        st = 0 if step is None else int(step)
        batch = []
        for k, v in kwargs.items():
            validate_key(k, "metric")
            batch.append(Metric(k, metric_value(k, v), ts, st))
        self._log_metrics(batch)
        fire("recorder_metrics_logged", recorder=self, metrics={m.key: m.value for m in batch}, step=st)

    def log_metric_batch(self, metrics: Iterable[Metric | tuple]) -> None:
        """Log many ``(key, value, timestamp_ms, step)`` points in one write (used by model loggers)."""
        self._require_id()
        batch = [Metric(m[0], metric_value(m[0], m[1]), int(m[2]), int(m[3])) for m in metrics]
        for m in batch:
            validate_key(m.key, "metric")
        if batch:
            self._log_metrics(batch)
            if has_impls("recorder_metrics_logged"):
                by_step: dict[int, dict] = {}
                for m in batch:
                    by_step.setdefault(m.step, {})[m.key] = m.value
                for st, ms in by_step.items():
                    fire("recorder_metrics_logged", recorder=self, metrics=ms, step=st)

    def set_tags(self, **kwargs: Any) -> None:
        """Set tags (strings); setting a tag again overwrites it."""
        self._require_id()
        if not kwargs:
            return
        tags = {validate_key(k, "tag"): str(v) for k, v in kwargs.items()}
        self._set_tags(tags)
        fire("recorder_tags_set", recorder=self, tags=tags)

    def delete_tags(self, *keys: str) -> None:
        self._require_id()
        self._delete_tags(list(keys))
        fire("recorder_tags_deleted", recorder=self, keys=list(keys))

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        """Copy a local file or folder into the run's artifacts under ``artifact_path``."""
        self._require_id()
        local_path = os.fspath(local_path)
        if not os.path.exists(local_path):
            raise FileNotFoundError(f"cannot log artifact: {local_path!r} does not exist")
        artifact_path = clean_artifact_path(artifact_path)
        self._log_artifact(local_path, artifact_path)
        fire("recorder_artifact_logged", recorder=self, local_path=local_path, artifact_path=artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write ``text`` to the artifact ``artifact_file``."""
        self.log_bytes(text.encode("utf-8"), artifact_file)

    def log_bytes(self, data: bytes, artifact_file: str, dedup: bool = False) -> None:
        """Write raw ``data`` to the artifact ``artifact_file``. ``dedup=True`` lets a backend share one
        stored copy between runs that log the same content (the git diff every run of a process logs)."""
        self._require_id()
        cleaned = clean_artifact_path(artifact_file, "artifact name")
        if cleaned is None:
            raise ArtifactPathError("artifact name is empty")
        artifact_file = cleaned
        if dedup:
            self._log_bytes_dedup(data, artifact_file)
        else:
            self._log_bytes(data, artifact_file)
        if has_impls("recorder_artifact_logged"):
            parent, name = posixpath.split(artifact_file)
            with tempfile.TemporaryDirectory(prefix="qexp-") as tmp:
                p = os.path.join(tmp, name)
                with open(p, "wb") as f:
                    f.write(data)
                fire("recorder_artifact_logged", recorder=self, local_path=p, artifact_path=parent or None)

    def save_objects(self, local_path: str | None = None, artifact_path: str | None = None, **kwargs: Any) -> None:
        """Save a local file/folder (``local_path``) or pickled objects given as ``name=obj``.

        ``R.save_objects(**{"pred.pkl": df})`` stores ``pred.pkl``; ``artifact_path`` is a sub-folder.
        """
        if local_path is not None and kwargs:
            raise ValueError("save_objects takes either local_path or objects as keyword arguments, not both")
        if local_path is not None:
            p = os.fspath(local_path)
            if os.path.isdir(p):
                self._require_id()
                ap = clean_artifact_path(artifact_path)
                for entry in sorted(os.listdir(p)):
                    self.log_artifact(os.path.join(p, entry), ap)
            else:
                self.log_artifact(p, artifact_path)
            return
        self._require_id()
        ap = clean_artifact_path(artifact_path)
        for name, obj in kwargs.items():
            name_clean = clean_artifact_path(name, "object name")
            if name_clean is None:
                raise ArtifactPathError(f"object name {name!r} is empty")
            target = f"{ap}/{name_clean}" if ap else name_clean
            if callable(getattr(obj, "to_pickle_bytes", None)) or has_impls("recorder_artifact_logged"):
                self.log_bytes(pickling.dump_object(obj), target)
            else:
                self._save_object(obj, target)

    # ---- reads -------------------------------------------------------------------------------
    def read_artifact(self, path: str) -> bytes:
        """The raw bytes of an artifact file, without unpickling."""
        self._require_id()
        clean = clean_artifact_path(path, "artifact name")
        if clean is None:
            raise ArtifactPathError("artifact name is empty")
        return self._read_artifact(clean)

    def load_object(self, name: str, restricted: bool = False, unpickler: Any = None,
                    allow: Iterable[Any] = ()) -> Any:
        """Unpickle the artifact ``name``. ``restricted=True`` refuses anything but data containers, plus what
        ``allow`` names: classes, ``"module.Name"`` or ``"package.*"`` (e.g. ``allow=["qexp_models.*",
        "lightgbm.*"]`` for an LGBModel)."""
        self._require_id()
        clean = clean_artifact_path(name, "artifact name")
        try:
            if clean is None:
                raise FileNotFoundError(name)
            stream = self._open_artifact(clean)
            data = None if stream is not None else self._read_artifact(clean)
        except (FileNotFoundError, KeyError, IsADirectoryError) as exc:
            raise ArtifactNotFoundError(f"run {self.id} has no artifact file {name!r}; it has: "
                                  f"{', '.join(self.list_artifacts(recursive=True)[:20]) or 'none'}") from exc
        try:
            if stream is not None:
                with stream:  # unpickle straight from the file: no second copy of a large object in memory
                    return pickling.make_unpickler(stream, restricted, unpickler, allow).load()
            return pickling.loads(data or b"", restricted=restricted, unpickler=unpickler, allow=allow)
        except Exception as exc:
            raise LoadObjectError(f"artifact {name!r} of run {self.id} could not be unpickled: "
                                  f"{type(exc).__name__}: {exc}") from exc

    def download_artifact(self, path: str, dst_path: str | None = None) -> str:
        """Copy an artifact file or folder to ``dst_path`` and return the local path.

        Without ``dst_path`` the copy goes into a new temporary folder ``qexp-artifact-*`` that belongs to the
        caller and stays after the call (as ``mlflow.artifacts.download_artifacts`` does): the returned path
        must remain valid. Use :meth:`downloaded_artifact` for a copy removed at the end of a ``with`` block.
        """
        self._require_id()
        clean = clean_artifact_path(path, "artifact path")
        dst = dst_path or tempfile.mkdtemp(prefix="qexp-artifact-")
        os.makedirs(dst, exist_ok=True)
        return self._download_artifact(clean or "", dst)

    @contextlib.contextmanager
    def downloaded_artifact(self, path: str) -> Iterator[str]:
        """``with rec.downloaded_artifact("pred.pkl") as local:`` a local copy of the artifact file or folder,
        removed (with its temporary folder) when the block ends."""
        with tempfile.TemporaryDirectory(prefix="qexp-artifact-") as tmp:
            yield self.download_artifact(path, tmp)

    def list_artifacts(self, artifact_path: str | None = None, recursive: bool = False) -> list[str]:
        """Relative paths of the artifacts under ``artifact_path`` (one level, or all with ``recursive``)."""
        self._require_id()
        return self._list_artifacts(clean_artifact_path(artifact_path), recursive)

    def list_metrics(self) -> dict[str, float]:
        """The latest value of each metric (by step, then timestamp)."""
        return self._list_metrics()

    def list_params(self) -> dict[str, str]:
        return self._list_params()

    def list_tags(self) -> dict[str, str]:
        return self._list_tags()

    def get_metric_history(self, key: str) -> pd.DataFrame:
        """Every logged point of ``key``: columns ``step``, ``value``, ``timestamp`` (ms), in log order."""
        self.flush()
        pts = self._metric_history(key)
        return pd.DataFrame(pts, columns=["key", "value", "timestamp", "step"])[["step", "value", "timestamp"]]

    def metric_history_since(self, key: str, cursor: Any = None) -> tuple[pd.DataFrame, Any]:
        """The points of ``key`` logged since ``cursor`` (None: from the start), and the cursor to pass next
        time: ``(frame, new_cursor)``, the frame shaped as :meth:`get_metric_history`'s. For following a live
        run: each call costs the new points, not the whole history, where the backend can do that.

        The cursor is opaque (keep it, never build one). ``frame.attrs["restart"]`` is True when the frame is
        the whole history instead of an increment (the first call, or a history the backend could not
        continue, e.g. rewritten): the caller then replaces what it holds. This default reads the whole
        history and skips the points the cursor counted (right for histories kept in log order)."""
        whole = self.get_metric_history(key)
        seen = cursor if isinstance(cursor, int) and not isinstance(cursor, bool) and 0 <= cursor <= len(whole) \
            else None
        out = whole if seen is None else whole.iloc[seen:].reset_index(drop=True)
        out.attrs["restart"] = seen is None
        return out, len(whole)

    def last_heartbeat_ms(self) -> int | None:
        """When the run's process last showed it was alive (ms since the epoch): a heartbeat, a write; None
        when the backend cannot tell. Meaningful while the run is RUNNING."""
        return None

    def get_artifact_uri(self) -> str:
        self._require_id()
        return self._artifact_uri()

    def get_local_dir(self) -> str:
        """The run's folder on the local disk (file-like backends only)."""
        self._require_id()
        raise RuntimeError(f"{type(self).__name__} keeps no local folder for its runs")

    def preserve_times(self, start_ms: int | None, end_ms: int | None) -> bool:
        """Ask the backend to record these start/end times (ms since the epoch) instead of "now" when this
        not yet started recorder starts and ends (``qexp runs migrate`` keeps a copied run's times).
        Returns True when the backend will; the default cannot and returns False."""
        return False

    def flush(self) -> None:
        """Write out buffered metrics (backends that buffer override this)."""

    def refresh(self) -> Recorder:
        """Reload status and times from the store."""
        return self

    # ---- backend primitives ------------------------------------------------------------------
    def _start_run(self) -> None:
        raise NotImplementedError

    def _end_run(self, status: str) -> None:
        raise NotImplementedError

    def _log_params(self, params: dict[str, str]) -> None:
        raise NotImplementedError

    def _log_metrics(self, metrics: list[Metric]) -> None:
        raise NotImplementedError

    def _set_tags(self, tags: dict[str, str]) -> None:
        raise NotImplementedError

    def _delete_tags(self, keys: list[str]) -> None:
        raise NotImplementedError

    def _log_artifact(self, local_path: str, artifact_path: str | None) -> None:
        raise NotImplementedError

    def _read_artifact(self, path: str) -> bytes:
        raise NotImplementedError

    def _save_object(self, obj: Any, artifact_file: str) -> None:
        """Pickle ``obj`` as ``artifact_file``; backends that can stream to their store override this."""
        self._log_bytes(pickling.dump_object(obj), artifact_file)

    def _open_artifact(self, path: str) -> Any:
        """A binary file object for reading the artifact, or None when the backend only has bytes."""
        return None

    def _log_bytes_dedup(self, data: bytes, artifact_file: str) -> None:
        self._log_bytes(data, artifact_file)

    def _log_bytes(self, data: bytes, artifact_file: str) -> None:
        """Store ``data`` as ``artifact_file``; backends with direct writes override this."""
        parent, name = posixpath.split(artifact_file)
        with tempfile.TemporaryDirectory(prefix="qexp-") as tmp:
            p = os.path.join(tmp, name)
            with open(p, "wb") as f:
                f.write(data)
            self._log_artifact(p, parent or None)

    def _download_artifact(self, path: str, dst: str) -> str:
        raise NotImplementedError

    def _list_artifacts(self, path: str | None, recursive: bool) -> list[str]:
        raise NotImplementedError

    def _list_metrics(self) -> dict[str, float]:
        raise NotImplementedError

    def _list_params(self) -> dict[str, str]:
        raise NotImplementedError

    def _list_tags(self) -> dict[str, str]:
        raise NotImplementedError

    def _metric_history(self, key: str) -> list[Metric]:
        raise NotImplementedError

    def _artifact_uri(self) -> str:
        raise NotImplementedError


def _param_str(v: Any) -> str:
    if isinstance(v, float) and math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return repr(v)
    return str(v)


def copy_tree_or_file(src: str, dst_dir: str) -> str:
    """Copy ``src`` (file or folder) into ``dst_dir``; return the copy's path."""
    os.makedirs(dst_dir, exist_ok=True)
    target = os.path.join(dst_dir, os.path.basename(src.rstrip("/")))
    if os.path.isdir(src):
        shutil.copytree(src, target, dirs_exist_ok=True)
    else:
        shutil.copyfile(src, target)
    return target
