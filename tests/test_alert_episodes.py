"""One alert per campaign: the stores merge windows into detector × entity episodes.

Every test runs against SQLite, PostgreSQL (``DNSIEVE_TEST_PG_URL``, see
``.ci/postgres.sh``) and the in-memory store, through the fixtures of
``test_alert_store``.
"""
# ruff: noqa: F811  (the shared store fixtures are imported, then requested by name)

from __future__ import annotations

import gzip
import json
import random
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from dnsieve.alerts import AlertStore, AlertStoreProtocol, MemoryAlertStore, alert_id
from dnsieve.alerts.export import to_ecs, to_jsonl
from dnsieve.alerts.merge import DEFAULT_EPISODE_GAP, MAX_WINDOWS, merge_statuses
from dnsieve.alerts.store import NEAR_EPISODES_SQLITE, current_revision
from dnsieve.episodes import collapse_episodes
from test_alert_store import (  # noqa: F401  (fixtures)
    T0,
    aid,
    db_url,
    one,
    pg_schema_url,
    real_anomalies,
    store,
)

H = timedelta(hours=1)


def windows(entity: str, hours: list[float], score: float = 5.0, **kw: object) -> pl.DataFrame:
    """Hourly windows of one tunnel entity starting at ``T0 + h``, scores rising."""
    return pl.concat(
        [one(entity, score=score + i, start=T0 + h * H, **kw) for i, h in enumerate(hours)]
    )  # type: ignore[arg-type]


def state(s: AlertStoreProtocol) -> dict[str, tuple[object, ...]]:
    """What must not depend on batching or order (times seen and first seen aside)."""
    return {
        a.id: (
            a.detector, a.entity, a.episode_start, a.episode_end, a.n_windows, a.window_start,
            a.score, a.p_value, a.evidence, a.windows, a.status,
        )
        for a in s.list_alerts(status="all", include_suppressed=True, limit=None)
    }  # fmt: skip


# --------------------------------------------------------------------------- merging


@pytest.mark.parametrize(
    ("hours", "episodes"),
    [
        pytest.param([0, 1, 2, 3], [[0, 1, 2, 3]], id="consecutive"),
        pytest.param([0, 4, 10], [[0, 4, 10]], id="near: gaps of 3 h and 5 h"),
        pytest.param([0, 1, 9, 10], [[0, 1], [9, 10]], id="far: a 7 h quiet gap"),
        pytest.param([0, 7, 14, 21], [[0], [7], [14], [21]], id="every gap 6 h and 1 s"),
    ],
)
def test_windows_merge_into_episodes(
    store: AlertStoreProtocol, hours: list[float], episodes: list[list[float]]
) -> None:
    if hours == [0, 7, 14, 21]:
        hours = [0, 7 + 1 / 3600, 14 + 2 / 3600, 21 + 3 / 3600]
        episodes = [[h] for h in hours]
    store.upsert_anomalies(windows("t.example", hours))
    got = sorted(store.list_alerts(limit=None), key=lambda a: a.window_start)
    got.sort(key=lambda a: a.episode_start)  # type: ignore[arg-type,return-value]
    assert len(got) == len(episodes)
    for a, hs in zip(got, episodes, strict=True):
        first = T0 + hs[0] * H
        assert a.id == alert_id("tunnel", "t.example", first, first + H)  # its first window's
        assert (a.episode_start, a.episode_end) == (first, T0 + hs[-1] * H + H)
        assert a.n_windows == len(hs) == len(a.windows or [])
        assert a.score == 5.0 + hours.index(hs[-1])  # the worst window (the scores rise)
        assert a.window_start == T0 + hs[-1] * H
        assert [w["score"] for w in a.windows or []] == [5.0 + hours.index(h) for h in hs]
    # the store agrees with the pure function the budget uses
    want = collapse_episodes(windows("t.example", hours), DEFAULT_EPISODE_GAP)
    assert sorted(want["n_windows"].to_list()) == sorted(a.n_windows for a in got)


def test_any_windows_id_finds_its_alert(store: AlertStoreProtocol) -> None:
    store.upsert_anomalies(windows("t.example", [0, 1, 2]))
    (a,) = store.list_alerts()
    for h in (0, 1, 2):
        assert store.get_alert(aid("t.example", start=T0 + h * H)).id == a.id


