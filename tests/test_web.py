"""The Alert Manager (``dnsieve.web``) with FastAPI's TestClient on a real SQLite store.

Alerts come from real DNS (the brimdata Zeek sample and the Korving iodine
dnsmasq log in tests/data, aggregated by ``test_alert_store.real_anomalies``)
plus a few alerts with hostile names; users are created through the same
``UserStore`` the ``dnsieve users`` command uses.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dnsieve.alerts import AlertStore
from dnsieve.cli import app as cli_app
from dnsieve.web import WebSettings, create_app
from dnsieve.web.users import UserStore
from test_alert_store import T0, one, real_anomalies

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PASSWORD = "correct horse battery staple"
HOSTILE = (
    "<script>alert(1)</script>.evil.com",
    '"onmouseover=alert(1)".evil.com',
    "\\x00\\xff<b>.nul.evil.com",
    "a" * 250 + ".long-label.com",
)
HOSTILE_PAIR = "10.66.6.6|<img src=x onerror=alert(1)>.evil.net"


def hostile_frame() -> Any:
    import polars as pl

    frames = [one(name, detector="tunnel", score=50.0 + i) for i, name in enumerate(HOSTILE)]
    frames.append(one(HOSTILE_PAIR, detector="beacon", entity_type="client_domain", score=40.0))
    return pl.concat(frames)


def open_web_store(tmp_path: Path) -> AlertStore:
    """A SQLite store: the real-data alerts, hostile alerts, and one user per role."""
    s = AlertStore.open(f"sqlite:///{tmp_path / 'alerts.db'}")
    s.upsert_anomalies(real_anomalies())
    s.upsert_anomalies(hostile_frame())
    users = UserStore(s.engine)
    for role in ("viewer", "analyst", "admin"):
        users.add_user(role, role, PASSWORD)
    return s


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


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    tok = csrf_of(client.get("/login").text)
    r = client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": tok, "next": "/alerts"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/alerts").text)


def alert_ids(html: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r'href="/alerts/([0-9a-f]{24})"', html)))


# --------------------------------------------------------------------------- login


def test_login_and_logout(client: TestClient) -> None:
    r = client.get("/alerts", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Falerts"
    tok = csrf_of(client.get("/login").text)
    bad = client.post("/login", data={"username": "analyst", "password": "nope", "csrf_token": tok})
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text
    r = client.post(
        "/login",
        data={"username": "analyst", "password": PASSWORD, "csrf_token": tok, "next": "/runs"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/runs"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/alerts")
    assert page.status_code == 200 and "analyst (analyst)" in page.text
    r = client.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/alerts", follow_redirects=False).status_code == 303


def test_unknown_user_and_disabled_session(client: TestClient, store: AlertStore) -> None:
    tok = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"username": "ghost", "password": PASSWORD, "csrf_token": tok})
    assert r.status_code == 401
    users: UserStore = client.app.state.users  # type: ignore[attr-defined]
    clock = [1000.0]
    users.clock = lambda: clock[0]
    login(client, "viewer")
    with store.engine.begin() as conn:  # deleted by another process: the session ends ...
        conn.exec_driver_sql("DELETE FROM web_users WHERE name = 'viewer'")
    clock[0] += users.auth_cache_ttl  # ... once the cached user has expired
    assert client.get("/alerts", follow_redirects=False).status_code == 303


# --------------------------------------------------------------------------- queue


def _api(c: TestClient, /, **params: Any) -> dict[str, Any]:
    r = c.get("/api/alerts", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_queue_filters_sort_and_pagination(client: TestClient, store: AlertStore) -> None:
    login(client, "viewer")
    everything = _api(client, per_page=200, status="all")
    n = everything["total"]
    assert n == len(store.list_alerts(status="all")) and n > 60
    assert everything["counts"] == store.count_by_status()

    by_det = _api(client, detector="nxdomain", per_page=200)
    assert by_det["total"] > 0 and {a["detector"] for a in by_det["items"]} == {"nxdomain"}
    page = client.get("/alerts", params={"detector": "nxdomain", "per_page": 200})
    assert set(alert_ids(page.text)) == {a["id"] for a in by_det["items"]}

    # domain filter: the domain and its subdomains, on a label boundary
    dom = _api(client, domain="evil.com", per_page=200)
    assert {a["entity"] for a in dom["items"]} == set(HOSTILE[:3])
    client_alerts = _api(client, client="10.66.6.6")
    assert [a["entity"] for a in client_alerts["items"]] == [HOSTILE_PAIR]
    found = _api(client, q="ONMOUSEOVER")
    assert [a["entity"] for a in found["items"]] == [HOSTILE[1]]
    prefix = everything["items"][0]["id"][:8]
    assert _api(client, q=prefix)["items"][0]["id"].startswith(prefix)

    newest = _api(client, sort="newest", per_page=200)["items"]
    starts = [a["window_start"] for a in newest]
    assert starts == sorted(starts, reverse=True)
    by_score = [a["score"] for a in _api(client, sort="score", per_page=200)["items"]]
    assert by_score == sorted(by_score, reverse=True)
    rank = {"critical": 3, "high": 2, "medium": 1, "low": 0}
    sev = [rank[a["severity"]] for a in _api(client, sort="severity", per_page=200)["items"]]
    assert sev == sorted(sev, reverse=True)

    # pages partition the queue, in order, and the HTML pager links work
    open_total = _api(client)["total"]
    pages = [_api(client, per_page=7, page=p)["items"] for p in range(1, -(-open_total // 7) + 1)]
    ids = [a["id"] for pg in pages for a in pg]
    assert len(ids) == open_total == len(set(ids))
    assert ids == [a["id"] for a in _api(client, per_page=200)["items"]]
    html = client.get("/alerts", params={"per_page": 7, "page": 2}).text
    assert alert_ids(html) == [a["id"] for a in pages[1]]
    assert 'rel="next"' in html and 'rel="prev"' in html
    for s, count in store.count_by_status().items():
        assert f"{s} {count}" in client.get("/alerts").text


def test_detail_page_evidence_plot_and_related(client: TestClient, store: AlertStore) -> None:
    login(client, "viewer")
    vol = store.list_alerts(detector="volume", limit=1)[0]
    html = client.get(f"/alerts/{vol.id}").text
    q = vol.evidence["queries"]
    assert f"queried {q} time" in html
    # the threat model's inputs in words behind a toggle, not its feature names
    assert "What the threat model weighed" in html and "rarity in the population" in html
    assert "neg_log_p" not in html.split('class="raw-evidence"')[0]
    # the reason up front, the raw evidence JSON kept behind a <details> toggle
    assert '<p class="reason">' in html and f"was queried {q:,} time" in html
    assert '<details class="raw-evidence">' in html
    related = [
        a for a in store.list_alerts(status="all") if a.domain == vol.domain and a.id != vol.id
    ]
    assert related and all(a.id in html for a in related[:5])
    # Bokeh: BokehJS served locally, the item JSON in a non-executed data block
    assert '<script src="/bokeh/static/js/bokeh.min.js' in html
    assert 'type="application/json" id="plot-data-volume"' in html
    js = client.get("/bokeh/static/js/bokeh.min.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/static/app.js").status_code == 200
    api = client.get(f"/api/alerts/{vol.id[:10]}").json()
    assert api["alert"]["id"] == vol.id and api["summary"][0].startswith("queried")
    assert api["reason"].startswith(f"{vol.entity} was queried") and api["rarity"].startswith(
        "1 in"
    )
    assert client.get("/alerts/ffffffffffff").status_code == 404
    assert client.get("/api/alerts/ffffffffffff").status_code == 404


def test_verdict_acts_at_once_and_updates_score(client: TestClient, store: AlertStore) -> None:
    tok = login(client, "analyst")
    target = _api(client, detector="volume")["items"][0]
    r = client.post(
        f"/alerts/{target['id']}/verdict",
        data={"label": "threat", "comment": "beaconing <i>confirmed</i>", "csrf_token": tok},
    )
    assert r.status_code == 200
    assert "Verdict recorded: new → threat" in r.text and "P(threat) now" in r.text
    assert "beaconing &lt;i&gt;confirmed&lt;/i&gt;" in r.text
    a = store.get_alert(target["id"])
    assert a.status == "threat" and a.threat_probability is not None
    assert store.audit_trail(a.id)[-1].actor == "analyst"
    assert target["id"] not in {x["id"] for x in _api(client, per_page=200)["items"]}
    assert target["id"] in {x["id"] for x in _api(client, status="threat")["items"]}
    # the other open alerts were re-scored by the new model version
    assert all(x["threat_probability"] is not None for x in _api(client, per_page=200)["items"])
    assert len(store.list_model_versions()) == 1
    # an invalid transition is a clear 400, not a crash
    again = client.post(
        f"/alerts/{target['id']}/verdict", data={"label": "threat", "csrf_token": tok}
    )
    assert again.status_code == 400 and "already" in again.text


def test_allowlist_entry_hides_covered_alerts(client: TestClient, store: AlertStore) -> None:
    tok = login(client, "analyst")
    before = {a["entity"] for a in _api(client, per_page=200)["items"]}
    assert set(HOSTILE[:3]) <= before
    r = client.post(
        "/allowlist",
        data={
            "kind": "suffix",
            "value": "evil.com",
            "reason": "red-team exercise <script>x</script>",
            "expires": "7d",
            "csrf_token": tok,
        },
    )
    assert r.status_code == 200 and "it suppresses 3 alert(s)" in r.text
    after = {a["entity"] for a in _api(client, per_page=200)["items"]}
    assert after == before - set(HOSTILE[:3])
    shown = _api(client, per_page=200, include_suppressed="true")["items"]
    assert {a["entity"] for a in shown if a["suppressed"]} == set(HOSTILE[:3])
    entry = store.list_allow()[0]
    assert entry.author == "analyst" and entry.expires_at is not None
    # expire now: kept as history, the alerts come back at once
    r = client.post(f"/allowlist/{entry.id}/expire", data={"csrf_token": tok})
    assert r.status_code == 200 and "is now expired" in r.text
    assert {a["entity"] for a in _api(client, per_page=200)["items"]} == before
    # a second entry, removed through the API with the session's CSRF header
    r = client.post(
        "/api/allowlist",
        json={"kind": "detector_entity", "value": HOSTILE[0], "detector": "tunnel", "reason": "t"},
        headers={"X-CSRF-Token": tok},
    )
    assert r.status_code == 201 and r.json()["suppresses"] == 1
    assert HOSTILE[0] not in {a["entity"] for a in _api(client, per_page=200)["items"]}
    r = client.delete(f"/api/allowlist/{r.json()['id']}", headers={"X-CSRF-Token": tok})
    assert r.status_code == 200 and r.json()["state"] == "removed"
    assert HOSTILE[0] in {a["entity"] for a in _api(client, per_page=200)["items"]}
    bad = client.post(
        "/allowlist",
        data={"kind": "domain", "value": "https://x.com/a", "reason": "r", "csrf_token": tok},
    )
    assert bad.status_code == 400
    silly = client.post(
        "/api/allowlist",
        json={"kind": "domain", "value": "x.com", "reason": "r", "expires": "99999999999999w"},
        headers={"X-CSRF-Token": tok},
    )
    assert silly.status_code == 422 and "expiry" in silly.json()["detail"][0]["msg"]


def test_review_model_rollback_and_runs(client: TestClient, store: AlertStore) -> None:
    rid = store.start_run({"paths": ["dns.log.gz"], "format": "zeek"})
    store.finish_run(rid, {"records": 53615, "alerts": 65}, {"bad_qname": 3})
    tok = login(client, "admin")
    review = client.get("/api/review", params={"k": 10}).json()
    assert len(review) == 10 and all(i["priority"] is not None for i in review)
    assert all(i["alert"]["status"] == "new" for i in review)
    assert alert_ids(client.get("/review").text)[:10] == [i["alert"]["id"] for i in review]
    ids = [i["alert"]["id"] for i in review[:2]]
    for aid, label in zip(ids, ("threat", "benign"), strict=True):
        r = client.post(
            f"/api/alerts/{aid}/verdict",
            json={"label": label, "comment": "ok"},
            headers={"X-CSRF-Token": tok},
        )
        assert r.status_code == 200 and r.json()["new_status"] == label
    summary = client.get("/api/model").json()
    assert [v["id"] for v in summary["versions"]] == [2, 1]
    assert summary["verdicts"] == {"threat": 1, "benign": 1, "not_relevant": 0}
    r = client.post("/model/1/activate", data={"csrf_token": tok})
    assert r.status_code == 200 and "Model version 1 is active" in r.text
    assert store.active_model_version().id == 1  # type: ignore[union-attr]
    runs = client.get("/runs").text
    assert "dns.log.gz" in runs and "bad_qname: 3" in runs
    assert client.get("/api/runs").json()[0]["rejects"] == {"bad_qname": 3}


def test_api_token_auth(client: TestClient, store: AlertStore) -> None:
    users = UserStore(store.engine)
    tok = users.new_token("analyst")
    h = {"Authorization": f"Bearer {tok}"}
    assert client.get("/api/me", headers=h).json() == {"name": "analyst", "role": "analyst"}
    aid = store.list_alerts(limit=1)[0].id
    r = client.post(f"/api/alerts/{aid}/verdict", json={"label": "benign"}, headers=h)
    assert r.status_code == 200 and r.json()["alert"]["status"] == "benign"
    for bad in ("Bearer nope", "Bearer " + tok[:-1] + "x", "Basic YTpi", tok):
        r = client.get("/api/alerts", headers={"Authorization": bad})
        assert r.status_code == 401, bad
    served: UserStore = client.app.state.users  # type: ignore[attr-defined]
    clock = [1000.0]
    served.clock = lambda: clock[0]
    assert client.get("/api/me", headers=h).status_code == 200  # cached from now on
    users.revoke_token(users.list_tokens("analyst")[0].id)  # by another process (the CLI)
    clock[0] += served.auth_cache_ttl
    assert client.get("/api/alerts", headers=h).status_code == 401


def test_auth_cache_ttl_and_invalidation(client: TestClient, store: AlertStore) -> None:
    """The user behind a token or a session is reused for ``auth_cache_ttl`` seconds: a
    change made by another process shows within that time, one made through the app's own
    user store at once."""
    served: UserStore = client.app.state.users  # type: ignore[attr-defined]
    other = UserStore(store.engine)  # as `dnsieve users ...` in another process
    clock = [1000.0]
    served.clock = lambda: clock[0]
    tok = other.new_token("viewer")
    h = {"Authorization": f"Bearer {tok}"}
    assert client.get("/api/me", headers=h).json() == {"name": "viewer", "role": "viewer"}
    other.set_role("viewer", "analyst")
    clock[0] += served.auth_cache_ttl / 2
    assert client.get("/api/me", headers=h).json()["role"] == "viewer"  # still cached
    clock[0] += served.auth_cache_ttl / 2
    assert client.get("/api/me", headers=h).json()["role"] == "analyst"
    with store.engine.begin() as conn:  # the account is disabled elsewhere
        conn.exec_driver_sql("UPDATE web_users SET disabled = 1 WHERE name = 'viewer'")
    clock[0] += served.auth_cache_ttl
    assert client.get("/api/me", headers=h).status_code == 401
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE web_users SET disabled = 0 WHERE name = 'viewer'")
    clock[0] += served.auth_cache_ttl
    assert client.get("/api/me", headers=h).status_code == 200
    # through the served store itself: at once, whatever the clock
    served.revoke_token(served.list_tokens("viewer")[0].id)
    assert client.get("/api/me", headers=h).status_code == 401
    # a wrong token is never cached, and the cache stays bounded
    assert client.get("/api/me", headers={"Authorization": "Bearer dnsv_nope"}).status_code == 401
    served.auth_cache_size = 2
    for _ in range(5):
        t = other.new_token("admin")
        assert client.get("/api/me", headers={"Authorization": f"Bearer {t}"}).status_code == 200
        assert len(served._auth) <= 2
    # a lookup that raced with a write (read before it, stored after it) is not kept
    _, at, gen = served._cache_get(("token", "h"))
    served.clear_cache()
    served._cache_put(("token", "h"), served.list_users()[0], at, gen)
    assert served._cache_get(("token", "h"))[0] is None
    # the session's user: cached too, and disabled accounts end their sessions
    login(client, "analyst")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE web_users SET disabled = 1 WHERE name = 'analyst'")
    assert client.get("/alerts", follow_redirects=False).status_code == 200
    clock[0] += served.auth_cache_ttl
    assert client.get("/alerts", follow_redirects=False).status_code == 303


def test_docs_and_openapi_for_users(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/docs", follow_redirects=False).status_code == 303
    login(client, "viewer")
    spec = client.get("/openapi.json").json()
    assert "/api/alerts" in spec["paths"] and "/api/alerts/{alert_id}/verdict" in spec["paths"]
    assert not any(p.startswith(("/alerts", "/login")) for p in spec["paths"])
    docs = client.get("/docs").text
    assert "/api/allowlist/{entry_id}" in docs


# --------------------------------------------------------------------------- CLI


def test_users_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "u.db")
    run = CliRunner().invoke
    r = run(cli_app, ["users", "add", "alice", "--role", "admin", "--db", db], input=PASSWORD)
    assert r.exit_code == 0 and "role admin" in r.output
    assert (
        run(
            cli_app, ["users", "add", "alice", "--role", "admin", "--db", db], input=PASSWORD
        ).exit_code
        == 2
    )
    assert (
        run(
            cli_app, ["users", "add", "bob", "--role", "root", "--db", db], input=PASSWORD
        ).exit_code
        == 2
    )
    assert (
        run(
            cli_app, ["users", "add", "bob", "--role", "viewer", "--db", db], input="short"
        ).exit_code
        == 2
    )
    r = run(cli_app, ["users", "passwd", "alice", "--db", db], input="another long password")
    assert r.exit_code == 0
    r = run(cli_app, ["users", "token", "alice", "--db", db])
    token = r.output.strip()
    assert r.exit_code == 0 and token.startswith("dnsv_")
    with AlertStore.open(db) as s:
        users = UserStore(s.engine)
        assert users.authenticate("alice", "another long password") is not None
        assert users.authenticate("alice", PASSWORD) is None
        assert users.user_for_token(token).name == "alice"  # type: ignore[union-attr]
        with TestClient(create_app(WebSettings(), store=s)) as c:
            r = c.get("/api/alerts/counts", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and r.json() == {}
    assert run(cli_app, ["users", "token", "nobody", "--db", db]).exit_code == 1
    assert "alice" in run(cli_app, ["users", "list", "--db", db]).output


def test_related_windows_are_linked(client: TestClient, store: AlertStore) -> None:
    # 12 h later: past the episode gap (6 h), so a second episode (alert) of the entity
    store.upsert_anomalies(one(HOSTILE[0], score=9.0, start=T0 + timedelta(hours=12)))
    login(client, "viewer")
    first = store.list_alerts(entity=HOSTILE[0], order="recent")
    assert len(first) == 2
    html = client.get(f"/alerts/{first[0].id}").text
    assert first[1].id in html


def test_users_migration_matches_the_tables(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from dnsieve.alerts.store import current_revision, upgrade
    from dnsieve.web.users import (
        auth_events_table,
        sessions_table,
        throttle_table,
        tokens_table,
        users_table,
    )

    with AlertStore.open(tmp_path / "m.db") as s:
        assert current_revision(s.engine) == "0008"
        insp = sa.inspect(s.engine)
        for table in (users_table, tokens_table, sessions_table, throttle_table, auth_events_table):
            assert {c["name"] for c in insp.get_columns(table.name)} == set(table.columns.keys())
        UserStore(s.engine).add_user("root", "admin", PASSWORD)
        # the role CHECK holds in the database too
        with pytest.raises(sa.exc.IntegrityError), s.engine.begin() as conn:
            conn.execute(sa.update(users_table).values(role="root"))
        from alembic import command

        from dnsieve.alerts.store import _alembic_config

        with s.engine.connect() as conn, conn.begin():
            command.downgrade(_alembic_config(conn), "0001")
        assert "web_users" not in sa.inspect(s.engine).get_table_names()
        upgrade(s.engine)
        assert current_revision(s.engine) == "0008"


def test_volume_detector_alert_card_and_plot(client: TestClient, store: AlertStore) -> None:
    """A real volume-detector alert: evidence in words, and the plot's band and outlier hours."""
    import json
    from datetime import UTC, datetime

    from dnsieve.detectors.base import DetectContext
    from dnsieve.detectors.volume import VolumeDetector

    t0 = datetime(2024, 4, 19, tzinfo=UTC)
    scored = VolumeDetector().score(
        VolumeDetector.example(), DetectContext(start=t0, end=t0 + timedelta(hours=72))
    )
    report = store.upsert_anomalies(scored.sort("score", descending=True).head(1))
    alert = store.get_alert(report.ids[0])
    assert "baseline" in alert.evidence and "top_hours" in alert.evidence
    login(client, "viewer")
    html = client.get(f"/alerts/{alert.id}").text
    assert "/h" in html and "× its baseline" in html and "busiest unusual hour" in html
    block = re.search(
        r'<script type="application/json" id="plot-data-volume">(.*?)</script>', html, re.S
    )
    assert block is not None
    item = json.loads(block.group(1))
    assert item["root_id"] and item["doc"]["roots"]  # app.js passes the target div
    types = json.dumps(item)
    assert "BoxAnnotation" in types and "VBar" in types and "Span" in types


