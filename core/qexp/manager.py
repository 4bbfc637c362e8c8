"""The abstract ExpManager: experiments in one store (one URI)."""
from __future__ import annotations

import math
import re
from typing import Any, Iterable

import pandas as pd

from .exceptions import AmbiguousRunIdError, ExpAlreadyExistError, ExpNotFoundError, RecorderNotFoundError
from .experiment import Experiment
from .paging import PageTokenError, offset_token, search_key, token_offset
from .recorder import Recorder
from .search import Clause, Order, parse_filter, parse_order_by

SEARCH_COLUMNS = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
MIN_ID_PREFIX = 4
"""The shortest run-id prefix looked up as a short id (git's minimum)."""
AMBIGUOUS_SHOWN = 10
_ID_PREFIX = re.compile(r"^[0-9A-Za-z\-]+$")  # no LIKE wildcards, no path separators


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
        assert experiment_name is not None  # no id was given, so a name was
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
        """A recorder by run id, whatever its experiment.

        A unique prefix of a run id (at least :data:`MIN_ID_PREFIX` characters, like git's short hashes;
        ``qexp runs list`` shows 8) finds its run too; a prefix several runs share raises
        :class:`AmbiguousRunIdError` listing them.
        """
        recorder_id = str(recorder_id)
        try:
            return self._get_recorder_by_id(recorder_id)
        except AmbiguousRunIdError:
            raise
        except RecorderNotFoundError:
            if not _ID_PREFIX.match(recorder_id):
                raise
            if len(recorder_id) < MIN_ID_PREFIX:
                raise RecorderNotFoundError(
                    f"no run with id {recorder_id!r} in {self.uri}: give at least {MIN_ID_PREFIX} characters of "
                    f"the run id (a unique prefix, like git's short hashes; qexp runs list shows 8)") from None
            matches = self._run_ids_with_prefix(recorder_id, limit=AMBIGUOUS_SHOWN + 1)
            if not matches:
                raise
        if len(matches) > 1:
            shown = ", ".join(matches[:AMBIGUOUS_SHOWN]) + (" ..." if len(matches) > AMBIGUOUS_SHOWN else "")
            raise AmbiguousRunIdError(f"run id {recorder_id!r} is ambiguous in {self.uri}: "
                                      f"{'more than ' if len(matches) > AMBIGUOUS_SHOWN else ''}"
                                      f"{min(len(matches), AMBIGUOUS_SHOWN)} runs start with it ({shown}); give "
                                      f"more characters")
        return self._get_recorder_by_id(matches[0])

    def _run_ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Ids of runs starting with ``prefix`` (at most ``limit``), for short ids. This default asks the
        backend's search with ``run_id LIKE 'prefix%'``; backends with a cheaper lookup override it."""
        clause = Clause("attributes", "run_id", "LIKE", prefix + "%")
        return [str(r["run_id"]) for r in self._search_runs(None, [clause], [], limit)]

    def search_rows(self, experiment_ids: Iterable[str] | str | None = None, filter_string: str = "",
                    order_by: list[str] | str | None = None, max_results: int | None = None,
                    page_token: str | None = None) -> RowsPage:
        """The runs :meth:`search_records` finds, as dicts (``run_id, experiment_id, status, artifact_uri,
        start_time, end_time, run_name`` and ``metrics``/``params``/``tags`` dicts). Unlike the DataFrame,
        a metric logged as NaN is present (``nan``) while one never logged is absent.

        Paging as :meth:`search_records`: the returned list's ``next_page_token`` continues the search and
        ``page_offset`` is the position of its first row in the whole result (None when the backend cannot
        tell)."""
        ids, order_by, clauses, orders = _search_query(experiment_ids, filter_string, order_by)
        token = None
        try:
            if max_results is None and page_token is None:
                rows = self._search_runs(ids, clauses, orders, None)
            else:
                rows, token = self._search_runs_page(ids, clauses, orders, max_results, page_token)
            offset = self._page_offset(ids, clauses, orders, page_token)
        except NotImplementedError:  # a backend answering only search_records: rows from its DataFrame
            df = self.search_records(ids, filter_string=filter_string, order_by=order_by, max_results=max_results,
                                     page_token=page_token)
            rows, token = frame_rows(df), df.attrs.get("next_page_token")
            offset = df.attrs.get("page_offset")
        page = RowsPage({**r, "metrics": dict(r.get("metrics") or {}), "params": dict(r.get("params") or {}),
                         "tags": dict(r.get("tags") or {})} for r in rows)
        page.next_page_token, page.page_offset = token, offset
        return page

    def search_records(self, experiment_ids: Iterable[str] | str | None = None, filter_string: str = "",
                       order_by: list[str] | str | None = None, max_results: int | None = None,
                       page_token: str | None = None, **kwargs: Any) -> pd.DataFrame:
        """Runs matching an MLflow-style filter, as a DataFrame shaped like ``mlflow.search_runs``:
        ``run_id, experiment_id, status, artifact_uri, start_time, end_time, metrics.*, params.*, tags.*``.

        ``experiment_ids=None`` searches every experiment. Paging: with ``max_results``, the frame's
        ``attrs["next_page_token"]`` continues the search (None after the last page); pass it back as
        ``page_token`` with the same experiments, filter and order. ``attrs["page_offset"]`` is the position
        of the page's first row in the whole result (0 without a token; None when the backend cannot tell).
        """
        ids, order_by, clauses, orders = _search_query(experiment_ids, filter_string, order_by)
        if max_results is None and page_token is None:
            rows, token = self._search_runs(ids, clauses, orders, None), None
        else:
            rows, token = self._search_runs_page(ids, clauses, orders, max_results, page_token)
        df = runs_frame(rows)
        df.attrs["next_page_token"] = token
        df.attrs["page_offset"] = self._page_offset(ids, clauses, orders, page_token)
        return df

    def list_deleted_experiments(self) -> list[Experiment] | None:
        """Experiments deleted but still kept by the store (MLflow soft-deletes them), or None when the
        backend keeps nothing of a deleted experiment (the file store removes its folder)."""
        return self._list_deleted_experiments()

    def run_stats(self, experiment_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per experiment id: ``counts`` by status, ``total`` and ``last_activity`` (latest start or end, ms),
        for overviews of large stores without loading every run."""
        return self._run_stats(None if experiment_ids is None else [str(e) for e in experiment_ids])

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

    def _search_runs_page(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                          max_results: int | None, page_token: str | None) -> tuple[list[dict], str | None]:
        """One page of a search and the token of the next (None at the end). This default reads up to the end
        of the page through ``_search_runs`` and cuts it; backends override it with a real offset or their
        native tokens."""
        key = search_key(experiment_ids, clauses, orders)
        offset = token_offset(page_token, key)
        if max_results is None:
            return self._search_runs(experiment_ids, clauses, orders, None)[offset:], None
        rows = self._search_runs(experiment_ids, clauses, orders, offset + max_results + 1)[offset:]
        more = len(rows) > max_results
        return rows[:max_results], offset_token(offset + max_results, key) if more else None

    def _page_offset(self, experiment_ids: list[str] | None, clauses: list, orders: list,
                     page_token: str | None) -> int | None:
        """The position in the whole result of the first row of the page ``page_token`` stands for (0 without
        a token), for row numbers; None when it cannot be told (a backend's own tokens: such backends
        override this). Called after the search accepted the token."""
        try:
            return token_offset(page_token, search_key(experiment_ids, clauses, orders))
        except PageTokenError:
            return None

    def _list_deleted_experiments(self) -> list[Experiment] | None:
        """Deleted experiments the store keeps; None: this backend keeps none."""
        return None

    def _run_stats(self, experiment_ids: list[str] | None) -> dict[str, dict[str, Any]]:
        """Counts by status and last activity per experiment; this default reads every run once."""
        out: dict[str, dict[str, Any]] = {}
        for r in self._search_runs(experiment_ids, [], [], None):
            s = out.setdefault(str(r["experiment_id"]), {"counts": {}, "total": 0, "last_activity": None})
            s["counts"][r["status"]] = s["counts"].get(r["status"], 0) + 1
            s["total"] += 1
            times = [t for t in (r.get("start_time"), r.get("end_time")) if t is not None]
            if times:
                s["last_activity"] = max(times + ([s["last_activity"]] if s["last_activity"] else []))
        return out


class RowsPage(list):
    """The rows of one :meth:`ExpManager.search_rows` call: a list, plus ``next_page_token`` (None after the
    last page) and ``page_offset`` (the position of its first row in the whole result)."""

    next_page_token: str | None = None
    page_offset: int | None = 0


def _search_query(experiment_ids: Iterable[str] | str | None, filter_string: str,
                  order_by: list[str] | str | None
                  ) -> tuple[list[str] | None, list[str] | None, list[Clause], list[Order]]:
    """A search's arguments as the backends take them: the experiment ids (None: all) as strings, ``order_by``
    as a list, and the parsed filter clauses and order."""
    if isinstance(experiment_ids, str):
        experiment_ids = [experiment_ids]
    if isinstance(order_by, str):
        order_by = [order_by]
    clauses = parse_filter(filter_string or "")
    orders = parse_order_by(order_by or [])
    ids = None if experiment_ids is None else [str(e) for e in experiment_ids]
    return ids, order_by, clauses, orders


def frame_rows(df: pd.DataFrame) -> list[dict]:
    """Search rows back from a :func:`runs_frame` DataFrame (a NaN metric reads as never logged there)."""
    out = []
    for rec in df.to_dict(orient="records"):
        row: dict = {k: rec.get(k) for k in SEARCH_COLUMNS}
        for col in ("start_time", "end_time"):
            v = row[col]
            row[col] = None if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)) \
                else int(pd.Timestamp(v).value // 1_000_000)
        for kind in ("metrics", "params", "tags"):
            prefix = kind + "."
            row[kind] = {k[len(prefix):]: v for k, v in rec.items() if k.startswith(prefix)
                         and not (v is None or (isinstance(v, float) and math.isnan(v)))}
        row["run_name"] = row["tags"].get("mlflow.runName")
        out.append(row)
    return out


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
