"""Precision@k over time (:mod:`dnsieve.threat.metrics`), the model page and its API.

The pure functions are checked on small hand-computed cases.  The store-level
report is checked on alerts from real DNS (``test_alert_store.real_anomalies``:
the brimdata Zeek sample and the Korving iodine log in tests/data) judged over
three days through the same :func:`~dnsieve.alerts.feedback.apply_verdict` the
UI uses: each day's frozen-model scores must equal the P(threat) the queue
showed at the start of that day, and the precision must match a plain sort.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from dnsieve.alerts import AlertStore
from dnsieve.alerts.base import AuditEntry
from dnsieve.alerts.feedback import apply_verdict, score_and_store
from dnsieve.threat.metrics import (
    JUDGED_SCHEMA,
    daily_precision,
    first_verdict_days,
    pooled_precision,
    precision_at_k,
    precision_report,
    verdict_counts_by_version,
)
from dnsieve.web import WebSettings, create_app
from dnsieve.web.users import UserStore
from test_alert_store import real_anomalies

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PASSWORD = "correct horse battery staple"
DAY0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)

# --------------------------------------------------------------------------- pure functions


def test_precision_at_k_hand_computed() -> None:
    s, y = [0.9, 0.8, 0.7, 0.6], [True, False, True, False]
    assert precision_at_k(s, y, 1) == 1.0
    assert precision_at_k(s, y, 2) == 0.5
    assert precision_at_k(s, y, 3) == pytest.approx(2 / 3)
    assert precision_at_k(s, y, 10) == 0.5  # fewer than k: the top min(k, n) = all 4
    # order of the input does not matter
    assert precision_at_k(s[::-1], y[::-1], 3) == pytest.approx(2 / 3)


def test_precision_at_k_ties_nan_and_bad_input() -> None:
    # three tied at the top, one of them a threat: each slot of the tie is 1/3 a threat
    s, y = [0.5, 0.5, 0.5, 0.1], [True, False, False, True]
    assert precision_at_k(s, y, 1) == pytest.approx(1 / 3)
    assert precision_at_k(s, y, 2) == pytest.approx(1 / 3)
    assert precision_at_k(s, y, 3) == pytest.approx(1 / 3)
    assert precision_at_k(s, y, 4) == 0.5
    # a tie straddling the cut after a clear winner: 1 + 1 slot × (1/2)
    assert precision_at_k([0.9, 0.4, 0.4], [True, True, False], 2) == pytest.approx(0.75)
    # NaN ranks last
    assert precision_at_k([math.nan, 0.2], [True, False], 1) == 0.0
    assert precision_at_k([], [], 5) is None
    with pytest.raises(ValueError):
        precision_at_k([0.1], [True], 0)
    with pytest.raises(ValueError):
        precision_at_k([0.1, 0.2], [True], 1)


def test_daily_precision_and_pooled_hand_computed() -> None:
    d1, d2, d3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)
    judged = pl.DataFrame(
        {
            "alert_id": list("abcdefgh"),
            # day 2 first in the input: the output is sorted by day
            "day": [d2, d2, d1, d1, d1, d1, d3, d3],
            "threat": [False, True, True, False, True, False, True, False],
            "score": [0.9, 0.1, 0.8, 0.7, 0.3, 0.2, None, None],
            "model_version": [5, 5, None, None, None, None, 6, 6],
        },
        schema=JUDGED_SCHEMA,
    )
    out = daily_precision(judged, [1, 2, 3])
    assert out["day"].to_list() == [d1, d2, d3]
    assert out["verdicts"].to_list() == [4, 2, 2]
    assert out["threats"].to_list() == [2, 1, 1]
    assert out["base_rate"].to_list() == [0.5, 0.5, 0.5]
    assert out["model_version"].to_list() == [None, 5, 6]
    # day 1 ranked: a-c(T) .8, d(F) .7, e(T) .3, f(F) .2
    assert out["p_at_1"].to_list() == [1.0, 0.0, None]
    assert out["p_at_2"].to_list() == [0.5, 0.5, None]
    assert out["p_at_3"][0] == pytest.approx(2 / 3) and out["p_at_3"][1] == 0.5
    # pooled @2: (0.5·2 + 0.5·2) / 4; @3: (2/3·3 + 0.5·2) / 5 = 3/5 (day 3 unscored)
    assert pooled_precision(out, 2) == 0.5
    assert pooled_precision(out, 3) == pytest.approx(0.6)
    empty = daily_precision(pl.DataFrame(schema=JUDGED_SCHEMA), [10])
    assert empty.height == 0 and pooled_precision(empty, 10) is None


def _audit(i: int, alert: str, at: datetime, new: str, mv: int | None) -> AuditEntry:
    return AuditEntry(i, alert, "ann", at, "new", new, None, mv)


def test_first_verdicts_frozen_models_and_counts() -> None:
    t = datetime(2024, 1, 1, 8, tzinfo=UTC)
    trail = [
        _audit(1, "a", t, "needs_review", None),  # first change of day 1: model none
        _audit(2, "a", t + timedelta(hours=1), "threat", None),
        _audit(3, "b", t + timedelta(hours=2), "benign", 7),
        _audit(4, "a", t + timedelta(days=1), "benign", 8),  # correction: not a first
        _audit(5, "c", t + timedelta(days=1, hours=1), "not_relevant", 9),
    ]
    firsts, day_model = first_verdict_days(trail)
    assert {k: v.day for k, v in firsts.items()} == {
        "a": date(2024, 1, 1),
        "b": date(2024, 1, 1),
        "c": date(2024, 1, 2),
    }
    assert day_model == {date(2024, 1, 1): None, date(2024, 1, 2): 8}
    assert verdict_counts_by_version(trail) == [
        {"model_version": 9, "threat": 0, "benign": 0, "not_relevant": 1},
        {"model_version": 8, "threat": 0, "benign": 1, "not_relevant": 0},
        {"model_version": 7, "threat": 0, "benign": 1, "not_relevant": 0},
        {"model_version": None, "threat": 1, "benign": 0, "not_relevant": 0},
    ]


# --------------------------------------------------------------------------- the store


def label_of(detector: str, i: int) -> str:
    """Beacon pairs are the 'threats' of this exercise; others benign or not relevant."""
    return "threat" if detector == "beacon" else ("benign" if i % 2 else "not_relevant")


@pytest.fixture(scope="module")
def judged_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Real alerts scored and stored, then judged over three days (8, 10, 6 verdicts).

    Records, for each day, the active model version and every open alert's P(threat)
    at the start of the day, before any of that day's verdicts."""
    tmp = tmp_path_factory.mktemp("metrics")
    store = AlertStore.open(f"sqlite:///{tmp / 'a.db'}")
    score_and_store(store, real_anomalies(), now=DAY0 - timedelta(days=1))
    start: dict[date, dict[str, Any]] = {}
    judged: dict[str, date] = {}
    for d, n in enumerate((8, 10, 6)):
        now = DAY0 + timedelta(days=d)
        open_alerts = store.list_alerts(status="open", order="queue", now=now)
        active = store.active_model_version()
        start[now.date()] = {
            "model": active.id if active else None,
            "p": {a.id: a.threat_probability for a in open_alerts},
        }
        # judge a mix of the top of the queue and a few further down
        picks = open_alerts[: n - 3] + open_alerts[-3:]
        for i, a in enumerate(picks):
            apply_verdict(
                store, a.id, label_of(a.detector, i), "ann", now=now + timedelta(minutes=i)
            )
            judged[a.id] = now.date()
    # a correction on day 3 of a day-1 verdict, and a verdict re-opened for review
    day1 = [a for a, d in judged.items() if d == DAY0.date()]
    fixed = next(a for a in day1 if store.get_alert(a).status != "threat")
    apply_verdict(store, fixed, "threat", "bob", now=DAY0 + timedelta(days=2, hours=5))
    reopened = next(a for a in day1 if a != fixed)
    store.set_status(reopened, "needs_review", "bob", now=DAY0 + timedelta(days=2, hours=6))
    yield {
        "store": store,
        "start": start,
        "judged": judged,
        "fixed": fixed,
        "reopened": reopened,
        "now": DAY0 + timedelta(days=2, hours=12),
    }
    store.close()


