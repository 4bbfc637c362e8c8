"""MlflowExpManager: experiments of one MLflow tracking store, through the store's ``MlflowClient``.

Deleted names are reusable: MLflow only soft-deletes an experiment and keeps its name taken (mlflow #2651,
a Qlib complaint). qexp renames an experiment to ``<name>-deleted-<id>`` as it deletes it, and, when a
name is held by an experiment deleted by other tools, restores it, renames it the same way and deletes it
again before creating the new one. The old runs stay recoverable under the new name.
"""
from __future__ import annotations

import random
import time
import uuid
from typing import Any, Iterable

import pandas as pd

from qexp.ext import (
    MAX_PAGE_OFFSET,
    Clause,
    ExpAlreadyExistError,
    Experiment,
    ExpManager,
    ExpNotFoundError,
    Order,
    PageTokenError,
    QexpError,
    parse_filter,
    parse_order_by,
    runs_frame,
    search_key,
)

from . import runs, search, sql
from .client import error_code, is_not_found, retry
from .experiment import MlflowExperiment
from .recorder import MlflowRecorder
from .store import MlflowStore

DEFAULT_EXPERIMENT_ID = "0"  # the "Default" experiment MLflow puts in every new store
CREATE_ATTEMPTS = 8


class MlflowExpManager(ExpManager):
    """Experiments in an MLflow store: ``sqlite:///path.db``, ``postgresql://...``, ``http(s)://server``...

    ``artifact_root`` (or ``$QEXP_MLFLOW_ARTIFACT_ROOT``) is where new experiments keep artifacts; by
    default ``mlartifacts/`` next to a SQLite file, and the server's (or MLflow's) choice otherwise.
    """

    def __init__(self, uri: str, default_exp_name: str = "Experiment", artifact_root: str | None = None,
                 **kwargs: Any):
        self.store = MlflowStore(uri, artifact_root=artifact_root)
        super().__init__(self.store.uri, default_exp_name)

    @property
    def client(self) -> Any:
        return self.store.client

    @property
    def artifact_root(self) -> str | None:
        return self.store.artifact_root

    # ---- experiments -------------------------------------------------------------------------
    def _create_exp(self, name: str) -> MlflowExperiment:
        for attempt in range(CREATE_ATTEMPTS):
            try:
                exp_id = retry(self.client.create_experiment, name, artifact_location=self._new_artifact_location())
                self.store.remember(name, exp_id)
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
        root = self.store.artifact_root
        return f"{root.rstrip('/')}/{uuid.uuid4().hex}" if root else None

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
        self.store.forget_experiment(exp_id)
        new_name = f"{name}-deleted-{exp_id}"
        try:
            retry(self.client.rename_experiment, exp_id, new_name)
        except Exception as exc:
            if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
            retry(self.client.rename_experiment, exp_id, f"{new_name}-{uuid.uuid4().hex[:8]}")
        retry(self.client.delete_experiment, exp_id)

    def _get_exp(self, experiment_id: str | None, experiment_name: str | None) -> MlflowExperiment:
        if experiment_id is None and experiment_name is not None:
            cached = self.store.cached_id(experiment_name)
            if cached is not None:
                return MlflowExperiment(cached, experiment_name, self)
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
        self.store.remember(exp.name, exp.experiment_id)
        return MlflowExperiment(exp.experiment_id, exp.name, self)

    def _list_experiments(self) -> list[Experiment]:
        exps: list[Experiment] = [MlflowExperiment(e.experiment_id, e.name, self) for e in self.store.active_experiments()
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
        return runs.get_recorder_by_id(self.store, recorder_id)

    def flush_all(self) -> None:
        """Write the buffered metrics of every recorder of this store in this process (before a search)."""
        self.store.flush_all()

    def search_records(self, experiment_ids: Iterable[str] | str | None = None, filter_string: str = "",
                       order_by: list[str] | str | None = None, max_results: int | None = None,
                       page_token: str | None = None, **kwargs: Any) -> pd.DataFrame:
        """Runs matching an MLflow filter, run by MLflow itself, as the DataFrame every backend returns.

        ``run_view_type`` (1 active, 2 deleted, 3 all) is passed to MLflow; qexp checks the filter's syntax
        first so errors look the same on every backend. Paging as on every backend: ``attrs["next_page_token"]``.
        """
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        if isinstance(order_by, str):
            order_by = [order_by]
        clauses = parse_filter(filter_string or "")
        orders = parse_order_by(list(order_by or []))
        ids = None if experiment_ids is None else [str(e) for e in experiment_ids]
        view = kwargs.get("run_view_type", 1)
        if max_results is None and page_token is None:
            rows, token = runs.search_rows(self.store, ids, clauses, orders, None, run_view_type=view), None
        else:
            rows, token = self._search_runs_page(ids, clauses, orders, max_results, page_token, run_view_type=view)
        df = runs_frame(rows)
        df.attrs["next_page_token"] = token
        df.attrs["page_offset"] = self._page_offset(ids, clauses, orders, page_token)
        return df

    def _search_runs(self, experiment_ids: list[str] | None, clauses: list[Clause], orders: list[Order],
                     max_results: int | None) -> list[dict]:
        return runs.search_rows(self.store, experiment_ids, clauses, orders, max_results)

    def _search_runs_page(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                          max_results: int | None, page_token: str | None,
                          run_view_type: int = 1) -> tuple[list[dict], str | None]:
        """MLflow's own page tokens when MLflow runs the whole search (its SQL pages with LIMIT/OFFSET);
        qexp's offset tokens over the in-memory part otherwise."""
        filter_string, local = search.split_clauses(clauses)
        mlflow_orders = search.orders_to_mlflow(orders)
        native = not local and mlflow_orders is not None and max_results is not None and max_results <= search.PAGE_MAX
        prefix = _token_prefix(experiment_ids, clauses, orders)
        if not native or (page_token and not page_token.startswith("mlflow:")):
            return super()._search_runs_page(experiment_ids, clauses, orders, max_results, page_token)
        offset, native_token = _split_token(page_token, prefix)
        self.flush_all()
        ids = [str(e.experiment_id) for e in self.store.active_experiments()] if experiment_ids is None \
            else experiment_ids
        if not ids:
            return [], None
        if any(x.entity == "attributes" and x.key in ("status", "end_time") for x in [*clauses, *orders]):
            runs.reap_dead(self.store, ids)
        try:
            page = retry(self.client.search_runs, ids, filter_string=filter_string, run_view_type=run_view_type,
                         max_results=max_results, order_by=mlflow_orders or None, page_token=native_token)
        except Exception as exc:
            if native_token and error_code(exc) == "INVALID_PARAMETER_VALUE":  # MLflow refused its own token
                raise PageTokenError(f"page_token is not a page token of this store ({exc}); start from the "
                                     f"first page (no page_token)") from None
            raise
        rows = [search.run_to_row(runs.reaped(self.store, r)) for r in page]
        token = page.token.decode() if isinstance(page.token, bytes) else page.token  # bytes from SQL stores
        if not token or len(rows) != max_results:
            return rows, None
        return rows, f"{prefix}{offset + len(rows)}:{token}"

    def _run_stats(self, experiment_ids: list[str] | None) -> dict[str, dict[str, Any]]:
        """One GROUP BY on a database store (runs of dead processes marked FAILED first); through a server,
        the default (reads every run)."""
        engine = sql.engine_of(self.client)
        if engine is None:
            return super()._run_stats(experiment_ids)
        self.flush_all()
        ids = [str(e.experiment_id) for e in self.store.active_experiments()] if experiment_ids is None \
            else experiment_ids
        if ids:
            runs.reap_dead(self.store, ids)
        return retry(sql.run_stats, engine, experiment_ids)

    def _page_offset(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                     page_token: str | None) -> int | None:
        if page_token and page_token.startswith("mlflow:"):
            try:
                return _split_token(page_token, _token_prefix(experiment_ids, clauses, orders))[0]
            except PageTokenError:
                return None
        return super()._page_offset(experiment_ids, clauses, orders, page_token)

    def _list_deleted_experiments(self) -> list[Experiment]:
        """MLflow keeps deleted experiments (qexp renamed them ``<name>-deleted-<id>``)."""
        return [MlflowExperiment(e.experiment_id, e.name, self) for e in self.store.experiments(view_type=2)]


def _token_prefix(experiment_ids: list[str] | None, clauses: list, orders: list) -> str:
    return f"mlflow:{search_key(experiment_ids, clauses, orders)}:"


def _split_token(page_token: str | None, prefix: str) -> tuple[int, str | None]:
    """``(offset, MLflow's own token)`` of a qexp page token ``mlflow:<search key>:<offset>:<MLflow token>``;
    :class:`PageTokenError` for a token of another search or a damaged one."""
    if not page_token:
        return 0, None
    if not page_token.startswith(prefix):
        raise PageTokenError("page_token belongs to another search (its experiments, filter or order "
                             "differ); pass the same search again, or start from the first page")
    offset, _, native = page_token[len(prefix):].partition(":")
    inner = _native_offset(native)
    if not offset.isdigit() or not native or not 0 <= int(offset) < MAX_PAGE_OFFSET or inner not in (None, int(offset)):
        raise PageTokenError(f"page_token {page_token[:40]!r} is not a page token of this store; start from the "
                             f"first page (no page_token)")
    return int(offset), native


def _native_offset(native: str) -> int | None:
    """The offset inside MLflow's own token (base64 JSON ``{"offset": n}`` in its SQL, file and REST stores);
    -1 when it is out of range (a forged one: SQLite fails on it with an internal error); None when the token
    has another form."""
    import base64
    import binascii
    import json
    try:
        data = json.loads(base64.b64decode(native + "=" * (-len(native) % 4), validate=True))
    except (ValueError, binascii.Error):
        return None
    offset = data.get("offset") if isinstance(data, dict) else None
    if not isinstance(offset, int) or isinstance(offset, bool):
        return None
    return offset if 0 <= offset < MAX_PAGE_OFFSET else -1


def _id_key(exp_id: str) -> tuple[int, Any]:
    return (0, int(exp_id)) if str(exp_id).isdigit() else (1, str(exp_id))