def test_public_api() -> None:
    import dnsieve.web

    assert sorted(dnsieve.web.__all__) == ["WebSettings", "create_app"]
    assert all(hasattr(dnsieve.web, name) for name in dnsieve.web.__all__)


def test_tojson_keeps_key_order_for_bokeh_items() -> None:
    """Bokeh json_items define a model at its first occurrence and refer to it by id
    afterwards; sorting keys would put references before definitions and BokehJS
    fails with "reference ... isn't known". Escaping stays HTML-safe."""
    from dnsieve.web.render import make_environment

    out = make_environment().from_string("{{ x|tojson }}").render(x={"b": "</script>", "a": 2})
    assert out == '{"b": "\\u003c/script\\u003e", "a": 2}'


def test_evidence_sentences_in_plain_words() -> None:
    """The fast-flux detector's own evidence reads as a sentence; counts agree in number."""
    import json

    from dnsieve.detectors import DetectContext, get
    from dnsieve.web.evidence import evidence_sentences

    cls = get("fastflux")
    ex = cls.example(0)
    lo, hi = ex["ts"].min(), ex["ts"].max()
    ctx = DetectContext(start=lo, end=hi + timedelta(seconds=1), window=3600.0)  # type: ignore[operator,arg-type]
    out = cls().score(ex, ctx).sort("score", descending=True)
    ev = json.loads(out["evidence"][0])
    first = evidence_sentences("fastflux", "domain", ev)[0]
    assert first.startswith(f"answered with {ev['distinct_ips']} distinct addresses in ")
    assert f"{ev['distinct_slash16']} /16 networks" in first and "median TTL" in first
    assert evidence_sentences("volume", "domain", {"queries": 1, "clients": 1}) == [
        "queried 1 time by 1 client"
    ]


