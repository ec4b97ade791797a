"""Log in, log out, the landing redirect and the API reference (``/docs``, ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from dnsieve.web.deps import ApiUser, CsrfForm, PageUser, UsersDep, client_ip
from dnsieve.web.render import page
from dnsieve.web.security import safe_next
from dnsieve.web.users import MAX_PASSWORD

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/alerts", status.HTTP_303_SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return page(request, "login.html", next=safe_next(next), error=None)


@router.post("/login")
def login(request: Request, form: CsrfForm, users: UsersDep) -> Response:
    """Check the password, throttled per (account, address) with an exponential back-off
    (:class:`~dnsieve.web.users.ThrottlePolicy`); a good login starts a new server-side
    session (and a new CSRF token)."""
    name = str(form.get("username") or "")[:64]
    password = str(form.get("password") or "")[: MAX_PASSWORD + 1]  # too long: never right
    target = safe_next(str(form.get("next") or ""))
    ip = client_ip(request)
    policy = request.app.state.throttle
    wait = users.login_wait(name, ip, policy)
    if wait:  # refused unchecked and not counted; audited
        users.record_event("login_throttled", name, ip, detail=f"retry after {wait} s")
        resp = page(
            request,
            "login.html",
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            next=target,
            error=f"Too many failed attempts. Try again in {wait} s.",
        )
        resp.headers["Retry-After"] = str(wait)
        return resp
    user = users.authenticate(name, password)
    if user is None:
        users.login_failed(name, ip, policy)
        return page(
            request,
            "login.html",
            status_code=status.HTTP_401_UNAUTHORIZED,
            next=target,
            error="Wrong user name or password.",
        )
    users.login_succeeded(name, ip)
    old = request.session.get("sid")
    if isinstance(old, str):  # logging in again in the same browser ends the session before
        users.end_session(old, "replaced", ip)
    request.session.clear()  # a fresh session (and CSRF token) on every login
    request.session["sid"] = users.start_session(user, ip)
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.post("/logout")
def logout(request: Request, form: CsrfForm, users: UsersDep) -> RedirectResponse:
    """End the session on the server (a saved copy of the cookie is refused from now on)
    and clear the cookie."""
    sid = request.session.get("sid")
    if isinstance(sid, str):
        users.end_session(sid, "logout", client_ip(request))
    request.session.clear()
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)


@router.get("/openapi.json")
def openapi(request: Request, user: ApiUser) -> JSONResponse:
    """The OpenAPI spec (authenticated users only; it holds no data, but names no targets)."""
    spec: dict[str, Any] = request.app.openapi()
    return JSONResponse(spec)


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request, user: PageUser) -> HTMLResponse:
    """A server-rendered API reference (Swagger UI would need a CDN and inline scripts)."""
    spec = request.app.openapi()
    ops = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            params = [
                (p["name"], p["in"], p.get("required", False), p.get("description", ""))
                for p in op.get("parameters", [])
            ]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref", "")
            ops.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "params": params,
                    "body": ref.rsplit("/", 1)[-1] if ref else "",
                    "tag": (op.get("tags") or [""])[0],
                }
            )
    return page(request, "docs.html", ops=ops, title=spec["info"]["title"])
