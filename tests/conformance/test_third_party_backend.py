"""A third party's backend tests, written as one would outside qexp: a throwaway in-memory backend built
only on ``qexp.ext``, registered by a fixture, proven by the shipped ``qexp.testing.BackendConformance``;
the same class also runs against the built-in file backend.

The backend keeps every store in a process-wide dict keyed by its URI (``inmem://NAME``), so managers
made for the same URI share their experiments, as stores on disk do.
"""
from __future__ import annotations

import os
import posixpath
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from qexp.ext import (
    ExpAlreadyExistError,
    Experiment,
    ExpManager,
    ExpNotFoundError,
    Metric,
    QexpError,
    Recorder,
    RecorderNotFoundError,
    StoreNotFoundError,
    hookimpl,
    matches,
    now_ms,
    register_plugin,
    row_value,
    unregister_plugin,
)
from qexp.testing import BackendConformance

TAG_RUN_NAME = "mlflow.runName"
TAG_PARENT = "mlflow.parentRunId"


# ---- the throwaway backend ----------------------------------------------------------------------------
@dataclass
class _Run:
    run_id: str
    experiment_id: str
    name: str | None
    seq: int
    start_ms: int
    status: str = Recorder.STATUS_R
    end_ms: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Store:
    uri: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    experiments: dict[str, str] = field(default_factory=dict)   # id -> name
    runs: dict[str, _Run] = field(default_factory=dict)
    counter: int = 0

    def next(self) -> int:
        self.counter += 1
        return self.counter


_STORES: dict[str, _Store] = {}


class MemRecorder(Recorder):
    def __init__(self, store: _Store, experiment_id: str, name: str | None, run: _Run | None = None):
        super().__init__(experiment_id, name, uri=store.uri)
        self.store = store
        if run is not None:
            self._sync(run)

    def _sync(self, run: _Run) -> None:
        self.id, self.name, self.status = run.run_id, run.name, run.status
        self._start_ms, self._end_ms = run.start_ms, run.end_ms
        self.parent_id = run.tags.get(TAG_PARENT)

    def _run(self) -> _Run:
        return self.store.runs[self._require_id()]

    def refresh(self) -> MemRecorder:
        self._sync(self._run())
        return self

    def _start_run(self) -> None:
        with self.store.lock:
            if self.id is None:
                seq = self.store.next()
                run = _Run(f"{seq:032x}", self.experiment_id, self.name, seq, now_ms())
                run.tags[TAG_RUN_NAME] = self.name or ""
                if self.parent_id:
                    run.tags[TAG_PARENT] = self.parent_id
                self.store.runs[run.run_id] = run
            else:
                run = self._run()
                run.status, run.end_ms = self.STATUS_R, None
            self._sync(run)

    def _end_run(self, status: str) -> None:
        with self.store.lock:
            run = self._run()
            run.status, run.end_ms = status, now_ms()
            self._sync(run)

    def _log_params(self, params: dict[str, str]) -> None:
        with self.store.lock:
            current = self._run().params
            for k, v in params.items():
                if k in current and current[k] != v:
                    raise QexpError(f"param {k!r} is already {current[k]!r}: params are immutable")
            current.update(params)

    def _log_metrics(self, metrics: list[Metric]) -> None:
        with self.store.lock:
            self._run().metrics.extend(metrics)

    def _set_tags(self, tags: dict[str, str]) -> None:
        with self.store.lock:
            self._run().tags.update(tags)

    def _delete_tags(self, keys: list[str]) -> None:
        with self.store.lock:
            for k in keys:
                self._run().tags.pop(k, None)

    def _list_params(self) -> dict[str, str]:
        return dict(self._run().params)

    def _list_tags(self) -> dict[str, str]:
        return dict(self._run().tags)

    def _list_metrics(self) -> dict[str, float]:
        latest: dict[str, Metric] = {}
        for m in self._run().metrics:
            cur = latest.get(m.key)
            if cur is None or (m.step, m.timestamp) >= (cur.step, cur.timestamp):
                latest[m.key] = m
        return {k: m.value for k, m in latest.items()}

    def _metric_history(self, key: str) -> list[Metric]:
        return [m for m in self._run().metrics if m.key == key]

    # artifacts: relative path -> bytes; folders exist only as prefixes
    def _log_artifact(self, local_path: str, artifact_path: str | None) -> None:
        base = posixpath.join(artifact_path or "", os.path.basename(os.path.normpath(local_path)))
        files = {}
        if os.path.isdir(local_path):
            for dirpath, _, names in os.walk(local_path):
                rel = os.path.relpath(dirpath, local_path).replace(os.sep, "/")
                for n in names:
                    with open(os.path.join(dirpath, n), "rb") as f:
                        files[posixpath.normpath(posixpath.join(base, rel, n))] = f.read()
        else:
            with open(local_path, "rb") as f:
                files[base] = f.read()
        with self.store.lock:
            self._run().files.update(files)

    def _under(self, path: str) -> list[str]:
        return sorted(p for p in self._run().files if p.startswith(path + "/"))

    def _read_artifact(self, path: str) -> bytes:
        files = self._run().files
        if path in files:
            return files[path]
        if self._under(path):
            raise IsADirectoryError(f"artifact {path!r} is a folder")
        raise FileNotFoundError(f"no artifact {path!r}")

    def _download_artifact(self, path: str, dst: str) -> str:
        target = os.path.join(dst, posixpath.basename(path) if path else "artifacts")
        files = self._run().files
        if path in files:
            with open(target, "wb") as f:
                f.write(files[path])
            return target
        inner = self._under(path) if path else sorted(files)
        if not inner:
            raise FileNotFoundError(f"no artifact {path!r}")
        for p in inner:
            out = os.path.join(target, *p[len(path):].lstrip("/").split("/"))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(files[p])
        return target

    def _list_artifacts(self, path: str | None, recursive: bool) -> list[str]:
        files = self._run().files
        if path and path in files:
            return [path]
        inner = self._under(path) if path else sorted(files)
        if recursive:
            return inner
        prefix = f"{path}/" if path else ""
        return sorted({prefix + p[len(prefix):].split("/", 1)[0] for p in inner})

    def _artifact_uri(self) -> str:
        return f"{self.store.uri}/artifacts/{self._require_id()}"


