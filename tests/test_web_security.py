"""Security of the Alert Manager: access control, CSRF, headers, rate limiting, XSS, fuzzing.

Routes are enumerated from ``app.routes``, so a route added later cannot be
forgotten: every ``/api`` route must refuse anonymous callers, and every
form POST must refuse a missing or wrong CSRF token.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import markupsafe
import polars as pl
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from conftest import require_module
from dnsieve.alerts import AlertStore
from dnsieve.web import WebSettings, create_app
from dnsieve.web.security import CSP
from dnsieve.web.users import UserStore
from test_web import (
    HOSTILE,
    HOSTILE_PAIR,
    PASSWORD,
    _api,
    alert_ids,
    csrf_of,
    login,
    open_web_store,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = open_web_store(tmp_path)
    yield s
    s.close()


@pytest.fixture
def app(store: AlertStore) -> Any:
    return create_app(WebSettings(login_max_failures=5), store=store)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


_DUMMY = {"alert_id": "0123456789abcdef01234567", "entry_id": "1", "version_id": "1"}


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: _DUMMY.get(m.group(1), "1"), path)


def _walk(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, including those of included routers (FastAPI ≥ 0.13x keeps them nested)."""
    out: list[APIRoute] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r)
        elif hasattr(r, "original_router"):
            out += _walk(r.original_router.routes)
    return out


def _routes(app: Any, api: bool) -> list[tuple[str, str]]:
    out = []
    for r in _walk(app.routes):
        if r.path.startswith("/api/") == api:
            out += [(m, _fill(r.path)) for m in sorted(r.methods or ()) if m != "HEAD"]
    return out


def test_route_enumeration_is_complete(app: Any) -> None:
    """The walk finds exactly the operations of the OpenAPI spec (so none is forgotten)."""
    spec = app.openapi()
    documented = {(m.upper(), _fill(p)) for p, ops in spec["paths"].items() for m in ops}
    assert set(_routes(app, api=True)) == documented


def _post_json(method: str) -> dict[str, Any]:
    return {"json": {}} if method in ("POST", "PATCH", "PUT") else {}


# --------------------------------------------------------------------------- access control


def test_every_api_route_refuses_anonymous_access(app: Any, client: TestClient) -> None:
    routes = _routes(app, api=True)
    assert len(routes) >= 12 and ("POST", _fill("/api/alerts/{alert_id}/verdict")) in routes
    for method, path in routes:
        r = client.request(method, path, **_post_json(method))
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = client.request(method, path, headers={"Authorization": "Bearer dnsv_forged"})
        assert r.status_code == 401, (method, path)
    assert client.get("/openapi.json").status_code == 401


def test_every_page_needs_a_login(app: Any, client: TestClient) -> None:
    routes = [
        (m, p)
        for m, p in _routes(app, api=False)
        if p not in ("/login", "/", "/openapi.json", "/favicon.ico")
    ]
    assert len(routes) >= 12
    icon = client.get("/favicon.ico")  # public, and carries nothing
    assert icon.status_code == 204 and icon.content == b""
    for method, path in routes:
        r = client.request(method, path, follow_redirects=False)
        if method == "GET":
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
        else:  # no session: sent to log in, or refused for want of a CSRF token
            assert r.status_code in (303, 403), (method, path)
            if r.status_code == 303:
                assert r.headers["location"].startswith("/login?next="), path


def test_session_api_writes_need_the_csrf_header(app: Any, client: TestClient) -> None:
    login(client, "admin")
    for method, path in _routes(app, api=True):
        if method == "GET":
            assert client.get(path).status_code in (200, 404), path
            continue
        for headers in ({}, {"X-CSRF-Token": "wrong"}):
            r = client.request(method, path, headers=headers, **_post_json(method))
            assert r.status_code == 403, (method, path, headers)


def test_viewer_cannot_give_verdicts_or_edit(client: TestClient, store: AlertStore) -> None:
    tok = login(client, "viewer")
    aid = store.list_alerts(limit=1)[0].id
    page = client.get(f"/alerts/{aid}").text
    assert "/verdict" not in page  # no buttons for a viewer ...
    r = client.post(f"/alerts/{aid}/verdict", data={"label": "threat", "csrf_token": tok})
    assert r.status_code == 403  # ... and the server refuses anyway
    r = client.post(
        f"/api/alerts/{aid}/verdict", json={"label": "threat"}, headers={"X-CSRF-Token": tok}
    )
    assert r.status_code == 403
    tokv = UserStore(store.engine).new_token("viewer")
    r = client.post(
        f"/api/alerts/{aid}/verdict",
        json={"label": "threat"},
        headers={"Authorization": f"Bearer {tokv}"},
    )
    assert r.status_code == 403
    data = {"kind": "domain", "value": "x.com", "reason": "r", "csrf_token": tok}
    assert client.post("/allowlist", data=data).status_code == 403
    assert store.get_alert(aid).status == "new" and store.audit_trail() == []
    assert store.list_allow(include_inactive=True) == []


