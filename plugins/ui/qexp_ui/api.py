"""JSON for the charts and the live updates (the pages render without it)."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from qexp.ext import QexpError

from .formatting import now_ms
from .quant import FAILURE_TAG
from .series import DEFAULT_POINTS, chart_payload
from .web import HTTPError, finite, heartbeat_ms, store_of

MAX_POINTS = 20_000


def _points(request: Request) -> int:
    try:
        return max(10, min(MAX_POINTS, int(request.query_params.get("points") or DEFAULT_POINTS)))
    except ValueError:
        return DEFAULT_POINTS


def _recorder(request: Request, run_id: str) -> Any:
    try:
        return store_of(request).recorder(run_id)
    except QexpError as exc:
        raise HTTPError(404, "Run not found", str(exc)) from None


def _version(request: Request, run_id: str, key: str) -> Any:
    def version() -> Any:
        row = store_of(request).run_row(run_id)
        return None if row is None else (row["status"], row["end_time"], row["metrics"].get(key))
    return version


def add_routes(app: FastAPI) -> None:
    @app.get("/api/runs/{run_id}/metric")
    def metric(request: Request, run_id: str, key: str) -> JSONResponse:
        """One metric's history, downsampled to ``points`` (min and max of each bucket kept)."""
        rec = _recorder(request, run_id)
        s = request.app.state.history.series(rec, key, version=_version(request, run_id, key))
        if not len(s):
            raise HTTPError(404, "No such metric", f"run {run_id} has no metric {key!r}")
        return JSONResponse(finite(chart_payload(key, s, _points(request))))

    @app.get("/api/runs/{run_id}/live")
    def live(request: Request, run_id: str) -> JSONResponse:
        """Status, latest metric values and heartbeat, polled by a live run's page."""
        st = store_of(request)
        row = st.run_row(run_id)
        if row is None:
            raise HTTPError(404, "Run not found", f"no run with id {run_id!r}")
        rec = _recorder(request, run_id)
        counts = request.app.state.history.counts(rec)
        metrics = dict(row["metrics"])
        return JSONResponse(finite({
            "run_id": run_id, "status": row["status"], "start_time": row["start_time"], "end_time": row["end_time"],
            "metrics": metrics, "metric_keys": sorted(set(metrics) | set(counts or {})), "counts": counts,
            "failure_reason": row["tags"].get(FAILURE_TAG), "heartbeat": heartbeat_ms(rec), "now": now_ms()}))

    @app.get("/api/compare/metric")
    def compare_metric(request: Request, key: str) -> JSONResponse:
        """One metric of several runs, each downsampled, for overlaid histories."""
        st = store_of(request)
        ids = [r for v in request.query_params.getlist("runs") for r in v.split(",") if r][:50]
        out = []
        for row in st.rows_for(ids):
            rec = _recorder(request, row["run_id"])
            s = request.app.state.history.series(rec, key, version=(row["status"], row["end_time"],
                                                                    row["metrics"].get(key)))
            if len(s):
                p = chart_payload(key, s, _points(request))
                p.update(run_id=row["run_id"], name=row["run_name"] or row["run_id"][:8])
                out.append(p)
        return JSONResponse(finite({"key": key, "series": out}))
