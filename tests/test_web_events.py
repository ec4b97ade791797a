"""The raw events behind an alert: :mod:`dnsieve.alerts.events`, the alert page and the API.

The lake holds real DNS (the brimdata Zeek sample and the Korving iodine
dnsmasq log in tests/data, see their READMEs) plus a Zeek log derived from
the brimdata rows whose query names are hostile.  Alerts come from the real
detectors run over that lake (:func:`dnsieve.jobs.run_job`) and from
per-minute candidates aggregated from the same captures
(``test_alert_store.real_anomalies``).  Every answer is checked against an
independent Polars query that reads the whole lake into memory and filters it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from dnsieve.alerts import Alert, AlertStore
from dnsieve.alerts.events import (
    EventsUnavailable,
    entity_hourly,
    events_for_alert,
    partition_hours,
)
from dnsieve.lake import Lake
from dnsieve.web import WebSettings, create_app
from dnsieve.web.users import UserStore
from test_alert_store import DATA, one, real_anomalies

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PASSWORD = "correct horse battery staple"
HOSTILE_T0 = datetime(2018, 3, 25, 3, 0, tzinfo=UTC)
HOSTILE_NAMES = (
    b"<script>alert(1)</script>.evil.com",
    b'"onmouseover=alert(1)".evil.com',
    b"\xff\xfe<b>bold</b>.evil.com",
)


def hostile_zeek_log(path: Path) -> Path:
    """The brimdata header and first rows, with hostile query names and answers and
    timestamps moved to ``HOSTILE_T0`` (one minute apart)."""
    lines = (DATA / "zeek" / "brim_dns_head.log").read_bytes().splitlines()
    header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
    rows = [ln for ln in lines if not ln.startswith(b"#")][: len(HOSTILE_NAMES)]
    out = []
    for i, (row, name) in enumerate(zip(rows, HOSTILE_NAMES, strict=True)):
        f = row.split(b"\t")
        f[0] = f"{HOSTILE_T0.timestamp() + 60 * i:.6f}".encode()
        f[9] = name
        f[21] = b"<img src=x onerror=alert(2)>"
        out.append(b"\t".join(f))
    path.write_bytes(b"\n".join(header + out) + b"\n")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A lake of real events, a store of alerts on them, one user per role."""
    from dnsieve.jobs import run_job

    tmp = tmp_path_factory.mktemp("events")
    lake_dir = tmp / "lake"
    db = f"sqlite:///{tmp / 'alerts.db'}"
    inputs = [
        DATA / "zeek" / "brim_dns_head.log",
        DATA / "querylog" / "dnsmasq_iodine.log",
        hostile_zeek_log(tmp / "hostile.dns.log"),
    ]
    _, _, detected = run_job(inputs, lake_dir, store_url=db)
    store = AlertStore.open(db)
    store.upsert_anomalies(real_anomalies())
    store.upsert_anomalies(one("evil.com", detector="tunnel", start=HOSTILE_T0))
    users = UserStore(store.engine)
    for role in ("viewer", "analyst"):
        users.add_user(role, role, PASSWORD)
    everything = pl.read_parquet([str(f) for f in Lake(lake_dir).files()])
    yield {
        "lake": lake_dir,
        "store": store,
        "detected": detected,
        "all": everything,
        "token": users.new_token("viewer"),
    }
    store.close()


def independent(everything: pl.DataFrame, a: Alert) -> pl.DataFrame:
    """The alert's events by a plain in-memory filter of the whole lake."""
    cond = (pl.col("ts") >= a.window_start) & (pl.col("ts") < a.window_end)
    if a.entity_type in ("domain", "client_domain"):
        cond &= pl.col("registered_domain") == a.entity.split("|")[-1]
    if a.entity_type in ("client", "client_domain"):
        cond &= pl.col("src_ip") == a.entity.split("|")[0]
    return everything.filter(cond).sort(
        ["ts", "src_ip", "qname"], descending=[True, False, False], nulls_last=True
    )


def key(df: pl.DataFrame) -> list[tuple[Any, ...]]:
    return df.select("ts", "src_ip", "qname", "qtype", "rcode").rows()


