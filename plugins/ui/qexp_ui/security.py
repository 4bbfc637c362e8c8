"""Who may talk to the UI, and how writes are protected.

- Bound to a loopback address, the UI answers anyone on this machine, but only requests whose ``Host``
  header names a loopback host (a web page elsewhere cannot reach it through DNS rebinding).
- Any other address needs a token: ``Authorization: Bearer T``, ``X-Qexp-Token: T``, or the cookie the
  login form sets. Everything else gets 401 (the login form for browsers).
- Writes (delete a run, edit tags) exist only with ``--allow-write``; each POST carries the per-process CSRF
  token that only the UI's own pages know, and its ``Origin`` (when sent) must be the UI itself.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from qexp.ext import ConfigError

COOKIE = "qexp_ui_token"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
OPEN_PATHS = ("/login", "/healthz")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    h = host.strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"binding the UI to {host!r} exposes every run to the network; give a token with "
                          f"--token (or $QEXP_UI_TOKEN), or keep the default --host 127.0.0.1")


def same_secret(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class AccessMiddleware(BaseHTTPMiddleware):
    """Token (non-loopback or when given) and Host checks, before any page is rendered."""

    def __init__(self, app: Any, *, token: str | None, loopback_only: bool):
        super().__init__(app)
        self.token = token
        self.loopback_only = loopback_only

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.loopback_only and not self.token:
            host = _host_name(request.headers.get("host", ""))
            if not is_loopback(host):
                return PlainTextResponse(f"this qexp UI only answers on localhost, not {host!r}", status_code=403)
        if self.token and not request.url.path.startswith(OPEN_PATHS) and not self.authorized(request):
            return unauthorized(request)
        return await call_next(request)

    def authorized(self, request: Request) -> bool:
        assert self.token is not None
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and same_secret(auth[7:].strip(), self.token):
            return True
        if same_secret(request.headers.get("x-qexp-token"), self.token):
            return True
        return same_secret(request.cookies.get(COOKIE), self.token)


def unauthorized(request: Request) -> Response:
    """401: the login form for a browser, one line for anything else."""
    headers = {"WWW-Authenticate": 'Bearer realm="qexp"'}
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(login_page(next_url=str(request.url.path)), status_code=401, headers=headers)
    return PlainTextResponse("401: this qexp UI needs its token (Authorization: Bearer TOKEN, X-Qexp-Token, "
                             "or log in at /login)", status_code=401, headers=headers)


def login_page(next_url: str = "/", error: str = "") -> str:
    from markupsafe import escape
    msg = f'<p class="error">{escape(error)}</p>' if error else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>qexp ui: log in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto}}input{{font-size:1rem;padding:.3rem}}
.error{{color:#b00020}}</style></head><body><h1>qexp ui</h1><p>This UI needs its access token.</p>{msg}
<form method="post" action="/login"><input type="hidden" name="next" value="{escape(next_url)}">
<label>Token <input type="password" name="token" autofocus></label> <button type="submit">Log in</button>
</form></body></html>"""


def safe_next(url: str) -> str:
    """Only a local path may follow a login (no open redirect to another site)."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//"):
        return "/"
    return url


def origin_ok(request: Request) -> bool:
    """A POST's Origin (or Referer) must be this UI when the browser sends one."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")