def test_idempotent_rerun(store: AlertStoreProtocol) -> None:
    frame = real_anomalies()
    store.upsert_anomalies(frame, now=T0)
    before = state(store)
    rep = store.upsert_anomalies(frame, now=T0 + H)
    assert (rep.inserted, rep.new_windows, rep.joined) == (0, 0, 0)
    assert state(store) == before
    assert sum(a.n_windows for a in store.list_alerts(limit=None)) == frame.height


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_order_and_batches_do_not_matter(store: AlertStoreProtocol, seed: int) -> None:
    """Shuffled windows in small batches give the same alerts, ids and evidence as one
    sorted batch (compared with a fresh in-memory store fed the sorted frame)."""
    frame = real_anomalies()
    rng = random.Random(seed)
    order = list(range(frame.height))
    rng.shuffle(order)
    shuffled = frame[order]
    cut = sorted(rng.sample(range(1, frame.height), 4))
    for lo, hi in zip([0, *cut], [*cut, frame.height], strict=True):
        store.upsert_anomalies(shuffled.slice(lo, hi - lo), now=T0, batch_size=7)
    reference = MemoryAlertStore()
    reference.upsert_anomalies(frame.sort("window_start"), now=T0)
    assert state(store) == state(reference)


def test_windows_evidence_is_capped_and_counts_stay_exact(store: AlertStoreProtocol) -> None:
    hours = list(range(200))
    store.upsert_anomalies(windows("long.example", hours), batch_size=37)
    store.upsert_anomalies(windows("long.example", hours[::3]), batch_size=50)  # seen again
    (a,) = store.list_alerts()
    assert a.n_windows == 200
    kept = a.windows or []
    assert len(kept) == MAX_WINDOWS
    assert kept[0]["start"] == "2024-05-01T12:00:00Z" and kept[-1]["score"] == 204.0
    assert [w["start"] for w in kept] == sorted(w["start"] for w in kept)
    assert a.times_seen == 200 + len(hours[::3])


# --------------------------------------------------------------------------- verdicts


def test_extension_keeps_the_verdict(store: AlertStoreProtocol) -> None:
    store.upsert_anomalies(windows("t.example", [0, 1]))
    (a,) = store.list_alerts()
    store.record_verdict(a.id, "benign", "alice", "backup job")
    store.upsert_anomalies(windows("t.example", [4, 5], score=50))  # the campaign goes on
    (b,) = store.list_alerts(status="all")
    assert (b.id, b.status, b.n_windows, b.score) == (a.id, "benign", 4, 51.0)
    assert [e.new_status for e in store.audit_trail(a.id)] == ["benign"]


def test_recurrence_after_a_quiet_gap_is_a_new_alert(store: AlertStoreProtocol) -> None:
    """A verdict covers its episode only: the same entity back after more than the gap is a
    new alert in the queue (an allow-list entry is what silences an entity for good)."""
    store.upsert_anomalies(windows("t.example", [0, 1]))
    (a,) = store.list_alerts()
    store.record_verdict(a.id, "benign", "alice")
    store.upsert_anomalies(windows("t.example", [30, 31]))
    fresh = store.list_alerts(status="open")
    assert len(fresh) == 1 and fresh[0].id != a.id and fresh[0].status == "new"
    assert store.get_alert(a.id).status == "benign"
    store.add_allow("detector_entity", "t.example", "known", "alice", detector="tunnel")
    store.upsert_anomalies(windows("t.example", [60]))
    assert store.list_alerts(status="open") == []  # the allow-list, not the verdict


def test_bridging_window_merges_episodes_and_keeps_both_trails(
    store: AlertStoreProtocol,
) -> None:
    store.upsert_anomalies(windows("t.example", [0, 1]))
    store.upsert_anomalies(windows("t.example", [12, 13]))
    early, late = sorted(store.list_alerts(), key=lambda a: a.window_start)
    store.record_verdict(early.id, "threat", "alice", "C2")
    store.record_verdict(late.id, "benign", "bob", "lab")
    rep = store.upsert_anomalies(windows("t.example", [6.5]))  # within 6 h of both
    assert (rep.inserted, rep.merged, rep.joined, rep.new_windows) == (0, 1, 1, 1)
    (m,) = store.list_alerts(status="all")
    assert m.id == early.id and m.n_windows == 5
    assert m.status == "needs_review"  # the two verdicts disagree: an analyst settles it
    trail = store.audit_trail(m.id)
    assert [(e.actor, e.old_status, e.new_status) for e in trail] == [
        ("alice", "new", "threat"),
        ("bob", "new", "benign"),
        ("dnsieve", "threat", "needs_review"),
    ]
    assert late.id in (trail[-1].comment or "")
    assert store.get_alert(late.id).id == m.id  # the merged episode's id still resolves
    assert [e.id for e in store.audit_trail(late.id)] == [e.id for e in trail]


