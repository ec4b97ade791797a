"""dnsmasq, BIND and Unbound query-log adapters."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsieve.ingest import IngestStats, ReadContext, read_file
from dnsieve.ingest.querylog import BindAdapter, DnsmasqAdapter, LogClock, UnboundAdapter
from dnsieve.schema import DNS_EVENT

QL = Path(__file__).parent / "data" / "querylog"


def _frame(batches: list[pa.RecordBatch]) -> pl.DataFrame:
    for b in batches:
        assert b.schema == DNS_EVENT
    df = pl.from_arrow(pa.Table.from_batches(batches, schema=DNS_EVENT))
    assert isinstance(df, pl.DataFrame)
    return df


def _read(path: Path, fmt: str = "auto", **options: Any) -> tuple[pl.DataFrame, IngestStats]:
    ctx = ReadContext(sensor="t", stats=IngestStats(), options=options)
    return _frame(list(read_file(path, fmt, ctx))), ctx.stats


def _read_bytes(adapter: Any, data: bytes, **kw: Any) -> tuple[pl.DataFrame, ReadContext]:
    ctx = ReadContext(sensor="t", stats=IngestStats(), **kw)
    return _frame(list(adapter.read(io.BytesIO(data), ctx))), ctx


# --------------------------------------------------------------------------- dnsmasq


def test_iodine_dnsmasq_log(shared_data: Path) -> None:
    path = shared_data / "tunnel" / "iodine_dnsmasq" / "dnsmasq.log"
    assert path.read_bytes() == (QL / "dnsmasq_iodine.log").read_bytes()
    df, stats = _read(path, year=2020)
    assert stats.format == "dnsmasq"
    assert stats.records_read == 88
    queries = df.filter(pl.col("src_ip").is_not_null())
    # every query[...] line is one event with the client, name and type it logged
    assert queries.height == 21
    assert set(queries["src_ip"].to_list()) == {"172.18.0.3"}
    counts = dict(queries.group_by("qtype").len().iter_rows())
    assert counts == {"NULL": 9, "SRV": 5, "TXT": 6, "CNAME": 1}
    named = queries.filter(~pl.col("qname").str.starts_with("<name"))
    assert set(named["registered_domain"].to_list()) == {"example.attack"}
    pairs = set(zip(queries["qname"].to_list(), queries["qtype"].to_list(), strict=True))
    assert ("yrbqlj.example.attack", "NULL") in pairs
    assert ("labzmrbelnrg2q5er5jm15kousqlmc0y.example.attack", "NULL") in pairs
    assert (
        "zqlpaabbccddeeffgghhiijjkkllmmnnooppqqrrssttuuvvwwxxyyzz.example.attack",
        "NULL",
    ) in pairs
    assert ("paaaeqhq.example.attack", "TXT") in pairs
    assert ("z123as123213asdasdd.example.attack", "CNAME") in pairs
    assert ("z123as123213asdasdd.example.attack", "SRV") in pairs
    assert queries.filter(pl.col("qname") == "<name\\x20unprintable>").height == 3
    by = {(r["qname"], r["qtype"]): r for r in queries.to_dicts()}
    # five SRV reply lines are one response
    assert by[("pabax5ia.example.attack", "SRV")]["answers"] == ["<SRV>"] * 5
    # the SRV reply pairs with the SRV query, not the earlier CNAME query of the same name
    assert by[("z123as123213asdasdd.example.attack", "SRV")]["answers"] == ["<SRV>"]
    assert by[("z123as123213asdasdd.example.attack", "CNAME")]["rcode"] is None
    # iodine's TXT replies lag one query behind: paired by name, 4 s later
    txt = by[("paaaeqhq.example.attack", "TXT")]
    assert txt["rtt"] == 4.0 and txt["rcode"] == "NOERROR" and txt["answers"] == ["r"]
    assert str(txt["ts"]) == "2020-08-09 09:54:15+00:00"
    # refused NULL queries never got a reply
    assert by[("yrbqlj.example.attack", "NULL")]["rcode"] is None
    # one reply had no query in the log: an event of its own
    orphans = df.filter(pl.col("src_ip").is_null())
    assert orphans["qname"].to_list() == ["paaaeqhi.example.attack"]
    assert stats.skipped == {"not_dns_line": 25}
    assert not stats.rejects


def test_dnsmasq_extra_serials_cname_chain_and_year_rollover() -> None:
    df, stats = _read(QL / "dnsmasq_extra.log", year=2023)
    assert stats.skipped == {"not_dns_line": 1}
    assert not stats.rejects
    by = {(r["qname"], r["qtype"]): r for r in df.to_dicts()}
    assert df.height == 7
    www = by[("www.example.com", "A")]
    assert www["answers"] == [
        "www.example.com.edgekey.net",
        "e1234.a.akamaiedge.net",
        "23.55.1.10",
        "23.55.1.11",
    ]
    assert (www["src_ip"], www["src_port"], www["rcode"], www["rtt"]) == (
        "192.168.1.10",
        40001,
        "NOERROR",
        1.0,
    )
    assert str(www["ts"]) == "2023-12-31 23:59:58+00:00"
    v6 = by[("ipv6only.example.net", "AAAA")]
    assert v6["answers"] == ["2001:db8::5"] and v6["rtt"] == 3.0
    assert str(v6["ts"]) == "2023-12-31 23:59:58+00:00"
    nx = by[("qzx7v2kd0a.tunnel.example.org", "TXT")]
    assert nx["rcode"] == "NXDOMAIN" and str(nx["ts"]) == "2024-01-01 00:00:02+00:00"
    assert by[("printer.lan", "A")]["answers"] == ["192.168.1.50"]
    nodata = by[("printer.lan", "AAAA")]
    assert nodata["rcode"] == "NOERROR" and nodata["answers"] is None
    assert by[("broken.example.com", "A")]["rcode"] == "SERVFAIL"
    assert by[("svc.example.com", "HTTPS")]["answers"] == ["<HTTPS>"]


def test_dnsmasq_plain_reverse_refused_orphan_and_offsets() -> None:
    df, stats = _read(QL / "dnsmasq_plain.log")
    assert stats.rejected == 0
    by = {r["qname"]: r for r in df.to_dicts()}
    ptr = by["10.1.168.192.in-addr.arpa"]
    assert (ptr["qtype"], ptr["answers"], ptr["rcode"]) == ("PTR", ["nas.lan"], "NOERROR")
    assert str(ptr["ts"]) == "2026-03-01 09:00:00.120000+00:00"  # +01:00 offset applied
    assert by["blocked.example"]["rcode"] == "REFUSED"
    assert by["ads.example.com"]["answers"] == ["0.0.0.0"]
    orphan = by["orphan.example.org"]
    assert orphan["src_ip"] is None and orphan["qtype"] == "A" and orphan["rtt"] is None
    assert by["mail.example.org"]["answers"] == ["<MX>"]  # EDE suffix dropped


def test_syslog_year_and_time_zone() -> None:
    line = b"Jul  4 12:00:00 dnsmasq[1]: query[A] a.example.com from 10.0.0.1\n"
    df, _ = _read_bytes(DnsmasqAdapter(), line, options={"year": 2019, "tz": "America/New_York"})
    assert str(df["ts"][0]) == "2019-07-04 16:00:00+00:00"
    # no year given: the current year, unless that puts the log in the future
    df, _ = _read_bytes(DnsmasqAdapter(), line)
    now = datetime.now(UTC)
    expected = now.year if (now.month, now.day) >= (7, 5) else now.year - 1
    assert df["ts"][0].year in (expected, now.year)
    clock = LogClock({"year": 2020})
    assert clock.parse("Dec 31 23:59:59 x")[0] is not None
    t_jan = clock.parse("Jan  1 00:00:00 x")[0]
    assert t_jan == int(datetime(2021, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
    assert clock.parse("Feb 30 00:00:00 x")[0] is None  # no such day: no time, not a crash


def test_dnsmasq_pending_window_and_cap() -> None:
    lines = [
        f"Jan  1 00:00:{i:02d} dnsmasq[1]: query[A] n{i}.example.com from 10.0.0.1"
        for i in range(10)
    ]
    data = ("\n".join(lines) + "\n").encode()
    for opts in ({"year": 2024, "max_pending": 2}, {"year": 2024, "pair_window": 1}):
        df, _ctx = _read_bytes(DnsmasqAdapter(), data, options=opts)
        assert sorted(df["qname"].to_list()) == sorted(f"n{i}.example.com" for i in range(10))
        assert df["rcode"].null_count() == 10


# --------------------------------------------------------------------------- BIND


def test_bind_querylog_formats() -> None:
    df, stats = _read(QL / "bind_queries.log", year=2026)
    assert stats.format == "bind"
    assert stats.skipped == {"not_dns_line": 2}
    assert not stats.rejects
    assert df.height == 10
    assert df["rcode"].null_count() == 10
    by = {r["qname"]: r for r in df.to_dicts()}
    www = by["www.example.com"]
    assert (www["src_ip"], www["src_port"], www["dst_ip"], www["proto"], www["rd"]) == (
        "192.0.2.1", 53000, "198.51.100.1", "udp", True,
    )  # fmt: skip
    assert str(www["ts"]) == "2026-11-22 10:00:00.123000+00:00"
    assert by["mail.example.org"]["rd"] is False
    v6 = by["ipv6.example.net"]
    assert (v6["src_ip"], v6["dst_ip"], v6["proto"], v6["qtype"]) == (
        "2001:db8::17",
        "2001:db8::53",
        "tcp",
        "AAAA",
    )
    assert by["xfr.example.com"]["proto"] == "tcp"
    assert by["internal.corp"]["qtype"] == "SOA"
    assert by["old.example.com"]["dst_ip"] == "198.51.100.1"
    oldest = by["oldest.example.com"]
    assert (oldest["src_ip"], oldest["src_port"], oldest["dst_ip"]) == ("192.0.2.6", 1025, None)
    assert str(by["sys.example.com"]["ts"]) == "2026-11-22 10:00:03+00:00"
    assert by["iso.example.com"]["qtype"] == "TYPE65399"
    assert "we\\x20ird\\.name.example.com" in by


# --------------------------------------------------------------------------- Unbound


def test_unbound_queries_and_replies() -> None:
    df, stats = _read(QL / "unbound.log", year=2023)
    assert stats.format == "unbound"
    assert stats.skipped == {"not_dns_line": 4}
    assert not stats.rejects
    assert stats.records_read == 17
    by = {r["qname"]: r for r in df.to_dicts()}
    assert df.height == 8
    www = by["www.example.com"]
    assert (www["rcode"], www["rtt"], www["response_len"], www["src_ip"]) == (
        "NOERROR",
        0.012345,
        57,
        "192.0.2.1",
    )
    assert str(www["ts"]) == "2023-11-14 22:13:21+00:00"
    assert by["nx.example.org"]["rcode"] == "NXDOMAIN"
    ro = by["replyonly.example.com"]
    assert (ro["rcode"], ro["rtt"], ro["qtype"]) == ("SERVFAIL", 1.5, "MX")
    assert str(ro["ts"]) == "2023-11-14 22:13:22.500000+00:00"  # reply time minus processing time
    un = by["unanswered.example.com"]
    assert un["rcode"] is None and un["rtt"] is None
    assert by["syslog.example.com"]["src_ip"] == "2001:db8::9"
    assert by["syslog.example.com"]["qtype"] == "HTTPS"
    assert by["ascii.example.com"]["rcode"] == "NOERROR"
    assert by[None]["rcode"] == "FORMERR"


def test_unbound_pairs_in_order_per_client_name_type() -> None:
    lines = [
        "[1700000000] unbound[1:0] info: 10.0.0.1 a.example. A IN",
        "[1700000001] unbound[1:0] info: 10.0.0.1 a.example. A IN",
        "[1700000002] unbound[1:0] info: 10.0.0.2 a.example. A IN NOERROR 0.5 0 60",
        "[1700000003] unbound[1:0] info: 10.0.0.1 a.example. A IN NXDOMAIN 0.1 0 60",
        "[1700000004] unbound[1:0] info: 10.0.0.1 a.example. A IN NOERROR 0.2 1 60",
    ]
    df, _ = _read_bytes(UnboundAdapter(), ("\n".join(lines) + "\n").encode())
    rows = sorted(df.select("src_ip", "ts", "rcode").rows())
    assert [(r[0], r[1].second, r[2]) for r in rows] == [
        ("10.0.0.1", 20, "NXDOMAIN"),
        ("10.0.0.1", 21, "NOERROR"),
        ("10.0.0.2", 21, "NOERROR"),  # reply only: 02 - 0.5 s
    ]


# --------------------------------------------------------------------------- shared


@pytest.mark.parametrize(
    ("adapter", "name"),
    [
        (DnsmasqAdapter(), "dnsmasq_extra.log"),
        (BindAdapter(), "bind_queries.log"),
        (UnboundAdapter(), "unbound.log"),
    ],
)
def test_grown_file_and_truncated_tail(adapter: Any, name: str) -> None:
    data = (QL / name).read_bytes()
    full, ctx_full = _read_bytes(adapter, data, options={"year": 2023})
    assert ctx_full.stats.bytes_consumed == len(data)
    # cut after a complete line: the rest is read with skip_bytes
    cut = data.index(b"\n", len(data) // 2) + 1
    first, c1 = _read_bytes(adapter, data[:cut], options={"year": 2023})
    assert c1.stats.bytes_consumed == cut
    second, c2 = _read_bytes(adapter, data, skip_bytes=cut, options={"year": 2023})
    assert c1.stats.records_read + c2.stats.records_read == ctx_full.stats.records_read
    assert first.height + second.height >= full.height
    # cut mid-line: a half line at the end is not consumed
    half = data[: cut + 10]
    _, c3 = _read_bytes(adapter, half, options={"year": 2023})
    assert c3.stats.bytes_consumed == cut
    assert (
        c3.stats.rejects.get("truncated_record", 0) + c3.stats.rejects.get("malformed_line", 0) <= 1
    )


def test_non_utf8_script_and_long_lines() -> None:
    data = (
        b"Jan  1 00:00:00 dnsmasq[1]: query[A] <script>x</script>.ev\xffil.com from 10.0.0.1\n"
        + b"Jan  1 00:00:00 dnsmasq[1]: query[A] " + b"a" * (2 << 20) + b" from 10.0.0.1\n"
        + b"\x00\x01binary\xfe\n"
    )  # fmt: skip
    df, ctx = _read_bytes(DnsmasqAdapter(), data, options={"year": 2024})
    assert df["qname"].to_list() == ["<script>x</script>.ev\\xffil.com"]
    assert ctx.stats.rejects == {"line_too_long": 1}
    assert ctx.stats.skipped == {"not_dns_line": 1}
    assert ctx.stats.records_read == 3


_PREFIXES = st.sampled_from(
    [
        "",
        "Jan  1 00:00:00 ",
        "[1700000000] ",
        "2024-01-01T00:00:00Z ",
        "22-Nov-2026 10:00:00.1 ",
        "Foo 99 99:99:99 ",
    ]
)
_BODIES = st.sampled_from(
    [
        "dnsmasq[1]: query[A] a.example.com from 10.0.0.1",
        "dnsmasq[1]: reply a.example.com is 1.2.3.4",
        "dnsmasq[1]: reply a.example.com is <CNAME>",
        "dnsmasq[1]: 7 10.0.0.1/53 reply error is SERVFAIL",
        "dnsmasq[1]: cached 10.0.0.1 is host",
        "unbound[1:0] info: 10.0.0.1 a.example. A IN",
        "unbound[1:0] info: 10.0.0.1 a.example. A IN NOERROR x 0 57",
        "unbound[1:0] info: 10.0.0.1 a.example. A IN NOERROR 0.1 0 99999999999",
        "unbound[1:0] info: 10.0.0.1 - - - FORMERR - - -",
        "queries: info: client @0x1 10.0.0.1#53 (a): query: a IN A +E(0)K (10.0.0.53)",
        "client 999.1.1.1#99999999999: query: a IN A +",
    ]
)
_LINES = st.one_of(
    st.builds(lambda p, b, junk: p + b + junk, _PREFIXES, _BODIES, st.text(max_size=10)),
    st.text(max_size=60),
    st.builds(lambda p, t: p + t, _PREFIXES, st.text(max_size=60)),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_LINES, max_size=25),
    st.sampled_from(["dnsmasq", "bind", "unbound"]),
    st.integers(1, 4),
)
def test_fuzz_never_raises_and_counts_add_up(lines: list[str], fmt: str, batch: int) -> None:
    adapter = {"dnsmasq": DnsmasqAdapter, "bind": BindAdapter, "unbound": UnboundAdapter}[fmt]()
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    ctx = ReadContext(sensor="t", stats=IngestStats(), batch_size=batch, options={"year": 2024})
    batches = list(adapter.read(io.BytesIO(data), ctx))
    rows = sum(b.num_rows for b in batches)
    assert all(b.num_rows <= batch for b in batches)
    assert ctx.stats.records_read == sum(1 for ln in data.split(b"\n") if ln.strip())
    assert rows == ctx.stats.rows_emitted
    assert rows + ctx.stats.rejected <= ctx.stats.records_read
