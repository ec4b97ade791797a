"""The Alert Manager (``dnsieve.web``) with FastAPI's TestClient on a real SQLite store.

Alerts come from real DNS (the brimdata Zeek sample and the Korving iodine
dnsmasq log in tests/data, aggregated by ``test_alert_store.real_anomalies``)
plus a few alerts with hostile names; users are created through the same
``UserStore`` the ``dnsieve users`` command uses.
"""

from __future__ import annotations

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
    login(client, "viewer")
    with store.engine.begin() as conn:  # the account is deleted: the session ends at once
        conn.exec_driver_sql("DELETE FROM web_users WHERE name = 'viewer'")
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
    assert "Features" in html and "neg_log_p" in html
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
    assert silly.status_code == 400


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
    users.revoke_token(users.list_tokens("analyst")[0].id)
    assert client.get("/api/alerts", headers=h).status_code == 401


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
    store.upsert_anomalies(one(HOSTILE[0], score=9.0, start=T0 + timedelta(hours=3)))
    login(client, "viewer")
    first = store.list_alerts(entity=HOSTILE[0], order="recent")
    assert len(first) == 2
    html = client.get(f"/alerts/{first[0].id}").text
    assert first[1].id in html


def test_users_migration_matches_the_tables(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from dnsieve.alerts.store import current_revision, upgrade
    from dnsieve.web.users import tokens_table, users_table

    with AlertStore.open(tmp_path / "m.db") as s:
        assert current_revision(s.engine) == "0003"
        insp = sa.inspect(s.engine)
        for table in (users_table, tokens_table):
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
        assert current_revision(s.engine) == "0003"


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
