"""MLflow runs as recorders: one by id, searches (with runs of dead processes marked FAILED first) and
recorders built from search results. The manager and its experiments both use these, through the store."""
from __future__ import annotations

from typing import Any

from qexp.ext import Clause, Order, Recorder, RecorderNotFoundError

from . import search
from .client import error_code, is_not_found, retry
from .liveness import owner_dead
from .recorder import MlflowRecorder
from .store import MlflowStore


def get_recorder_by_id(store: MlflowStore, recorder_id: str) -> MlflowRecorder:
    """The active run ``recorder_id``; :class:`RecorderNotFoundError` when it is missing or deleted."""
    try:
        run = retry(store.client.get_run, str(recorder_id))
    except Exception as exc:
        if is_not_found(exc) or error_code(exc) == "INVALID_PARAMETER_VALUE":
            raise RecorderNotFoundError(f"no run with id {recorder_id!r} in {store.uri}") from None
        raise
    if run.info.lifecycle_stage != "active":
        raise RecorderNotFoundError(f"run {recorder_id!r} in {store.uri} was deleted")
    return MlflowRecorder.from_run(store, run)


def _recorder(store: MlflowStore, run: Any) -> MlflowRecorder:
    rec = MlflowRecorder(store, str(run.info.experiment_id), run.info.run_name)
    rec._load(run)
    return rec


def reaped(store: MlflowStore, run: Any) -> Any:
    """The run as it should read: FAILED (marked so now) when it is RUNNING and its process is gone."""
    if run.info.status != "RUNNING" or not owner_dead(run.data.tags):
        return run
    return retry(store.client.get_run, run.info.run_id) if _recorder(store, run).reap_if_dead(run.data.tags) \
        else run


def reap_dead(store: MlflowStore, experiment_ids: list[str]) -> None:
    """Mark FAILED the RUNNING runs whose process is gone, before a search filters on status (MLflow
    alone would keep them RUNNING forever)."""
    for run in search.iter_runs(store.client, experiment_ids, "attributes.status = 'RUNNING'", None, None):
        _recorder(store, run).reap_if_dead(run.data.tags)


def search_run_objects(store: MlflowStore, experiment_ids: list[str] | None, clauses: list[Clause],
                       orders: list[Order], max_results: int | None, run_view_type: int = 1) -> list[Any]:
    """MLflow ``Run`` objects matching qexp's clauses: what MLflow can filter and sort it does, the rest
    is done here; buffered writes of this process are flushed first."""
    store.flush_all()
    ids = [str(e.experiment_id) for e in store.active_experiments()] if experiment_ids is None else experiment_ids
    if not ids:
        return []
    keys: list[tuple[str, str]] = [(x.entity, x.key) for x in clauses] + [(x.entity, x.key) for x in orders]
    if any(e == "attributes" and k in ("status", "end_time") for e, k in keys):
        reap_dead(store, ids)  # before MLflow filters or sorts on a status that is out of date
    filter_string, local = search.split_clauses(clauses)
    mlflow_orders = search.orders_to_mlflow(orders)
    in_memory = bool(local) or mlflow_orders is None
    runs = [reaped(store, r) for r in search.iter_runs(store.client, ids, filter_string, mlflow_orders or None,
                                                       None if in_memory else max_results, run_view_type)]
    if in_memory:
        by_id = {r.info.run_id: r for r in runs}
        rows = search.filter_rows([search.run_to_row(r) for r in runs], local)
        if mlflow_orders is None:
            rows = search.sort_rows(rows, orders)
        runs = [by_id[r["run_id"]] for r in rows]
        if max_results is not None:
            runs = runs[:max_results]
    return runs


def search_rows(store: MlflowStore, experiment_ids: list[str] | None, clauses: list[Clause], orders: list[Order],
                max_results: int | None, run_view_type: int = 1) -> list[dict]:
    """Search rows (``ExpManager._search_runs``'s shape)."""
    return [search.run_to_row(r)
            for r in search_run_objects(store, experiment_ids, clauses, orders, max_results, run_view_type)]


def search_recorders(store: MlflowStore, experiment_ids: list[str], clauses: list[Clause],
                     max_results: int | None) -> list[Recorder]:
    """Recorders matching ``clauses``, latest first."""
    return [_recorder(store, run) for run in search_run_objects(store, experiment_ids, clauses, [], max_results)]
