"""The Alert Manager app factory: :func:`create_app` (no module-level engine or settings).

>>> import tempfile, os
>>> from fastapi.testclient import TestClient
>>> with tempfile.TemporaryDirectory() as d:
...     app = create_app(WebSettings(db_url=os.path.join(d, "a.db")))
...     with TestClient(app) as client:
...         r = client.get("/alerts", follow_redirects=False)
...     (r.status_code, r.headers["location"])
(303, '/login?next=%2Falerts')
"""

from __future__ import annotations

import gc
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import sqlalchemy.exc
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from dnsieve.alerts.base import AlertNotFound, AlertStoreError, AmbiguousId, InvalidTransition
from dnsieve.alerts.store import AlertStore
from dnsieve.rules.match import AllowListConflict, AllowListError
from dnsieve.web.deps import LoginRequired
from dnsieve.web.render import make_environment, page
from dnsieve.web.security import BodyLimitMiddleware, SecurityHeadersMiddleware, WebSettings
from dnsieve.web.users import ThrottlePolicy, UnknownToken, UnknownUser, UserError, UserStore

__all__ = [
    "SECRET_ENV",
    "WORKER_ENV",
    "WebSettings",
    "allowed_methods",
    "create_app",
    "create_worker_app",
    "freeze_startup_objects",
    "worker_environment",
]

SECRET_ENV = "DNSIEVE_WEB_SECRET"
#: The settings (JSON, without the key) ``dnsieve serve --workers N`` hands its worker processes.
WORKER_ENV = "DNSIEVE_WEB_WORKER"
SESSION_COOKIE = "dnsieve_session"
#: Requests one server process works on at once (its thread pool); the rest wait their turn.
REQUEST_THREADS = 4
#: The longest submitted value a validation error quotes back (its start, then "…").
ECHO_CHARS = 64


def freeze_startup_objects(templates: jinja2.Environment) -> None:
    """Compile every template, then move every object alive into the garbage collector's
    permanent generation (:func:`gc.freeze`).

    A server process holds a few hundred thousand long-lived objects (modules, SQLAlchemy
    and pydantic models, Bokeh, the templates); each full collection walked all of them:
    70-100 ms every 1.5 s under the 1M-alert benchmark's load, a pause every request in
    flight waited for.  Frozen, they are never walked again (reference counting still
    frees any of them that is let go; only a reference cycle among them would stay).
    """
    for name in templates.list_templates():
        templates.get_template(name)
    gc.collect()
    gc.freeze()


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/openapi.json"))


def allowed_methods(routes: list[Any], path: str) -> list[str]:
    """The methods of every route (in included routers too) whose path matches ``path``:
    the ``Allow`` header of a 405.  Starlette names only the first matching route's
    methods, so ``GET`` and ``POST`` on one path, declared apart, answered ``Allow: GET``."""
    methods: set[str] = set()
    for r in routes:
        sub = getattr(r, "original_router", None)
        if sub is not None:
            methods.update(allowed_methods(sub.routes, path))
        elif isinstance(getattr(r, "methods", None), set | frozenset) and (
            hasattr(r, "path_regex") and r.path_regex.match(path)
        ):
            methods.update(r.methods)
    return sorted(methods)


def _short(value: Any) -> Any:
    """A submitted value as a validation error may quote it: a string cut at
    :data:`ECHO_CHARS` characters, a number or a boolean as is, and of anything larger
    only its kind and size (a 20 MB field must not come back as a 20 MB answer)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str | bytes):
        text = value if isinstance(value, str) else value.decode("utf-8", "replace")
        return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + f"… ({len(text)} chars)"
    size = len(value) if hasattr(value, "__len__") else 0
    return f"<{type(value).__name__} of {size}>"


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI's validation errors with every quoted input shortened (:func:`_short`)."""
    from fastapi.encoders import jsonable_encoder

    out = []
    for e in errors:
        e = dict(e)
        if "input" in e:
            e["input"] = _short(e["input"])
        if isinstance(e.get("ctx"), dict):
            e["ctx"] = {k: _short(v) for k, v in e["ctx"].items()}
        e.pop("url", None)
        out.append(e)
    result: list[dict[str, Any]] = jsonable_encoder(out)
    return result


