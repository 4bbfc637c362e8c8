"""What every route module shares: page errors, rendering, the store and run lookups, JSON for pages.
(The route modules import this, never each other or ``app``, so the package has no import cycle.)"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from qexp.ext import QexpError

from .store import RUN_ID, UIStore, not_found

# as Django's json_script: nothing in the data can end the <script> block or open a comment in it
_JSON_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026", 0x2028: "\\u2028",
                 0x2029: "\\u2029"}


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
    return row, recorder_of(request, run_id)


def recorder_of(request: Request, run_id: str) -> Any:
    """The run's recorder; a 404 when the id is unknown."""
    try:
        return store_of(request).recorder(run_id)
    except QexpError as exc:
        if not_found(exc):
            raise HTTPError(404, "Run not found", str(exc)) from None
        raise


def run_ids(request: Request, limit: int) -> list[str]:
    """The run ids of ``runs=`` query parameters (repeated or comma-separated), in order, each once."""
    ids: list[str] = []
    for v in request.query_params.getlist("runs"):
        for part in re.split(r"[,\s]+", v):
            if part and part not in ids:
                ids.append(part)
    return ids[:limit]


def valid_run_ids(ids: list[str]) -> list[str]:
    return [r for r in ids if RUN_ID.match(r)]


def json_script(data: Any) -> str:
    """JSON for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` written as ``\\u003c``
    ``\\u003e`` ``\\u0026`` (as Django's ``json_script``), so neither ``</script>`` nor ``<!--<script>`` in a
    run name or a param can end the block or hide the rest of the page's script."""
    return json.dumps(json_safe(data), allow_nan=False, default=str).translate(_JSON_ESCAPES)


def json_response(data: Any, status: int = 200) -> JSONResponse:
    """A JSON answer of the API (non-finite numbers as words, see :func:`json_safe`)."""
    return JSONResponse(json_safe(data), status_code=status)


def json_safe(data: Any) -> Any:
    """NaN and infinities as the strings ``"NaN"``, ``"inf"``, ``"-inf"`` (JSON has neither; the page shows
    the word, as the HTML does)."""
    if isinstance(data, float):
        if math.isfinite(data):
            return data
        return "NaN" if math.isnan(data) else ("inf" if data > 0 else "-inf")
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return data
