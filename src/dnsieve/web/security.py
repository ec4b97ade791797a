"""Security of the Alert Manager: settings, CSRF, headers, body limits, login throttling.

See ``docs/security.md`` for the threat model these pieces answer.

* **Sessions** live on the server (``web_sessions``, :meth:`UserStore.start_session`);
  the cookie is Starlette's signed cookie (``itsdangerous``): HttpOnly,
  ``SameSite=Strict`` by default, ``Secure`` when :attr:`WebSettings.https_only`,
  holding only the random session id, a CSRF token and a one-shot flash
  message.  Logging out ends the session on the server; a password, role or
  account change ends all the user's sessions.  The user behind a session is
  read from the database through a cache of ``UserStore.auth_cache_ttl`` (2 s,
  cleared by every write through the same process), so such a change takes
  effect at once in the server that made it and within 2 s when made
  elsewhere (the CLI, another worker).
* **CSRF**: a synchronizer token per session.  Every HTML form carries it in
  a hidden ``csrf_token`` field and every POST checks it with a constant-time
  comparison (:func:`csrf_ok`).  API calls authenticated by the session
  cookie must send it in ``X-CSRF-Token``; bearer-token calls carry no
  cookie and need none.
* **Headers** (:class:`SecurityHeadersMiddleware`): a strict
  Content-Security-Policy with no inline script (:data:`CSP`), ``nosniff``,
  ``DENY`` framing, no referrer, ``no-store`` caching of pages and API answers,
  and HSTS when served over HTTPS.
* **Body limit** (:class:`BodyLimitMiddleware`): a request body larger than
  :attr:`WebSettings.max_body_bytes` is refused with 413, by its
  ``Content-Length`` before it is read, or as soon as the bytes streamed in
  pass the limit.
* **Login throttling** (:class:`~dnsieve.web.users.ThrottlePolicy`): exponential
  back-off per (account, client address), kept in the database.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import MutableMapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSP",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "BodyLimitMiddleware",
    "BodyTooLarge",
    "SecurityHeadersMiddleware",
    "WebSettings",
    "csrf_ok",
    "csrf_token",
    "safe_next",
    "static_cache_control",
]

CSRF_FIELD = "csrf_token"
#: The longest post-login redirect target kept (a longer one is dropped, not echoed).
MAX_NEXT = 2048
CSRF_HEADER = "x-csrf-token"

#: The Content-Security-Policy of every response.  Scripts only from this
#: origin (BokehJS is served locally and needs no ``eval`` as long as no
#: CustomJS model is used; the plot's JSON rides in a non-executed
#: ``application/json`` block).  The one relaxation is ``style-src
#: 'unsafe-inline'``: BokehJS injects ``<style>`` elements into its shadow
#: roots.  Styles cannot run code; scripts stay strict.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)


class WebSettings(BaseModel):
    """Settings of one Alert Manager app (see :func:`dnsieve.web.app.create_app`)."""

    model_config = ConfigDict(extra="forbid")

    db_url: str | None = Field(
        default=None, description="alert store URL (default: $DNSIEVE_DB, ...)"
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="session signing key ($DNSIEVE_WEB_SECRET); a random one per process if unset",
    )
    https_only: bool = Field(
        default=False, description="mark the session cookie Secure and send HSTS"
    )
    same_site: Literal["lax", "strict"] = "strict"
    session_max_age: int = Field(default=12 * 3600, ge=60, le=30 * 86400, description="seconds")
    login_max_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="failed logins per (user name, client address) before the back-off begins",
    )
    login_max_failures_ip: int = Field(
        default=50,
        ge=1,
        le=100_000,
        description="failed logins per client address, over all user names, before it begins",
    )
    login_backoff_s: float = Field(
        default=1.0, gt=0, le=3600, description="the first wait; each further failure doubles it"
    )
    login_backoff_max_s: float = Field(
        default=300.0, gt=0, le=86400, description="the longest wait between two attempts"
    )
    login_window_s: int = Field(
        default=900, ge=1, le=86400, description="failures are forgotten this long after the last"
    )
    max_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        le=1 << 30,
        description="largest request body (413 past it), checked while it streams in",
    )
    page_size: int = Field(default=50, ge=5, le=500)
    freeze_gc: bool = Field(
        default=False,
        description="after startup, move every object into the garbage collector's permanent"
        " generation (gc.freeze): full collections then skip them (set by `dnsieve serve`)",
    )


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token, created on first use."""
    tok = session.get("csrf")
    if not isinstance(tok, str) or len(tok) < 32:
        tok = secrets.token_urlsafe(32)
        session["csrf"] = tok
    return tok


