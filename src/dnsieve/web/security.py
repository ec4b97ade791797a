"""Security of the Alert Manager: settings, CSRF, headers, login rate limiting.

* **Sessions** are Starlette's signed cookies (``itsdangerous``): HttpOnly,
  ``SameSite=Strict`` by default, ``Secure`` when :attr:`WebSettings.https_only`.
  The session only holds the user id, a CSRF token and a one-shot flash
  message; the user's role is read from the database (through a cache of
  ``UserStore.auth_cache_ttl``, 2 s, cleared by every write through the same
  process), so a role change or a disabled account takes effect at once in
  the server that made it and within 2 s when made elsewhere (the CLI).
* **CSRF**: a synchronizer token per session.  Every HTML form carries it in
  a hidden ``csrf_token`` field and every POST checks it with a constant-time
  comparison (:func:`csrf_ok`).  API calls authenticated by the session
  cookie must send it in ``X-CSRF-Token``; bearer-token calls carry no
  cookie and need none.
* **Headers** (:class:`SecurityHeadersMiddleware`): a strict
  Content-Security-Policy with no inline script (:data:`CSP`), ``nosniff``,
  ``DENY`` framing, no referrer, ``no-store`` caching of pages and API answers,
  and HSTS when served over HTTPS.
* **Login rate limiting** (:class:`LoginLimiter`): failures are counted per
  (client IP, user name) and per client IP in a sliding window.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import MutableMapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSP",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LoginLimiter",
    "SecurityHeadersMiddleware",
    "WebSettings",
    "csrf_ok",
    "csrf_token",
    "safe_next",
    "static_cache_control",
]

CSRF_FIELD = "csrf_token"
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
        default=5, ge=1, le=1000, description="per client IP and user name"
    )
    login_max_failures_ip: int = Field(default=50, ge=1, le=100_000, description="per client IP")
    login_window_s: int = Field(default=900, ge=1, le=86400, description="sliding window, seconds")
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
    """
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 32 for c in value)
    ):
        return default
    return value


class LoginLimiter:
    """Sliding-window count of failed logins per (IP, user) and per IP (thread-safe).

    >>> lim = LoginLimiter(max_failures=2, max_failures_ip=10, window_s=60)
    >>> lim.failed("10.0.0.1", "bob", now=0.0); lim.failed("10.0.0.1", "bob", now=1.0)
    >>> lim.retry_after("10.0.0.1", "bob", now=2.0), lim.retry_after("10.0.0.1", "eve", now=2.0)
    (58, 0)
    >>> lim.retry_after("10.0.0.1", "bob", now=61.0)
    0
    """

    def __init__(self, max_failures: int, max_failures_ip: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.max_failures_ip = max_failures_ip
        self.window_s = window_s
        self._fails: dict[tuple[str, str], deque[float]] = {}
        self._ip_fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.window_s:
            q.popleft()

    def _wait(self, q: deque[float] | None, limit: int, now: float) -> int:
        if q is None:
            return 0
        self._trim(q, now)
        if len(q) < limit:
            return 0
        return max(1, int(q[-limit] + self.window_s - now + 0.999))

    def retry_after(self, ip: str, user: str, now: float | None = None) -> int:
        """Seconds to wait before another attempt is allowed (0: allowed now)."""
        now = time.monotonic() if now is None else now
        key = (ip, user.lower())
        with self._lock:
            return max(
                self._wait(self._fails.get(key), self.max_failures, now),
                self._wait(self._ip_fails.get(ip), self.max_failures_ip, now),
            )

    def failed(self, ip: str, user: str, now: float | None = None) -> None:
        """Count one failed attempt."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._fails) > 100_000:  # bound memory under a spray of names
                self._fails.clear()
            self._fails.setdefault((ip, user.lower()), deque()).append(now)
            self._ip_fails.setdefault(ip, deque()).append(now)

    def succeeded(self, ip: str, user: str) -> None:
        """Forget the (IP, user) failures after a good login."""
        with self._lock:
            self._fails.pop((ip, user.lower()), None)


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
