"""MlflowExpManager: experiments of one MLflow tracking store, through one ``MlflowClient``.

Deleted names are reusable: MLflow only soft-deletes an experiment and keeps its name taken (mlflow #2651,
a Qlib complaint). qexp renames an experiment to ``<name>-deleted-<id>`` as it deletes it, and, when a
name is held by an experiment deleted by other tools, restores it, renames it the same way and deletes it
again before creating the new one. The old runs stay recoverable under the new name.
"""
from __future__ import annotations

import random
import time
import uuid
import weakref
from typing import Any, Iterable

import pandas as pd

from qexp.ext import (
    Clause,
    ExpAlreadyExistError,
    ExpManager,
    ExpNotFoundError,
    Order,
    QexpError,
    RecorderNotFoundError,
    parse_filter,
    parse_order_by,
    runs_frame,
)

from . import search
from .client import batch_limits, default_artifact_root, error_code, is_not_found, make_client, normalize_uri, retry
from .experiment import MlflowExperiment
from .liveness import owner_dead
from .recorder import MlflowRecorder

DEFAULT_EXPERIMENT_ID = "0"  # the "Default" experiment MLflow puts in every new store
CREATE_ATTEMPTS = 8
# A name -> id lookup is reused this long: R.start(experiment_name=...) in a loop of short runs would
# otherwise ask MLflow every time (the Lightning complaint, pytorch-lightning #3393). Deleting through this
# manager forgets at once; an experiment deleted by another process within the window makes create_run
# refuse, which the recorder reports and forgets (MLflow's fluent API keeps its experiment id forever).
NAME_CACHE_SECONDS = 2.0


