"""Users page and admin API: users, their sessions and API tokens, the auth audit log.

Admins only.  The page's forms carry the CSRF token like every other form; the
API routes take a bearer token or the session cookie plus ``X-CSRF-Token``.
Every action is a function of :mod:`dnsieve.web.admin`, shared by both.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from dnsieve.web import admin
from dnsieve.web.deps import AdminApi, AdminPage, CsrfForm, UsersDep, api_user
from dnsieve.web.render import flash, page
from dnsieve.web.schemas import (
    AuthEventPublic,
    SessionsEnded,
    TokenPublic,
    UserAdminPublic,
    UserUpdate,
    error_responses,
)
from dnsieve.web.users import ROLES, UnknownUser

__all__ = ["api_router", "router"]

router = APIRouter(prefix="/users", include_in_schema=False)
api_router = APIRouter(
    prefix="/api",
    tags=["users"],
    dependencies=[Depends(api_user)],
    responses=error_responses(401, 403, 413, 503),
)

UserName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$", max_length=64, description="user")
]
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _back(request: Request, message: str) -> RedirectResponse:
    flash(request, message)
    return RedirectResponse("/users", status.HTTP_303_SEE_OTHER)


# --------------------------------------------------------------------------- page


@router.get("", response_class=HTMLResponse)
def users_page(request: Request, user: AdminPage, users: UsersDep) -> HTMLResponse:
    """Every user (role, state, sessions, tokens), their tokens and the audit log."""
    return page(
        request,
        "users.html",
        people=admin.user_overview(users),
        tokens=users.list_tokens(),
        events=users.auth_events(100),
        roles=ROLES,
    )


@router.post("/{name}/role")
def page_role(
    request: Request, user: AdminPage, form: CsrfForm, users: UsersDep, name: UserName
) -> RedirectResponse:
    role = str(form.get("role") or "")[:16]
    if role not in ROLES:
        return _back(request, f"Unknown role {role!r}.")
    admin.update_user(users, name, user, role=role, disabled=None)
    return _back(request, f"{name} is now {role}; their sessions were ended.")


@router.post("/{name}/disable")
def page_disable(
    request: Request, user: AdminPage, form: CsrfForm, users: UsersDep, name: UserName
) -> RedirectResponse:
    admin.update_user(users, name, user, role=None, disabled=True)
    return _back(request, f"{name} is disabled: sessions ended, tokens refused.")


@router.post("/{name}/enable")
def page_enable(
    request: Request, user: AdminPage, form: CsrfForm, users: UsersDep, name: UserName
) -> RedirectResponse:
    admin.update_user(users, name, user, role=None, disabled=False)
    return _back(request, f"{name} is enabled again.")


@router.post("/{name}/sessions/end")
def page_end_sessions(
    request: Request, user: AdminPage, form: CsrfForm, users: UsersDep, name: UserName
) -> RedirectResponse:
    out = admin.end_user_sessions(users, name, user)
    return _back(request, f"{out.ended} session(s) of {name} ended.")


@router.post("/tokens/{token_id}/revoke")
def page_revoke(
    request: Request, user: AdminPage, form: CsrfForm, users: UsersDep, token_id: TokenId
) -> RedirectResponse:
    t = admin.revoke(users, token_id, user)
    return _back(request, f"Token {t.id} of {t.user} ({t.prefix}…) revoked.")


# --------------------------------------------------------------------------- API


@api_router.get("/users")
def list_users_api(user: AdminApi, users: UsersDep) -> list[UserAdminPublic]:
    """Every user: role, state, sessions running, tokens not revoked, last seen."""
    return admin.user_overview(users)


@api_router.patch("/users/{name}", responses=error_responses(400, 404, 409))
def update_user_api(
    user: AdminApi, users: UsersDep, name: UserName, body: UserUpdate
) -> UserAdminPublic:
    """Change a user's role or disable/enable them; either ends their sessions.  The last
    enabled admin cannot be demoted or disabled (409)."""
    return admin.update_user(users, name, user, role=body.role, disabled=body.disabled)


@api_router.get("/users/{name}/tokens", responses=error_responses(404))
def user_tokens_api(
    user: AdminApi,
    users: UsersDep,
    name: UserName,
    all: Annotated[bool, Query(description="revoked tokens too")] = False,
) -> list[TokenPublic]:
    """A user's API tokens: id, first characters, created, last used, revoked (never the
    token itself, which is not stored)."""
    if users.get_user(name) is None:
        raise UnknownUser(f"no user {name!r}")
    return [admin.token_public(t) for t in users.list_tokens(name, active=not all)]


@api_router.delete("/users/{name}/sessions", responses=error_responses(404))
def end_sessions_api(user: AdminApi, users: UsersDep, name: UserName) -> SessionsEnded:
    """End every session of a user (their API tokens stay valid)."""
    return admin.end_user_sessions(users, name, user)


@api_router.delete("/tokens/{token_id}", responses=error_responses(404))
def revoke_token_api(user: AdminApi, users: UsersDep, token_id: TokenId) -> TokenPublic:
    """Revoke an API token (404: no such token, or revoked already)."""
    return admin.revoke(users, token_id, user)


@api_router.get("/auth-events")
def auth_events_api(
    user: AdminApi,
    users: UsersDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    account: Annotated[str | None, Query(max_length=64)] = None,
) -> list[AuthEventPublic]:
    """The authentication audit log, newest first: logins, failures, throttled attempts
    (account, address, time), logouts, account changes, tokens made and revoked."""
    return [AuthEventPublic.model_validate(e) for e in users.auth_events(limit, account)]