def _error(
    request: Request, code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    if _is_api(request):
        return JSONResponse({"detail": message}, status_code=code, headers=headers)
    resp = page(request, "error.html", status_code=code, code=code, message=message)
    if headers:
        resp.headers.update(headers)
    return resp


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(
            "/login?next=" + quote(exc.next_path, safe=""), status.HTTP_303_SEE_OTHER
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            allow = allowed_methods(request.app.routes, request.url.path)
            headers = {**(headers or {}), "Allow": ", ".join(allow)}
        return _error(request, exc.status_code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": validation_errors(exc.errors())}, status_code=422)
        msgs = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ())[1:])}: {e.get('msg')}"
            for e in exc.errors()
        )
        return _error(request, 422, f"invalid request: {msgs}")

    @app.exception_handler(AlertStoreError)
    async def store_error(request: Request, exc: AlertStoreError) -> Response:
        conflict = isinstance(exc, AmbiguousId) or (
            _is_api(request) and isinstance(exc, InvalidTransition)
        )
        code = 404 if isinstance(exc, AlertNotFound) else 409 if conflict else 400
        return _error(request, code, str(exc))

    @app.exception_handler(AllowListError)
    async def allow_error(request: Request, exc: AllowListError) -> Response:
        if isinstance(exc, AllowListConflict):
            return _error(request, 409, str(exc))
        if _is_api(request):  # a value the schema cannot judge: shaped as a schema error
            detail = [{"loc": ["body"], "msg": str(exc)[:500], "type": "value_error"}]
            return JSONResponse({"detail": detail}, status_code=422)
        return _error(request, 400, str(exc))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> Response:
        from dnsieve.web.admin import LastAdmin

        code = (
            404
            if isinstance(exc, UnknownUser | UnknownToken)
            else 409
            if isinstance(exc, LastAdmin)
            else 400
        )
        return _error(request, code, str(exc))

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    async def db_down(request: Request, exc: sqlalchemy.exc.OperationalError) -> Response:
        return _error(request, 503, "the alert store is unavailable; try again")


def create_app(
    settings: WebSettings | None = None,
    store: AlertStore | None = None,
    lake: str | os.PathLike[str] | None = None,
) -> FastAPI:
    """A new Alert Manager app on its own store connection.

    ``store`` may be given (tests, ``dnsieve demo``); otherwise the store at
    ``settings.db_url`` (``--db``, else ``$DNSIEVE_DB``, else the default file)
    is opened and migrated, and closed when the app shuts down.  ``lake`` is
    the Parquet lake's directory (``[lake] path``) the raw events behind an
    alert are read from; without it the pages say that no lake is configured.
    """
    settings = settings or WebSettings()
    own_store = store is None
    store = store if store is not None else AlertStore.open(settings.db_url)
    secret = (
        settings.secret_key.get_secret_value()
        if settings.secret_key is not None
        else os.environ.get(SECRET_ENV) or secrets.token_urlsafe(48)
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        # Sync routes run in threads that share one core (the GIL): a few at a time, taken
        # in arrival order, serve a burst as fast as forty and with a fairer (shorter) tail.
        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        if settings.freeze_gc:
            freeze_startup_objects(_app.state.templates)
        yield
        if own_store:
            store.close()

    app = FastAPI(
        title="dnsieve Alert Manager API",
        version="1",
        description="Triage DNS threat alerts: queue, verdicts, allow-lists, model, runs.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.lake_path = Path(lake) if lake is not None else None
    app.state.users = UserStore(store.engine)
    app.state.throttle = ThrottlePolicy(
        free=settings.login_max_failures,
        free_address=settings.login_max_failures_ip,
        base_s=settings.login_backoff_s,
        max_s=settings.login_backoff_max_s,
        window_s=settings.login_window_s,
    )
    app.state.templates = make_environment()

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age,
        same_site=settings.same_site,
        https_only=settings.https_only,
    )
    app.add_middleware(SecurityHeadersMiddleware, https_only=settings.https_only)
    _install_handlers(app)

    from bokeh.util.paths import static_path

    from dnsieve.web.routes import (
        alerts,
        allowlist,
        api,
        auth,
        definitions,
        model,
        review,
        runs,
        users,
    )

    for r in (auth, alerts, review, allowlist, definitions, model, runs, users, api):
        app.include_router(r.router)
    app.include_router(users.api_router)
    app.include_router(definitions.api_router)
    app.mount(
        "/static",
        StaticFiles(directory=str(resources.files("dnsieve.web") / "static")),
        name="static",
    )
    app.mount("/bokeh/static", StaticFiles(directory=str(static_path())), name="bokeh")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        """No icon: answer 204 so browsers do not log a 404 on every page."""
        return Response(status_code=204)

    return app


def worker_environment(settings: WebSettings, lake: str | os.PathLike[str] | None) -> str:
    """The value of :data:`WORKER_ENV` that makes :func:`create_worker_app` build the app
    ``create_app(settings, lake=lake)`` would (the session key travels in :data:`SECRET_ENV`)."""
    import json

    data = settings.model_dump(mode="json", exclude={"secret_key"})
    return json.dumps({"settings": data, "lake": None if lake is None else os.fspath(lake)})


def create_worker_app() -> FastAPI:
    """The app of one ``uvicorn --workers N`` process (``dnsieve serve --workers N``): the
    settings come from :data:`WORKER_ENV`, the session key from :data:`SECRET_ENV`, which must
    be set so that every worker signs and accepts the same session cookies."""
    import json

    if not os.environ.get(SECRET_ENV):
        raise RuntimeError(
            f"several workers need one session key: set {SECRET_ENV} "
            "(dnsieve serve --workers N sets a random one when it is unset)"
        )
    raw = json.loads(os.environ.get(WORKER_ENV) or "{}")
    settings = WebSettings.model_validate(raw.get("settings", {}))
    return create_app(settings, lake=raw.get("lake"))
