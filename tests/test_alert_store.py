"""The alert store: the same tests against SQLite, a real PostgreSQL and the in-memory store.

PostgreSQL comes from ``$DNSIEVE_TEST_PG_URL`` (``.ci/postgres.sh`` starts one and
sets it).  In CI (``$CI`` set) a missing URL fails the PostgreSQL tests instead
of skipping them; on a user's machine they are skipped with the reason.

Anomalies come from real DNS: the brimdata Zeek sample (CC BY-SA 4.0) and the
Korving iodine dnsmasq log (MIT) in tests/data, aggregated into per-window
domain, client and client×domain candidates as the detectors emit them.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import sqlalchemy as sa

from dnsieve.alerts import (
    AlertNotFound,
    AlertStore,
    AlertStoreProtocol,
    AmbiguousId,
    InvalidTransition,
    MemoryAlertStore,
    alert_id,
)
from dnsieve.alerts.base import status_filter
from dnsieve.alerts.merge import DEFAULT_EPISODE_GAP
from dnsieve.alerts.store import DB_ENV, current_revision, metadata, resolve_db_url
from dnsieve.episodes import collapse_episodes
from dnsieve.rules.match import AllowListError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------- real anomalies


def _events(path: Path) -> pl.DataFrame:
    from dnsieve.ingest import read_file

    return pl.from_arrow(pa.Table.from_batches(list(read_file(path))))  # type: ignore[return-value]


def real_anomalies(data: Path = DATA) -> pl.DataFrame:
    """Per-minute candidates (ANOMALY shape) aggregated from two real captures.

    ``volume`` scores domains by queries, ``nxdomain`` clients by failed
    lookups, ``beacon`` client×domain pairs by query count; evidence carries
    the real counts and sample names.
    """
    ev = pl.concat(
        [
            _events(data / "zeek" / "brim_dns_head.log"),
            _events(data / "querylog" / "dnsmasq_iodine.log"),
        ],
        how="vertical_relaxed",
    ).with_columns(
        window_start=pl.col("ts").dt.truncate("1m"),
        failed=(pl.col("rcode") == "NXDOMAIN").cast(pl.Int64),
    )
    ev = ev.with_columns(window_end=pl.col("window_start") + pl.duration(minutes=1))
    keys = ["window_start", "window_end"]
    dom = (
        ev.filter(pl.col("registered_domain").is_not_null())
        .group_by(["registered_domain", *keys])
        .agg(
            queries=pl.len(),
            clients=pl.col("src_ip").n_unique(),
            names=pl.col("qname").unique().sort().head(3),
        )
        .select(
            *keys,
            detector=pl.lit("volume"),
            entity_type=pl.lit("domain"),
            entity=pl.col("registered_domain"),
            score=pl.col("queries").cast(pl.Float64).log1p(),
            p_value=(1.0 / (1.0 + pl.col("queries").cast(pl.Float64))),
            evidence=pl.struct("queries", "clients", "names").struct.json_encode(),
        )
    )
    cli = (
        ev.filter(pl.col("src_ip").is_not_null())
        .group_by(["src_ip", *keys])
        .agg(queries=pl.len(), nxdomain=pl.col("failed").sum())
        .select(
            *keys,
            detector=pl.lit("nxdomain"),
            entity_type=pl.lit("client"),
            entity=pl.col("src_ip"),
            score=pl.col("nxdomain").cast(pl.Float64) + 0.5,
            p_value=pl.lit(None, dtype=pl.Float64),
            evidence=pl.struct("queries", "nxdomain").struct.json_encode(),
        )
    )
    pair = (
        ev.filter(pl.col("registered_domain").is_not_null() & pl.col("src_ip").is_not_null())
        .group_by(["src_ip", "registered_domain", *keys])
        .agg(queries=pl.len())
        .select(
            *keys,
            detector=pl.lit("beacon"),
            entity_type=pl.lit("client_domain"),
            entity=pl.concat_str(["src_ip", "registered_domain"], separator="|"),
            score=pl.col("queries").cast(pl.Float64).sqrt(),
            p_value=pl.lit(0.01),
            evidence=pl.struct("queries").struct.json_encode(),
        )
    )
    columns = ["detector", "entity_type", "entity", *keys, "score", "p_value", "evidence"]
    return pl.concat([dom.select(columns), cli.select(columns), pair.select(columns)]).sort(
        ["detector", "entity", "window_start"]
    )


@pytest.fixture(scope="session")
def anomalies() -> pl.DataFrame:
    return real_anomalies()


# --------------------------------------------------------------------------- stores


def pg_url_or_skip() -> str:
    """The test PostgreSQL URL; fails in CI when missing, skips elsewhere."""
    url = os.environ.get("DNSIEVE_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(
            "DNSIEVE_TEST_PG_URL is not set in CI: .ci/run must `source .ci/postgres.sh`",
            pytrace=False,
        )
    pytest.skip("no PostgreSQL: set DNSIEVE_TEST_PG_URL (see .ci/postgres.sh) to run these tests")


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A URL whose connections live in a fresh, private schema (dropped afterwards)."""
    base = pg_url_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'alerts.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL of each SQL dialect."""
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlertStoreProtocol]:
    """A fresh store: SQLite file, PostgreSQL schema, or the in-memory store."""
    if request.param == "memory":
        s: AlertStoreProtocol = MemoryAlertStore()
    elif request.param == "sqlite":
        s = AlertStore.open(_sqlite_url(tmp_path))
    else:
        s = AlertStore.open(request.getfixturevalue("pg_schema_url"))
    yield s
    s.close()


def one(
    entity: str,
    detector: str = "tunnel",
    entity_type: str = "domain",
    score: float = 5.0,
    start: datetime = T0,
    evidence: dict[str, object] | str | None = None,
    p_value: float | None = 1e-4,
    **extra: object,
) -> pl.DataFrame:
    """A one-row anomaly frame."""
    ev = evidence if isinstance(evidence, str) else json.dumps(evidence or {"queries": 10})
    cols: dict[str, object] = {
        "detector": [detector],
        "entity_type": [entity_type],
        "entity": [entity],
        "window_start": [start],
        "window_end": [start + timedelta(hours=1)],
        "score": [score],
        "p_value": pl.Series([p_value], dtype=pl.Float64),
        "evidence": [ev],
    }
    cols.update({k: [v] for k, v in extra.items()})
    return pl.DataFrame(cols)


def aid(entity: str, detector: str = "tunnel", start: datetime = T0) -> str:
    return alert_id(detector, entity, start, start + timedelta(hours=1))


# --------------------------------------------------------------------------- ids and upsert


def test_protocol_is_implemented(store: AlertStoreProtocol) -> None:
    assert isinstance(store, AlertStoreProtocol)


