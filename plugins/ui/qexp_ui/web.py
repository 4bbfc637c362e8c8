"""What every route module shares: page errors, rendering, the store and run lookups, JSON for pages.
(The route modules import this, never each other or ``app``, so the package has no import cycle.)"""
from __future__ import annotations

import json
import math
import os
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from qexp.ext import QexpError

from .store import UIStore, not_found


class HTTPError(Exception):
    """A page-level error with its status and a readable message (400 bad filter, 404 unknown run)."""

    def __init__(self, status: int, title: str, message: str = ""):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def error_response(request: Request, status: int, title: str, message: str) -> Response:
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", "text/html"):
        return JSONResponse({"error": title, "detail": message}, status_code=status)
    templates = request.app.state.templates
    return templates.TemplateResponse(request, "error.html", {"status": status, "title": title, "message": message},
                                      status_code=status)


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    resp = request.app.state.templates.TemplateResponse(request, template, ctx, status_code=status)
    return resp


def store_of(request: Request) -> UIStore:
    return request.app.state.store


def load_run(request: Request, run_id: str) -> tuple[dict[str, Any], Any]:
    """The run's search row and its recorder; a 404 page when the id is unknown."""
    st = store_of(request)
    row = st.run_row(run_id)
    if row is None:
        raise HTTPError(404, "Run not found", f"no run with id {run_id!r} in {st.manager.uri}")
    try:
        rec = st.recorder(run_id)
    except QexpError as exc:
        if not_found(exc):
            raise HTTPError(404, "Run not found", str(exc)) from None
        raise
    return row, rec


def heartbeat_ms(rec: Any) -> int | None:
    """When the run's process last showed it was alive, where the store records it (the file store's
    heartbeat file); None elsewhere."""
    try:
        folder = rec.get_local_dir()
    except (RuntimeError, NotImplementedError, AttributeError):
        return None
    for name in ("heartbeat", "meta.json"):
        try:
            return int(os.path.getmtime(os.path.join(folder, name)) * 1000)
        except OSError:
            continue
    return None


def live_info(st: UIStore, rows: list[dict[str, Any]]) -> dict[str, int | None]:
    """Heartbeats of the RUNNING rows on a page."""
    out = {}
    for r in rows:
        if r["status"] == "RUNNING":
            try:
                out[r["run_id"]] = heartbeat_ms(st.recorder(r["run_id"]))
            except QexpError:
                out[r["run_id"]] = None
    return out


def json_script(data: Any) -> str:
    """JSON for a ``<script type="application/json">`` block (``</`` escaped so it cannot end the block)."""
    return json.dumps(finite(data), allow_nan=False, default=str).replace("</", "<\\/")


def finite(data: Any) -> Any:
    """NaN and infinities as None (JSON has neither; a chart shows a gap)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data
