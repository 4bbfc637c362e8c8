"""JSON for the charts and the live updates (the pages render without it)."""
from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from qexp.ext import FAILURE_TAG

from .formatting import now_ms
from .series import DEFAULT_POINTS, chart_payload
from .table import available_keys
from .web import HTTPError, json_response, recorder_of, run_ids, store_of

MAX_POINTS = 20_000
MAX_COMPARE = 50
KEY_SAMPLE_RUNS = 500      # latest runs whose keys the column chooser offers
KEY_SAMPLE_SECONDS = 30.0


def _points(request: Request) -> int:
    try:
        return max(10, min(MAX_POINTS, int(request.query_params.get("points") or DEFAULT_POINTS)))
    except ValueError:
        return DEFAULT_POINTS


def add_routes(app: FastAPI) -> None:
    @app.get("/api/keys")
    def keys(request: Request) -> JSONResponse:
        """Metric, param and tag keys of the latest runs of the experiments ``exp`` (every experiment without
        one), for the runs table's column chooser: keys of runs on other pages than the one shown."""
        st = store_of(request)
        exp_ids = [e for e in request.query_params.getlist("exp") if e]
        cache = request.app.state.key_samples
        hit = cache.get(tuple(exp_ids))
        if hit is None or time.monotonic() > hit[0]:
            names = st.experiment_names()
            if any(e not in names for e in exp_ids):
                raise HTTPError(404, "Experiment not found", f"no experiment with id {', '.join(exp_ids)}")
            rows = st.manager.search_rows(exp_ids or None, max_results=KEY_SAMPLE_RUNS)
            hit = cache[tuple(exp_ids)] = (time.monotonic() + KEY_SAMPLE_SECONDS, available_keys(rows))
        return json_response({**hit[1], "runs": KEY_SAMPLE_RUNS})

    @app.get("/api/runs/{run_id}/metric")
    def metric(request: Request, run_id: str, key: str) -> JSONResponse:
        """One metric's history, downsampled to ``points`` (min and max of each bucket kept)."""
        rec = recorder_of(request, run_id)
        s = request.app.state.history.series(rec, key)
        if not len(s):
            raise HTTPError(404, "No such metric", f"run {run_id} has no metric {key!r}")
        return json_response(chart_payload(key, s, _points(request)))

    @app.get("/api/runs/{run_id}/live")
    def live(request: Request, run_id: str) -> JSONResponse:
        """Status, latest metric values, points per charted metric and heartbeat, polled by a live run's
        page."""
        row = store_of(request).run_row(run_id)
        if row is None:
            raise HTTPError(404, "Run not found", f"no run with id {run_id!r}")
        rec = recorder_of(request, run_id)
        metrics: dict[str, Any] = dict(row["metrics"])
        return json_response({
            "run_id": run_id, "status": row["status"], "start_time": row["start_time"], "end_time": row["end_time"],
            "metrics": metrics, "metric_keys": sorted(metrics), "counts": request.app.state.history.counts(rec),
            "failure_reason": row["tags"].get(FAILURE_TAG),
            "heartbeat": rec.last_heartbeat_ms() if row["status"] == "RUNNING" else None, "now": now_ms()})

    @app.get("/api/compare/metric")
    def compare_metric(request: Request, key: str) -> JSONResponse:
        """One metric of several runs, each downsampled, for overlaid histories."""
        st = store_of(request)
        out = []
        for row in st.rows_for(run_ids(request, MAX_COMPARE)):
            if key not in row["metrics"]:
                continue
            s = request.app.state.history.series(recorder_of(request, row["run_id"]), key)
            if len(s):
                p = chart_payload(key, s, _points(request))
                p.update(run_id=row["run_id"], name=row["run_name"] or row["run_id"][:8])
                out.append(p)
        return json_response({"key": key, "series": out})