def _episodes(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame's episodes at the stores' default gap: what they must hold."""
    return collapse_episodes(frame, DEFAULT_EPISODE_GAP)


def test_upsert_real_anomalies_is_idempotent(
    store: AlertStoreProtocol, anomalies: pl.DataFrame
) -> None:
    n = anomalies.height
    episodes = _episodes(anomalies)
    assert n > 50 and 10 < episodes.height < n  # per-minute windows: campaigns span several
    first = store.upsert_anomalies(anomalies, now=T0, batch_size=40)
    assert (first.received, first.new_windows, sum(first.rejects.values())) == (n, n, 0)
    assert first.inserted == episodes.height + first.joined  # bridged batches merged away
    again = store.upsert_anomalies(anomalies, now=T0 + timedelta(hours=1), batch_size=1000)
    assert (again.inserted, again.merged, again.new_windows) == (0, episodes.height, 0)
    stored = store.list_alerts(limit=None)
    assert len(stored) == episodes.height
    assert sum(a.n_windows for a in stored) == n
    assert all(a.times_seen == 2 * a.n_windows for a in stored)
    assert all(a.first_seen == T0 and a.last_seen == T0 + timedelta(hours=1) for a in stored)
    want = {
        (r["detector"], r["entity"], r["episode_start"], r["episode_end"], r["n_windows"])
        for r in episodes.iter_rows(named=True)
    }
    got = {(a.detector, a.entity, a.episode_start, a.episode_end, a.n_windows) for a in stored}
    assert got == want
    row = anomalies.row(0, named=True)
    wid = alert_id(row["detector"], row["entity"], row["window_start"], row["window_end"])
    got_alert = store.get_alert(wid)  # a window's id finds its episode
    assert got_alert.entity == row["entity"] and got_alert.status == "new"
    assert got_alert.episode_start is not None and got_alert.episode_start <= row["window_start"]
    top = anomalies.filter(
        (pl.col("detector") == got_alert.detector) & (pl.col("entity") == got_alert.entity)
    ).sort("score", "window_start", descending=[True, False])
    assert got_alert.evidence == json.loads(top["evidence"][0])


def test_merge_keeps_max_score_and_its_evidence(store: AlertStoreProtocol) -> None:
    store.upsert_anomalies(one("dnsc.r-1x.com", score=5.0, evidence={"run": 1}, p_value=1e-3))
    store.upsert_anomalies(one("dnsc.r-1x.com", score=9.0, evidence={"run": 2}, p_value=None))
    store.upsert_anomalies(one("dnsc.r-1x.com", score=7.0, evidence={"run": 3}, p_value=1e-5))
    a = store.get_alert(aid("dnsc.r-1x.com"))
    assert (a.score, a.evidence, a.p_value, a.times_seen) == (9.0, {"run": 2}, 1e-5, 3)
    assert a.severity == "medium"  # p = 1e-5, no threat model yet


def test_duplicates_within_a_batch_are_merged(store: AlertStoreProtocol) -> None:
    frame = pl.concat([one("a.example", score=2.0), one("a.example", score=3.0), one("b.example")])
    rep = store.upsert_anomalies(frame)
    assert (rep.inserted, rep.merged) == (2, 0)
    a = store.get_alert(aid("a.example"))
    assert (a.score, a.times_seen) == (3.0, 2)


def test_bad_rows_are_counted_not_raised(store: AlertStoreProtocol) -> None:
    frame = pl.concat(
        [
            one("ok.example"),
            one("nan.example", score=math.nan),
            one("inf.example", score=math.inf),
            one("bad-evidence.example", evidence="{not json"),
        ]
    )
    backwards = one("backwards.example").with_columns(window_end=pl.lit(T0 - timedelta(hours=1)))
    null_entity = one("x").with_columns(entity=pl.lit(None, dtype=pl.String))
    rep = store.upsert_anomalies(pl.concat([frame, backwards, null_entity]))
    assert rep.rejects == {"bad_score": 2, "bad_window": 1, "missing_key": 1}
    assert rep.repaired == {"evidence_not_json": 1}
    assert rep.inserted == 2
    assert store.get_alert(aid("bad-evidence.example")).evidence == {"raw": "{not json"}


def test_missing_columns_is_a_clear_error(store: AlertStoreProtocol) -> None:
    with pytest.raises(ValueError, match="lacks column"):
        store.upsert_anomalies(pl.DataFrame({"detector": ["x"]}))


def test_hostile_strings_round_trip(store: AlertStoreProtocol) -> None:
    nasty = "x\\x00y'; drop table alerts;--.\u202etxt.\u00e9vil.com"
    store.upsert_anomalies(
        one(nasty, evidence={"q": "a\x00b", "k'\"": [1.5, math.nan], "deep": {"x": "\u2028"}})
    )
    a = store.get_alert(aid(nasty))
    assert a.entity == nasty
    assert a.evidence == {"q": "a\\x00b", "k'\"": [1.5, None], "deep": {"x": "\u2028"}}


def test_features_and_threat_probability_columns(store: AlertStoreProtocol) -> None:
    frame = one(
        "iodine.example", threat_probability=0.93, features={"det_tunnel": 1.0, "ev_entropy": 4.2}
    )
    store.upsert_anomalies(frame)
    a = store.get_alert(aid("iodine.example"))
    assert a.threat_probability == pytest.approx(0.93)
    assert a.severity == "critical"
    assert a.features == {"det_tunnel": 1.0, "ev_entropy": 4.2}
    # A later run without a model keeps the probability and the features.
    store.upsert_anomalies(one("iodine.example"))
    b = store.get_alert(aid("iodine.example"))
    assert b.threat_probability == pytest.approx(0.93) and b.features == a.features


def test_id_prefixes(store: AlertStoreProtocol, anomalies: pl.DataFrame) -> None:
    store.upsert_anomalies(anomalies)
    ids = sorted(a.id for a in store.list_alerts())
    full = ids[len(ids) // 2]
    assert store.get_alert(full[:12]).id == full
    assert store.get_alert(full.upper()).id == full
    with pytest.raises(AmbiguousId, match="ambiguous"):
        store.get_alert(_common_prefix(ids))
    with pytest.raises(AlertNotFound, match="hexadecimal"):
        store.get_alert("zz; select")
    with pytest.raises(AlertNotFound, match="no alert"):
        store.get_alert(aid("never-stored.example"))


def _common_prefix(ids: list[str]) -> str:
    """A one-character prefix that at least two ids share."""
    first = [i[0] for i in ids]
    return next(c for c in first if first.count(c) > 1)


# --------------------------------------------------------------------------- workflow


def test_verdicts_are_audited_and_survive_reruns(
    store: AlertStoreProtocol, anomalies: pl.DataFrame
) -> None:
    store.upsert_anomalies(anomalies, now=T0)
    mv = store.save_model_version("linear", {"w": [0.1, 0.2]}, now=T0)
    ids = [a.id for a in store.list_alerts(limit=3)]
    r = store.record_verdict(
        ids[0], "threat", "alice", "iodine tunnel", now=T0 + timedelta(minutes=5)
    )
    assert (r.old_status, r.new_status, r.alert.status) == ("new", "threat", "threat")
    assert r.alert.evidence and r.audit.model_version == mv.id
    store.record_verdict(ids[1], "not-relevant", "bob", now=T0 + timedelta(minutes=6))
    store.set_status(ids[2], "needs_review", "system:queue", now=T0 + timedelta(minutes=7))
    store.record_verdict(ids[0], "benign", "carol", "lab traffic", now=T0 + timedelta(minutes=8))
    store.upsert_anomalies(anomalies, now=T0 + timedelta(hours=1))
    assert store.get_alert(ids[0]).status == "benign"
    assert store.get_alert(ids[1]).status == "not_relevant"
    assert store.get_alert(ids[2]).status == "needs_review"
    trail = store.audit_trail(ids[0])
    assert [(e.actor, e.old_status, e.new_status, e.comment) for e in trail] == [
        ("alice", "new", "threat", "iodine tunnel"),
        ("carol", "threat", "benign", "lab traffic"),
    ]
    assert trail[0].at == T0 + timedelta(minutes=5)
    assert len(store.audit_trail()) == 4
    assert store.count_by_status() == {
        "new": _episodes(anomalies).height - 3,
        "needs_review": 1,
        "benign": 1,
        "not_relevant": 1,
    }


def test_invalid_transitions_and_values(store: AlertStoreProtocol) -> None:
    store.upsert_anomalies(one("a.example"))
    a = aid("a.example")
    with pytest.raises(InvalidTransition, match="unknown status"):
        store.record_verdict(a, "evil", "alice")
    with pytest.raises(InvalidTransition, match="a verdict is one of"):
        store.record_verdict(a, "needs_review", "alice")
    with pytest.raises(InvalidTransition, match="needs an actor"):
        store.record_verdict(a, "threat", " ")
    store.record_verdict(a, "threat", "alice")
    with pytest.raises(InvalidTransition, match="already 'threat'"):
        store.record_verdict(a, "threat", "alice")
    with pytest.raises(InvalidTransition, match="cannot move"):
        store.set_status(a, "new", "alice")
    with pytest.raises(AlertNotFound):
        store.record_verdict("abcdef", "threat", "alice")
    assert len(store.audit_trail(a)) == 1


def test_queue_order_and_threat_probabilities(store: AlertStoreProtocol) -> None:
    frame = pl.concat(
        [
            one("low.example", score=9.0),
            one("mid.example", score=1.0),
            one("top.example", score=2.0),
        ]
    )
    store.upsert_anomalies(frame)
    assert [a.entity for a in store.list_alerts()] == ["low.example", "top.example", "mid.example"]
    n = store.set_threat_probabilities(
        {aid("top.example"): 0.97, aid("mid.example"): 0.5, "nope": 0.1}
    )
    assert n == 2
    assert [a.entity for a in store.list_alerts()] == ["top.example", "mid.example", "low.example"]
    top = store.get_alert(aid("top.example"))
    assert (top.threat_probability, top.severity) == (0.97, "critical")
    assert [a.entity for a in store.list_alerts(order="recent", limit=1)] == ["low.example"]


def test_filters_and_iteration(store: AlertStoreProtocol, anomalies: pl.DataFrame) -> None:
    store.upsert_anomalies(anomalies)
    by_det = store.list_alerts(detector="nxdomain")
    assert by_det and {a.detector for a in by_det} == {"nxdomain"}
    assert {a.entity_type for a in by_det} == {"client"}
    ent = by_det[0].entity
    assert {a.entity for a in store.list_alerts(entity=ent)} == {ent}
    streamed = list(store.iter_alerts(batch=7))
    n = _episodes(anomalies).height
    assert len(streamed) == n == len({a.id for a in streamed})
    keys = [(a.window_start, a.id) for a in streamed]
    assert keys == sorted(keys)
    store.record_verdict(streamed[0].id, "benign", "alice")
    assert len(list(store.iter_alerts(status="open"))) == n - 1
    assert [a.id for a in store.iter_alerts(status="benign")] == [streamed[0].id]


# --------------------------------------------------------------------------- allow-lists


def test_allowlist_applies_to_stored_and_future_alerts(store: AlertStoreProtocol) -> None:
    store.upsert_anomalies(
        pl.concat([one("a.evil.com"), one("evil.com"), one("notevil.com"), one("x.cdn.net")])
    )
    e = store.add_allow("suffix", "Evil.COM.", "red-team exercise", "alice", now=T0)
    assert (e.kind, e.value) == ("suffix", "evil.com")
    visible = {a.entity for a in store.list_alerts(now=T0)}
    assert visible == {"notevil.com", "x.cdn.net"}
    hidden = store.get_alert(aid("a.evil.com"), now=T0)
    assert hidden.suppressed and hidden.suppressed_by == e.id
    assert len(store.list_alerts(include_suppressed=True, now=T0)) == 4
    # A future alert is suppressed on write.
    rep = store.upsert_anomalies(one("deep.b.evil.com"), now=T0)
    assert rep.suppressed == 1
    assert store.get_alert(aid("deep.b.evil.com"), now=T0).suppressed_by == e.id
    # Removing the entry brings them back.
    store.remove_allow(e.id, now=T0)
    assert len(store.list_alerts(now=T0)) == 5
    with pytest.raises(AllowListError, match="already removed"):
        store.remove_allow(e.id, now=T0)


def test_wildcard_matches_bare_domain(store: AlertStoreProtocol) -> None:
    store.upsert_anomalies(pl.concat([one("cdn.net"), one("a.cdn.net"), one("xcdn.net")]))
    e = store.add_allow("domain", "*.cdn.net", "CDN", "alice")
    assert e.kind == "wildcard"
    assert {a.entity for a in store.list_alerts()} == {"xcdn.net"}


def test_exact_domain_does_not_cover_subdomains(store: AlertStoreProtocol) -> None:
    store.upsert_anomalies(pl.concat([one("mozilla.com"), one("aus5.mozilla.com")]))
    store.add_allow("domain", "mozilla.com", "browser updates", "alice")
    assert {a.entity for a in store.list_alerts()} == {"aus5.mozilla.com"}


def test_client_and_cidr_entries(store: AlertStoreProtocol, anomalies: pl.DataFrame) -> None:
    store.upsert_anomalies(anomalies)
    clients = anomalies.filter(pl.col("entity_type") == "client")["entity"].unique().to_list()
    assert "172.18.0.3" in clients  # the iodine client of the dnsmasq log
    e = store.add_allow("client", "172.18.0.0/16", "iodine lab", "alice")
    left = store.list_alerts()
    assert not any(a.client is not None and a.client.startswith("172.18.") for a in left)
    assert any(a.entity_type == "client" for a in left)  # the 10.x WRCCDC hosts stay
    # client×domain alerts of that client are covered too
    gone = store.list_alerts(include_suppressed=True, detector="beacon")
    assert any(a.suppressed_by == e.id for a in gone)
    assert store.suppressed_count(e.id) == len(  # type: ignore[attr-defined]
        [a for a in store.list_alerts(include_suppressed=True) if a.suppressed]
    )


def test_detector_entity_entry_is_scoped(store: AlertStoreProtocol) -> None:
    store.upsert_anomalies(
        pl.concat([one("x.example", detector="tunnel"), one("x.example", detector="dga")])
    )
    store.add_allow("detector_entity", "X.example.", "known TXT user", "alice", detector="tunnel")
    assert [a.detector for a in store.list_alerts()] == ["dga"]
    with pytest.raises(AllowListError, match="needs a detector"):
        store.add_allow("detector_entity", "x.example", "r", "alice")


def test_expiry_unsuppresses_without_a_job(store: AlertStoreProtocol) -> None:
    store.upsert_anomalies(one("a.evil.com"), now=T0)
    short = store.add_allow(
        "suffix", "evil.com", "1 day", "alice", expires_at=T0 + timedelta(days=1), now=T0
    )
    long = store.add_allow(
        "wildcard", "*.evil.com", "1 week", "bob", expires_at=T0 + timedelta(days=7), now=T0
    )
    a = store.get_alert(aid("a.evil.com"), now=T0)
    assert a.suppressed and a.suppressed_by == long.id  # the one that lasts longest
    assert store.list_alerts(now=T0 + timedelta(days=3)) == []  # short expired, long still holds
    assert [x.id for x in store.list_allow(now=T0 + timedelta(days=3))] == [long.id]
    assert len(store.list_alerts(now=T0 + timedelta(days=8))) == 1  # both expired: back, no job
    assert len(store.list_allow(include_inactive=True)) == 2
    # Removing the long one falls back to the short one while it lasts.
    store.remove_allow(long.id, now=T0)
    assert store.get_alert(aid("a.evil.com"), now=T0).suppressed_by == short.id
    assert store.list_alerts(now=T0 + timedelta(hours=1)) == []


def test_permanent_entry_added_later_takes_over(store: AlertStoreProtocol) -> None:
    store.upsert_anomalies(one("a.evil.com"), now=T0)
    store.add_allow(
        "suffix", "evil.com", "temp", "alice", expires_at=T0 + timedelta(hours=1), now=T0
    )
    perm = store.add_allow("domain", "a.evil.com", "forever", "alice", now=T0)
    assert store.get_alert(aid("a.evil.com"), now=T0).suppressed_by == perm.id
    assert store.list_alerts(now=T0 + timedelta(days=30)) == []


def test_allowlist_validation(store: AlertStoreProtocol) -> None:
    with pytest.raises(AllowListError, match="reason"):
        store.add_allow("domain", "x.com", "", "alice")
    with pytest.raises(AllowListError, match="author"):
        store.add_allow("domain", "x.com", "why", "")
    with pytest.raises(AllowListError, match="not in the future"):
        store.add_allow("domain", "x.com", "why", "a", expires_at=T0, now=T0 + timedelta(seconds=1))
    with pytest.raises(AllowListError, match="not a URL"):
        store.add_allow("domain", "https://x.com/a", "why", "a")
    with pytest.raises(AllowListError, match="CIDR"):
        store.add_allow("client", "10.0.0.300", "why", "a")
    with pytest.raises(AlertNotFound):
        store.remove_allow(999)
    assert store.list_allow(include_inactive=True) == []


# --------------------------------------------------------------------------- models and runs


def test_model_versions_and_rollback(store: AlertStoreProtocol) -> None:
    v1 = store.save_model_version("linear", {"w": [1.0]}, {"p@20": 0.6}, blob=b"\x00\x01", now=T0)
    v2 = store.save_model_version("linear", {"w": [2.0]}, {"p@20": 0.9}, parent_id=v1.id, now=T0)
    mlp = store.save_model_version("mlp", {"layers": [8]}, now=T0)
    assert store.active_model_version("linear").id == v2.id  # type: ignore[union-attr]
    assert store.active_model_version().id == mlp.id  # type: ignore[union-attr]
    back = store.activate_model_version(v1.id)
    assert back.active and back.blob == b"\x00\x01"
    assert store.active_model_version("linear").id == v1.id  # type: ignore[union-attr]
    assert [m.id for m in store.list_model_versions("linear")] == [v2.id, v1.id]
    assert store.list_model_versions("linear")[0].parent_id == v1.id
    with pytest.raises(AlertNotFound):
        store.activate_model_version(12345)


def test_runs(store: AlertStoreProtocol) -> None:
    rid = store.start_run({"paths": ["dns.log"]}, now=T0)
    rec = store.finish_run(rid, {"alerts": 3}, {"bad_line": 2}, now=T0 + timedelta(seconds=5))
    assert (rec.inputs, rec.counts, rec.rejects) == (
        {"paths": ["dns.log"]},
        {"alerts": 3},
        {"bad_line": 2},
    )
    assert rec.finished == T0 + timedelta(seconds=5)
    assert [r.id for r in store.list_runs()] == [rid]
    with pytest.raises(AlertNotFound):
        store.finish_run(rid + 100, {})


# --------------------------------------------------------------------------- SQL specifics


def test_migrations_create_the_schema(db_url: str) -> None:
    with AlertStore.open(db_url) as s:
        assert current_revision(s.engine) == "0008"
        insp = sa.inspect(s.engine)
        for table in metadata.sorted_tables:
            cols = {c["name"] for c in insp.get_columns(table.name)}
            assert cols == {c.name for c in table.columns}, table.name
        assert {
            "ix_alerts_queue",
            "ix_alerts_window_start",
            "ix_alerts_severity",
            "ix_alerts_score",
            "ix_alerts_suppressed_by",
            "ix_alerts_entity",
            "ix_alerts_detector",
        } <= _index_names(s)
        assert {"ix_alert_windows_alert"} <= {i["name"] for i in insp.get_indexes("alert_windows")}
        if s.dialect == "postgresql":  # the queue search's trigram index (pg_trgm is trusted)
            assert {"ix_alerts_entity_trgm", "ix_alerts_domain_rev"} <= _index_names(s)
    with AlertStore.open(db_url) as s:  # re-opening is a no-op
        assert current_revision(s.engine) == "0008"


def _index_names(store: AlertStore) -> set[str]:
    """Index names of the alerts table, expression indexes included (which reflection skips)."""
    q = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'alerts'"
        if store.dialect == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE tablename = 'alerts'"
        " AND schemaname = current_schema()"
    )
    with store.engine.connect() as conn:
        return set(conn.exec_driver_sql(q).scalars())


def test_sqlite_pragmas(tmp_path: Path) -> None:
    with AlertStore.open(tmp_path / "a.db") as s, s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_db_url_precedence(tmp_path: Path) -> None:
    env = {DB_ENV: str(tmp_path / "env.db")}
    assert resolve_db_url("sqlite:///x.db", env) == "sqlite:///x.db"
    assert resolve_db_url(None, env) == f"sqlite:///{tmp_path / 'env.db'}"
    default = resolve_db_url(None, {})
    assert default.startswith("sqlite:///") and default.endswith("dnsieve/alerts.db")


def test_store_constraint_rejects_bad_status(db_url: str) -> None:
    """The database itself refuses an unknown status (defence in depth)."""
    with AlertStore.open(db_url) as s:
        s.upsert_anomalies(one("a.example"))
        with pytest.raises(sa.exc.IntegrityError), s.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alerts SET status = 'pwned'"))


# --------------------------------------------------------------------------- crash safety

_WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from test_alert_store import _crash_frame
    from dnsieve.alerts import AlertStore

    url, total, batch, names = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    frame = _crash_frame(names, total)
    store = AlertStore.open(url)
    for off in range(0, total, batch):
        store.upsert_anomalies(frame.slice(off, batch), batch_size=batch)
        print("committed", off + batch, flush=True)
    """
)


