"""The Definitions pages and /api/definitions: roles, validation, hunts, escaping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dnsieve.alerts.store import AlertStore
from dnsieve.lake import Lake
from dnsieve.web import WebSettings, create_app
from dnsieve.web.users import UserStore

DATA = Path(__file__).parent / "data"
PASSWORD = "correct horse battery staple 42"
RULE = """\
title: WRCCDC AAAA
logsource: {category: dns}
detection:
  sel: {query|endswith: .wrccdc.org, record_type: AAAA}
  condition: sel
tags: [attack.t1071.004]
"""
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore.open(f"sqlite:///{tmp_path / 'a.db'}")
    users = UserStore(s.engine)
    for name, role in (("ana", "analyst"), ("vic", "viewer"), ("root", "admin")):
        users.add_user(name, role, PASSWORD)
    yield s
    s.close()


@pytest.fixture()
def client(store: AlertStore, tmp_path: Path) -> Iterator[TestClient]:
    lake = tmp_path / "lake"
    Lake(lake).ingest_files([DATA / "zeek" / "brim_dns_head.log"])
    with TestClient(create_app(WebSettings(), store=store, lake=lake)) as c:
        yield c


def _login(c: TestClient, name: str) -> str:
    page = c.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    form = {"username": name, "password": PASSWORD}
    if token:
        form["csrf_token"] = token.group(1)
    r = c.post("/login", data=form, follow_redirects=False)
    assert r.status_code in (302, 303), r.text[:300]
    return _csrf(c, "/definitions")


def _csrf(c: TestClient, path: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', c.get(path).text)
    return m.group(1) if m else ""


def test_analyst_writes_fixes_tests_and_admin_enables(client: TestClient) -> None:
    csrf = _login(client, "ana")
    bad = RULE.replace("query|endswith", "Z")
    r = client.post(
        "/definitions",
        data={"csrf_token": csrf, "kind": "sigma", "body": bad, "reason": "r", "severity": "high"},
    )
    assert r.status_code == 422
    assert "field &#39;Z&#39;" in r.text or "field 'Z'" in r.text
    r = client.post(
        "/definitions",
        data={"csrf_token": csrf, "kind": "sigma", "body": RULE, "reason": "r", "severity": "high"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    url = r.headers["location"]
    page = client.get(url).text
    assert "draft" in page and "T1071.004" in page and "Enable</button>" not in page
    r = client.post(f"{url}/test", data={"csrf_token": _csrf(client, url)})
    assert "<strong>12</strong> matching events" in r.text
    assert "10.47.1.100" in r.text
    # An analyst cannot approve.
    assert (
        client.post(
            f"{url}/state", data={"csrf_token": _csrf(client, url), "state": "enabled"}
        ).status_code
        == 403
    )
    client.post("/logout", data={"csrf_token": _csrf(client, url)})
    _login(client, "root")
    r = client.post(
        f"{url}/state",
        data={"csrf_token": _csrf(client, url), "state": "enabled"},
        follow_redirects=True,
    )
    assert "is now enabled" in r.text


def test_viewer_reads_but_cannot_write(client: TestClient) -> None:
    csrf = _login(client, "vic")
    page = client.get("/definitions").text
    assert "New definition" not in page
    r = client.post(
        "/definitions", data={"csrf_token": csrf, "kind": "sigma", "body": RULE, "reason": "r"}
    )
    assert r.status_code == 403


def test_hostile_name_and_body_are_inert(client: TestClient) -> None:
    csrf = _login(client, "ana")
    r = client.post(
        "/definitions",
        data={
            "csrf_token": csrf, "kind": "watchlist", "name": HOSTILE,
            "body": f"wrccdc.org  # {HOSTILE}\n", "reason": HOSTILE,
        },
        follow_redirects=True,
    )  # fmt: skip
    assert r.status_code == 200
    assert HOSTILE not in r.text and "&lt;script&gt;" in r.text
    assert HOSTILE not in client.get("/definitions").text


def test_api_create_validate_hunt_and_state(client: TestClient, store: AlertStore) -> None:
    users = UserStore(store.engine)
    ana = {"Authorization": f"Bearer {users.new_token('ana')}"}
    root = {"Authorization": f"Bearer {users.new_token('root')}"}
    r = client.post(
        "/api/definitions",
        json={
            "name": "z",
            "kind": "sigma",
            "body": RULE.replace("query|endswith", "Z"),
            "reason": "r",
        },
        headers=ana,
    )
    assert r.status_code == 422 and "field 'Z'" in r.json()["detail"][0]["msg"]
    r = client.post(
        "/api/definitions",
        json={"name": "w", "kind": "sigma", "body": RULE, "reason": "r"},
        headers=ana,
    )
    assert r.status_code == 201, r.text
    d = r.json()
    r = client.post(f"/api/definitions/{d['id']}/hunt", json={}, headers=ana)
    assert r.status_code == 200 and r.json()["events"] == 12
    assert (
        client.post(
            f"/api/definitions/{d['id']}/state", json={"state": "enabled"}, headers=ana
        ).status_code
        == 403
    )
    r = client.post(f"/api/definitions/{d['id']}/state", json={"state": "enabled"}, headers=root)
    assert r.status_code == 200 and r.json()["state"] == "enabled"
    assert [x["name"] for x in client.get("/api/definitions", headers=ana).json()] == ["w"]
