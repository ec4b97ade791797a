"""Log in, log out, the landing redirect and the API reference (``/docs``, ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from dnsieve.web.deps import ApiUser, CsrfForm, PageUser, UsersDep, client_ip
from dnsieve.web.render import page
from dnsieve.web.security import safe_next

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/alerts", status.HTTP_303_SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return page(request, "login.html", next=safe_next(next), error=None)


@router.post("/login")
def login(request: Request, form: CsrfForm, users: UsersDep) -> Response:
    name = str(form.get("username") or "")[:64]
    password = str(form.get("password") or "")[:1024]
    target = safe_next(str(form.get("next") or ""))
    ip = client_ip(request)
    limiter = request.app.state.limiter
    wait = limiter.retry_after(ip, name)
    if wait:
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
        limiter.failed(ip, name)
        return page(
            request,
            "login.html",
            status_code=status.HTTP_401_UNAUTHORIZED,
            next=target,
            error="Wrong user name or password.",
        )
    limiter.succeeded(ip, name)
    request.session.clear()  # a fresh session (and CSRF token) on every login
    request.session.update(uid=user.id, user=user.name)
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.post("/logout")
def logout(request: Request, form: CsrfForm) -> RedirectResponse:
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
