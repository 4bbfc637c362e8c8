"""FileExpManager: the default backend, plain files under one folder."""
from __future__ import annotations

import os
import shutil
import time
from typing import Any

from qexp.ext import ExpAlreadyExistError, ExpManager, ExpNotFoundError, RecorderNotFoundError, now_ms

from .experiment import FileExperiment
from .fsutil import atomic_write_json
from .recorder import FileRecorder
from .store import FileStore


class FileExpManager(ExpManager):
    """Experiments as folders under ``uri`` (``file:`` URI or bare path), searched through an index."""

    def __init__(self, uri: str, default_exp_name: str = "Experiment", **kwargs: Any):
        super().__init__(uri, default_exp_name)
        self.store = FileStore(uri)

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

    def _list_experiments(self) -> list[FileExperiment]:
        return [FileExperiment(m["id"], m["name"], self) for m in self.store.iter_experiment_metas()
                if m.get("lifecycle", "active") == "active"]

    def _delete_exp(self, experiment_id: str) -> None:
        with self.store.lock:
            src = self.store.exp_dir(experiment_id)
            # moved aside first (atomic), so the name is free at once and a crash leaves no half-deleted folder
            dst = os.path.join(self.store.trash_dir(), f"{experiment_id}-{int(time.time() * 1000)}")
            os.replace(src, dst)
            self.store.index.delete_experiment(experiment_id)
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
        exp = self._get_exp(exp_id, None)
        return exp._get_recorder_by_id(recorder_id)

    def _recorder_from_row(self, row: dict) -> FileRecorder:
        meta = {"run_id": row["run_id"], "run_name": row["run_name"], "experiment_id": row["experiment_id"],
                "status": row["status"], "start_time": row["start_time"], "end_time": row["end_time"],
                "pid": row["pid"], "host": row["host"], "pid_start": row["pid_start"],
                "parent_run_id": row.get("parent_run_id") or None}
        return FileRecorder(row["experiment_id"], row["run_name"], self.store, meta)

    def _reap(self, experiment_ids: list[str] | None) -> None:
        for row in self.store.index.running(experiment_ids):
            rec = self._recorder_from_row(row)
            try:
                rec.reap_if_dead()
            except (OSError, ValueError):
                pass

    def _search_runs(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                     max_results: int | None, with_data: bool = True) -> list[dict]:
        self._reap(experiment_ids)
        rows = self.store.index.search(experiment_ids, clauses, orders, max_results, with_data=with_data)
        if with_data:
            for r in rows:
                r["tags"].setdefault("mlflow.runName", r["run_name"] or "")
        return rows

    def rebuild_index(self) -> int:
        """Rebuild the search index from the run folders; returns the number of runs indexed."""
        with self.store.lock:
            return self.store.index.rebuild()