def sample_alerts(store: AlertStore) -> list[Alert]:
    """The detected tunnel alert and the busiest per-minute candidate of each entity type."""
    alerts = store.list_alerts(status="all", include_suppressed=True)
    out = [a for a in alerts if a.detector == "tunnel" and a.entity == "example.attack"]
    for et in ("domain", "client", "client_domain"):
        cands = [
            a
            for a in alerts
            if a.entity_type == et and a.window_end - a.window_start == timedelta(minutes=1)
        ]
        out.append(max(cands, key=lambda a: (a.evidence.get("queries", 0), a.id)))
    return out


# --------------------------------------------------------------------------- library


def test_events_are_exactly_the_window_and_entity(world: dict[str, Any]) -> None:
    store: AlertStore = world["store"]
    alerts = sample_alerts(store)
    assert world["detected"].filter(pl.col("detector") == "tunnel").height >= 1
    assert {a.entity_type for a in alerts} == {"domain", "client", "client_domain"}
    for a in alerts:
        want = independent(world["all"], a)
        got = events_for_alert(world["lake"], a, limit=5000)
        assert want.height > 0, a.entity
        assert got.total == want.height and key(got.events) == key(want), a.entity
        if a.detector != "tunnel":
            # the per-minute candidates counted the same capture independently
            assert got.total == a.evidence["queries"]
        few = events_for_alert(Lake(world["lake"]), a, limit=3)
        assert few.total == want.height and key(few.events) == key(want.head(3))
        assert few.shown == min(3, want.height)


def test_tunnel_alert_sees_the_iodine_session(world: dict[str, Any]) -> None:
    """The real detector's alert on the iodine tunnel: every event is a query under the
    tunnel domain, with the TXT/NULL-heavy mix of the capture, newest first."""
    a = sample_alerts(world["store"])[0]
    got = events_for_alert(world["lake"], a, limit=10)
    assert got.total > got.shown == 10
    ev = got.events
    assert ev["qname"].str.ends_with(".example.attack").all()
    assert ev["ts"].is_sorted(descending=True)
    assert got.who_of == "clients" and got.who["queries"].sum() == got.total
    recs = got.records()
    assert recs[0]["ts"].endswith("Z") and isinstance(recs[0]["answers"], list)