def _crash_frame(names_file: Path, total: int) -> pl.DataFrame:
    names = [x.strip() for x in names_file.read_text().splitlines() if x.strip()]
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "detector": ["volume"] * total,
            "entity_type": ["domain"] * total,
            "entity": [names[i % len(names)] + f".n{i}" for i in range(total)],
            "window_start": [t0 + timedelta(hours=i % 24) for i in range(total)],
            "window_end": [t0 + timedelta(hours=i % 24 + 1) for i in range(total)],
            "score": [float(i % 97) for i in range(total)],
            "evidence": [f'{{"queries": {i}}}' for i in range(total)],
        }
    )


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_kill_9_during_bulk_upsert_loses_nothing(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest, anomalies: pl.DataFrame
) -> None:
    url = _sqlite_url(tmp_path) if dialect == "sqlite" else request.getfixturevalue("pg_schema_url")
    names_file = tmp_path / "names.txt"
    names_file.write_text(
        "\n".join(anomalies.filter(pl.col("entity_type") == "domain")["entity"].unique().sort())
    )
    total, batch = 2000, 500
    frame = _crash_frame(names_file, total)
    with AlertStore.open(url) as s:  # seed: first batch stored, with verdicts
        s.upsert_anomalies(frame.head(batch))
        seeded = [a.id for a in s.list_alerts(order="recent", limit=4)]
        for i, (label, who) in enumerate(
            [("threat", "alice"), ("benign", "bob"), ("not-relevant", "carol")]
        ):
            s.record_verdict(seeded[i], label, who, comment=f"verdict {i}")
        s.set_status(seeded[3], "needs_review", "system:queue")
        trail_before = [e.to_dict() for e in s.audit_trail()]
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(Path(__file__).parent),
            url,
            str(total),
            str(batch),
            str(names_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            # Kill while the last batch is in flight: three of four are committed.
            if line.startswith("committed") and int(line.split()[1]) >= 3 * batch:
                break
        else:
            pytest.fail("worker ended early: " + (proc.stderr.read() if proc.stderr else ""))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with AlertStore.open(url) as s:
        if dialect == "sqlite":
            with s.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        stored = {a.id: a for a in s.list_alerts(include_suppressed=True)}
        # Every committed batch is there and the one in flight is all or nothing.
        assert len(stored) in (3 * batch, 4 * batch)
        assert [e.to_dict() for e in s.audit_trail()] == trail_before
        assert [stored[i].status for i in seeded] == [
            "threat",
            "benign",
            "not_relevant",
            "needs_review",
        ]
        # A re-run creates no duplicates and keeps every verdict.
        rep = s.upsert_anomalies(frame)
        assert (rep.inserted, rep.merged) == (total - len(stored), len(stored))
        after = s.list_alerts(include_suppressed=True)
        assert len(after) == total
        assert [s.get_alert(i).status for i in seeded] == [
            "threat",
            "benign",
            "not_relevant",
            "needs_review",
        ]
        assert [e.to_dict() for e in s.audit_trail()] == trail_before
        with s.engine.connect() as conn:
            dup = conn.execute(sa.text("SELECT count(*) - count(DISTINCT id) FROM alerts")).scalar()
        assert dup == 0


# --------------------------------------------------------------------------- bulk path and scale


def _bulk_frame(anomalies: pl.DataFrame) -> pl.DataFrame:
    """Real anomalies plus what the bulk path must merge exactly like the per-row path:
    repeats inside a batch (higher, tied and lower scores; P(threat) and features on some)
    and a calibrated ``global_p`` column."""
    base = anomalies.with_columns(
        threat_probability=pl.when(pl.int_range(pl.len()) % 3 == 0)
        .then((pl.int_range(pl.len()) % 10) / 10.0)
        .otherwise(None),
        features=pl.when(pl.int_range(pl.len()) % 4 == 0)
        .then(pl.format('{{"det": {}}}', pl.int_range(pl.len())))
        .otherwise(None),
        global_p=pl.when(pl.int_range(pl.len()) % 5 == 0).then(1e-7).otherwise(None),
    )
    head = base.head(30)
    repeats = pl.concat(
        [
            head.with_columns(score=pl.col("score") + 1.0, evidence=pl.lit('{"rep": "higher"}')),
            head.with_columns(score=pl.col("score") + 1.0, evidence=pl.lit('{"rep": "tie"}')),
            head.with_columns(
                score=pl.col("score") - 1.0,
                evidence=pl.lit('{"rep": "lower"}'),
                threat_probability=pl.lit(0.95),
                features=pl.lit(None, dtype=pl.String),
                p_value=pl.lit(1e-9),
            ),
        ]
    )
    return pl.concat([base, repeats])


def _snapshot(store: AlertStoreProtocol) -> dict[str, tuple[Any, ...]]:
    return {
        a.id: (
            a.detector, a.entity_type, a.entity, a.domain, a.client, a.window_start,
            a.window_end, a.score, a.p_value, a.threat_probability, a.severity, a.evidence,
            a.features, a.times_seen, a.suppressed_by, a.status, a.episode_start,
            a.episode_end, a.n_windows, a.windows,
        )
        for a in store.list_alerts(status="all", include_suppressed=True, now=T0)
    }  # fmt: skip


@pytest.mark.parametrize("batch_size", [64, 5000])
def test_bulk_upsert_matches_the_per_row_semantics(
    db_url: str, anomalies: pl.DataFrame, batch_size: int
) -> None:
    """The SQL bulk path stores exactly what the per-row path (the memory store) does:
    merges inside and across batches, allow-list suppression on write, reports."""
    frame = _bulk_frame(anomalies)
    bad = one("bad.example", score=math.nan)  # one batch goes the per-row way
    sql, mem = AlertStore.open(db_url), MemoryAlertStore()
    reports: dict[str, list[dict[str, Any]]] = {}
    try:
        for s in (sql, mem):
            s.add_allow("client", "172.18.0.3", "iodine lab", "alice", now=T0)
            first = s.upsert_anomalies(
                pl.concat([frame, bad], how="diagonal_relaxed"), now=T0, batch_size=batch_size
            )
            second = s.upsert_anomalies(frame.head(50), now=T0, batch_size=batch_size)
            s.record_verdict(sorted(first.ids)[0], "threat", "alice", now=T0)
            naive = frame.tail(10).with_columns(  # naive timestamps are UTC
                pl.col("window_start").dt.replace_time_zone(None),
                pl.col("window_end").dt.replace_time_zone(None),
            )
            third = s.upsert_anomalies(naive, now=T0, batch_size=batch_size)
            reports[s.__class__.__name__] = [r.to_dict() for r in (first, second, third)]
        assert reports["AlertStore"] == reports["MemoryAlertStore"]
        assert reports["AlertStore"][0]["rejects"] == {"bad_score": 1}
        assert reports["AlertStore"][0]["suppressed"] > 0
        third = reports["AlertStore"][2]  # windows seen before: their episodes, no new one
        assert (third["inserted"], third["new_windows"], third["received"]) == (0, 0, 10)
        assert 0 < third["merged"] <= 10
        got, want = _snapshot(sql), _snapshot(mem)
        assert got == want
        assert len(got) == _episodes(frame).height  # the bad row aside
        assert max(v[13] for v in got.values()) >= 6  # itself, 3 repeats, then 2 more runs
        # the bulk path writes SQLite/PostgreSQL times that SQL comparisons still match
        a = next(iter(sql.list_alerts(limit=1)))
        t = metadata.tables["alerts"].c
        assert sql.count_where(t.window_start == a.window_start, t.id == a.id) == 1
    finally:
        sql.close()


def test_bulk_upsert_large_frame_counts(db_url: str) -> None:
    """A generated frame of 12,000 anomalies, repeats across batches included."""
    n = 12_000
    ents = [f"h{i % 9000}.example.net" for i in range(n)]
    frame = pl.DataFrame(
        {
            "detector": ["volume"] * n,
            "entity_type": ["domain"] * n,
            "entity": ents,
            "window_start": [T0] * n,
            "window_end": [T0 + timedelta(hours=1)] * n,
            "score": [float(i % 13) for i in range(n)],
            "evidence": [f'{{"i": {i}}}' for i in range(n)],
        }
    )
    with AlertStore.open(db_url) as s:
        rep = s.upsert_anomalies(frame, now=T0, batch_size=5000)
        assert (rep.received, rep.inserted, rep.merged) == (n, 9000, 3000)
        assert s.count_by_status() == {"new": 9000}
        a = s.get_alert(alert_id("volume", "h5.example.net", T0, T0 + timedelta(hours=1)))
        assert (a.times_seen, a.score, a.evidence) == (2, 9.0, {"i": 9005})  # 9005 % 13 = 9


def test_expire_allow(store_sql: AlertStore) -> None:
    s = store_sql
    s.upsert_anomalies(pl.concat([one("a.evil.com"), one("b.evil.com"), one("ok.example")]), T0)
    day = timedelta(days=1)
    short = s.add_allow("suffix", "evil.com", "lab", "alice", expires_at=T0 + day, now=T0)
    long = s.add_allow("domain", "a.evil.com", "lab", "bob", expires_at=T0 + 9 * day, now=T0)
    assert s.get_alert(aid("a.evil.com"), now=T0).suppressed_by == long.id
    assert s.count_by_status(now=T0) == {"new": 1}
    # a later expiry keeps the entry active; the longest-lasting entry keeps its alerts
    e = s.expire_allow(short.id, at=T0 + timedelta(hours=5), now=T0)
    assert e.expires_at == T0 + timedelta(hours=5) and e.active(T0)
    assert s.count_by_status(now=T0) == {"new": 1}
    # ending it now brings back what only it covered, at once
    e = s.expire_allow(short.id, now=T0 + timedelta(hours=1))
    assert not e.active(T0 + timedelta(hours=1))
    now = T0 + timedelta(hours=1)
    assert {a.entity for a in s.list_alerts(now=now)} == {"b.evil.com", "ok.example"}
    assert s.count_by_status(now=now) == {"new": 2}
    assert s.get_alert(aid("a.evil.com"), now=now).suppressed_by == long.id
    with pytest.raises(AllowListError, match="already expired"):
        s.expire_allow(short.id, now=now)
    with pytest.raises(AllowListError, match="past"):
        s.expire_allow(long.id, at=T0, now=now)
    s.remove_allow(long.id, now=now)
    with pytest.raises(AllowListError, match="removed"):
        s.expire_allow(long.id, now=now)
    with pytest.raises(AlertNotFound):
        s.expire_allow(999, now=now)


@pytest.fixture
def store_sql(db_url: str) -> Iterator[AlertStore]:
    s = AlertStore.open(db_url)
    yield s
    s.close()


def _tied_frame(n: int = 90) -> pl.DataFrame:
    """Alerts whose sort keys tie a lot: 3 scores, 2 windows, P(threat) on a third."""
    return pl.DataFrame(
        {
            "detector": ["dga"] * n,
            "entity_type": ["domain"] * n,
            "entity": [f"t{i}.example.org" for i in range(n)],
            "window_start": [T0 + timedelta(hours=i % 2) for i in range(n)],
            "window_end": [T0 + timedelta(hours=i % 2 + 1) for i in range(n)],
            "score": [float(i % 3) for i in range(n)],
            "p_value": [[1e-7, 1e-4, 0.5][i % 3] for i in range(n)],
            "threat_probability": [0.8 if i % 3 == 0 else None for i in range(n)],
            "evidence": ["{}"] * n,
        }
    )


@pytest.mark.parametrize("order", ["threat", "newest", "severity", "score"])
def test_keyset_pages_have_no_duplicates_or_gaps(store_sql: AlertStore, order: str) -> None:
    from dnsieve.web.queue import QueueQuery, list_queue

    s = store_sql
    s.upsert_anomalies(_tied_frame(), now=T0)
    whole, total = list_queue(s, QueueQuery(sort=order, per_page=500), now=T0)  # type: ignore[arg-type]
    assert total == len(whole) == 90
    keyset: list[str] = []
    after: str | None = None
    while True:
        q = QueueQuery(sort=order, per_page=7, after=after)  # type: ignore[arg-type]
        items, _ = list_queue(s, q, now=T0)
        if not items:
            break
        keyset += [a.id for a in items]
        after = items[-1].id
    offset = [
        a.id
        for page in range(1, 15)
        for a in list_queue(s, QueueQuery(sort=order, per_page=7, page=page), now=T0)[0]  # type: ignore[arg-type]
    ]
    assert keyset == offset == [a.id for a in whole]
    if order == "threat":  # P(threat) first (NULL last), then score, newest window, id
        keys = [
            (-(a.threat_probability if a.threat_probability is not None else -1.0), -a.score)
            for a in whole
        ]
        assert keys == sorted(keys)


def test_counts_stay_correct_after_writes(store_sql: AlertStore) -> None:
    s = store_sql
    s.cache_ttl = 3600.0  # only writes may refresh the counts here
    s.upsert_anomalies(_tied_frame(30), now=T0)
    assert s.count_by_status(now=T0) == {"new": 30}
    ids = [a.id for a in s.list_alerts(now=T0)]
    s.record_verdict(ids[0], "threat", "alice", now=T0)
    s.set_status(ids[1], "needs_review", "queue", now=T0)
    assert s.count_by_status(now=T0) == {"new": 28, "needs_review": 1, "threat": 1}
    assert s.count_alerts("open", now=T0) == 29
    e = s.add_allow("domain", "t2.example.org", "known", "alice", now=T0)
    assert s.count_by_status(now=T0) == {"new": 27, "needs_review": 1, "threat": 1}
    assert s.count_by_status(include_suppressed=True, now=T0)["new"] == 28
    s.upsert_anomalies(one("fresh.example"), now=T0)
    assert s.count_alerts("all", now=T0) == 30
    s.remove_allow(e.id, now=T0)
    assert s.count_by_status(now=T0) == {"new": 29, "needs_review": 1, "threat": 1}
    assert s.detector_names() == ["dga", "tunnel"]


def test_allow_list_cache_follows_other_stores_writes(store_sql: AlertStore, db_url: str) -> None:
    """The allow-list entries in force are cached like the counts: a write through the store
    shows at once; one through another store (another worker, the CLI) as soon as the
    generation counter is read again (``generation_check_s``); a write by hand, which leaves
    the counter alone, after ``cache_ttl``; an expiry exactly on time."""
    s = store_sql
    clock = [1000.0]
    s.clock = lambda: clock[0]
    s.upsert_anomalies(_tied_frame(30), now=T0)
    assert s.count_alerts("open", now=T0) == 30
    e = s.add_allow(
        "domain", "t2.example.org", "known", "alice", expires_at=T0 + timedelta(hours=1), now=T0
    )
    assert s.count_alerts("open", now=T0) == 29  # this store's write: at once
    assert s.count_alerts("open", now=T0 + timedelta(hours=1)) == 30  # expired, same cache
    with AlertStore.open(db_url) as other:  # another process ends the entry
        other.remove_allow(e.id, now=T0)
    assert s.count_alerts("open", now=T0) == 29  # cached until the counter is read again ...
    clock[0] += s.generation_check_s
    assert s.count_alerts("open", now=T0) == 30  # ... which says the data changed
    s.settle()
    assert s.count_by_status(now=T0) == {"new": 30}
    table = metadata.tables["alerts"]
    with s.engine.begin() as conn:  # by hand, past the store: the counter does not move
        conn.execute(
            sa.update(table).where(table.c.entity == "t7.example.org").values(status="benign")
        )
    clock[0] += s.generation_check_s
    assert s.count_alerts("open", now=T0) == 30  # still cached ...
    clock[0] += s.cache_ttl
    s.count_alerts("open", now=T0)  # ... until the TTL is over (served while it refreshes)
    s.settle()
    assert s.count_alerts("open", now=T0) == 29
    with AlertStore.open(db_url) as other:
        other.add_allow("domain", "t3.example.org", "known", "alice", now=T0)
    clock[0] -= 10 * s.cache_ttl  # a clock that went back does not keep a stale entry forever
    s.count_alerts("open", now=T0)  # out of date: the counts are served while they refresh ...
    s.settle()
    assert s.count_alerts("open", now=T0) == 28  # ... and then current


def test_out_of_date_counts_are_served_while_they_refresh(
    store_sql: AlertStore, db_url: str
) -> None:
    """Counts made out of date by another store's write are served at once and recomputed
    by one background thread (no request waits for a count over the whole table); counts
    cleared by a write through this store are recomputed before they are served."""
    s = store_sql
    clock = [1000.0]
    s.clock = lambda: clock[0]
    s.upsert_anomalies(_tied_frame(30), now=T0)
    assert s.count_alerts("all", now=T0) == 30
    with s.engine.connect() as conn:
        state = metadata.tables["store_state"]
        before = conn.execute(sa.select(state.c.generation)).scalar_one()
    with AlertStore.open(db_url) as other:  # another process adds an alert
        other.upsert_anomalies(one("fresh.example"), now=T0)
    with s.engine.connect() as conn:  # its write advanced the counter
        assert conn.execute(sa.select(state.c.generation)).scalar_one() == before + 1
    assert s.count_alerts("all", now=T0) == 30  # the counter is not read again yet
    clock[0] += s.generation_check_s
    assert s.count_alerts("all", now=T0) == 30  # out of date: the old value, not a wait ...
    s.settle()
    assert s.count_alerts("all", now=T0) == 31  # ... until the refresh is in
    assert s.count_by_status(now=T0) == {"new": 31}
    s.upsert_anomalies(one("fresher.example"), now=T0)  # this store's write: at once
    assert s.count_alerts("all", now=T0) == 32
    clock[0] += s.generation_check_s  # its own write does not make it count again
    s.count_alerts("all", now=T0)
    assert not s._refreshing


def test_store_without_the_generation_counter(db_url: str) -> None:
    """A store opened without migrating a database older than 0005 writes as before (no
    counter to advance) and its caches fall back to ``cache_ttl``."""
    from alembic import command

    from dnsieve.alerts.store import _alembic_config

    with AlertStore.open(db_url) as s:
        s.upsert_anomalies(_tied_frame(3), now=T0)
        with s.engine.connect() as conn, conn.begin():
            command.downgrade(_alembic_config(conn), "0004")
    with AlertStore.open(db_url, migrate=False) as s:
        assert s.count_alerts("all", now=T0) == 3
        assert "store_state" not in sa.inspect(s.engine).get_table_names()


def test_summaries_are_alerts_without_documents(store_sql: AlertStore) -> None:
    """A queue page's rows carry every field of the alert but its evidence and features."""
    from dataclasses import asdict

    from dnsieve.alerts.base import AlertSummary
    from dnsieve.web.queue import QueueQuery, list_queue

    s = store_sql
    s.upsert_anomalies(_tied_frame(12), now=T0)
    first = s.list_alerts(limit=1, now=T0)[0]
    s.add_allow("domain", first.entity, "known", "alice", now=T0)
    items, total = list_queue(s, QueueQuery(include_suppressed=True, per_page=100), now=T0)
    full = {a.id: a for a in s.list_alerts(include_suppressed=True, now=T0)}
    assert total == len(items) == 12
    for item in items:
        assert isinstance(item, AlertSummary) and isinstance(item.suppressed, bool)
        want = asdict(full[item.id])
        del want["evidence"], want["features"], want["windows"]
        assert asdict(item) == want
    assert sum(i.suppressed for i in items) == 1


def test_queue_queries_walk_an_index(tmp_path: Path) -> None:
    """SQLite reads a queue page in index order (no sort of every matching alert), counts
    from a covering index and searches through the trigram full-text index."""
    from dnsieve.web.queue import QueueQuery, _where

    with AlertStore.open(tmp_path / "a.db") as s, s.engine.connect() as conn:
        for order, index in [
            ("threat", "ix_alerts_queue"),
            ("newest", "ix_alerts_window_start"),
            ("severity", "ix_alerts_severity"),
            ("score", "ix_alerts_score"),
        ]:
            q = (
                s.select_alerts(T0)
                .where(*_where(QueueQuery(sort=order), T0, s))  # type: ignore[arg-type]
                .order_by(*s.order_keys(order))
                .limit(50)
            )
            sql = str(q.compile(dialect=s.engine.dialect, compile_kwargs={"literal_binds": True}))
            plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan
        q = s.select_alerts(T0).where(*_where(QueueQuery(search="evil.co"), T0, s)).limit(50)
        sql = str(q.compile(dialect=s.engine.dialect, compile_kwargs={"literal_binds": True}))
        plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        assert "VIRTUAL TABLE INDEX" in plan and "alerts_search" in plan, plan  # the trigram FTS
        counts = "SELECT status, suppressed_by, count(*) FROM alerts GROUP BY suppressed_by, status"
        plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + counts))
        assert "COVERING INDEX ix_alerts_suppressed_by" in plan and "TEMP" not in plan, plan