def csrf_ok(session: MutableMapping[str, Any], sent: object) -> bool:
    """Whether ``sent`` is this session's CSRF token (constant-time)."""
    tok = session.get("csrf")
    if not isinstance(tok, str) or not isinstance(sent, str) or not sent:
        return False
    return secrets.compare_digest(tok.encode(), sent.encode("utf-8", "surrogatepass"))


def safe_next(value: str | None, default: str = "/alerts") -> str:
    """A post-login redirect target: a local path only (no ``//host`` or scheme).

    >>> safe_next("/alerts?page=2"), safe_next("//evil.com"), safe_next("https://x")
    ('/alerts?page=2', '/alerts', '/alerts')
    >>> safe_next("/" + "a" * MAX_NEXT)  # not carried from page to page
    '/alerts'

    """
    if (
        not value
        or len(value) > MAX_NEXT
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 32 for c in value)
    ):
        return default
    return value


def static_cache_control(path: str, query: bytes = b"") -> bytes:
    """The ``Cache-Control`` of a response: pages and API answers are never stored.

    BokehJS files carry their version in the URL (``?v=…``), so a browser may
    keep them for a year; the app's own CSS/JS are revalidated (ETag) on use.

    >>> static_cache_control("/alerts")
    b'no-store'
    >>> static_cache_control("/bokeh/static/js/bokeh.min.js", b"v=3f2a")
    b'public, max-age=31536000, immutable'
    >>> static_cache_control("/static/app.css")
    b'no-cache'
    """
    if path.startswith("/bokeh/"):
        versioned = any(part.startswith(b"v=") for part in query.split(b"&"))
        return b"public, max-age=31536000, immutable" if versioned else b"public, max-age=86400"
    if path.startswith("/static/"):
        return b"no-cache"
    return b"no-store"


class SecurityHeadersMiddleware:
    """Adds the CSP and the other security headers to every HTTP response (pure ASGI)."""

    def __init__(self, app: ASGIApp, https_only: bool = False) -> None:
        self.app = app
        self.headers: list[tuple[bytes, bytes]] = [
            (b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"cross-origin-resource-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
        ]
        if https_only:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cache = static_cache_control(str(scope.get("path", "")), scope.get("query_string", b""))

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.headers if k not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", cache))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


class BodyTooLarge(StarletteHTTPException):
    """A request body past :attr:`WebSettings.max_body_bytes` (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413 (pure ASGI).

    A ``Content-Length`` over the limit (or not a number) is refused before any of the
    body is read.  A body without one (chunked) is counted as it streams in: the read
    that passes the limit raises :class:`BodyTooLarge`, so no more of it is read, and
    the app's error handler answers 413 (or this middleware does, if the exception
    reaches it before a response began).

    >>> import asyncio
    >>> chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": True}] * 10
    >>> pulled, sent = [], []
    >>> async def receive():
    ...     pulled.append(1)
    ...     return chunks[len(pulled) - 1]
    >>> async def send(message):
    ...     sent.append(message)
    >>> async def app(scope, receive, send):  # reads the whole body, as a JSON route does
    ...     while (await receive()).get("more_body"):
    ...         pass
    >>> scope = {"type": "http", "path": "/api/allowlist", "headers": []}
    >>> import threading  # its own thread: a test run may already have a loop in this one
    >>> t = threading.Thread(
    ...     target=asyncio.run, args=(BodyLimitMiddleware(app, 1000)(scope, receive, send),)
    ... )
    >>> t.start(); t.join()
    >>> len(pulled), sent[0]["status"]
    (3, 413)
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, send: Send) -> None:
        detail = str(BodyTooLarge(self.max_bytes).detail)
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._refuse(scope, send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, send)