def test_served_app_freezes_its_startup_objects(tmp_path: Path) -> None:
    """`dnsieve serve` and the demo set ``freeze_gc``: at startup every template is compiled
    and the objects alive are moved out of the collector's reach (full collections took
    70-100 ms every 1.5 s under load); apps built by tests and other embedders do not."""
    import gc

    db = f"sqlite:///{tmp_path / 'g.db'}"
    gc.unfreeze()
    with TestClient(create_app(WebSettings(db_url=db))):
        assert gc.get_freeze_count() == 0
    app = create_app(WebSettings(db_url=db, freeze_gc=True))
    try:
        with TestClient(app):
            assert gc.get_freeze_count() > 10_000
            templates = app.state.templates  # every template compiled before the freeze
            assert len(templates.cache) == len(templates.list_templates()) > 5
    finally:
        gc.unfreeze()


def test_workers_share_settings_and_session_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dnsieve serve --workers N`: every worker builds the same app from the environment, and
    refuses to start without the one session key they must share."""
    from dnsieve.web.app import SECRET_ENV, WORKER_ENV, create_worker_app, worker_environment

    settings = WebSettings(db_url=f"sqlite:///{tmp_path / 'w.db'}", login_max_failures=7)
    monkeypatch.setenv(WORKER_ENV, worker_environment(settings, tmp_path / "lake"))
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(RuntimeError, match=SECRET_ENV):
        create_worker_app()
    monkeypatch.setenv(SECRET_ENV, "k" * 48)
    apps = [create_worker_app() for _ in range(2)]
    assert apps[0].state.settings == settings and apps[0].state.lake_path == tmp_path / "lake"
    assert "k" * 48 not in worker_environment(WebSettings(secret_key="k" * 48), None)
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        UserStore(apps[0].state.store.engine).add_user("viewer", "viewer", PASSWORD)
        login(a, "viewer")
        b.cookies = a.cookies  # the other worker accepts the session cookie
        assert b.get("/alerts", follow_redirects=False).status_code == 200


def test_worker_listener_keeps_tcp_nodelay() -> None:
    """The workers' listeners are marked TCP, so asyncio sets TCP_NODELAY on every
    connection (else each keep-alive response waits for a delayed ACK)."""
    import select
    import socket

    import uvicorn

    from dnsieve.web.workers import BalancedWorkers, worker_listener

    config = uvicorn.Config("x:y", host="127.0.0.1", port=0)
    shared = worker_listener(config)
    shared.listen()
    with shared, socket.create_connection(shared.getsockname()) as c:
        conn, _ = shared.accept()
        with conn:
            assert shared.proto == conn.proto == socket.IPPROTO_TCP
        c.close()
    balanced = BalancedWorkers(config)
    own = [balanced.listener(), balanced.listener()]  # one per worker, on one port
    assert own[0].getsockname() == own[1].getsockname()
    with socket.create_connection(own[0].getsockname()) as c:
        ready, _, _ = select.select(own, [], [], 10)  # the kernel picked one of the two
        conn, _ = ready[0].accept()
        with conn:
            assert ready[0].proto == conn.proto == socket.IPPROTO_TCP
    for sock in own:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    balanced.close_issued()
    assert all(sock.fileno() == -1 for sock in own)


def test_balanced_workers_refuse_a_port_in_use() -> None:
    """SO_REUSEPORT would let a second server share a busy port silently: it is refused."""
    import socket

    import uvicorn

    from dnsieve.web.workers import BalancedWorkers

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit):
            BalancedWorkers(uvicorn.Config("x:y", host="127.0.0.1", port=port, workers=2))


def _established_per_process(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections on local ``port`` each process holds (Linux)."""
    inodes: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                    inodes[int(cols[9])] = 1
    out = {}
    for pid in pids:
        n = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                    n += 1
        out[pid] = n
    return out


def test_serve_spreads_connections_over_workers(tmp_path: Path) -> None:
    """`dnsieve serve --workers 2` on Linux: every worker has its own SO_REUSEPORT listener,
    so a burst of keep-alive connections lands on both (with one shared listener the first
    worker to wake often took them all)."""
    import socket
    import subprocess
    import sys
    import time

    from dnsieve.web.workers import reuse_port_supported

    if not reuse_port_supported():
        pytest.skip("SO_REUSEPORT spreads connections on Linux only")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-c", "from dnsieve.cli import app; app()", "serve"]
    cmd += ["--db", f"sqlite:///{tmp_path / 'w.db'}", "--port", str(port), "--workers", "2"]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, env={**os.environ, "DNSIEVE_WEB_SECRET": "s" * 48})
    conns: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 600  # a ceiling, not an expectation
        workers: list[int] = []
        while time.monotonic() < deadline:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            workers = [  # the spawned workers, not multiprocessing's resource tracker
                int(k)
                for k in (kids.read_text().split() if kids.exists() else [])
                if b"resource_tracker" not in Path(f"/proc/{k}/cmdline").read_bytes()
            ]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                if len(workers) == 2:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "serve exited"
            time.sleep(0.2)
        time.sleep(1.0)  # both workers listening
        for _ in range(16):
            c = socket.create_connection(("127.0.0.1", port), timeout=120)
            c.sendall(b"GET /login HTTP/1.1\r\nHost: t\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got:
                got += c.recv(65536)
            assert got.startswith(b"HTTP/1.1 200"), got[:100]
            assert b"\r\nserver:" not in got.lower(), got[:300]  # no Server: uvicorn
            conns.append(c)
        per_worker = _established_per_process(workers, port)
        assert sum(per_worker.values()) == 16, per_worker
        assert all(n > 0 for n in per_worker.values()), per_worker
    finally:
        for c in conns:
            c.close()
        proc.terminate()
        proc.wait(timeout=600)  # a ceiling: a loaded machine only waits longer


def test_review_queue_spreads_over_campaigns(store: AlertStore) -> None:
    """Ten windows of one tunnel campaign and three other alerts: the first page of the
    review queue asks about each campaign before a second window of any of them."""
    from dnsieve.web.queue import review_queue

    for h in range(10):
        store.upsert_anomalies(
            one("tunnel-campaign.example", score=40.0 + h, start=T0 + timedelta(hours=h))
        )
    for i, det in enumerate(("dga", "beacon", "nxdomain")):
        store.upsert_anomalies(one(f"other{i}.example", detector=det, score=3.0))
    ours = {
        a.id for a in store.list_alerts(status="new", limit=10_000) if a.entity.endswith(".example")
    }
    picked = [a for a, _ in review_queue(store, k=50) if a.id in ours]
    first = [(a.detector, a.entity) for a in picked[:4]]
    assert len(set(first)) == 4, first
    # the ten windows are one alert (an episode): the queue asks about it once
    tunnel = [a for a in picked if a.entity == "tunnel-campaign.example"]
    assert len(tunnel) == 1 and tunnel[0].n_windows == 10


def test_review_queue_explores_as_verdicts_accumulate(tmp_path: Path) -> None:
    """The queue counts the verdicts already given: the first questions are about the top of
    the queue, and every fourth one explores (the most uncertain × impactful alert anywhere,
    here one ranked below the top 20), so the model also learns about what it ranks low."""
    from dnsieve.web.queue import review_queue

    store = AlertStore.open(f"sqlite:///{tmp_path / 'queue.db'}")
    for i in range(24):
        store.upsert_anomalies(one(f"sure{i}.example", detector="tunnel", score=20.0))
    store.upsert_anomalies(one("unsure.example", detector="volume", score=20.0))
    alerts = {a.entity: a for a in store.list_alerts(limit=10_000)}
    probs = {a.id: 0.9 - 0.001 * i for i, a in enumerate(alerts.values())}
    probs[alerts["unsure.example"].id] = 0.5
    store.set_threat_probabilities(probs)
    first = review_queue(store, k=1)[0][0]
    assert first.entity != "unsure.example"
    for i in range(3):  # three verdicts, recorded without retraining so P(threat) stays put
        store.record_verdict(alerts[f"sure{i}.example"].id, "threat", "analyst")
    assert review_queue(store, k=1)[0][0].entity == "unsure.example"
    store.close()


def test_queue_by_campaign(client: TestClient, store: AlertStore) -> None:
    """Ten windows of one tunnel are one campaign row, ranked by its worst window; its link
    opens exactly those windows; the API gives the same rows."""
    for h in range(10):
        store.upsert_anomalies(
            one("many-windows.example", score=40.0 + h, start=T0 + timedelta(hours=h))
        )
    store.set_threat_probabilities(
        {a.id: 0.99 for a in store.list_alerts(limit=10_000) if a.entity == "many-windows.example"}
    )
    login(client, "viewer")
    html = client.get("/alerts", params={"group": "campaign"}).text
    assert "campaign(s)" in html
    rows = re.findall(
        r"<tr>\s*<td>([^<]*)</td>\s*<td class=\"entity\"><a href=\"([^\"]+)\">([^<]*)</a></td>\s*<td>([^<]*)</td>",
        html,
    )
    assert rows[0][0] == "tunnel" and rows[0][2] == "many-windows.example" and rows[0][3] == "10"
    # every open alert is in exactly one campaign
    api = client.get("/api/campaigns", params={"per_page": 200}).json()
    assert api["items"][0]["entity"] == "many-windows.example"
    assert api["items"][0]["windows"] == 10 and api["items"][0]["score"] == 49.0
    assert api["items"][0]["threat_probability"] == 0.99
    assert sum(c["windows"] for c in api["items"]) == sum(
        a.n_windows for a in store.list_alerts(status="open", limit=10_000)
    )
    assert api["total"] == len(api["items"])
    # the campaign's link: the queue filtered to its alerts (its ten windows are one episode)
    link = rows[0][1].replace("&amp;", "&")
    assert "group" not in link
    assert len(alert_ids(client.get(link).text)) == 1
    assert client.get("/api/campaigns", params={"group": "bogus"}).status_code == 422