class MlflowExpManager(ExpManager):
    """Experiments in an MLflow store: ``sqlite:///path.db``, ``postgresql://...``, ``http(s)://server``...

    ``artifact_root`` (or ``$QEXP_MLFLOW_ARTIFACT_ROOT``) is where new experiments keep artifacts; by
    default ``mlartifacts/`` next to a SQLite file, and the server's (or MLflow's) choice otherwise.
    """

    def __init__(self, uri: str, default_exp_name: str = "Experiment", artifact_root: str | None = None,
                 **kwargs: Any):
        uri = normalize_uri(uri)
        super().__init__(uri, default_exp_name)
        self.client = make_client(uri)
        self.artifact_root = artifact_root or default_artifact_root(uri)
        self.batch_limits = batch_limits()
        self._live: "weakref.WeakSet[MlflowRecorder]" = weakref.WeakSet()
        self._ids_by_name: dict[str, tuple[str, float]] = {}

    # ---- experiments -------------------------------------------------------------------------
    def _create_exp(self, name: str) -> MlflowExperiment:
        for attempt in range(CREATE_ATTEMPTS):
            try:
                exp_id = retry(self.client.create_experiment, name, artifact_location=self._new_artifact_location())
                self._remember(name, exp_id)
                return MlflowExperiment(exp_id, name, self)
            except Exception as exc:
                if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                    raise
            existing = retry(self.client.get_experiment_by_name, name)
            if existing is not None and existing.lifecycle_stage == "active":
                raise ExpAlreadyExistError(f"experiment {name!r} already exists (id {existing.experiment_id})")
            if existing is not None:
                self._free_deleted_name(existing)
            # a racing process is freeing or creating the name: wait a little and look again
            time.sleep(0.02 * (attempt + 1) * random.uniform(0.5, 1.5))
        raise QexpError(f"could not create experiment {name!r} in {self.uri} after {CREATE_ATTEMPTS} attempts: the "
                        f"name is held by a deleted experiment that could not be renamed; rename or permanently "
                        f"delete it (mlflow gc) and try again")

    def _new_artifact_location(self) -> str | None:
        # MLflow names the folder after the experiment id, unknown before creation: a unique name instead
        return f"{self.artifact_root.rstrip('/')}/{uuid.uuid4().hex}" if self.artifact_root else None

    def _free_deleted_name(self, exp: Any) -> None:
        """Rename a deleted experiment to ``<name>-deleted-<id>`` (MLflow renames only active ones)."""
        try:
            retry(self.client.restore_experiment, exp.experiment_id)
        except Exception as exc:
            if error_code(exc) == "INVALID_STATE":  # another process restored it first and renames it
                return
            raise
        self._rename_and_delete(exp.experiment_id, exp.name)

    def _rename_and_delete(self, exp_id: str, name: str) -> None:
        self.forget_experiment(exp_id)
        new_name = f"{name}-deleted-{exp_id}"
        try:
            retry(self.client.rename_experiment, exp_id, new_name)
        except Exception as exc:
            if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
            retry(self.client.rename_experiment, exp_id, f"{new_name}-{uuid.uuid4().hex[:8]}")
        retry(self.client.delete_experiment, exp_id)

    def _remember(self, name: str, exp_id: str) -> None:
        self._ids_by_name[name] = (str(exp_id), time.monotonic())

    def forget_experiment(self, experiment_id: str) -> None:
        """Drop the cached name lookups that point at ``experiment_id`` (deleted or found stale)."""
        for name, (exp_id, _) in list(self._ids_by_name.items()):
            if exp_id == str(experiment_id):
                self._ids_by_name.pop(name, None)

    def _get_exp(self, experiment_id: str | None, experiment_name: str | None) -> MlflowExperiment:
        if experiment_id is None:
            hit = self._ids_by_name.get(experiment_name)  # type: ignore[arg-type]
            if hit is not None and time.monotonic() - hit[1] < NAME_CACHE_SECONDS:
                return MlflowExperiment(hit[0], experiment_name, self)  # type: ignore[arg-type]
        exp = None
        if experiment_id is not None:
            try:
                exp = retry(self.client.get_experiment, str(experiment_id))
            except Exception as exc:
                if not (is_not_found(exc) or error_code(exc) == "INVALID_PARAMETER_VALUE"):
                    raise
        else:
            exp = retry(self.client.get_experiment_by_name, experiment_name)
        if exp is None or exp.lifecycle_stage != "active":
            what = f"id {experiment_id!r}" if experiment_id is not None else f"name {experiment_name!r}"
            known = sorted(e.name for e in self._list_experiments())
            shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
            raise ExpNotFoundError(f"no experiment with {what} in {self.uri}; existing: {shown or 'none'}")
        self._remember(exp.name, exp.experiment_id)
        return MlflowExperiment(exp.experiment_id, exp.name, self)

    def _active_experiments(self) -> list[Any]:
        """Every active MLflow experiment, page by page."""
        out, token = [], None
        while True:
            page = retry(self.client.search_experiments, view_type=1, max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _list_experiments(self) -> list[MlflowExperiment]:
        exps = [MlflowExperiment(e.experiment_id, e.name, self) for e in self._active_experiments()
                if not (str(e.experiment_id) == DEFAULT_EXPERIMENT_ID and self._is_empty(DEFAULT_EXPERIMENT_ID))]
        return sorted(exps, key=lambda e: _id_key(e.id))

    def _is_empty(self, exp_id: str) -> bool:
        # MLflow's own empty "Default" experiment is hidden, so a new store lists nothing, like qexp's others
        return not len(retry(self.client.search_runs, [exp_id], max_results=1))

    def _delete_exp(self, experiment_id: str) -> None:
        exp = retry(self.client.get_experiment, str(experiment_id))
        self._rename_and_delete(exp.experiment_id, exp.name)

    # ---- runs --------------------------------------------------------------------------------
    def _get_recorder_by_id(self, recorder_id: str) -> MlflowRecorder:
        try:
            run = retry(self.client.get_run, str(recorder_id))
        except Exception as exc:
            if is_not_found(exc) or error_code(exc) == "INVALID_PARAMETER_VALUE":
                raise RecorderNotFoundError(f"no run with id {recorder_id!r} in {self.uri}") from None
            raise
        if run.info.lifecycle_stage != "active":
            raise RecorderNotFoundError(f"run {recorder_id!r} in {self.uri} was deleted")
        return MlflowRecorder.from_run(self, run)

    def _track(self, recorder: MlflowRecorder) -> None:
        self._live.add(recorder)

    def flush_all(self) -> None:
        """Write the buffered metrics of every recorder of this store in this process (before a search)."""
        for rec in list(self._live):
            rec.flush()

    def search_records(self, experiment_ids: Iterable[str] | str | None = None, filter_string: str = "",
                       order_by: list[str] | str | None = None, max_results: int | None = None,
                       **kwargs: Any) -> pd.DataFrame:
        """Runs matching an MLflow filter, run by MLflow itself, as the DataFrame every backend returns.

        ``run_view_type`` (1 active, 2 deleted, 3 all) is passed to MLflow; qexp checks the filter's syntax
        first so errors look the same on every backend.
        """
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        if isinstance(order_by, str):
            order_by = [order_by]
        clauses = parse_filter(filter_string or "")
        orders = parse_order_by(list(order_by or []))
        ids = None if experiment_ids is None else [str(e) for e in experiment_ids]
        rows = self._search_rows(ids, clauses, orders, max_results, run_view_type=kwargs.get("run_view_type", 1))
        return runs_frame(rows)

    def _search_runs(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                     max_results: int | None) -> list[dict]:
        return self._search_rows(experiment_ids, clauses, orders, max_results)

    def _search_rows(self, experiment_ids: list[str] | None, clauses: list[Clause], orders: list[Order],
                     max_results: int | None, run_view_type: int = 1) -> list[dict]:
        return [search.run_to_row(r) for r in self._search_run_objects(experiment_ids, clauses, orders, max_results,
                                                                       run_view_type)]

    def _search_run_objects(self, experiment_ids: list[str] | None, clauses: list[Clause], orders: list[Order],
                            max_results: int | None, run_view_type: int = 1) -> list[Any]:
        self.flush_all()
        ids = [str(e.experiment_id) for e in self._active_experiments()] if experiment_ids is None else experiment_ids
        if not ids:
            return []
        if any(x.entity == "attributes" and x.key in ("status", "end_time") for x in [*clauses, *orders]):
            self._reap_dead(ids)  # before MLflow filters or sorts on a status that is out of date
        filter_string, local = search.split_clauses(clauses)
        mlflow_orders = search.orders_to_mlflow(orders)
        in_memory = bool(local) or mlflow_orders is None
        runs = [self._reaped(r) for r in search.iter_runs(self.client, ids, filter_string, mlflow_orders or None,
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

    def _reaped(self, run: Any) -> Any:
        """The run as it should read: FAILED (marked so now) when it is RUNNING and its process is gone."""
        if run.info.status != "RUNNING" or not owner_dead(run.data.tags):
            return run
        rec = MlflowRecorder(self, str(run.info.experiment_id), run.info.run_name)
        rec._load(run)
        return retry(self.client.get_run, run.info.run_id) if rec.reap_if_dead(run.data.tags) else run

    def _reap_dead(self, experiment_ids: list[str]) -> None:
        """Mark FAILED the RUNNING runs whose process is gone, before a search filters on status (MLflow
        alone would keep them RUNNING forever)."""
        for run in search.iter_runs(self.client, experiment_ids, "attributes.status = 'RUNNING'", None, None):
            rec = MlflowRecorder(self, str(run.info.experiment_id), run.info.run_name)
            rec._load(run)
            rec.reap_if_dead(run.data.tags)

    def _search_recorders(self, experiment_ids: list[str], clauses: list[Clause],
                          max_results: int | None) -> list[MlflowRecorder]:
        runs = self._search_run_objects(experiment_ids, clauses, [], max_results)
        out = []
        for run in runs:
            rec = MlflowRecorder(self, str(run.info.experiment_id), run.info.run_name)
            rec._load(run)
            out.append(rec)
        return out


def _id_key(exp_id: str) -> tuple[int, Any]:
    return (0, int(exp_id)) if str(exp_id).isdigit() else (1, str(exp_id))