class MemExperiment(Experiment):
    def __init__(self, id: str, name: str, manager: MemExpManager):
        super().__init__(id, name, manager)
        self.store = manager.store

    def create_recorder(self, recorder_name: str | None = None) -> MemRecorder:
        return MemRecorder(self.store, self.id, recorder_name or self.DEFAULT_RECORDER_NAME)

    def _get_recorder_by_id(self, recorder_id: str) -> MemRecorder:
        run = self.store.runs.get(recorder_id)
        if run is None or run.experiment_id != self.id:
            raise RecorderNotFoundError(f"experiment {self.name!r} has no run {recorder_id!r}")
        return MemRecorder(self.store, self.id, run.name, run)

    def _list_recorders(self, max_results: int | None, filter_string: str) -> list[MemRecorder]:
        rows = self.manager.search_records([self.id], filter_string=filter_string, max_results=max_results)
        return [self._get_recorder_by_id(rid) for rid in rows["run_id"]]

    def _delete_recorder(self, recorder_id: str) -> None:
        with self.store.lock:
            self.store.runs.pop(recorder_id, None)


class MemExpManager(ExpManager):
    def __init__(self, uri: str, default_exp_name: str = "Experiment", create: bool = True, **kwargs: Any):
        super().__init__(uri, default_exp_name)
        if not create and uri not in _STORES:  # reads (create=False) never make a store
            raise StoreNotFoundError(f"no in-memory store {uri!r}")
        self.store = _STORES.setdefault(uri, _Store(uri))

    def _create_exp(self, name: str) -> MemExperiment:
        with self.store.lock:
            if name in self.store.experiments.values():
                raise ExpAlreadyExistError(f"experiment {name!r} exists")
            exp_id = str(self.store.next())
            self.store.experiments[exp_id] = name
        return MemExperiment(exp_id, name, self)

    def _get_exp(self, experiment_id: str | None, experiment_name: str | None) -> MemExperiment:
        for exp_id, name in list(self.store.experiments.items()):
            if (experiment_id is not None and exp_id == str(experiment_id)) or \
                    (experiment_id is None and name == experiment_name):
                return MemExperiment(exp_id, name, self)
        raise ExpNotFoundError(f"no experiment {experiment_id or experiment_name!r} in {self.uri}")

    def _list_experiments(self) -> list[MemExperiment]:
        return [MemExperiment(i, n, self) for i, n in sorted(self.store.experiments.items())]

    def _delete_exp(self, experiment_id: str) -> None:
        with self.store.lock:
            self.store.experiments.pop(experiment_id)
            for rid in [r.run_id for r in self.store.runs.values() if r.experiment_id == experiment_id]:
                del self.store.runs[rid]

    def _get_recorder_by_id(self, recorder_id: str) -> MemRecorder:
        run = self.store.runs.get(recorder_id)
        if run is None:
            raise RecorderNotFoundError(f"no run {recorder_id!r} in {self.uri}")
        return MemRecorder(self.store, run.experiment_id, run.name, run)

    def _search_runs(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                     max_results: int | None) -> list[dict]:
        with self.store.lock:
            runs = [r for r in self.store.runs.values() if experiment_ids is None or r.experiment_id in experiment_ids]
            rows = [_row(r, self.uri) for r in sorted(runs, key=lambda r: r.seq, reverse=True)]
        rows = [r for r in rows if all(matches(c, r) for c in clauses)]
        for o in reversed(orders):  # stable sorts, the first order last; missing values go last
            present = [r for r in rows if row_value(r, o.entity, o.key) is not None]
            missing = [r for r in rows if row_value(r, o.entity, o.key) is None]
            present.sort(key=lambda r: row_value(r, o.entity, o.key), reverse=not o.ascending)
            rows = present + missing
        return rows if max_results is None else rows[:max_results]