def test_report_scores_are_the_queue_scores_at_the_start_of_each_day(
    judged_store: dict[str, Any],
) -> None:
    from dnsieve.threat.metrics import judged_alerts

    store: AlertStore = judged_store["store"]
    start = judged_store["start"]
    judged = judged_alerts(store, days=30, now=judged_store["now"])
    assert judged.height == len(judged_store["judged"]) - 1  # the re-opened one has no label
    assert judged_store["reopened"] not in judged["alert_id"].to_list()
    for r in judged.iter_rows(named=True):
        assert r["day"] == judged_store["judged"][r["alert_id"]]
        s = start[r["day"]]
        assert r["model_version"] == s["model"]
        assert r["score"] == pytest.approx(s["p"][r["alert_id"]], abs=1e-12)
        assert r["threat"] == (store.get_alert(r["alert_id"]).status == "threat")
    fixed = judged.filter(pl.col("alert_id") == judged_store["fixed"])
    assert fixed["threat"].to_list() == [True] and fixed["day"].to_list() == [DAY0.date()]
    assert [s["model"] is None for s in start.values()] == [True, False, False]
    # only the last `days` days count
    assert judged_alerts(store, days=1, now=judged_store["now"])["day"].unique().to_list() == [
        (DAY0 + timedelta(days=2)).date()
    ]


