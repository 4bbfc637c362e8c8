"""The abstract ExpManager: experiments in one store (one URI)."""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from .exceptions import ExpAlreadyExistError, ExpNotFoundError, RecorderNotFoundError
from .experiment import Experiment
from .recorder import Recorder
from .search import parse_filter, parse_order_by

SEARCH_COLUMNS = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]


class ExpManager:
    """Experiments of one store. Backends implement ``_create_exp``, ``_get_exp``,
    ``_list_experiments``, ``_delete_exp``, ``_get_recorder_by_id`` and ``_search_runs``."""

    def __init__(self, uri: str, default_exp_name: str = "Experiment"):
        self.uri = uri
        self.default_exp_name = default_exp_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(uri={self.uri!r})"

    # ---- experiments -------------------------------------------------------------------------
    def create_exp(self, experiment_name: str | None = None) -> Experiment:
        """Create an experiment; :class:`ExpAlreadyExistError` if the name is taken."""
        name = experiment_name or self.default_exp_name
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"experiment name must be a non-empty string, got {name!r}")
        return self._create_exp(name)

    def get_exp(self, *, experiment_id: str | None = None, experiment_name: str | None = None,
                create: bool = True) -> Experiment:
        """By id or name (the default name when neither is given); ``create`` makes a missing one by name."""
        if experiment_id is None and experiment_name is None:
            experiment_name = self.default_exp_name
        try:
            return self._get_exp(experiment_id, experiment_name)
        except ExpNotFoundError:
            if not create or experiment_id is not None:
                raise
        try:
            return self._create_exp(experiment_name)
        except ExpAlreadyExistError:  # another process created it between our get and create
            return self._get_exp(None, experiment_name)

    def list_experiments(self) -> dict[str, Experiment]:
        """Active experiments by name; never creates anything."""
        return {e.name: e for e in self._list_experiments()}

    def delete_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> None:
        """Delete an experiment and its runs; its name can be used again afterwards."""
        if experiment_id is None and experiment_name is None:
            raise ValueError("delete_exp needs experiment_id or experiment_name")
        exp = self._get_exp(experiment_id, experiment_name)
        self._delete_exp(exp.id)

    # ---- runs across experiments -------------------------------------------------------------
    def get_recorder_by_id(self, recorder_id: str) -> Recorder:
        """A recorder by run id, whatever its experiment."""
        return self._get_recorder_by_id(recorder_id)

    def search_records(self, experiment_ids: Iterable[str] | str | None = None, filter_string: str = "",
                       order_by: list[str] | str | None = None, max_results: int | None = None,
                       **kwargs: Any) -> pd.DataFrame:
        """Runs matching an MLflow-style filter, as a DataFrame shaped like ``mlflow.search_runs``:
        ``run_id, experiment_id, status, artifact_uri, start_time, end_time, metrics.*, params.*, tags.*``.

        ``experiment_ids=None`` searches every experiment.
        """
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        if isinstance(order_by, str):
            order_by = [order_by]
        clauses = parse_filter(filter_string or "")
        orders = parse_order_by(order_by or [])
        rows = self._search_runs(None if experiment_ids is None else [str(e) for e in experiment_ids],
                                 clauses, orders, max_results)
        return runs_frame(rows)

    # ---- backend primitives ------------------------------------------------------------------
    def _create_exp(self, name: str) -> Experiment:
        raise NotImplementedError

    def _get_exp(self, experiment_id: str | None, experiment_name: str | None) -> Experiment:
        raise NotImplementedError

    def _list_experiments(self) -> list[Experiment]:
        raise NotImplementedError

    def _delete_exp(self, experiment_id: str) -> None:
        raise NotImplementedError

    def _get_recorder_by_id(self, recorder_id: str) -> Recorder:
        raise RecorderNotFoundError(f"no run with id {recorder_id!r} in {self.uri}")

    def _search_runs(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                     max_results: int | None) -> list[dict]:
        """Rows: dicts with ``run_id, experiment_id, status, artifact_uri, start_time, end_time`` (ms) and
        ``metrics``, ``params``, ``tags`` dicts."""
        raise NotImplementedError


def runs_frame(rows: list[dict]) -> pd.DataFrame:
    """Turn search rows into the ``mlflow.search_runs``-shaped DataFrame (same columns for every backend)."""
    if not rows:
        return pd.DataFrame(columns=SEARCH_COLUMNS)
    base = pd.DataFrame([{k: r.get(k) for k in SEARCH_COLUMNS} for r in rows], columns=SEARCH_COLUMNS)
    for col in ("start_time", "end_time"):
        base[col] = pd.to_datetime(base[col], unit="ms", utc=True)
    parts = [base]
    for kind in ("metrics", "params", "tags"):
        keys = sorted({k for r in rows for k in (r.get(kind) or {})})
        if keys:
            data = {f"{kind}.{k}": [(r.get(kind) or {}).get(k) for r in rows] for k in keys}
            frame = pd.DataFrame(data, index=base.index)
            if kind == "metrics":
                frame = frame.astype("float64")
            parts.append(frame)
    return pd.concat(parts, axis=1)