def test_partitions_outside_the_window_are_not_opened(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """A corrupt file in another hour is never read (partition pruning; and no commit
    lists it); a committed part file of the window that is corrupt makes the lake
    unreadable, reported as such."""
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(world["lake"], lake)
    a = sample_alerts(world["store"])[0]
    (date, hour), *_ = partition_hours(a.window_start, a.window_end)
    far = lake / "events" / "date=2001-01-01" / "hour=00"
    far.mkdir(parents=True)
    (far / "part-corrupt-00001.parquet").write_bytes(b"not parquet")
    assert events_for_alert(lake, a).total == events_for_alert(world["lake"], a).total
    # an uncommitted file in the window is not read either
    (lake / "events" / f"date={date}" / f"hour={hour:02d}" / "part-zz-00001.parquet").write_bytes(
        b"PAR1 not parquet"
    )
    assert events_for_alert(lake, a).total == events_for_alert(world["lake"], a).total
    committed = Lake(lake).files(a.window_start, a.window_end)
    assert committed
    committed[0].write_bytes(b"PAR1 not parquet")
    with pytest.raises(EventsUnavailable, match="could not be read"):
        events_for_alert(lake, a)
    with pytest.raises(EventsUnavailable, match="does not exist"):
        events_for_alert(tmp_path / "nowhere", a)


def test_entity_hourly_counts_every_hour_and_leaves_gaps(world: dict[str, Any]) -> None:
    """The volume plot's context: queries and distinct clients per hour match a plain
    filter of the whole lake; hours the lake has no data for are nulls, not zeros."""
    everything: pl.DataFrame = world["all"]
    for a in sample_alerts(world["store"]):
        since, until = a.window_start - timedelta(hours=30), a.window_end + timedelta(hours=5)
        got = entity_hourly(world["lake"], a.entity_type, a.entity, since, until)
        t0 = since.replace(minute=0, second=0, microsecond=0)
        assert got.height == -(-(until - t0) // timedelta(hours=1))
        assert got["hour"].is_sorted() and got["hour"][0] == t0
        cond = (pl.col("ts") >= t0) & (pl.col("ts") < until)
        if a.entity_type in ("domain", "client_domain"):
            cond &= pl.col("registered_domain") == a.entity.split("|")[-1]
        if a.entity_type in ("client", "client_domain"):
            cond &= pl.col("src_ip") == a.entity.split("|")[0]
        want = (
            everything.filter(cond)
            .group_by(pl.col("ts").dt.truncate("1h").alias("hour"))
            .agg(pl.len().alias("queries"), pl.col("src_ip").n_unique().alias("clients"))
        )
        lake_hours = set(
            everything.filter((pl.col("ts") >= t0) & (pl.col("ts") < until))["ts"]
            .dt.truncate("1h")
            .to_list()
        )
        by_hour = {r["hour"]: r for r in want.iter_rows(named=True)}
        for r in got.iter_rows(named=True):
            if r["hour"] in by_hour:
                w = by_hour[r["hour"]]
                assert (r["queries"], r["clients"]) == (w["queries"], w["clients"]), a.entity
            elif r["hour"] in lake_hours:
                assert (r["queries"], r["clients"]) == (0, 0)
            else:
                assert r["queries"] is None and r["clients"] is None
        assert got["queries"].sum() == want["queries"].sum() > 0
    with pytest.raises(EventsUnavailable, match="does not exist"):
        entity_hourly(world["lake"] / "nowhere", "domain", "x.com", since, until)


def test_partition_hours_cover_the_window() -> None:
    t = datetime(2024, 2, 28, 23, 59, tzinfo=UTC)
    assert partition_hours(t, t + timedelta(minutes=2)) == [("2024-02-28", 23), ("2024-02-29", 0)]
    assert partition_hours(t, t) == [("2024-02-28", 23)]
    h = datetime(2024, 2, 28, 23, tzinfo=UTC)
    assert partition_hours(h, h) == [] and partition_hours(h, h + timedelta(hours=1)) == [
        ("2024-02-28", 23)
    ]


# --------------------------------------------------------------------------- pages and API


def app_for(world: dict[str, Any], lake: Path | None) -> Any:
    return create_app(WebSettings(), store=world["store"], lake=lake)


def login(client: TestClient, name: str) -> None:
    tok = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert tok
    r = client.post(
        "/login",
        data={"username": name, "password": PASSWORD, "csrf_token": tok.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303


def table_rows(html: str) -> list[list[str]]:
    body = html.split('<table class="raw-events">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(<td.*?)</tr>", body)
    return [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows]


def test_alert_page_shows_the_events(world: dict[str, Any]) -> None:
    a = sample_alerts(world["store"])[3]  # client × domain
    want = independent(world["all"], a)
    with TestClient(app_for(world, world["lake"])) as c:
        login(c, "viewer")
        html = c.get(f"/alerts/{a.id}").text
        n = want.height
        assert f"Showing {n} of {n} event" in html
        rows = table_rows(html)
        assert [r[2] for r in rows] == want["qname"].to_list()
        assert [r[1] for r in rows] == want["src_ip"].to_list()
        assert rows[0][0] == want["ts"][0].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        big = sample_alerts(world["store"])[0]
        html = c.get(f"/alerts/{big.id}", params={"events": 7}).text
        total = independent(world["all"], big).height
        assert f"Showing 7 of {total} events" in html and len(table_rows(html)) == 7
        assert 'id="plot-who"' in html and "lake events" in html


def test_hostile_names_are_inert_in_the_events_table(world: dict[str, Any]) -> None:
    store: AlertStore = world["store"]
    a = next(x for x in store.list_alerts(status="all") if x.entity == "evil.com")
    with TestClient(app_for(world, world["lake"])) as c:
        login(c, "viewer")
        html = c.get(f"/alerts/{a.id}").text
    assert "Showing 3 of 3 events" in html
    table = html.split('<table class="raw-events">', 1)[1].split("</table>", 1)[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.evil.com" in table
    assert "&#34;onmouseover=alert(1)&#34;.evil.com" in table
    assert "\\xff\\xfe&lt;b&gt;bold&lt;/b&gt;.evil.com" in table
    assert "&lt;img src=x onerror=alert(2)&gt;" in table
    for raw in ("<script>", "<img", "<b>", '"onmouseover'):
        assert raw not in table


def test_messages_without_a_usable_lake(world: dict[str, Any], tmp_path: Path) -> None:
    store: AlertStore = world["store"]
    a = sample_alerts(store)[1]
    stale = store.upsert_anomalies(
        one("wrccdc.org", detector="dga", start=datetime(2030, 1, 1, tzinfo=UTC))
    )
    for lake, text in (
        (None, "No lake is configured"),
        (tmp_path / "gone", "The lake is not reachable: its directory does not exist"),
    ):
        with TestClient(app_for(world, lake)) as c:
            login(c, "viewer")
            html = c.get(f"/alerts/{a.id}").text
            assert text in html and 'class="raw-events"' not in html
            body = c.get(f"/api/alerts/{a.id}/events").json()
            assert body["available"] is False and body["events"] == [] and text in body["message"]
            assert body["lake_configured"] is (lake is not None)
    with TestClient(app_for(world, world["lake"])) as c:
        login(c, "viewer")
        html = c.get(f"/alerts/{stale.ids[0]}").text
        assert "The lake has no events of this domain between 2030-01-01 00:00 and" in html
        assert "pruned" in html
        body = c.get(f"/api/alerts/{stale.ids[0]}/events").json()
        assert body["available"] is True and body["total"] == 0 and "pruned" in body["message"]


def test_events_api_auth_and_payload(world: dict[str, Any]) -> None:
    a = sample_alerts(world["store"])[0]
    want = independent(world["all"], a)
    with TestClient(app_for(world, world["lake"])) as c:
        assert c.get(f"/api/alerts/{a.id}/events").status_code == 401
        bad = c.get(f"/api/alerts/{a.id}/events", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        h = {"Authorization": f"Bearer {world['token']}"}
        r = c.get(f"/api/alerts/{a.id}/events", params={"limit": 5}, headers=h)
        assert r.status_code == 200
        body = r.json()
        assert body["total"] == want.height and body["shown"] == 5 and body["limit"] == 5
        assert body["domains"] == ["example.attack"] and body["clients"] == []
        assert [e["qname"] for e in body["events"]] == want["qname"].head(5).to_list()
        first = datetime.fromisoformat(body["events"][0]["ts"].replace("Z", "+00:00"))
        assert first == want["ts"][0]
        for limit in (0, 5001, "x"):
            r = c.get(f"/api/alerts/{a.id}/events", params={"limit": limit}, headers=h)
            assert r.status_code == 422
        assert c.get("/api/alerts/ffffffffffff/events", headers=h).status_code == 404
        login(c, "viewer")  # the session cookie works too
        assert c.get(f"/api/alerts/{a.id}/events").json()["total"] == want.height
        spec = c.get("/openapi.json").json()
        assert "/api/alerts/{alert_id}/events" in spec["paths"]


# --------------------------------------------------------------------------- commands


def test_serve_and_demo_pass_the_lake_to_the_app(
    world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dnsieve serve --lake`` (else [lake] path) and the demo's server see the lake."""
    import uvicorn
    from typer.testing import CliRunner

    from dnsieve.cli import app as cli_app
    from dnsieve.commands.demo import _serve_demo

    seen: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.append(app))
    db = str(tmp_path / "s.db")
    r = CliRunner().invoke(cli_app, ["serve", "--db", db, "--lake", str(world["lake"])])
    assert r.exit_code == 0, r.output
    assert seen[-1].state.lake_path == world["lake"]
    monkeypatch.setenv("DNSIEVE_LAKE__PATH", str(tmp_path / "configured"))
    r = CliRunner().invoke(cli_app, ["serve", "--db", db])
    assert r.exit_code == 0, r.output
    assert seen[-1].state.lake_path == tmp_path / "configured"
    _serve_demo(f"sqlite:///{db}", 8000, world["lake"])
    assert seen[-1].state.lake_path == world["lake"]