def test_earlier_window_rekeys_the_alert_and_keeps_its_verdict(
    store: AlertStoreProtocol,
) -> None:
    store.upsert_anomalies(windows("t.example", [5, 6]))
    (a,) = store.list_alerts()
    store.record_verdict(a.id, "threat", "alice")
    store.upsert_anomalies(windows("t.example", [2]))  # the campaign started earlier
    (b,) = store.list_alerts(status="all")
    assert b.id == aid("t.example", start=T0 + 2 * H) != a.id
    assert b.status == "threat" and b.n_windows == 3
    assert store.get_alert(a.id).id == b.id
    assert [e.new_status for e in store.audit_trail(b.id)] == ["threat", "threat"]


def test_merge_statuses_table() -> None:
    assert merge_statuses(["new", "new"]) == "new"
    assert merge_statuses(["new", "needs_review"]) == "needs_review"
    assert merge_statuses(["threat", "new"]) == "threat"
    assert merge_statuses(["benign", "benign"]) == "benign"
    assert merge_statuses(["benign", "not_relevant"]) == "needs_review"


# --------------------------------------------------------------------------- readers


def test_queue_exports_and_training_rows_count_episodes(store: AlertStoreProtocol) -> None:
    from dnsieve.alerts.base import alerts_to_frame

    store.upsert_anomalies(windows("t.example", list(range(10))))
    store.upsert_anomalies(windows("other.example", [0]))
    assert store.count_by_status() == {"new": 2}
    alerts = store.list_alerts()
    assert [a.n_windows for a in alerts] == [10, 1]
    doc = to_ecs(alerts[0])
    assert doc["event"]["start"] == "2024-05-01T12:00:00.000000Z"
    assert doc["event"]["end"] == "2024-05-01T22:00:00.000000Z"
    assert doc["event"]["duration"] == 10 * 3600 * 10**9
    assert (
        doc["dnsieve"]["alert"]["n_windows"] == 10 and len(doc["dnsieve"]["alert"]["windows"]) == 10
    )
    assert json.loads(json.dumps(to_jsonl(alerts[0])))["n_windows"] == 10
    frame = alerts_to_frame(alerts)
    assert frame.height == 2 and frame["n_windows"].to_list() == [10, 1]
    assert frame.schema["episode_start"] == pl.Datetime("us", "UTC")


def test_review_queue_counts_episodes(tmp_path: Path) -> None:
    from dnsieve.web.queue import review_queue

    with AlertStore.open(tmp_path / "r.db") as s:
        s.upsert_anomalies(windows("t.example", list(range(10))))
        for i in range(3):
            s.upsert_anomalies(one(f"o{i}.example", detector="dga", score=3.0))
        picked = [a for a, _ in review_queue(s, k=50)]
        assert len(picked) == 4 and len({a.id for a in picked}) == 4


# --------------------------------------------------------------------------- migration


