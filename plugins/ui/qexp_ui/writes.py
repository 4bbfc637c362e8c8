"""The only requests that change anything: logging in, and with ``--allow-write`` deleting a run and
editing its tags. Writes are POST forms carrying the per-process CSRF token."""
from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from qexp.ext import QexpError, validate_key

from .security import COOKIE, login_page, origin_ok, safe_next, same_secret
from .web import HTTPError, load_run, store_of

MAX_FORM_BYTES = 64 << 10


async def form(request: Request) -> dict[str, str]:
    """A urlencoded form body (no multipart: nothing here uploads files)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPError(413, "Form too large", "")
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


async def checked_write(request: Request) -> dict[str, str]:
    """The form of a write, once writes are enabled and its CSRF token and origin are right."""
    config = request.app.state.config
    if not config.allow_write:
        raise HTTPError(403, "Read-only", "this UI is read-only; start it with `qexp ui --allow-write` to delete "
                                          "runs and edit tags")
    data = await form(request)
    if not same_secret(data.get("csrf"), config.csrf) or not origin_ok(request):
        raise HTTPError(403, "CSRF check failed", "the form did not come from this UI's own page; reload the "
                                                  "page and try again")
    return data


def add_routes(app: FastAPI) -> None:
    @app.get("/login", response_class=HTMLResponse)
    def login_form(next: str = "/") -> HTMLResponse:
        return HTMLResponse(login_page(next_url=safe_next(next)))

    @app.post("/login")
    async def login(request: Request) -> Response:
        data = await form(request)
        config = request.app.state.config
        if not config.token:
            return RedirectResponse(safe_next(data.get("next", "/")), status_code=303)
        if not same_secret(data.get("token"), config.token):
            return HTMLResponse(login_page(safe_next(data.get("next", "/")), "wrong token"), status_code=401)
        resp = RedirectResponse(safe_next(data.get("next", "/")), status_code=303)
        resp.set_cookie(COOKIE, config.token, httponly=True, samesite="strict", max_age=30 * 86400)
        return resp

    @app.post("/logout")
    async def logout() -> Response:
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    @app.post("/runs/{run_id}/delete")
    async def delete_run(request: Request, run_id: str) -> Response:
        await checked_write(request)
        row, _ = load_run(request, run_id)
        try:
            store_of(request).delete_run(run_id)
        except QexpError as exc:
            raise HTTPError(400, "Could not delete the run", str(exc)) from None
        return RedirectResponse(f"/runs?exp={row['experiment_id']}", status_code=303)

    @app.post("/runs/{run_id}/tags")
    async def edit_tags(request: Request, run_id: str) -> Response:
        data = await checked_write(request)
        _, rec = load_run(request, run_id)
        key = data.get("key", "").strip()
        try:
            validate_key(key, "tag")
            if data.get("action") == "delete":
                rec.delete_tags(key)
            else:
                rec.set_tags(**{key: data.get("value", "")})
        except QexpError as exc:
            raise HTTPError(400, "Could not edit the tag", str(exc)) from None
        return RedirectResponse(f"/runs/{run_id}#tags", status_code=303)
