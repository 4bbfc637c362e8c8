"""FileExpManager: the default backend, plain files under one folder."""
from __future__ import annotations

import os
import shutil
import time
from typing import Any

from qexp.ext import (
    ExpAlreadyExistError,
    Experiment,
    ExpManager,
    ExpNotFoundError,
    RecorderNotFoundError,
    now_ms,
    offset_token,
    search_key,
    token_offset,
)

from . import runs
from .experiment import FileExperiment
from .fsutil import atomic_write_json
from .recorder import FileRecorder, delete_remote_artifacts
from .store import FileStore, require_store


class FileExpManager(ExpManager):
    """Experiments as folders under ``uri`` (``file:`` URI or bare path), searched through an index.

    ``artifact_root`` (a URI of any registered artifact-store scheme, or a local path) keeps the artifacts of
    new runs there, under ``<artifact_root>/<experiment id>/<run id>``, instead of in the run folders.

    For long-lived readers (``qexp ui``): ``sort_indexes=False`` makes no index for a sorted key (existing ones
    are used), ``reap_interval`` seconds spaces the looks for RUNNING runs whose process died (0: every search).
    """

    def __init__(self, uri: str, default_exp_name: str = "Experiment", artifact_root: str | None = None,
                 create: bool = True, sort_indexes: bool = True, reap_interval: float = 0.0, **kwargs: Any):
        super().__init__(uri, default_exp_name)
        if not create:  # a read: a missing store is an error, never a new empty one
            require_store(uri)
        self.store = FileStore(uri, artifact_root=artifact_root, sort_indexes=sort_indexes,
                               reap_interval=reap_interval)

    def _create_exp(self, name: str) -> FileExperiment:
        with self.store.lock:
            for meta in self.store.iter_experiment_metas():
                if meta["name"] == name and meta.get("lifecycle", "active") == "active":
                    raise ExpAlreadyExistError(f"experiment {name!r} already exists (id {meta['id']})")
            exp_id = self.store.next_experiment_id()
            os.makedirs(self.store.exp_dir(exp_id))
            atomic_write_json(os.path.join(self.store.exp_dir(exp_id), "meta.json"),
                              {"id": exp_id, "name": name, "lifecycle": "active", "creation_time": now_ms()})
        return FileExperiment(exp_id, name, self)

    def _get_exp(self, experiment_id: str | None, experiment_name: str | None) -> FileExperiment:
        for meta in self.store.iter_experiment_metas():
            if meta.get("lifecycle", "active") != "active":
                continue
            if (experiment_id is not None and meta["id"] == str(experiment_id)) or \
                    (experiment_id is None and meta["name"] == experiment_name):
                return FileExperiment(meta["id"], meta["name"], self)
        what = f"id {experiment_id!r}" if experiment_id is not None else f"name {experiment_name!r}"
        known = sorted(m["name"] for m in self.store.iter_experiment_metas())
        raise ExpNotFoundError(f"no experiment with {what} in {self.store.root}; existing: "
                               f"{', '.join(known) or 'none'}")

    def _list_experiments(self) -> list[Experiment]:
        return [FileExperiment(m["id"], m["name"], self) for m in self.store.iter_experiment_metas()
                if m.get("lifecycle", "active") == "active"]

    def _delete_exp(self, experiment_id: str) -> None:
        with self.store.lock:
            src = self.store.exp_dir(experiment_id)
            # moved aside first (atomic), so the name is free at once and a crash leaves no half-deleted folder
            dst = os.path.join(self.store.trash_dir(), f"{experiment_id}-{int(time.time() * 1000)}")
            os.replace(src, dst)
            self.store.index.delete_experiment(experiment_id)
        delete_remote_artifacts([os.path.join(dst, e) for e in sorted(os.listdir(dst))])
        shutil.rmtree(dst, ignore_errors=True)

    def _get_recorder_by_id(self, recorder_id: str) -> FileRecorder:
        exp_id = self.store.index.run_location(recorder_id)
        if exp_id is None:  # not indexed (index lost?): look in the folders
            for meta in self.store.iter_experiment_metas():
                if os.path.isfile(os.path.join(self.store.run_dir(meta["id"], recorder_id), "meta.json")):
                    exp_id = meta["id"]
                    break
        if exp_id is None:
            raise RecorderNotFoundError(f"no run with id {recorder_id!r} in {self.store.root}")
        try:
            return runs.load_recorder(self.store, exp_id, recorder_id)
        except FileNotFoundError:
            raise RecorderNotFoundError(f"no run with id {recorder_id!r} in {self.store.root}") from None

    def _search_runs(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                     max_results: int | None) -> list[dict]:
        return runs.search_runs(self.store, experiment_ids, clauses, orders, max_results)

    def _search_runs_page(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                          max_results: int | None, page_token: str | None) -> tuple[list[dict], str | None]:
        # LIMIT/OFFSET in the index: page 1,000 of a 100,000-run store costs one query, not 1,000 pages
        key = search_key(experiment_ids, clauses, orders)
        offset = token_offset(page_token, key)
        rows = runs.search_runs(self.store, experiment_ids, clauses, orders,
                                None if max_results is None else max_results + 1, offset=offset)
        if max_results is None or len(rows) <= max_results:
            return rows, None
        return rows[:max_results], offset_token(offset + max_results, key)

    def _run_stats(self, experiment_ids: list[str] | None) -> dict[str, dict[str, Any]]:
        runs.reap(self.store, experiment_ids)  # a killed run counts as FAILED, not RUNNING
        return self.store.index.stats(experiment_ids)

    def rebuild_index(self, repair: bool = False) -> int:
        """Rebuild the search index from the run folders; returns the number of runs indexed.

        What could not be indexed (an unreadable experiment or run meta.json) is left in ``index_problems``;
        ``repair=True`` first rewrites unreadable experiment metas from their runs and unreadable run metas from
        the runs' own files (``index_repairs``)."""
        import warnings

        from .repair import broken_experiments, broken_runs, repair_experiment, repair_run
        self.index_repairs: list[str] = []
        with self.store.lock:
            if repair:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # the broken ones, repaired below
                    taken = {m["name"] for m in self.store.iter_experiment_metas()
                             if m.get("lifecycle", "active") == "active"}
                for b in broken_experiments(self.store.root):
                    meta = repair_experiment(self.store.root, b, taken)
                    taken.add(meta["name"])
                    self.index_repairs.append(f"{b.path}: was unreadable ({b.reason}); rewritten from its runs "
                                              f"as experiment {meta['name']!r} (id {b.exp_id})")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    exp_ids = [m["id"] for m in self.store.iter_experiment_metas()
                               if m.get("lifecycle", "active") == "active"]
                for r in broken_runs(self.store.root, exp_ids):
                    meta = repair_run(r)
                    self.index_repairs.append(f"{r.path}: was unreadable ({r.reason}); rewritten from the run's "
                                              f"files as run {r.run_id} ({meta['status']})")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                n = self.store.index.rebuild()
        self.index_problems = [str(w.message).removeprefix("qexp: ") for w in caught
                               if issubclass(w.category, RuntimeWarning)]
        for w in caught:  # still warned, for callers that do not read index_problems
            warnings.warn(w.message, w.category, stacklevel=2)
        return n
