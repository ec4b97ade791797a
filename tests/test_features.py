"""Hourly aggregates (dnsieve.features) and the mergeable streaming state.

Real events: the brimdata Zeek dns.log (one busy hour, CC BY-SA) and one day of
the RITA ``missing_host`` logs (24 hourly files), read in place from the shared
corpus.  Generated events add the edge cases real logs lack: null keys, empty
and hostile subdomains, unknown qtypes, hour boundaries to the microsecond.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from polars.testing import assert_frame_equal

from dnsieve.features import (
    KEYS,
    QTYPE_COLUMNS,
    SCHEMAS,
    HourlyState,
    aggregate,
    client_domain_hourly,
    client_hourly,
    domain_hourly,
)
from dnsieve.ingest.base import IngestStats, ReadContext, canonicalize
from dnsieve.lake import Lake

KINDS = tuple(SCHEMAS)
T0 = datetime(2024, 4, 19, 10, 0, tzinfo=UTC)


def canonical(rows: dict[str, list[Any]]) -> pl.DataFrame:
    """Adapter columns -> canonical events (the ingest path's own canonicalisation)."""
    ctx = ReadContext(sensor="generated", stats=IngestStats())
    return canonicalize(pl.DataFrame(rows, strict=False), ctx)


def edge_events() -> pl.DataFrame:
    """Generated events covering the cases real logs rarely have."""
    us = timedelta(microseconds=1)
    h = timedelta(hours=1)
    rows = [
        # ts, src_ip, qname, qtype, rcode, query_len, response_len
        (T0, "10.0.0.1", "www.example.com", "A", "NOERROR", 40, 120),
        (T0 + h - us, "10.0.0.1", "mail.example.com", "AAAA", "NOERROR", None, 99),
        (T0 + h, "10.0.0.1", "www.example.com", "A", "NOERROR", 41, None),
        (T0 + h, None, "example.com", "TXT", "NXDOMAIN", 30, 30),
        (T0 + 2 * h + 5 * us, "10.0.0.2", None, "A", None, None, None),
        (T0 + 2 * h, "10.0.0.2", "a.b.c.example.co.uk", "TYPE65399", "SERVFAIL", 70, None),
        (T0 + 2 * h, "10.0.0.3", "x\\x00y.evil.example", "NULL", "NXDOMAIN", 80, 0),
        (T0 + 2 * h, "10.0.0.3", "aGVsbG8.t.evil.example", None, "REFUSED", 90, None),
        (T0 + 2 * h, "10.0.0.3", "ÄÖ.例え.jp", "CNAME", "NOERROR", 20, 20),
        (T0 + 2 * h, "10.0.0.4", "_ldap._tcp.dc.corp.local", "SRV", "NOERROR", 50, 60),
        (T0 + 2 * h, "10.0.0.4", "4.3.2.1.in-addr.arpa", "PTR", "NXDOMAIN", None, None),
        (T0 + 2 * h, "10.0.0.4", "example.com", "ANY", "NOERROR", 1, 2),
        (T0 + 2 * h, "10.0.0.4", "example.com", "MX", "NOERROR", 3, 4),
        (T0 + 2 * h, "", "example.com", "A", "NOERROR", 3, 4),
        (T0 - timedelta(days=400), "10.0.0.9", "old.example.org", "A", "NOERROR", 5, 6),
    ]
    cols = ["ts", "src_ip", "qname", "qtype", "rcode", "query_len", "response_len"]
    return canonical({c: [r[i] for r in rows] for i, c in enumerate(cols)})


@pytest.fixture(scope="module")
def real_events(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """brimdata dns.log + one RITA day, ingested through the lake, plus the edge cases."""
    lake = Lake(tmp_path_factory.mktemp("lake"))
    day = shared_data / "zeek" / "rita" / "missing_host" / "2024-04-19"
    files = [shared_data / "zeek" / "brimdata" / "dns.log.gz", *sorted(day.glob("dns.*.log.gz"))]
    reports = lake.ingest_files(files)
    assert all(r.status == "ingested" and r.rows_written > 0 for r in reports)
    return pl.concat([lake.scan().collect(), edge_events()])


def reference(events: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """A plain-Python implementation of the contract, to check the Polars one against."""
    dom: dict[tuple[Any, ...], dict[str, Any]] = {}
    cli: dict[tuple[Any, ...], dict[str, Any]] = {}
    cd: dict[tuple[Any, ...], dict[str, Any]] = {}
    dom_sets: dict[tuple[Any, ...], tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    cli_sets: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    named = {v: k for k, v in QTYPE_COLUMNS.items()}
    zero_q = {c: 0 for c in [*QTYPE_COLUMNS, "qtype_other"]}
    for r in events.iter_rows(named=True):
        hour = r["ts"].replace(minute=0, second=0, microsecond=0)
        rd, src, qcol = r["registered_domain"], r["src_ip"], named.get(r["qtype"], "qtype_other")
        nx = int(r["rcode"] == "NXDOMAIN")
        if rd is not None:
            d = dom.setdefault(
                (hour, rd),
                {
                    "queries": 0,
                    "nxdomain": 0,
                    "noerror": 0,
                    "servfail": 0,
                    **zero_q,
                    "query_bytes": 0,
                    "response_bytes": 0,
                },
            )
            d["queries"] += 1
            d["nxdomain"] += nx
            d["noerror"] += int(r["rcode"] == "NOERROR")
            d["servfail"] += int(r["rcode"] == "SERVFAIL")
            d[qcol] += 1
            d["query_bytes"] += r["query_len"] or 0
            d["response_bytes"] += r["response_len"] or 0
            if src is not None:
                dom_sets[(hour, rd)][0].add(src)
            if r["subdomain"]:
                dom_sets[(hour, rd)][1].add(r["subdomain"])
        if src is not None:
            c = cli.setdefault((hour, src), {"queries": 0, "nxdomain": 0, **zero_q})
            c["queries"] += 1
            c["nxdomain"] += nx
            c[qcol] += 1
            if rd is not None:
                cli_sets[(hour, src)].add(rd)
        if src is not None and rd is not None:
            e = cd.setdefault(
                (hour, src, rd),
                {"queries": 0, "nxdomain": 0, "first_ts": r["ts"], "last_ts": r["ts"]},
            )
            e["queries"] += 1
            e["nxdomain"] += nx
            e["first_ts"] = min(e["first_ts"], r["ts"])
            e["last_ts"] = max(e["last_ts"], r["ts"])

    def frame(kind: str, table: dict[tuple[Any, ...], dict[str, Any]]) -> pl.DataFrame:
        keys = KEYS[kind]
        rows = [{**dict(zip(keys, k, strict=True)), **v} for k, v in table.items()]
        schema = SCHEMAS[kind]
        df = pl.DataFrame(rows, schema={c: schema[c] for c in rows[0]} if rows else schema)
        return df.select(list(schema)).sort(list(keys))

    for k, (clients, subs) in dom_sets.items():
        dom[k]["clients"], dom[k]["subdomains"] = len(clients), len(subs)
    for v in dom.values():
        v.setdefault("clients", 0)
        v.setdefault("subdomains", 0)
    for k, v in cli.items():
        v["domains"] = len(cli_sets.get(k, ()))
    return {
        "domain_hourly": frame("domain_hourly", dom),
        "client_hourly": frame("client_hourly", cli),
        "client_domain_hourly": frame("client_domain_hourly", cd),
    }


def batch(events: pl.DataFrame) -> dict[str, pl.DataFrame]:
    return {k: aggregate(k, events.lazy()).collect() for k in KINDS}


# ---------------------------------------------------------------------------- batch aggregates


@pytest.mark.parametrize("kind", KINDS)
def test_aggregates_match_reference_on_real_events(real_events: pl.DataFrame, kind: str) -> None:
    got = aggregate(kind, real_events.lazy()).collect()
    want = reference(real_events)[kind]
    assert got.height > 50
    assert_frame_equal(got, want)


def test_edge_cases_by_hand() -> None:
    ev = edge_events()
    dom = domain_hourly(ev).collect()
    h = T0 + timedelta(hours=1)
    ex = dom.filter((pl.col("hour") == h) & (pl.col("registered_domain") == "example.com")).row(
        0, named=True
    )
    # one query at exactly hh:00:00 with a client, one at the same instant without a client
    assert (ex["queries"], ex["clients"], ex["subdomains"], ex["nxdomain"]) == (2, 1, 1, 1)
    assert (ex["qtype_a"], ex["qtype_txt"], ex["query_bytes"], ex["response_bytes"]) == (
        1,
        1,
        71,
        30,
    )
    first = dom.filter(pl.col("hour") == T0).row(0, named=True)
    assert first["queries"] == 2  # T0 and T0 + 1h - 1us share an hour
    assert first["query_bytes"] == 40  # the null query_len counts as 0
    # an unknown qtype and a null qtype are both "other"; qtypes add up to queries
    qcols = [*QTYPE_COLUMNS, "qtype_other"]
    assert dom.select(pl.sum_horizontal(qcols) == pl.col("queries")).to_series().all()
    evil = dom.filter(pl.col("registered_domain").str.contains("evil")).row(0, named=True)
    assert evil["qtype_other"] == 1 and evil["qtype_null"] == 1 and evil["subdomains"] == 2
    cli = client_hourly(ev).collect()
    assert cli.get_column("src_ip").null_count() == 0
    # the empty-string client is a client like any other (it is not null)
    assert "" in cli.get_column("src_ip").to_list()
    c2 = cli.filter(pl.col("src_ip") == "10.0.0.2").row(0, named=True)
    assert (c2["queries"], c2["domains"], c2["qtype_other"]) == (2, 1, 1)  # null qname -> no domain
    cd = client_domain_hourly(ev).collect()
    assert (cd.get_column("first_ts") <= cd.get_column("last_ts")).all()
    assert cd.get_column("registered_domain").null_count() == 0


def test_schemas_sorting_and_empty_input() -> None:
    ev = edge_events()
    for kind in KINDS:
        out = aggregate(kind, ev.sample(fraction=1.0, shuffle=True, seed=3).lazy()).collect()
        assert out.schema == SCHEMAS[kind]
        assert_frame_equal(out, out.sort(list(KEYS[kind])))
        assert_frame_equal(out, aggregate(kind, ev).collect())  # DataFrame input works too
        empty = aggregate(kind, ev.head(0).lazy()).collect()
        assert empty.height == 0 and empty.schema == SCHEMAS[kind]
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate("domain_daily", ev.lazy())


def test_consistency_between_aggregates(real_events: pl.DataFrame) -> None:
    out = batch(real_events)
    dom, cli, cd = out["domain_hourly"], out["client_hourly"], out["client_domain_hourly"]
    with_rd = real_events.filter(pl.col("registered_domain").is_not_null())
    assert dom.get_column("queries").sum() == with_rd.height
    # per (hour, domain), the client x domain rows are the distinct clients
    per_dom = cd.group_by("hour", "registered_domain").agg(pl.len().cast(pl.Int64).alias("n"))
    joined = dom.join(per_dom, on=["hour", "registered_domain"], how="left").fill_null(0)
    assert (joined.get_column("clients") == joined.get_column("n")).all()
    per_cli = cd.group_by("hour", "src_ip").agg(pl.col("queries").sum(), pl.len().alias("n"))
    joined = cli.join(per_cli, on=["hour", "src_ip"], how="left", suffix="_cd").fill_null(0)
    assert (joined.get_column("domains") == joined.get_column("n")).all()
    assert (joined.get_column("queries") >= joined.get_column("queries_cd")).all()


# ---------------------------------------------------------------------------- streaming state


def _stream(events: pl.DataFrame, n_batches: int, seed: int, compact_every: int = 3) -> HourlyState:
    rng = random.Random(seed)
    shuffled = events.sample(fraction=1.0, shuffle=True, seed=seed)
    cuts = sorted(
        rng.sample(range(1, max(shuffled.height, 2)), min(n_batches - 1, shuffled.height - 1))
    )
    st_ = HourlyState(compact_every=compact_every)
    lo = 0
    for hi in [*cuts, shuffled.height]:
        part = shuffled[lo:hi]
        st_.update(part.to_arrow() if hi % 2 else part)  # Arrow tables and Polars frames
        lo = hi
    return st_


def test_streaming_equals_batch_on_real_events(real_events: pl.DataFrame) -> None:
    want = batch(real_events)
    got = _stream(real_events, n_batches=17, seed=1).close_all()
    for kind, frame in got:
        assert_frame_equal(frame, want[kind])


def test_streaming_close_hour_by_hour(real_events: pl.DataFrame) -> None:
    """Events arrive in time order in record batches; closed hours are emitted as they complete."""
    ev = real_events.sort("ts")
    st_ = HourlyState()
    emitted: dict[str, list[pl.DataFrame]] = {k: [] for k in KINDS}
    for rb in ev.to_arrow().to_batches(max_chunksize=997):
        st_.update(rb)
        newest = rb.column("ts")[-1].as_py()
        for kind, frame in st_.close(newest):  # every hour before the newest event's hour
            emitted[kind].append(frame)
    for kind, frame in st_.close_all():
        emitted[kind].append(frame)
    want = batch(ev)
    for kind in KINDS:
        assert_frame_equal(pl.concat(emitted[kind]).sort(list(KEYS[kind])), want[kind])
    assert st_.late_rows == 0 and st_.rows == ev.height and st_.open_hours() == []


def test_merge_and_checkpoint(real_events: pl.DataFrame, tmp_path: Path) -> None:
    idx = pl.int_range(pl.len())
    left = _stream(real_events.filter(idx % 3 == 0), 5, seed=2)
    right = _stream(real_events.filter(idx % 3 != 0), 4, seed=3)
    right.save(tmp_path / "ckpt")
    right.save(tmp_path / "ckpt")  # overwriting a checkpoint works
    restored = HourlyState.load(tmp_path / "ckpt")
    merged = left.merge(restored)
    assert merged.rows == real_events.height
    want = batch(real_events)
    for kind, frame in merged.peek():
        assert_frame_equal(frame, want[kind])
    with pytest.raises(FileNotFoundError):
        HourlyState.load(tmp_path / "nothing")


def test_late_events_are_counted_and_do_not_change_closed_hours() -> None:
    ev = edge_events()
    st_ = HourlyState()
    st_.update(ev)
    closed = st_.close(T0 + timedelta(hours=1, minutes=30))  # closes hours < T0 + 1h
    assert closed.domain_hourly.get_column("hour").max() == T0
    late = ev.filter(pl.col("ts") < T0 + timedelta(hours=1))
    assert st_.update(late) == 0
    assert st_.late_rows == late.height
    rest = st_.close_all()
    want = batch(ev)
    for kind in KINDS:
        assert_frame_equal(pl.concat([closed[kind], rest[kind]]), want[kind])


_names = st.sampled_from(
    ["a.example.com", "example.com", "b.c.example.co.uk", "x.test.org", None, "y.z"]
)
_event = st.tuples(
    st.integers(0, 3 * 3600 * 10**6 - 1),
    st.sampled_from(["10.0.0.1", "10.0.0.2", "::1", None]),
    _names,
    st.sampled_from(["A", "TXT", "NULL", "TYPE65399", None]),
    st.sampled_from(["NOERROR", "NXDOMAIN", "SERVFAIL", None]),
    st.one_of(st.none(), st.integers(0, 512)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, min_size=1, max_size=60), st.integers(1, 6), st.integers(0, 10**6))
def test_property_streaming_equals_batch_equals_reference(
    rows: list[tuple[Any, ...]], n_batches: int, seed: int
) -> None:
    ev = canonical(
        {
            "ts": [T0 + timedelta(microseconds=r[0]) for r in rows],
            "src_ip": [r[1] for r in rows],
            "qname": [r[2] for r in rows],
            "qtype": [r[3] for r in rows],
            "rcode": [r[4] for r in rows],
            "query_len": [r[5] for r in rows],
        }
    )
    want = batch(ev)
    ref = reference(ev)
    got = _stream(ev, n_batches, seed, compact_every=2).close_all()
    for kind in KINDS:
        assert_frame_equal(want[kind], ref[kind])
        assert_frame_equal(got[kind], want[kind])
