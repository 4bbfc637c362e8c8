"""The ASGI application: ``create_app(uri)`` -> a FastAPI app serving the pages, their JSON and the static
files (plotly.js from the installed ``plotly`` package; nothing comes from a CDN)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.templating import Jinja2Templates

from qexp.ext import (
    FAILURE_TAG,
    PARENT_TAG,
    ROLLING_TAG,
    ROLLING_WINDOW_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    ExpManager,
    create_manager,
)

from . import api, pages, writes
from .artifacts import DerivedCache
from .formatting import FILTERS
from .security import AccessMiddleware, check_bind, is_loopback, new_csrf_token
from .series import HistoryCache
from .store import UIStore
from .web import HTTPError, error_response

log = logging.getLogger("qexp.ui")
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # plotly's WebGL traces (parcoords) compile code with Function(): 'unsafe-eval', no inline scripts
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'",
}


@dataclass
class UIConfig:
    """How the UI was started."""

    uri: str
    host: str = "127.0.0.1"
    port: int = 5000
    token: str | None = None
    allow_write: bool = False
    csrf: str = field(default_factory=new_csrf_token)


def plotly_js() -> Path:
    """``plotly.min.js`` shipped inside the plotly wheel."""
    from qexp.ext import require_extra
    plotly = require_extra("plotly", "ui", "the qexp UI's charts")
    path = Path(str(plotly.__file__)).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        from qexp.ext import QexpError
        raise QexpError(f"the installed plotly package has no {path}; reinstall it: pip install 'qexp[ui]'")
    return path


def open_manager(uri: str | None, allow_write: bool) -> ExpManager:
    """The store as a long-lived reader opens it: a file store's sort indexes are made as for any reader (they
    live in qexp's rebuildable index, not in the runs, so a read-only UI may make them: a sorted page of
    100,000 runs was an unindexed 350 ms sort on every request without them), and dead run owners are looked
    for at most once a second; a backend whose
    factory takes no such options opens as usual. The UI never creates a store: a URI with no store behind it
    (a typo) raises :class:`qexp.ext.StoreNotFoundError` and leaves nothing behind."""
    try:
        return create_manager(uri, create=False, sort_indexes=True, reap_interval=1.0)
    except TypeError:
        return create_manager(uri, create=False)


def create_app(uri: str | None = None, *, manager: ExpManager | None = None, host: str = "127.0.0.1",
               port: int = 5000, token: str | None = None, allow_write: bool = False) -> FastAPI:
    """The UI over the store at ``uri`` (or an existing ``manager``). ``host`` is where it will be served:
    anything but a loopback address requires ``token``."""
    check_bind(host, token)
    manager = manager or open_manager(uri, allow_write)
    config = UIConfig(uri=manager.uri, host=host, port=port, token=token or None, allow_write=allow_write)
    app = FastAPI(title="qexp ui", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.config = config
    app.state.store = UIStore(manager)
    app.state.history = HistoryCache()
    app.state.derived = DerivedCache()
    app.state.key_samples = {}
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(FILTERS)
    templates.env.globals.update(config=config, FAILURE_TAG=FAILURE_TAG, PARENT_TAG=PARENT_TAG, SWEEP_TAG=SWEEP_TAG,
                                 ROLLING_TAG=ROLLING_TAG, ROLLING_WINDOW_TAG=ROLLING_WINDOW_TAG, TRIAL_TAG=TRIAL_TAG)
    app.state.templates = templates
    plotly_path = plotly_js()

    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.add_middleware(AccessMiddleware, token=config.token, loopback_only=is_loopback(host))

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        # the server's own time, for the browser's devtools and benchmarks/bench_ui.py
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    @app.exception_handler(HTTPError)
    async def page_error(request: Request, exc: HTTPError) -> Response:
        return error_response(request, exc.status, exc.title, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        title = {404: "Not found", 405: "Method not allowed", 403: "Forbidden"}.get(exc.status_code, "Error")
        return error_response(request, exc.status_code, title, str(exc.detail or ""))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_file() -> FileResponse:
        return FileResponse(plotly_path, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> FileResponse:
        if name not in ("app.js", "app.css"):
            raise HTTPError(404, "Not found", f"no static file {name!r}")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return FileResponse(HERE / "static" / name, media_type=media, headers={"Cache-Control": "no-cache"})

    pages.add_routes(app)
    api.add_routes(app)
    writes.add_routes(app)
    return app
