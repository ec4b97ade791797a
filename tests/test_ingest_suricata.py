"""Suricata EVE adapter: pairing, versions 1-3, the v3 client swap, robustness."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsieve.ingest import IngestStats, ReadContext, read_file
from dnsieve.ingest.suricata import SuricataAdapter
from dnsieve.schema import DNS_EVENT


def _read(path: Path, **options: Any) -> tuple[pl.DataFrame, IngestStats]:
    ctx = ReadContext(sensor="t", stats=IngestStats(), options=options)
    batches = list(read_file(path, "suricata", ctx))
    for b in batches:
        assert b.schema == DNS_EVENT
    table = pa.Table.from_batches(batches, schema=DNS_EVENT)
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df, ctx.stats


def _read_bytes(data: bytes, **kw: Any) -> tuple[pl.DataFrame, ReadContext]:
    ctx = ReadContext(sensor="t", stats=IngestStats(), **kw)
    batches = list(SuricataAdapter().read(io.BytesIO(data), ctx))
    df = pl.from_arrow(pa.Table.from_batches(batches, schema=DNS_EVENT))
    assert isinstance(df, pl.DataFrame)
    return df, ctx


def test_test6_pairs_340_queries_with_340_answers(shared_data: Path) -> None:
    path = shared_data / "suricata" / "test6-malicious.suricata.json"
    types: dict[str, int] = {}
    with open(path, "rb") as fh:
        for line in fh:
            obj = json.loads(line)
            if obj.get("event_type") == "dns":
                types[obj["dns"]["type"]] = types.get(obj["dns"]["type"], 0) + 1
    assert types == {"query": 340, "answer": 340}
    df, stats = _read(path)
    assert df.height == 340
    assert df["rcode"].null_count() == 0
    assert df["rtt"].null_count() == 0
    assert df["rtt"].min() >= 0  # type: ignore[operator]
    assert stats.records_read == 5000
    assert stats.skipped == {"not_dns_event": 4320}
    assert not stats.rejects
    # every client is the querier, every server port 53
    assert set(df["dst_port"].unique().to_list()) == {53}
    assert "192.168.1.129" in set(df["src_ip"].to_list())
    # query timestamps, converted from +0200 to UTC
    first = df.filter(pl.col("src_port") == 35790).sort("ts")
    assert str(first["ts"][0]) == "2021-06-06 14:26:27.431769+00:00"


def test_test6_in_small_batches_gives_the_same_events(shared_data: Path) -> None:
    path = shared_data / "suricata" / "test6-malicious.suricata.json"
    ctx = ReadContext(sensor="t", stats=IngestStats(), batch_size=7)
    batches = list(read_file(path, "suricata", ctx))
    assert all(b.num_rows <= 7 for b in batches)
    assert sum(b.num_rows for b in batches) == 340


def test_v2_fixture(test_data: Path) -> None:
    df, stats = _read(test_data / "suricata" / "eve_v2.json")
    by = {r["qname"]: r for r in df.to_dicts()}
    www = by["www.example.com"]
    assert www["answers"] == ["edge.example.net", "203.0.113.7"]
    assert www["ttls"] == [300.0, 20.0]
    assert (www["aa"], www["tc"], www["rd"], www["ra"]) == (True, False, True, True)
    assert abs(www["rtt"] - 0.03) < 1e-9
    assert str(www["ts"]) == "2024-03-10 11:00:00.100000+00:00"
    # one flow repeats id 7: pairing in arrival order keeps names with their answers
    assert by["first.example.org"]["answers"] == ["198.51.100.1"]
    assert by["second.example.org"]["answers"] == ["2001:db8::1"]
    assert by["second.example.org"]["qtype"] == "AAAA"
    # grouped-only answers: rdata without TTLs
    assert by["grouped.example.com"]["answers"] == ["192.0.2.1", "192.0.2.2"]
    assert by["grouped.example.com"]["ttls"] is None
    assert by["qz7x1k0p.badguy.example"]["rcode"] == "NXDOMAIN"
    assert by["qz7x1k0p.badguy.example"]["answers"] is None
    lonely = by["lonely.example.com"]
    assert lonely["rcode"] is None and lonely["rtt"] is None
    # answers without a query still become events, client in src_ip either way
    for name, port in (("orphan.example.com", 40016), ("serverside.example.com", 40017)):
        assert by[name]["src_ip"] == "192.168.7.10"
        assert by[name]["src_port"] == port
        assert by[name]["dst_port"] == 53
        assert by[name]["rtt"] is None
    # hostile names survive, escaped byte-faithfully
    assert "<script>alert(1)</script>.evil.example" in by
    assert "ab\\xffcd.example.com" in by
    assert df.height == 10
    assert stats.rejects == {"bad_json": 4, "bad_dns_record": 2}
    assert stats.skipped == {"not_dns_event": 2}
    assert stats.records_read == 23


def test_v3_response_client_is_the_destination(test_data: Path) -> None:
    df, stats = _read(test_data / "suricata" / "eve_v3.json")
    assert stats.rejected == 0
    assert df.height == 3
    assert set(df["src_ip"].to_list()) == {"192.168.7.10"}
    assert set(df["dst_ip"].to_list()) == {"192.168.7.1"}
    assert set(df["dst_port"].to_list()) == {53}
    by = {r["qname"]: r for r in df.to_dicts()}
    www = by["www.suricata.io"]
    assert www["src_port"] == 50031
    assert www["answers"] == ["suricata.io", "35.212.0.44"]
    assert abs(www["rtt"] - 0.025) < 1e-9
    srv = by["_sip._tcp.example.com"]
    assert srv["proto"] == "tcp"
    assert srv["answers"] == ["10 5 5060 sip.example.com"]
    assert srv["aa"] is True
    # a response with no request: still the client in src_ip
    nope = by["nope.example.com"]
    assert (nope["src_ip"], nope["src_port"], nope["rcode"]) == ("192.168.7.10", 50033, "NXDOMAIN")


def test_v1_answer_records_merge_into_one_event(test_data: Path) -> None:
    df, _ = _read(test_data / "suricata" / "eve_v1.json")
    assert df.height == 2
    by = {r["qname"]: r for r in df.to_dicts()}
    assert by["old.example.com"]["answers"] == ["cdn.example.net", "198.51.100.30"]
    assert by["old.example.com"]["ttls"] == [100.0, 30.0]
    assert by["gone.example.com"]["rcode"] == "NXDOMAIN"


def test_pending_cap_bounds_memory_without_losing_queries(test_data: Path) -> None:
    # With a cap of 1 pending query, interleaved transactions lose their pairing
    # but every query still becomes exactly one event.
    lines = []
    for i in range(5):
        q = {"timestamp": f"2024-01-01T00:00:0{i}+0000", "flow_id": i, "event_type": "dns",
             "src_ip": "10.0.0.1", "src_port": 1000 + i, "dest_ip": "10.0.0.53", "dest_port": 53,
             "dns": {"type": "query", "id": i, "rrname": f"n{i}.example.com", "rrtype": "A"}}  # fmt: skip
        lines.append(json.dumps(q))
    data = ("\n".join(lines) + "\n").encode()
    df, _ctx = _read_bytes(data, options={"max_pending": 1})
    assert df.height == 5
    assert sorted(df["qname"].to_list()) == [f"n{i}.example.com" for i in range(5)]


def _pairs(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        base = {"flow_id": 1, "event_type": "dns", "src_ip": "10.0.0.1", "src_port": 4000,
                "dest_ip": "10.0.0.53", "dest_port": 53, "proto": "UDP"}  # fmt: skip
        q = dict(base, timestamp=f"2024-01-01T00:00:{i:02d}.000000+0000",
                 dns={"type": "query", "id": i % 3, "rrname": f"q{i}.example.com", "rrtype": "A"})  # fmt: skip
        a = dict(base, timestamp=f"2024-01-01T00:00:{i:02d}.500000+0000",
                 dns={"version": 2, "type": "answer", "id": i % 3, "rrname": f"q{i}.example.com",
                      "rrtype": "A", "rcode": "NOERROR"})  # fmt: skip
        out += [json.dumps(q).encode(), json.dumps(a).encode()]
    return out


def test_grown_file_emits_only_new_events_and_no_duplicates() -> None:
    lines = _pairs(10)
    full = b"\n".join(lines) + b"\n"
    # the first ingest saw the file cut between a query and its answer
    cut = sum(len(ln) + 1 for ln in lines[:9])  # 4 pairs + one query
    first, ctx1 = _read_bytes(full[:cut])
    assert first.height == 5
    assert ctx1.stats.bytes_consumed == cut
    second, ctx2 = _read_bytes(full, skip_bytes=ctx1.stats.bytes_consumed)
    names = sorted(first["qname"].to_list() + second["qname"].to_list())
    assert names == sorted(f"q{i}.example.com" for i in range(10))
    assert ctx2.stats.rejects == {"answer_for_ingested_query": 1}
    assert ctx2.stats.records_read == len(lines) - 9
    assert ctx2.stats.bytes_consumed == len(full)


def test_unterminated_last_line() -> None:
    lines = _pairs(2)
    good = b"\n".join(lines)  # no final newline, but the last record is whole
    df, ctx = _read_bytes(good)
    assert df.height == 2 and ctx.stats.bytes_consumed == len(good)
    cut = good[:-10]  # the writer was mid-record
    df, ctx = _read_bytes(cut)
    assert ctx.stats.rejects == {"truncated_record": 1}
    assert ctx.stats.bytes_consumed == len(b"\n".join(lines[:-1])) + 1
    assert df.height == 2  # the query waits unanswered


def test_empty_and_binary_input() -> None:
    df, ctx = _read_bytes(b"")
    assert df.height == 0 and ctx.stats.records_read == 0
    df, ctx = _read_bytes(bytes(range(256)) * 50)
    assert df.height == 0
    assert ctx.stats.rejected == ctx.stats.records_read >= 1


_VALID = [ln.decode() for ln in _pairs(3)]
_line = st.one_of(
    st.sampled_from(_VALID),
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("utf-8", "replace")),
    st.sampled_from(_VALID).map(lambda s: s[: len(s) // 2]),
    st.builds(
        lambda t, i, n, typ, v: json.dumps(
            {
                "timestamp": t,
                "event_type": "dns",
                "flow_id": i,
                "src_port": i,
                "dest_port": 53,
                "dns": {"type": typ, "id": i, "rrname": n, "version": v, "answers": [{"rdata": n}]},
            }
        ),
        st.one_of(st.text(max_size=30), st.just("2024-01-01T00:00:00+0000")),
        st.integers(-5, 5),
        st.text(max_size=20),
        st.sampled_from(["query", "answer", "request", "response", "x"]),
        st.one_of(st.none(), st.integers(1, 3), st.text(max_size=3)),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, max_size=30), st.integers(1, 5))
def test_fuzz_never_raises_and_counts_add_up(lines: list[str], batch: int) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    ctx = ReadContext(sensor="t", stats=IngestStats(), batch_size=batch)
    batches = list(SuricataAdapter().read(io.BytesIO(data), ctx))
    rows = sum(b.num_rows for b in batches)
    assert all(b.num_rows <= batch for b in batches)
    nonblank = sum(1 for ln in data.split(b"\n") if ln.strip())
    assert ctx.stats.records_read == nonblank
    assert rows == ctx.stats.rows_emitted
    assert rows + ctx.stats.rejected <= ctx.stats.records_read