def test_report_precision_matches_a_plain_sort(judged_store: dict[str, Any]) -> None:
    store: AlertStore = judged_store["store"]
    rep = precision_report(store, ks=(3, 5), days=30, now=judged_store["now"])
    assert rep.daily.height == 3 and rep.unscored_days == []
    start = judged_store["start"]
    for row in rep.daily.iter_rows(named=True):
        day = row["day"]
        ids = [
            a
            for a, d in judged_store["judged"].items()
            if d == day and a != judged_store["reopened"]
        ]
        ranked = sorted(ids, key=lambda a: -start[day]["p"][a])
        scores = [start[day]["p"][a] for a in ranked]
        threat = [store.get_alert(a).status == "threat" for a in ranked]
        assert row["verdicts"] == len(ids) and row["threats"] == sum(threat)
        for k in (3, 5):
            cut = scores[k - 1]
            if cut != scores[k]:  # no tie at the cut: a plain count
                assert row[f"p_at_{k}"] == pytest.approx(sum(threat[:k]) / k)
                continue
            # real alerts with equal features tie: each tied alert is in the top k
            # with probability (free slots) / (tied alerts)
            above = sum(sc > cut for sc in scores)
            tied = [t for sc, t in zip(scores, threat, strict=True) if sc == cut]
            p_in = (k - above) / len(tied)
            hits = sum(t for sc, t in zip(scores, threat, strict=True) if sc > cut)
            assert row[f"p_at_{k}"] == pytest.approx((hits + p_in * sum(tied)) / k)
    trail = store.audit_trail()
    total = sum(v["threat"] + v["benign"] + v["not_relevant"] for v in rep.by_version)
    assert total == sum(e.new_status in ("threat", "benign", "not_relevant") for e in trail)
    with pytest.raises(ValueError):
        precision_report(store, ks=(0,))


# --------------------------------------------------------------------------- page and API


@pytest.fixture
def client(judged_store: dict[str, Any]) -> Iterator[TestClient]:
    store: AlertStore = judged_store["store"]
    users = UserStore(store.engine)
    if users.get_user("viewer") is None:
        users.add_user("viewer", "viewer", PASSWORD)
    with TestClient(create_app(WebSettings(), store=store)) as c:
        yield c


def login(c: TestClient) -> None:
    tok = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)
    assert tok
    data = {"username": "viewer", "password": PASSWORD, "csrf_token": tok.group(1)}
    assert c.post("/login", data=data, follow_redirects=False).status_code == 303


def test_model_page_without_recent_verdicts(client: TestClient) -> None:
    """The fixture's verdicts (May 2024) are older than any window the page offers."""
    login(client)
    html = client.get("/model").text
    assert "Precision@k over time" in html and "Prequential precision@k" in html
    assert "No verdicts in the last 90 days" in html and 'id="plot-precision"' not in html
    assert "verdicts given under it" in html and 'class="status st-threat">threat 1<' in html
    # where the top of the queue comes from: definitions, detector + definition, detectors
    assert "Where the top of the queue comes from" in html and "definition hits learned" in html
    assert re.search(
        r"<tr><td>10(?: <span[^<]*</span>)?</td><td>\d+</td><td>\d+</td><td>\d+</td>", html
    )
    assert client.get("/model", params={"days": 366}).status_code == 200
    assert client.get("/model", params={"k": 0}).status_code == 422


def test_model_precision_api(client: TestClient, judged_store: dict[str, Any]) -> None:
    assert client.get("/api/model/precision").status_code == 401
    login(client)
    body = client.get("/api/model/precision", params={"k": [5, 3], "days": 90}).json()
    assert body["ks"] == [3, 5] and body["days"] == 90
    assert "first verdict" in body["definition"]
    counts = {v["model_version"]: v for v in body["by_version"]}
    assert counts[None]["threat"] + counts[None]["benign"] + counts[None]["not_relevant"] >= 1
    for bad in ({"k": 0}, {"k": 1001}, {"k": [1, 2, 3, 4, 5, 6]}, {"days": 0}, {"k": "x"}):
        assert client.get("/api/model/precision", params=bad).status_code == 422, bad


def test_model_page_with_recent_verdicts(tmp_path: Path) -> None:
    """Verdicts of today and yesterday: the page draws the plot and fills the table."""
    store = AlertStore.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        now = datetime.now(UTC)
        score_and_store(store, real_anomalies(), now=now - timedelta(days=2))
        for d in (1, 0):
            t = now - timedelta(days=d, minutes=30)
            for i, a in enumerate(store.list_alerts(status="open", limit=12, now=t)):
                apply_verdict(store, a.id, label_of(a.detector, i), "ann", now=t)
        UserStore(store.engine).add_user("viewer", "viewer", PASSWORD)
        rep = precision_report(store, now=now)
        with TestClient(create_app(WebSettings(), store=store)) as c:
            login(c)
            html = c.get("/model").text
            api = c.get("/api/model/precision").json()
        assert 'id="plot-precision"' in html and "plot-data-precision" in html
        assert "/bokeh/static/js/bokeh.min.js" in html
        rows = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td><td>(\d+)</td>", html)
        assert [(d, int(n)) for d, n in rows] == [
            (r["day"].isoformat(), r["verdicts"]) for r in reversed(rep.daily.rows(named=True))
        ]
        assert [p["verdicts"] for p in api["points"]] == rep.daily["verdicts"].to_list()
        assert api["pooled"]["10"] == pytest.approx(rep.pooled[10])
        assert "verdicts given under it" in html
    finally:
        store.close()