def test_only_admins_roll_back_the_model(client: TestClient, store: AlertStore) -> None:
    store.save_model_version("threat", {"n": 1})
    store.save_model_version("threat", {"n": 2})
    tok = login(client, "analyst")
    assert client.post("/model/1/activate", data={"csrf_token": tok}).status_code == 403
    assert store.active_model_version().id == 2  # type: ignore[union-attr]


# --------------------------------------------------------------------------- CSRF


def test_csrf_enforced_on_every_form_post(app: Any, client: TestClient, store: AlertStore) -> None:
    posts = [p for m, p in _routes(app, api=False) if m == "POST"]
    assert {"/login", "/logout", "/allowlist"} <= set(posts) and len(posts) >= 7
    login(client, "admin")
    form = {"label": "threat", "kind": "domain", "value": "x.com", "reason": "r"}
    for path in posts:
        for extra in ({}, {"csrf_token": "wrong"}, {"csrf_token": ""}):
            r = client.post(path, data={**form, **extra}, follow_redirects=False)
            assert r.status_code == 403, (path, extra)
    assert store.audit_trail() == [] and store.list_allow(include_inactive=True) == []
    assert client.get("/alerts", follow_redirects=False).status_code == 200  # still logged in


def test_token_from_another_session_is_refused(app: Any, store: AlertStore) -> None:
    with TestClient(app) as a, TestClient(app) as b:
        tok_a = login(a, "analyst")
        login(b, "analyst")
        aid = store.list_alerts(limit=1)[0].id
        r = b.post(f"/alerts/{aid}/verdict", data={"label": "threat", "csrf_token": tok_a})
        assert r.status_code == 403


# --------------------------------------------------------------------------- headers, cookies


def test_csp_and_security_headers(client: TestClient, store: AlertStore) -> None:
    pages = ["/login"]
    anonymous = client.get("/login")
    login(client, "viewer")
    aid = store.list_alerts(detector="volume", limit=1)[0].id
    pages += ["/alerts", f"/alerts/{aid}", "/allowlist", "/review", "/model", "/runs", "/docs"]
    for r in [anonymous, *(client.get(p) for p in pages[1:]), client.get("/alerts/abcdef")]:
        h = r.headers
        assert h["content-security-policy"] == CSP
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer" and h["cache-control"] == "no-store"
        assert "strict-transport-security" not in h
        # no inline script on any page: every <script> has a src or is a JSON data block
        for tag in re.findall(r"<script[^>]*>", r.text):
            assert 'src="/' in tag or 'type="application/json"' in tag, tag
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", r.text)  # no inline event handlers
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["script-src"] == "'self'" and directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert "unsafe-eval" not in CSP and "'unsafe-inline'" not in directives["script-src"]
    api = client.get("/api/alerts/counts")
    assert api.headers["content-security-policy"] == CSP


def test_static_files_are_cacheable_and_pages_are_not(client: TestClient) -> None:
    """BokehJS is versioned in its URL, so browsers may keep it; app CSS is revalidated."""
    from dnsieve.web.plots import bokeh_script_urls

    (js,) = bokeh_script_urls()
    assert "?v=" in js
    assert client.get(js).headers["cache-control"] == "public, max-age=31536000, immutable"
    css = client.get("/static/app.css")
    assert css.status_code == 200 and css.headers["cache-control"] == "no-cache"
    assert client.get("/login").headers["cache-control"] == "no-store"


def test_allowlist_prefill_is_inert(client: TestClient, store: AlertStore) -> None:
    """The "allow-list this" link carries attacker-controlled names into the form."""
    login(client, "analyst")
    evil = '"><script>alert(1)</script>'
    html = client.get("/allowlist", params={"kind": "domain", "value": evil, "detector": evil}).text
    assert "<script>alert(1)" not in html
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert '<option value="domain" selected>' in html
    bogus = client.get("/allowlist", params={"kind": "bogus"}).text
    assert " selected>" not in bogus.split('name="kind"')[1].split("</select>")[0]


def test_https_only_cookie_and_hsts(store: AlertStore) -> None:
    app = create_app(WebSettings(https_only=True), store=store)
    with TestClient(app, base_url="https://testserver") as c:
        tok = csrf_of(c.get("/login").text)
        r = c.post(
            "/login",
            data={"username": "viewer", "password": PASSWORD, "csrf_token": tok},
            follow_redirects=False,
        )
        assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
        assert r.headers["strict-transport-security"].startswith("max-age=")


