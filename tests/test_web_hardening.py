"""Hardening of the Alert Manager (issue 12): sessions that end, revocable tokens, login
back-off per (account, address), body and field limits, a truthful OpenAPI document, no
``Server`` header.

Each test reproduces a probe of the issue: it failed on the code before the fix.  A change
"made by the CLI" goes through a second :class:`UserStore` (or the CLI itself) on the same
database, as another process would, and the server's cache clock is moved past its
documented interval (``UserStore.auth_cache_ttl``) instead of sleeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from conftest import require_module
from dnsieve.alerts import AlertStore
from dnsieve.cli import app as cli_app
from dnsieve.web import WebSettings, create_app
from dnsieve.web.users import UserStore
from test_web import PASSWORD, csrf_of, login, open_web_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = open_web_store(tmp_path)
    yield s
    s.close()


@pytest.fixture
def app(store: AlertStore) -> Any:
    return create_app(WebSettings(), store=store)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _server_users(app: Any) -> tuple[UserStore, list[float]]:
    """The app's UserStore with a hand-moved cache clock."""
    users: UserStore = app.state.users
    clock = [1000.0]
    users.clock = lambda: clock[0]
    return users, clock


def _replay(app: Any, cookie: str) -> tuple[int, int]:
    """A new client sending only a saved session cookie: (GET /alerts, GET /api/me)."""
    with TestClient(app, cookies={"dnsieve_session": cookie}) as c:
        return (
            c.get("/alerts", follow_redirects=False).status_code,
            c.get("/api/me").status_code,
        )


# --------------------------------------------------------------------------- 1. logout


def test_logout_ends_the_session_on_the_server(app: Any, client: TestClient) -> None:
    tok = login(client, "analyst")
    saved = client.cookies["dnsieve_session"]
    assert _replay(app, saved) == (200, 200)
    r = client.post("/logout", data={"csrf_token": tok}, follow_redirects=False)
    assert r.status_code == 303
    # the saved cookie is still validly signed, but its session has ended
    assert _replay(app, saved) == (303, 401)


def test_a_new_login_ends_the_session_it_replaces(app: Any, client: TestClient) -> None:
    login(client, "viewer")
    first = client.cookies["dnsieve_session"]
    login(client, "viewer")
    assert _replay(app, first) == (303, 401)
    assert _replay(app, client.cookies["dnsieve_session"]) == (200, 200)


# --------------------------------------------------------------------------- 2. account changes


@pytest.mark.parametrize(
    ("command", "stdin"),
    [
        (["users", "passwd", "analyst"], "a brand new long passphrase"),
        (["users", "role", "analyst", "viewer"], None),
        (["users", "disable", "analyst"], None),
    ],
)
def test_cli_account_changes_end_sessions_in_a_running_server(
    app: Any, store: AlertStore, command: list[str], stdin: str | None
) -> None:
    """passwd, role and disable from the CLI (another process: another connection) end the
    user's sessions in a running server within ``auth_cache_ttl``; passwd and disable
    also stop the API token."""
    users, clock = _server_users(app)
    token = users.new_token("analyst")
    bearer = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as c:
        login(c, "analyst")
        saved = c.cookies["dnsieve_session"]
        assert c.get("/api/me", headers=bearer).status_code == 200  # cached by the server
    db = str(store.engine.url)
    r = CliRunner().invoke(cli_app, [*command, "--db", db], input=stdin)
    assert r.exit_code == 0, r.output
    assert "1 sessions ended" in r.output
    clock[0] += users.auth_cache_ttl  # the documented cross-process interval
    assert _replay(app, saved) == (303, 401)
    with TestClient(app) as c:
        me = c.get("/api/me", headers=bearer)
    if command[1] == "role":  # a token follows the user's new role; it is not revoked
        assert me.status_code == 200 and me.json()["role"] == "viewer"
    else:
        assert me.status_code == 401
    if command[1] == "passwd":
        (info,) = UserStore(store.engine).list_tokens("analyst")
        assert info.revoked_at is not None
        with TestClient(app) as c:  # the new password works, and opens a new session
            login(c, "analyst", stdin or "")
            assert c.get("/api/me").json()["name"] == "analyst"