def test_upgrade_from_0005_keeps_alerts_and_verdicts(db_url: str) -> None:
    """A store at 0005 with alerts (one per window) and verdicts upgrades in place: every
    alert is a one-window episode with its id, status and audit trail; then new windows
    merge into them."""
    from alembic import command

    from dnsieve.alerts.store import _alembic_config, upgrade

    s = AlertStore.open(db_url)
    with s.engine.connect() as conn, conn.begin():
        command.downgrade(_alembic_config(conn), "0005")
    assert current_revision(s.engine) == "0005"
    t = "2024-05-01 13:00:00+00" if s.dialect == "postgresql" else "2024-05-01 13:00:00.000000"
    t2 = "2024-05-01 14:00:00+00" if s.dialect == "postgresql" else "2024-05-01 14:00:00.000000"
    old_id = aid("old.example", start=T0 + H)
    with s.engine.begin() as conn:  # as the 0005 store wrote them
        conn.execute(
            sa.text(
                "INSERT INTO alerts (id, detector, entity_type, entity, domain, client,"
                " window_start, window_end, score, p_value, threat_probability, status,"
                " severity, evidence, features, first_seen, last_seen, times_seen)"
                " VALUES (:id, 'tunnel', 'domain', 'old.example', 'old.example', NULL,"
                " :t, :t2, 7.0, 0.001, 0.4, 'threat', 'medium', '{\"q\": 3}', NULL, :t, :t, 2)"
            ),
            {"id": old_id, "t": t, "t2": t2},
        )
        conn.execute(
            sa.text(
                "INSERT INTO verdicts (alert_id, actor, at, old_status, new_status, comment)"
                " VALUES (:id, 'alice', :t, 'new', 'threat', 'seen before the upgrade')"
            ),
            {"id": old_id, "t": t},
        )
    upgrade(s.engine)
    # 0006 (episodes), 0007 (web sessions), 0008 (threat definitions)
    assert current_revision(s.engine) == "0008"
    a = s.get_alert(old_id)
    assert (a.status, a.n_windows, a.episode_start, a.episode_end) == (
        "threat",
        1,
        T0 + H,
        T0 + 2 * H,
    )
    assert a.windows == [
        {
            "start": "2024-05-01T13:00:00Z",
            "end": "2024-05-01T14:00:00Z",
            "score": 7.0,
            "p_value": 0.001,
        }
    ]
    s.upsert_anomalies(windows("old.example", [1, 2, 3]))  # its window again, then two more
    (b,) = s.list_alerts(status="all")
    assert (b.id, b.status, b.n_windows, b.times_seen) == (old_id, "threat", 3, 5)
    assert [e.comment for e in s.audit_trail(old_id)] == ["seen before the upgrade"]
    s.close()


def test_upgrade_of_the_demo_store(tmp_path: Path) -> None:
    """The 133 hourly alerts the issue-11 demo stored at 0005 (a real store file, kept in
    tests/data/alert_store_0005) upgrade, and re-importing their windows collapses them to
    episodes."""
    src = Path(__file__).parent / "data" / "alert_store_0005" / "alerts.db.gz"
    db = tmp_path / "demo.db"
    with gzip.open(src, "rb") as fin, open(db, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    with sqlite3.connect(db) as con:
        (rev,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
        (n,) = con.execute("SELECT count(*) FROM alerts").fetchone()
    assert (rev, n) == ("0005", 133)
    with AlertStore.open(db) as s:
        assert len(s.list_alerts(status="all", include_suppressed=True, limit=None)) == n
        frame = pl.DataFrame(
            [
                {k: getattr(a, k) for k in ("detector", "entity_type", "entity", "window_start",
                                            "window_end", "score", "p_value")}
                | {"evidence": json.dumps(a.evidence)}
                for a in s.list_alerts(status="all", include_suppressed=True, limit=None)
            ]
        )  # fmt: skip
        s.upsert_anomalies(frame)
        after = s.list_alerts(status="all", include_suppressed=True, limit=None)
        assert len(after) == collapse_episodes(frame, DEFAULT_EPISODE_GAP).height < n
        assert sum(a.n_windows for a in after) == n


def test_nearby_episode_lookup_walks_the_entity_index(tmp_path: Path) -> None:
    """The upsert's look-up of a pair's stored episodes is an index search on SQLite (the
    entity index of 0006), not a scan of the alerts."""
    with AlertStore.open(tmp_path / "p.db") as s, s.engine.connect() as conn:
        q = "EXPLAIN QUERY PLAN " + NEAR_EPISODES_SQLITE
        plan = [r[3] for r in conn.execute(sa.text(q), {"k": '[["d", "e", "a", "b"]]'})]
    assert any("USING INDEX ix_alerts_entity (entity=? AND detector=?" in p for p in plan), plan


def test_training_labels_match_anywhere_in_the_episode(store: AlertStoreProtocol) -> None:
    """A labelled window that is not the episode's worst still labels the episode's one
    training row (the threat model's rows count episodes)."""
    import io

    from dnsieve.alerts.base import alerts_to_frame
    from dnsieve.threat.training import label_anomalies, read_labels

    store.upsert_anomalies(windows("t.example", [0, 1, 2, 3]))  # the worst window: 15:00
    labels, _ = read_labels(
        io.StringIO("entity,label,window_start,window_end\n"
                    "t.example,threat,2024-05-01T12:10:00Z,2024-05-01T12:20:00Z\n")
    )  # fmt: skip
    frame = alerts_to_frame(store.list_alerts())
    assert frame.height == 1 and label_anomalies(frame, labels).tolist() == [1]