def test_domain_filter_reads_the_reversed_domain_index(pg_schema_url: str) -> None:
    """PostgreSQL finds "this domain and the names below it" by a prefix of
    ``reverse(domain)`` (migration 0004), LIKE's wildcards in the filter taken literally."""
    from dnsieve.web.queue import QueueQuery, list_queue

    with AlertStore.open(pg_schema_url) as s:
        s.upsert_anomalies(
            pl.concat([one(d) for d in ("a.ex_ample.org", "exxample.org", "ex_ample.org")]),
            now=T0,
        )
        items, total = list_queue(s, QueueQuery(domain="ex_ample.org."), now=T0)
        assert sorted(a.domain or "" for a in items) == ["a.ex_ample.org", "ex_ample.org"]
        assert total == 2
        q = sa.select(sa.func.count()).select_from(metadata.tables["alerts"])
        q = q.where(s.domain_or_below("ex_ample.org"))
        sql = str(q.compile(dialect=s.engine.dialect, compile_kwargs={"literal_binds": True}))
        with s.engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")  # a 3-row table: show it can
            plan = " | ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql))
        assert "ix_alerts_domain_rev" in plan, plan


def test_queue_filters_and_totals(store_sql: AlertStore, anomalies: pl.DataFrame) -> None:
    """The web queue's filters return what a plain filter over every alert does, with the
    right totals, whether counted (domain, client, search) or cached (status, detector)."""
    from dnsieve.web.queue import QueueQuery, list_queue

    s = store_sql
    s.upsert_anomalies(anomalies, now=T0)
    every = s.list_alerts(status="all", now=T0)
    s.record_verdict(every[0].id, "benign", "alice", now=T0)
    every = s.list_alerts(status="all", now=T0)
    some_id = every[3].id
    cases: list[tuple[QueueQuery, Any]] = [
        (QueueQuery(), lambda a: a.status in ("new", "needs_review")),
        (QueueQuery(status="all", detector="beacon"), lambda a: a.detector == "beacon"),
        (QueueQuery(status="benign"), lambda a: a.status == "benign"),
        (
            QueueQuery(domain="cloudflare.net"),
            lambda a: (a.domain or "").endswith("cloudflare.net"),
        ),
        (QueueQuery(client="172.18.0.3"), lambda a: a.client == "172.18.0.3"),
        (QueueQuery(search="MOZ"), lambda a: "moz" in a.entity.lower()),
        (QueueQuery(search=some_id[:10]), lambda a: a.id.startswith(some_id[:10])),
    ]
    for q, keep in cases:
        statuses = status_filter(q.status)
        want = [a.id for a in every if keep(a) and (statuses is None or a.status in statuses)]
        items, total = list_queue(s, QueueQuery(**{**q.__dict__, "per_page": 500}), now=T0)
        assert sorted(a.id for a in items) == sorted(want), q
        assert total == len(want) > 0, q
        # the same total on any page (counted with the page, or alone past the end)
        for page in (1, 2, len(want) + 1):
            one_per_page = QueueQuery(**{**q.__dict__, "per_page": 1, "page": page})
            got, n = list_queue(s, one_per_page, now=T0)
            assert n == len(want) and len(got) == (page <= len(want)), (q, page)


def test_sqlite_datetimes_read_as_utc() -> None:
    """The SQLite fast path of ``UTCDateTime`` reads what the store writes (naive UTC text,
    with or without microseconds) and any text with an offset, always as aware UTC."""
    from sqlalchemy.dialects import sqlite

    from dnsieve.alerts.store import UTCDateTime

    read = UTCDateTime().result_processor(sqlite.dialect(), None)
    want = datetime(2026, 9, 1, 0, 0, tzinfo=UTC)
    assert read("2026-09-01 00:00:00.000000") == want
    assert read("2026-09-01 00:00:00") == want
    assert read("2026-09-01 00:00:00.250000") == want + timedelta(microseconds=250_000)
    got = read("2026-09-01T02:00:00+02:00")
    assert got == want and got.utcoffset() == timedelta(0)
    assert read(None) is None
    assert read("2026-09-01 00:00:00").tzinfo is UTC
