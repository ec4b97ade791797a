"""``Annotated`` dependencies of the Alert Manager: the store, the user, roles, CSRF.

Pages authenticate by the session cookie only; the API by
``Authorization: Bearer TOKEN`` or by the session cookie (then unsafe methods
also need the ``X-CSRF-Token`` header).  The user is re-read from the database
at most every :attr:`UserStore.auth_cache_ttl` seconds.  The accessors of
``app.state``, the role checks and the user lookups are ``async``, so that they
skip the thread pool (a user lookup goes to a thread only when its cache
misses).  Nothing here is module-level state: everything hangs off
``request.app.state`` set up by :func:`dnsieve.web.app.create_app`.
"""

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from dnsieve.alerts.store import AlertStore
from dnsieve.web.security import CSRF_FIELD, CSRF_HEADER, WebSettings, csrf_ok
from dnsieve.web.users import User, UserStore, role_at_least

__all__ = [
    "AdminApi",
    "AdminPage",
    "AnalystApi",
    "AnalystPage",
    "ApiUser",
    "CsrfForm",
    "LakePathDep",
    "LoginRequired",
    "PageUser",
    "SettingsDep",
    "StoreDep",
    "UsersDep",
    "client_ip",
]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(Exception):
    """Raised by page dependencies when nobody is logged in (→ redirect to /login)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


async def get_store(request: Request) -> AlertStore:
    return request.app.state.store


async def get_users(request: Request) -> UserStore:
    return request.app.state.users


async def get_settings(request: Request) -> WebSettings:
    return request.app.state.settings


async def get_lake_path(request: Request) -> Path | None:
    """The lake directory the app was created with (None: no lake configured)."""
    path: Path | None = getattr(request.app.state, "lake_path", None)
    return path


StoreDep = Annotated[AlertStore, Depends(get_store)]
LakePathDep = Annotated[Path | None, Depends(get_lake_path)]
UsersDep = Annotated[UserStore, Depends(get_users)]
SettingsDep = Annotated[WebSettings, Depends(get_settings)]


def client_ip(request: Request) -> str:
    """The peer address (proxy headers are not trusted)."""
    return request.client.host if request.client else "unknown"


async def session_user(request: Request, users: UserStore) -> User | None:
    """The logged-in user of this session (:meth:`UserStore.user_for_session`), else None.

    The cookie holds only the session id: a session ended on the server (logout, a
    password, role or account change) or older than ``session_max_age`` is refused."""
    sid = request.session.get("sid")
    if not isinstance(sid, str):
        return None
    user = users.cached_session_user(sid)
    if user is None:  # not looked up lately: the database, from a worker thread
        max_age = request.app.state.settings.session_max_age
        user = await run_in_threadpool(users.user_for_session, sid, max_age)
    if user is None:
        request.session.clear()
        return None
    return user


async def page_user(request: Request, users: UsersDep) -> User:
    user = await session_user(request, users)
    if user is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path)
    request.state.user = user
    return user


async def api_user(request: Request, users: UsersDep) -> User:
    """Bearer token, else session cookie (+ ``X-CSRF-Token`` on unsafe methods), else 401."""
    auth = request.headers.get("authorization", "")
    if auth:
        scheme, _, token = auth.partition(" ")
        user = None
        if scheme.lower() == "bearer":
            token = token.strip()
            user = users.cached_token_user(token)
            if user is None:
                user = await run_in_threadpool(users.user_for_token, token)
        if user is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid or revoked API token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        request.state.user = user
        return user
    user = await session_user(request, users)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "authentication required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in SAFE_METHODS and not csrf_ok(
        request.session, request.headers.get(CSRF_HEADER)
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong X-CSRF-Token header")
    request.state.user = user
    return user


PageUser = Annotated[User, Depends(page_user)]
ApiUser = Annotated[User, Depends(api_user)]


def _need(role: str, base: Callable[..., User]) -> Callable[..., Coroutine[Any, Any, User]]:
    async def check(user: Annotated[User, Depends(base)]) -> User:  # pure: no thread pool
        if not role_at_least(user.role, role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} role")
        return user

    check.__name__ = f"need_{role}_{base.__name__}"
    return check


AnalystPage = Annotated[User, Depends(_need("analyst", page_user))]
AdminPage = Annotated[User, Depends(_need("admin", page_user))]
AnalystApi = Annotated[User, Depends(_need("analyst", api_user))]
AdminApi = Annotated[User, Depends(_need("admin", api_user))]


def _csrf_form() -> Callable[[Request], Coroutine[Any, Any, FormData]]:
    async def csrf_form(request: Request) -> FormData:
        """The POSTed form, after checking its ``csrf_token`` against the session (else 403)."""
        form = await request.form(max_files=0, max_fields=50, max_part_size=64 * 1024)
        if not csrf_ok(request.session, form.get(CSRF_FIELD)):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
        return form

    return csrf_form


CsrfForm = Annotated[FormData, Depends(_csrf_form())]