def test_tampered_session_cookie_is_ignored(client: TestClient) -> None:
    login(client, "viewer")
    value = client.cookies["dnsieve_session"]
    _, _, sig = value.partition(".")
    import base64
    import json

    forged = base64.b64encode(json.dumps({"uid": 3, "user": "admin"}).encode()).decode()
    client.cookies.set("dnsieve_session", forged + "." + sig)
    assert client.get("/alerts", follow_redirects=False).status_code == 303


def test_login_next_is_never_an_open_redirect(client: TestClient) -> None:
    for target in ("//evil.com/x", "https://evil.com", "/\\evil.com", "javascript:alert(1)"):
        tok = csrf_of(client.get("/login").text)
        r = client.post(
            "/login",
            data={"username": "viewer", "password": PASSWORD, "csrf_token": tok, "next": target},
            follow_redirects=False,
        )
        assert r.headers["location"] == "/alerts", target
        client.post("/logout", data={"csrf_token": csrf_of(client.get("/alerts").text)})


# --------------------------------------------------------------------------- rate limiting


def test_login_rate_limiting(client: TestClient) -> None:
    frozen = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # the back-off's clock stands still
    client.app.state.users.now = lambda: frozen  # type: ignore[attr-defined]
    tok = csrf_of(client.get("/login").text)

    def attempt(user: str, password: str) -> Any:
        return client.post(
            "/login",
            data={"username": user, "password": password, "csrf_token": tok},
            follow_redirects=False,
        )

    for _ in range(5):
        assert attempt("analyst", "guess-" + "x" * 12).status_code == 401
    blocked = attempt("analyst", PASSWORD)  # even the right password waits now
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "Too many failed attempts" in blocked.text
    assert attempt("ANALYST", PASSWORD).status_code == 429  # names are case-folded
    assert attempt("viewer", PASSWORD).status_code == 303  # other users are unaffected


def test_login_rate_limit_per_ip(store: AlertStore) -> None:
    app = create_app(WebSettings(login_max_failures_ip=8), store=store)
    frozen = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    app.state.users.now = lambda: frozen
    with TestClient(app) as c:
        tok = csrf_of(c.get("/login").text)
        codes = [
            c.post(
                "/login", data={"username": f"user{i}", "password": "x", "csrf_token": tok}
            ).status_code
            for i in range(10)
        ]
        assert codes[:8] == [401] * 8 and codes[8:] == [429, 429]


# --------------------------------------------------------------------------- XSS


def _assert_inert(text: str, raw: str) -> None:
    """``raw`` never appears as markup; its HTML-escaped form does."""
    assert raw not in text
    assert str(markupsafe.escape(raw)) in text


def test_hostile_names_render_escaped(client: TestClient, store: AlertStore) -> None:
    tok = login(client, "analyst")
    queue = client.get("/alerts", params={"per_page": 200}).text
    for name in (*HOSTILE, HOSTILE_PAIR):
        a = store.list_alerts(entity=name)[0]
        detail = client.get(f"/alerts/{a.id}").text
        for page in (queue, detail):
            if "<" in name or '"' in name:
                _assert_inert(page, name.split(".")[0] if "<script>" in name else name)
        assert "<script>alert(1)" not in detail and "<img src=x" not in detail
        assert '"onmouseover=' not in detail
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.evil.com" in queue
    assert "&#34;onmouseover=alert(1)&#34;.evil.com" in queue
    assert "\\x00\\xff&lt;b&gt;.nul.evil.com" in queue
    assert "a" * 250 + ".long-label.com" in queue
    assert "&lt;img src=x onerror=alert(1)&gt;" in queue
    # allow-list page: value, reason and the comment of a verdict are attacker-controlled too
    r = client.post(
        "/allowlist",
        data={
            "kind": "detector_entity",
            "detector": "tunnel",
            "value": HOSTILE[1],
            "reason": "<svg onload=alert(2)>",
            "csrf_token": tok,
        },
    )
    assert r.status_code == 200
    assert "<svg onload" not in r.text and "&lt;svg onload=alert(2)&gt;" in r.text
    assert "&#34;onmouseover=alert(1)&#34;.evil.com" in r.text
    assert '"onmouseover=' not in r.text
    # the plot JSON keeps the names inert too (tojson escapes < > & ')
    pair = store.list_alerts(entity=HOSTILE_PAIR)[0]
    detail = client.get(f"/alerts/{pair.id}").text
    assert "<img" not in detail