def test_passwd_keep_tokens_is_explicit(store: AlertStore) -> None:
    users = UserStore(store.engine)
    token = users.new_token("viewer")
    r = CliRunner().invoke(
        cli_app,
        ["users", "passwd", "viewer", "--keep-tokens", "--db", str(store.engine.url)],
        input="yet another long passphrase",
    )
    assert r.exit_code == 0 and "0 tokens revoked" in r.output
    assert UserStore(store.engine).user_for_token(token) is not None


def test_role_change_in_the_same_server_is_immediate(app: Any, client: TestClient) -> None:
    """Through the admin API of the same process: no cache delay at all."""
    users, _ = _server_users(app)
    with TestClient(app) as victim:
        login(victim, "analyst")
        assert victim.get("/api/me").json()["role"] == "analyst"
        token = users.new_token("admin")
        r = client.patch(
            "/api/users/analyst",
            json={"role": "viewer"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200 and r.json()["role"] == "viewer"
        assert r.json()["sessions"] == 0
        assert victim.get("/api/me").status_code == 401


# --------------------------------------------------------------------------- 3. tokens


def test_tokens_listed_and_revoked_from_the_cli(app: Any, store: AlertStore) -> None:
    db = str(store.engine.url)
    run = CliRunner().invoke
    token = run(cli_app, ["users", "token", "analyst", "--db", db]).output.strip()
    assert token.startswith("dnsv_")
    with TestClient(app) as c:  # used once: last-used is recorded
        assert c.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    listing = run(cli_app, ["users", "tokens", "analyst", "--db", db])
    assert listing.exit_code == 0, listing.output
    assert token not in listing.output and token[:11] in listing.output  # the prefix only
    assert "last used" in listing.output
    (info,) = UserStore(store.engine).list_tokens("analyst")
    assert info.last_used is not None
    assert f"{info.created_at:%Y-%m-%d %H:%M:%S}" in listing.output
    assert f"{info.last_used:%Y-%m-%d %H:%M:%S}" in listing.output

    users, clock = _server_users(app)
    r = run(cli_app, ["users", "token", "--revoke", str(info.id), "--db", db])
    assert r.exit_code == 0 and f"token {info.id} of analyst" in r.output
    clock[0] += users.auth_cache_ttl
    with TestClient(app) as c:
        assert c.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # revoked twice, unknown, or neither name nor id: clear errors, not tracebacks
    assert run(cli_app, ["users", "token", "--revoke", str(info.id), "--db", db]).exit_code == 1
    assert run(cli_app, ["users", "token", "--revoke", "999", "--db", db]).exit_code == 1
    assert run(cli_app, ["users", "token", "--db", db]).exit_code == 2
    assert "no tokens" in run(cli_app, ["users", "tokens", "analyst", "--db", db]).output
    assert "revoked" in run(cli_app, ["users", "tokens", "--all", "--db", db]).output
    audit = run(cli_app, ["users", "audit", "analyst", "--db", db]).output
    assert "token_revoked" in audit and "token_created" in audit


def test_admin_api_lists_and_revokes_tokens(app: Any, store: AlertStore) -> None:
    users = UserStore(store.engine)
    admin = {"Authorization": f"Bearer {users.new_token('admin')}"}
    victim = users.new_token("analyst")
    analyst = {"Authorization": f"Bearer {victim}"}
    with TestClient(app) as c:
        assert c.get("/api/users", headers=analyst).status_code == 403
        assert c.get("/api/users/analyst/tokens", headers=analyst).status_code == 403
        listed = c.get("/api/users/analyst/tokens", headers=admin).json()
        assert [t["prefix"] for t in listed] == [victim[:11]]
        assert victim not in json.dumps(listed)
        assert c.get("/api/users/nobody/tokens", headers=admin).status_code == 404
        r = c.delete(f"/api/tokens/{listed[0]['id']}", headers=admin)
        assert r.status_code == 200 and r.json()["revoked_at"] is not None
        assert c.get("/api/me", headers=analyst).status_code == 401
        assert c.delete(f"/api/tokens/{listed[0]['id']}", headers=admin).status_code == 404
        people = {u["name"]: u for u in c.get("/api/users", headers=admin).json()}
        assert set(people) == {"viewer", "analyst", "admin"} and people["analyst"]["tokens"] == 0
        # the last enabled admin cannot be demoted or disabled from the web
        r = c.patch("/api/users/admin", json={"disabled": True}, headers=admin)
        assert r.status_code == 409 and "last enabled admin" in r.json()["detail"]
        assert (
            c.patch("/api/users/admin", json={"role": "viewer"}, headers=admin).status_code == 409
        )
        assert (
            c.patch("/api/users/nobody", json={"role": "viewer"}, headers=admin).status_code == 404
        )
        events = c.get("/api/auth-events", params={"account": "analyst"}, headers=admin).json()
        assert {"token_created", "token_revoked"} <= {e["event"] for e in events}


def test_users_page(app: Any, store: AlertStore) -> None:
    users = UserStore(store.engine)
    users.new_token("viewer")
    with TestClient(app) as c:
        login(c, "analyst")
        assert c.get("/users", follow_redirects=False).status_code == 403
        assert "/users" not in c.get("/alerts").text  # no link for non-admins
    with TestClient(app) as c:
        # a hostile user name, typed into the login form, reaches the audit log
        hostile = "<script>alert(1)</script>"
        tok = csrf_of(c.get("/login").text)
        c.post("/login", data={"username": hostile, "password": "x" * 12, "csrf_token": tok})
        tok = login(c, "admin")
        page = c.get("/users")
        assert page.status_code == 200 and 'href="/users"' in page.text
        assert hostile not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        (info,) = users.list_tokens("viewer")
        assert f"{info.prefix}…" in page.text
        # a form without the CSRF token is refused; with it, the token is revoked
        no_csrf = c.post(f"/users/tokens/{info.id}/revoke", data={}, follow_redirects=False)
        assert no_csrf.status_code == 403
        r = c.post(f"/users/tokens/{info.id}/revoke", data={"csrf_token": tok})
        assert r.status_code == 200 and f"Token {info.id} of viewer" in r.text
        assert users.list_tokens("viewer")[0].revoked_at is not None
        with TestClient(app) as v:
            login(v, "viewer")
            saved = v.cookies["dnsieve_session"]
        r = c.post("/users/viewer/disable", data={"csrf_token": tok})
        assert r.status_code == 200 and "viewer is disabled" in r.text
        assert _replay(app, saved) == (303, 401)
        r = c.post("/users/viewer/enable", data={"csrf_token": tok})
        assert "viewer is enabled again" in r.text
        r = c.post("/users/analyst/role", data={"csrf_token": tok, "role": "admin"})
        assert "analyst is now admin" in r.text
        assert users.get_user("analyst").role == "admin"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- 4. throttling


class _Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def _attempt(app: Any, address: str, name: str, password: str) -> Any:
    with TestClient(app, client=(address, 40000)) as c:
        tok = csrf_of(c.get("/login").text)
        return c.post(
            "/login",
            data={"username": name, "password": password, "csrf_token": tok},
            follow_redirects=False,
        )


def test_throttle_backs_off_per_account_and_address(app: Any, store: AlertStore) -> None:
    """200 wrong passwords for one account from one address, one a second: the real user
    from another address logs in at once, and from the attacker's address after the
    back-off (never more than login_backoff_max_s); every throttled attempt is audited."""
    users: UserStore = app.state.users
    clock = _Clock()
    users.now = clock
    attacker, office = "203.0.113.66", "198.51.100.7"
    codes = []
    for _ in range(200):
        codes.append(_attempt(app, attacker, "analyst", "wrong password guess").status_code)
        clock.advance(1)
    failed, throttled = codes.count(401), codes.count(429)
    assert failed + throttled == 200 and 5 < failed < 15  # the back-off doubles each time
    assert _attempt(app, office, "analyst", PASSWORD).status_code == 303
    blocked, blocked_at = _attempt(app, attacker, "analyst", PASSWORD), clock.t
    wait = int(blocked.headers["retry-after"])
    assert blocked.status_code == 429 and 0 < wait <= app.state.settings.login_backoff_max_s
    clock.advance(wait)
    assert _attempt(app, attacker, "analyst", PASSWORD).status_code == 303
    assert _attempt(app, attacker, "analyst", "wrong again, once").status_code == 401  # reset
    events = users.auth_events(1000, account="analyst", event="login_throttled")
    assert len(events) == throttled + 1
    assert {(e.account, e.address) for e in events} == {("analyst", attacker)}
    assert events[0].at == blocked_at and events[0].detail == f"retry after {wait} s"


def test_password_spray_from_one_address_is_slowed_but_not_a_lockout(store: AlertStore) -> None:
    app = create_app(WebSettings(login_max_failures_ip=12), store=store)
    users: UserStore = app.state.users
    clock = _Clock()
    users.now = clock
    sprayer = "203.0.113.9"
    codes = [_attempt(app, sprayer, f"user{i}", "password1234").status_code for i in range(16)]
    first_throttled = codes.index(429)
    assert first_throttled == app.state.settings.login_max_failures_ip
    assert _attempt(app, "198.51.100.1", "viewer", PASSWORD).status_code == 303
    blocked = _attempt(app, sprayer, "viewer", PASSWORD)
    assert blocked.status_code == 429
    clock.advance(int(blocked.headers["retry-after"]))
    assert _attempt(app, sprayer, "viewer", PASSWORD).status_code == 303


def test_throttle_is_shared_by_server_processes(store: AlertStore) -> None:
    """Two apps on one database (two workers): failures counted by one throttle the other."""
    one, two = (create_app(WebSettings(login_max_failures=3), store=store) for _ in range(2))
    for _ in range(3):
        assert _attempt(one, "192.0.2.1", "admin", "not the password").status_code == 401
    assert _attempt(two, "192.0.2.1", "admin", PASSWORD).status_code == 429


# --------------------------------------------------------------------------- 5. limits


def test_huge_bodies_get_413(client: TestClient) -> None:
    tok = login(client, "analyst")
    h = {"X-CSRF-Token": tok}
    huge = {"kind": "domain", "value": "x.com", "reason": "r" * (20 << 20)}
    r = client.post("/api/allowlist", json=huge, headers=h)
    assert r.status_code == 413 and len(r.content) < 200
    # streamed without a Content-Length: counted as it comes in
    body = json.dumps(huge).encode()
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    r = client.post(
        "/api/allowlist", content=chunks, headers={**h, "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["detail"].startswith("the request body is larger")
    # a page form too
    r = client.post("/allowlist", data={"csrf_token": tok, "reason": "r" * (2 << 20)})
    assert r.status_code == 413


def test_body_limit_is_a_setting(store: AlertStore) -> None:
    app = create_app(WebSettings(max_body_bytes=4096), store=store)
    with TestClient(app) as c:
        tok = login(c, "analyst")
        r = c.post(
            "/api/allowlist",
            json={"kind": "domain", "value": "x.com", "reason": "r" * 5000},
            headers={"X-CSRF-Token": tok},
        )
        assert r.status_code == 413


def test_validation_errors_never_echo_a_value_in_full(client: TestClient) -> None:
    tok = login(client, "analyst")
    r = client.post(
        "/api/allowlist",
        json={"kind": "domain", "value": "x.com", "reason": "A" * 900_000},
        headers={"X-CSRF-Token": tok},
    )
    assert r.status_code == 422 and len(r.content) < 1000
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "reason"] and err["input"].endswith("… (900000 chars)")
    assert err["input"].startswith("A" * 64) and "A" * 65 not in err["input"]
    r = client.post(
        "/api/allowlist",
        json={"kind": "domain", "value": ["x"] * 100_000, "reason": "r"},
        headers={"X-CSRF-Token": tok},
    )
    assert r.status_code == 422 and len(r.content) < 1000
    # a value the schema cannot judge is a 422 of the same shape
    r = client.post(
        "/api/allowlist",
        json={"kind": "domain", "value": "https://x.com/a", "reason": "r"},
        headers={"X-CSRF-Token": tok},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "value_error"


# --------------------------------------------------------------------------- 6. OpenAPI


def test_method_not_allowed_names_every_method_of_the_path(client: TestClient) -> None:
    token = UserStore(client.app.state.store.engine).new_token("admin")  # type: ignore[attr-defined]
    h = {"Authorization": f"Bearer {token}"}
    r = client.put("/api/allowlist", headers=h)
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    r = client.options("/api/allowlist/1", headers=h)
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, PATCH"


def test_precision_k_errors_are_a_list(client: TestClient) -> None:
    token = UserStore(client.app.state.store.engine).new_token("viewer")  # type: ignore[attr-defined]
    r = client.get(
        "/api/model/precision", params={"k": [0]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 600  # a ceiling, not an expectation
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc is not None:
                assert proc.poll() is None, "the server exited"
            time.sleep(0.1)
    raise AssertionError("the server did not start")


#: The operations that can take the run's own credentials away (revoking its token,
#: demoting or disabling its admin): fuzzed last, in a run of their own.
_SELF_HARM = r"^/api/(tokens/|users/\{name\}$)"


def test_openapi_conformance_schemathesis(store: AlertStore, tmp_path: Path) -> None:
    """schemathesis's checks (status codes, response schemas, headers, Allow, positive and
    negative data, ...) against a live server, every phase, bounded examples."""
    require_module("schemathesis", reason="the dev extra is not installed")
    import threading

    import uvicorn

    from dnsieve.web.workers import SERVER_OPTIONS

    port = _free_port()
    token = UserStore(store.engine).new_token("admin")
    app = create_app(WebSettings(), store=store)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **SERVER_OPTIONS)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def st(*select: str) -> subprocess.CompletedProcess[str]:
        cmd = [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "--no-color",
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--max-examples",
            "12",
            "--seed",
            "12",
            *select,
        ]
        # from tmp_path: st keeps a cache (.schemathesis/) in its working directory
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path
        )

    try:
        _wait_listening(port)
        runs = [st("--exclude-path-regex", _SELF_HARM), st("--include-path-regex", _SELF_HARM)]
    finally:
        server.should_exit = True
        thread.join(30)
    tested = []
    for out in runs:
        summary = out.stdout[-6000:]
        assert out.returncode == 0, summary
        found = re.search(r"Tested: (\d+)", out.stdout)
        assert found and re.search(r"\d+ generated", out.stdout), summary
        tested.append(int(found.group(1)))
    assert tested[0] >= 18 and tested[1] == 2, tested


# --------------------------------------------------------------------------- 7. Server header


def test_serve_sends_no_server_header(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [sys.executable, "-c", "from dnsieve.cli import app; app()", "serve"]
    cmd += ["--db", f"sqlite:///{tmp_path / 's.db'}", "--port", str(port)]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, env={**os.environ, "DNSIEVE_WEB_SECRET": "s" * 48})
    try:
        _wait_listening(port, proc)
        with socket.create_connection(("127.0.0.1", port), timeout=120) as c:
            c.sendall(b"GET /login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            got = b""
            while chunk := c.recv(65536):
                got += chunk
        head = got.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200")
        assert b"\r\nserver:" not in head, head
    finally:
        proc.terminate()
        proc.wait(timeout=600)  # a ceiling: a loaded machine only waits longer


def test_worker_config_drops_the_server_header() -> None:
    import uvicorn

    from dnsieve.web import workers

    if not workers.reuse_port_supported():
        pytest.skip("the balanced workers are Linux only")
    config = uvicorn.Config("x:y", host="127.0.0.1", port=0, workers=2)
    assert config.server_header is True  # uvicorn's default
    ran: list[Any] = []
    original = workers.BalancedWorkers
    try:
        workers.BalancedWorkers = lambda cfg: type(  # type: ignore[assignment,misc]
            "Fake", (), {"run": lambda self: ran.append(cfg)}
        )()
        workers.run_workers(config)
    finally:
        workers.BalancedWorkers = original  # type: ignore[misc]
    assert ran == [config]
    assert config.server_header is False and config.proxy_headers is False
    # the protocol travels as an import path: a class would be unpickled (importing the app)
    # before a worker answers the supervisor's health check, and a slow worker is killed
    assert isinstance(config.http, str)
    from uvicorn.importer import import_from_string

    if workers.BoundedHttpToolsProtocol is None:  # no httptools: h11 has its own limit
        assert config.http == "h11"
    else:
        assert import_from_string(config.http) is workers.BoundedHttpToolsProtocol


# --------------------------------------------------------------------------- the same faults elsewhere


def test_a_long_next_is_dropped_not_echoed(client: TestClient) -> None:
    """The login page echoed any ``next`` (60 KB came back in the page and the form)."""
    r = client.get("/login", params={"next": "/alerts?q=" + "a" * 10_000})
    assert r.status_code == 200 and "a" * 3000 not in r.text
    r = client.get("/alerts", params={"q": "x" * 200}, follow_redirects=False)
    assert r.headers["location"].startswith("/login?next=")  # a normal one is kept


def test_a_password_the_login_form_cannot_carry_is_refused(store: AlertStore) -> None:
    """The form reads 1,024 characters of a password: a longer one could never log in."""
    from dnsieve.web.users import MAX_PASSWORD, UserError

    users = UserStore(store.engine)
    with pytest.raises(UserError, match="at most"):
        users.set_password("viewer", "p" * (MAX_PASSWORD + 1))
    users.set_password("viewer", "p" * MAX_PASSWORD)
    assert users.authenticate("viewer", "p" * MAX_PASSWORD) is not None


def test_deeply_nested_json_is_a_documented_400(client: TestClient) -> None:
    token = UserStore(client.app.state.store.engine).new_token("analyst")  # type: ignore[attr-defined]
    r = client.post(
        "/api/allowlist",
        content=b"[" * 200_000 + b"]" * 200_000,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    spec = client.app.openapi()  # type: ignore[attr-defined]
    assert "400" in spec["paths"]["/api/allowlist"]["post"]["responses"]


def test_a_huge_request_head_gets_431(store: AlertStore) -> None:
    """uvicorn's httptools parser read any amount of headers (an 8 MB one was answered 200):
    the servers dnsieve starts stop at MAX_HEAD_BYTES."""
    import threading

    import uvicorn

    from dnsieve.web.workers import MAX_HEAD_BYTES, SERVER_OPTIONS

    port = _free_port()
    app = create_app(WebSettings(), store=store)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", **SERVER_OPTIONS)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def ask(head: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as c:
            with contextlib.suppress(OSError):  # the server may close before all is sent
                c.sendall(head + b"\r\n")
            got = b""
            with contextlib.suppress(OSError):
                while chunk := c.recv(65536):
                    got += chunk
            return got.split(b"\r\n", 1)[0]

    try:
        _wait_listening(port)
        base = b"GET /login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        assert ask(base) == b"HTTP/1.1 200 OK"
        assert ask(base + b"X-Pad: " + b"a" * (MAX_HEAD_BYTES // 2) + b"\r\n") == b"HTTP/1.1 200 OK"
        big = base + b"X-Pad: " + b"a" * (8 << 20) + b"\r\n"
        assert ask(big).startswith(b"HTTP/1.1 431")
        many = base + b"".join(b"X-%d: a\r\n" % i for i in range(20_000))
        assert ask(many).startswith(b"HTTP/1.1 431")
        url = b"GET /login?next=/" + b"a" * (MAX_HEAD_BYTES + 1) + b" HTTP/1.1\r\nHost: t\r\n"
        assert ask(url).startswith(b"HTTP/1.1 4")
    finally:
        server.should_exit = True
        thread.join(30)