def _row(run: _Run, uri: str) -> dict:
    latest: dict[str, Metric] = {}
    for m in run.metrics:
        if m.key not in latest or (m.step, m.timestamp) >= (latest[m.key].step, latest[m.key].timestamp):
            latest[m.key] = m
    return {"run_id": run.run_id, "experiment_id": run.experiment_id, "status": run.status,
            "artifact_uri": f"{uri}/artifacts/{run.run_id}", "start_time": run.start_ms, "end_time": run.end_ms,
            "run_name": run.name, "params": dict(run.params), "tags": dict(run.tags),
            "metrics": {k: m.value for k, m in latest.items()}}


class InMemoryBackendPlugin:
    """What a third party's package would expose as its ``qexp`` entry point."""

    @hookimpl
    def register_backends(self, register: Any) -> None:
        register("inmem", MemExpManager, description="throwaway in-memory store")


@pytest.fixture(autouse=True, scope="module")
def inmem_plugin() -> Iterator[None]:
    name = register_plugin(InMemoryBackendPlugin(), name="inmem-test-backend")
    try:
        yield
    finally:
        unregister_plugin(name)
        _STORES.clear()


# ---- the shipped suite on it and on the built-in file backend -----------------------------------------
class TestThirdPartyBackends(BackendConformance):
    @pytest.fixture(params=["inmem", "file"])
    def store_uri(self, request: pytest.FixtureRequest, tmp_path) -> str:
        if request.param == "inmem":
            return f"inmem://{tmp_path.name}-{os.getpid()}"
        return str(tmp_path / "file-store")


def test_the_suite_fails_a_broken_backend(monkeypatch):
    """The kit is not vacuous: the same test fails once the backend forgets its params."""
    import qexp
    suite = TestThirdPartyBackends()
    qexp.init(uri="inmem://sound")
    suite.test_params_metrics_tags("inmem://sound")
    monkeypatch.setattr(MemRecorder, "_list_params", lambda self: {})
    qexp.init(uri="inmem://forgetful")
    with pytest.raises((AssertionError, KeyError)):  # the test reads params["lr"]
        suite.test_params_metrics_tags("inmem://forgetful")
