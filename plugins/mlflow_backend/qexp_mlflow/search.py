"""Searching runs in MLflow: qexp's parsed filter is written back as an MLflow filter string and run by
MLflow's own query engine (SQL on a database store), paginated past MLflow's 50000-runs-per-page cap.

qexp's grammar is MLflow's, with a few clauses MLflow cannot run (``status IN (...)``, ``run_name IN``,
``attributes.experiment_id``, a string holding both quote kinds, a key holding a backtick). Those are
evaluated in memory on the rows MLflow returns for the rest of the filter.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

from qexp.ext import Clause, Order, matches, row_value

PAGE_MAX = 50_000  # SEARCH_MAX_RESULTS_THRESHOLD: MLflow refuses larger pages
MLFLOW_ATTRS = {"status", "run_name", "run_id", "artifact_uri", "user_id", "start_time", "end_time"}
MLFLOW_ORDER_ATTRS = {"status", "run_name", "run_id", "artifact_uri", "user_id", "start_time", "end_time"}


def _quote_key(key: str) -> str | None:
    return None if "`" in key else f"`{key}`"


def _quote_value(value: str) -> str | None:
    # MLflow strips one pair of quotes and knows no escapes: pick the quote kind the value lacks
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


def _number(v: float) -> str:
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v)).replace("e+", "e")  # MLflow's filter parser reads 1e300 but not 1e+300


def clause_to_mlflow(c: Clause) -> str | None:
    """The clause in MLflow's syntax, or None when MLflow cannot evaluate it."""
    if c.entity == "attributes":
        if c.key not in MLFLOW_ATTRS:
            return None
        if c.op in ("IN", "NOT IN"):
            if c.key != "run_id":
                return None
            vals = [_quote_value(v) for v in c.value]
            if any(v is None for v in vals):
                return None
            return f"attributes.run_id {c.op} ({', '.join(vals)})"  # type: ignore[arg-type]
        if c.key in ("start_time", "end_time"):
            return f"attributes.{c.key} {c.op} {_number(c.value)}"
        val = _quote_value(c.value)
        return None if val is None else f"attributes.{c.key} {c.op} {val}"
    key = _quote_key(c.key)
    if key is None:
        return None
    if c.entity == "metrics":
        if not math.isfinite(float(c.value)):
            return None  # MLflow's parser has no inf/nan literal: compared in memory
        return f"metrics.{key} {c.op} {_number(c.value)}"
    val = _quote_value(c.value)
    return None if val is None else f"{c.entity}.{key} {c.op} {val}"


def split_clauses(clauses: list[Clause]) -> tuple[str, list[Clause]]:
    """``(MLflow filter string, clauses to evaluate in memory)``."""
    pushed, local = [], []
    for c in clauses:
        s = clause_to_mlflow(c)
        if s is None:
            local.append(c)
        else:
            pushed.append(s)
    return " AND ".join(pushed), local


def order_to_mlflow(o: Order) -> str | None:
    direction = "ASC" if o.ascending else "DESC"
    if o.entity == "attributes":
        return f"attributes.{o.key} {direction}" if o.key in MLFLOW_ORDER_ATTRS else None
    key = _quote_key(o.key)
    return None if key is None else f"{o.entity}.{key} {direction}"


def orders_to_mlflow(orders: list[Order]) -> list[str] | None:
    """MLflow order_by strings, or None when one of them must be sorted in memory."""
    out = [order_to_mlflow(o) for o in orders]
    return None if any(o is None for o in out) else out  # type: ignore[return-value]


def sort_rows(rows: list[dict], orders: list[Order]) -> list[dict]:
    """In-memory sort with MLflow's rules: missing values last, then newest first, then run id."""
    rows = sorted(rows, key=lambda r: r["run_id"])
    rows = sorted(rows, key=lambda r: -(r.get("start_time") or 0))
    for o in reversed(orders):
        present = [r for r in rows if row_value(r, o.entity, o.key) is not None]
        missing = [r for r in rows if row_value(r, o.entity, o.key) is None]
        present.sort(key=lambda r: _sort_key(row_value(r, o.entity, o.key), o.key), reverse=not o.ascending)
        rows = present + missing
    return rows


def _sort_key(value: Any, key: str) -> Any:
    # experiment ids are numbers in MLflow's SQL stores: "10" after "9"
    if key == "experiment_id" and isinstance(value, str) and value.isdigit():
        return (0, int(value), "")
    return (1, 0, value) if key == "experiment_id" else value


def iter_runs(client: Any, experiment_ids: list[str], filter_string: str, order_by: list[str] | None,
              max_results: int | None, run_view_type: int = 1) -> Iterator[Any]:
    """MLflow ``Run`` objects page by page, ``max_results`` in all (None: every match)."""
    from .client import retry
    token = None
    remaining = max_results
    while remaining is None or remaining > 0:
        size = PAGE_MAX if remaining is None else min(PAGE_MAX, remaining)
        page = retry(client.search_runs, experiment_ids, filter_string=filter_string, run_view_type=run_view_type,
                     max_results=size, order_by=order_by or None, page_token=token)
        yield from page
        if remaining is not None:
            remaining -= len(page)
        token = page.token
        if not token or not len(page):
            return


def run_to_row(run: Any) -> dict:
    """A search row (the shape ``qexp.manager.runs_frame`` takes) from an MLflow ``Run``."""
    info, data = run.info, run.data
    status = info.status
    return {"run_id": info.run_id, "experiment_id": str(info.experiment_id), "status": status,
            "artifact_uri": info.artifact_uri, "start_time": info.start_time,
            # a resumed run keeps its previous end time in MLflow; a RUNNING run has no end
            "end_time": None if status == "RUNNING" else info.end_time,
            "run_name": info.run_name, "user_id": info.user_id,
            "metrics": {k: inf_back(v) for k, v in data.metrics.items()}, "params": dict(data.params),
            "tags": dict(data.tags)}


_FLOAT_MAX = 1.7976931348623157e308


def inf_back(v: float) -> float:
    """A metric value as logged: MLflow's SQL store keeps +-inf as +-sys.float_info.max (so its filters still
    compare), which every reader turns back into +-inf."""
    return v if abs(v) != _FLOAT_MAX else (float("inf") if v > 0 else float("-inf"))


def filter_rows(rows: list[dict], local: list[Clause]) -> list[dict]:
    return [r for r in rows if all(matches(c, r) for c in local)] if local else rows
