"""Reads straight from MLflow's own tables when the store is a database (SQLite, PostgreSQL, MySQL/MariaDB),
for what MlflowClient answers slowly: run counts per experiment (one GROUP BY instead of reading every run)
and long metric histories (one query into arrays instead of an ORM object per point, ~50 us each).

Only reads, only through the SQLAlchemy engine of MLflow's own store object; every function returns None
when the store is not a database (an MLflow server: the caller goes through the client, as before).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

_FLOAT_MAX = 1.7976931348623157e308  # MLflow's SQL store keeps +-inf as +-float max


def engine_of(client: Any) -> Any | None:
    """The SQLAlchemy engine of the client's tracking store, or None (a server, or another store)."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:  # pragma: no cover - comes with mlflow
        return None
    return getattr(store, "engine", None) if isinstance(store, SqlAlchemyStore) else None


def run_stats(engine: Any, experiment_ids: list[str] | None) -> dict[str, dict[str, Any]]:
    """Per active experiment: run counts by status, total and last activity (latest start, or end of a run
    that is not running: MLflow keeps a resumed run's previous end), ms; active runs only."""
    from sqlalchemy import bindparam, text
    sql = ("SELECT r.experiment_id, r.status, COUNT(*), MAX(r.start_time), "
           "MAX(CASE WHEN r.status <> 'RUNNING' THEN r.end_time END) FROM runs r "
           "JOIN experiments e ON e.experiment_id = r.experiment_id "
           "WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'")
    params: dict[str, Any] = {}
    if experiment_ids is not None:
        ids = [int(e) for e in experiment_ids if str(e).isdigit()]
        if not ids:
            return {}
        sql += " AND r.experiment_id IN :ids"
        params["ids"] = ids
    stmt = text(sql + " GROUP BY r.experiment_id, r.status")
    if "ids" in params:
        stmt = stmt.bindparams(bindparam("ids", expanding=True))
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for exp_id, status, n, started, ended in conn.execute(stmt, params):
            s = out.setdefault(str(exp_id), {"counts": {}, "total": 0, "last_activity": None})
            s["counts"][status] = int(n)
            s["total"] += int(n)
            last = max((int(t) for t in (started, ended, s["last_activity"]) if t is not None), default=None)
            s["last_activity"] = last
    return out


def metric_history(engine: Any, run_id: str, key: str, since_ts: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, values, timestamps)`` of a run's metric in MLflow's order (timestamp, step, value), from
    ``since_ts`` on when given; +-inf and NaN as logged."""
    q = _quoter(engine)
    sql = (f"SELECT {q('step')}, {q('value')}, {q('timestamp')}, {q('is_nan')} FROM metrics "
           f"WHERE run_uuid = ? AND {q('key')} = ?")
    args: tuple[Any, ...] = (run_id, key)
    if since_ts is not None:
        sql += f" AND {q('timestamp')} >= ?"
        args += (int(since_ts),)
    sql += f" ORDER BY {q('timestamp')}, {q('step')}, {q('value')}"
    rows = _fetch(engine, sql, args)
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64)
    a = np.array(rows, dtype=np.float64) if len(rows) < 1000 else _columns(rows)
    steps, values, stamps, is_nan = a[:, 0].astype(np.int64), a[:, 1].copy(), a[:, 2].astype(np.int64), a[:, 3]
    values[is_nan != 0] = math.nan
    values[values == _FLOAT_MAX] = math.inf
    values[values == -_FLOAT_MAX] = -math.inf
    return steps, values, stamps


def metric_count(engine: Any, run_id: str, key: str) -> int:
    q = _quoter(engine)
    rows = _fetch(engine, f"SELECT COUNT(*) FROM metrics WHERE run_uuid = ? AND {q('key')} = ?", (run_id, key))
    return int(rows[0][0])


def last_metric_ms(engine: Any, run_id: str) -> int | None:
    """When the run last logged a metric point (its largest timestamp), or None."""
    q = _quoter(engine)
    rows = _fetch(engine, f"SELECT MAX({q('timestamp')}) FROM metrics WHERE run_uuid = ?", (run_id,))
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def _quoter(engine: Any) -> Any:
    """Quotes column names in the database's way (``key`` is a reserved word in MySQL)."""
    prep = engine.dialect.identifier_preparer
    return prep.quote_identifier


def _columns(rows: list[tuple]) -> np.ndarray:
    # a million tuples: numpy builds the array column by column faster than from the list of tuples
    cols = list(zip(*rows))
    return np.column_stack([np.asarray(c, dtype=np.float64) for c in cols])


def _fetch(engine: Any, sql: str, args: tuple) -> list[tuple]:
    """Rows of one query through the driver's own cursor (``?`` placeholders rewritten for its paramstyle)."""
    style = engine.dialect.paramstyle
    if style in ("format", "pyformat"):
        sql = sql.replace("?", "%s")
    elif style == "named":
        names = iter(range(len(args)))
        sql = "".join(f":p{next(names)}" if ch == "?" else ch for ch in sql)
        args = {f"p{i}": v for i, v in enumerate(args)}  # type: ignore[assignment]
    with engine.connect() as conn:
        cur = conn.connection.cursor()
        try:
            cur.execute(sql, args)
            return cur.fetchall()
        finally:
            cur.close()