def _dns_query(tid: int, labels: list[bytes]) -> bytes:
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    return struct.pack("!HHHHHH", tid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def write_hostile_pcap(path: Path, names: list[list[bytes]]) -> None:
    """A pcap of DNS queries whose wire-format labels carry hostile bytes."""
    import socket

    import dpkt

    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for i, labels in enumerate(names):
            udp = dpkt.udp.UDP(sport=40000 + i, dport=53, data=_dns_query(i + 1, labels))
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(
                src=socket.inet_aton("10.9.8.7"), dst=socket.inet_aton("10.0.0.53"), p=17, data=udp
            )
            ip.len = len(ip)
            eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip)
            w.writepkt(bytes(eth), ts=1714564800 + i)


WIRE_NAMES = [
    [b"<script>alert(1)</script>", b"pcap-evil", b"com"],
    [b'"onmouseover=alert(1)"', b"pcap-evil", b"com"],
    [b"\xff\xfe\x00<b>x", b"pcap-evil", b"com"],
    [b"a" * 63, b"b" * 63, b"c" * 63, b"<i>" + b"d" * 37, b"pcap-evil", b"com"],
]


def hostile_pcap_alerts(path: Path) -> tuple[pl.DataFrame, list[str]]:
    """Write the :data:`WIRE_NAMES` pcap at ``path`` and read it back through the pcap
    adapter: one tunnel anomaly per query name as decoded, and the decoded names."""
    import pyarrow as pa

    from dnsieve.ingest import read_file

    write_hostile_pcap(path, WIRE_NAMES)
    events = pl.from_arrow(pa.Table.from_batches(list(read_file(path))))
    assert isinstance(events, pl.DataFrame) and events.height == len(WIRE_NAMES)
    anomalies = events.select(
        detector=pl.lit("tunnel"),
        entity_type=pl.lit("domain"),
        entity=pl.col("qname"),
        window_start=pl.col("ts").dt.truncate("1h"),
        window_end=pl.col("ts").dt.truncate("1h") + pl.duration(hours=1),
        score=pl.lit(70.0),
        p_value=pl.lit(1e-7),
        evidence=pl.struct(
            queries=pl.lit(1), clients=pl.lit(1), sample_names=pl.concat_list(["qname"])
        ).struct.json_encode(),
    )
    return anomalies, events["qname"].to_list()


def test_hostile_names_from_a_crafted_pcap(
    tmp_path: Path, client: TestClient, store: AlertStore
) -> None:
    """Names as the pcap adapter decodes them from the wire (non-UTF-8 bytes → ``\\xNN``)."""
    anomalies, qnames = hostile_pcap_alerts(tmp_path / "hostile.pcap")
    assert (
        "\\xff\\xfe\\x00<b>x.pcap-evil.com" in qnames and len(max(qnames, key=len)) > 240
    )  # near the 255-octet wire limit
    assert store.upsert_anomalies(anomalies).inserted == len(WIRE_NAMES)
    tok = login(client, "analyst")
    queue = client.get("/alerts", params={"domain": "pcap-evil.com"}).text
    assert len(alert_ids(queue)) == len(WIRE_NAMES)
    for name in qnames:
        a = store.list_alerts(entity=name)[0]
        detail = client.get(f"/alerts/{a.id}").text
        for page in (queue, detail):
            assert name not in page or ("<" not in name and '"' not in name)
            assert str(markupsafe.escape(name)) in page
            assert "<script>alert(1)" not in page and '"onmouseover=' not in page
            assert "<b>x" not in page and "<i>ddd" not in page
    r = client.post(
        "/allowlist",
        data={
            "kind": "detector_entity",
            "detector": "tunnel",
            "value": qnames[0],
            "reason": qnames[1],
            "csrf_token": tok,
        },
    )
    assert r.status_code == 200 and "<script>alert(1)" not in r.text
    assert str(markupsafe.escape(qnames[0])) in r.text
    assert str(markupsafe.escape(qnames[1])) in r.text


# --------------------------------------------------------------------------- fuzzing


def test_openapi_fuzz_no_server_errors(app: Any, store: AlertStore) -> None:
    """Schemathesis generates requests from the spec (as an admin): no 5xx, ever."""
    schemathesis = require_module("schemathesis", reason="the dev extra is not installed")
    from hypothesis import HealthCheck, given, settings

    token = UserStore(store.engine).new_token("admin")
    auth = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 12
    failures: list[str] = []
    calls: list[int] = []
    for op in operations:

        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            resp = case.call(headers=auth)
            calls.append(resp.status_code)
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} → {resp.status_code}")

        check()
    assert failures == []
    assert len(calls) >= 5 * len(operations) and any(c < 300 for c in calls)
    # and the store still answers
    assert _api(TestClient(app, headers=auth), status="all")["total"] > 0
