"""Runs of a file store as recorders: load one by id, search the index (after marking FAILED the runs
whose process is gone) and turn a search row into a recorder.

The manager and its experiments both use these, so neither reaches into the other's private methods.
"""
from __future__ import annotations

import math
import time

from qexp.ext import Clause, Order, Recorder

from .recorder import FileRecorder
from .store import FileStore


def load_recorder(store: FileStore, exp_id: str, run_id: str) -> FileRecorder:
    """The run ``run_id`` of experiment ``exp_id`` read from its folder (FileNotFoundError when absent)."""
    meta = store.read_run_meta(exp_id, run_id)
    rec = FileRecorder(exp_id, meta.get("run_name"), store, meta)
    rec.reap_if_dead()
    return rec


def recorder_from_row(store: FileStore, row: dict) -> FileRecorder:
    """A recorder from an index row, without reading its folder."""
    meta = {"run_id": row["run_id"], "run_name": row["run_name"], "experiment_id": row["experiment_id"],
            "status": row["status"], "start_time": row["start_time"], "end_time": row["end_time"],
            "pid": row["pid"], "host": row["host"], "pid_start": row["pid_start"],
            "parent_run_id": row.get("parent_run_id") or None}
    return FileRecorder(row["experiment_id"], row["run_name"], store, meta, complete=False)


def reap(store: FileStore, experiment_ids: list[str] | None) -> None:
    """Mark FAILED the RUNNING runs whose owner process is gone, before a search reads their status. A store
    opened with ``reap_interval`` (a long-lived reader such as ``qexp ui``, searching several times a
    second) looks at most that often per set of experiments; by default every search looks."""
    if store.reap_interval > 0:
        scope = None if experiment_ids is None else tuple(sorted(experiment_ids))
        now = time.monotonic()
        last = max(store.reaped_at.get(scope, -math.inf), store.reaped_at.get(None, -math.inf))
        if now - last < store.reap_interval:
            return
        store.reaped_at[scope] = now
    for row in store.index.running(experiment_ids):
        try:
            recorder_from_row(store, row).reap_if_dead()
        except (OSError, ValueError):
            pass


def search_runs(store: FileStore, experiment_ids: list[str] | None, clauses: list[Clause], orders: list[Order],
                max_results: int | None, with_data: bool = True, offset: int = 0) -> list[dict]:
    """Search rows (``ExpManager._search_runs``'s shape); ``with_data=False`` leaves out params, metrics, tags;
    ``offset`` skips that many rows (paging)."""
    reap(store, experiment_ids)
    rows = store.index.search(experiment_ids, clauses, orders, max_results, with_data=with_data, offset=offset)
    if with_data:
        for r in rows:
            r["tags"].setdefault("mlflow.runName", r["run_name"] or "")
    return rows


def search_recorders(store: FileStore, experiment_id: str, clauses: list[Clause],
                     max_results: int | None) -> list[Recorder]:
    """Recorders of one experiment matching ``clauses``, latest first."""
    rows = search_runs(store, [experiment_id], clauses, [], max_results, with_data=False)
    return [recorder_from_row(store, r) for r in rows]
