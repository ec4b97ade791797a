"""Zeek dns.log adapters (TSV and JSON lines): real logs, hostile input, resume.

Fixtures in tests/data/zeek/ are slices of real logs (see its README.md);
the full corpora are read in place through the ``shared_data`` fixture.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsieve.ingest import IngestStats, ReadContext, iter_input_files, read_file, read_stream
from dnsieve.ingest.zeek import (
    DEFAULT_FIELDS,
    ZeekJsonAdapter,
    ZeekTsvAdapter,
    iter_lines_chunks,
)
from dnsieve.schema import DNS_EVENT

ZEEK = Path(__file__).parent / "data" / "zeek"
BRIM_TSV = ZEEK / "brim_dns_head.log"
BRIM_JSON = ZEEK / "brim_dns_head.json"
MASKED_TS = "XXXXXXXXXX.XXXXXX"


# --------------------------------------------------------------------------- helpers


def _ctx(name: str = "test", options: dict[str, object] | None = None) -> ReadContext:
    return ReadContext(sensor=name, stats=IngestStats(source=name), options=options or {})


def read_bytes(data: bytes, fmt: str = "zeek", **kw: object) -> tuple[pl.DataFrame, IngestStats]:
    """Run one adapter over in-memory bytes; return the canonical frame and the stats."""
    skip = int(kw.pop("skip_bytes", 0))  # type: ignore[call-overload]
    ctx = _ctx("test", kw)
    ctx.skip_bytes = skip
    batches = list(read_stream(io.BytesIO(data), fmt, ctx))
    for b in batches:
        assert b.schema == DNS_EVENT
        assert b.num_rows <= ctx.batch_size
    table = pa.Table.from_batches(batches, schema=DNS_EVENT)
    return pl.from_arrow(table), ctx.stats  # type: ignore[return-value]


def read_path(path: Path, fmt: str = "auto") -> tuple[pl.DataFrame, IngestStats]:
    ctx = _ctx(str(path))
    table = pa.Table.from_batches(list(read_file(path, fmt, ctx)), schema=DNS_EVENT)
    return pl.from_arrow(table), ctx.stats  # type: ignore[return-value]


def assert_accounted(stats: IngestStats) -> None:
    """Every record read was emitted, rejected with a reason, or skipped as not DNS."""
    rejected = stats.rejected - stats.rejects.get("truncated_stream", 0)
    skipped = sum(stats.skipped.values())
    assert stats.records_read == stats.rows_emitted + rejected + skipped, stats.to_dict()
    assert stats.error is None, stats.error
    assert "adapter_error" not in stats.rejects


def comparable(df: pl.DataFrame) -> pl.DataFrame:
    """Drop the sensor, round rtt to microseconds (TSV precision), sort on everything."""
    out = df.drop("sensor").with_columns(pl.col("rtt").round(6))
    keys = [c for c in out.columns if not isinstance(out.schema[c], pl.List)]
    return out.sort(keys, nulls_last=True, maintain_order=True)


def tsv_lines() -> tuple[list[bytes], list[bytes]]:
    """The fixture's header lines and data lines (without the #close line)."""
    lines = BRIM_TSV.read_bytes().splitlines(keepends=True)
    header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
    data = [ln for ln in lines if not ln.startswith(b"#")]
    return header, data


def data_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]


# --------------------------------------------------------------------------- TSV == JSON


def test_fixture_tsv_equals_json() -> None:
    tsv, st_tsv = read_path(BRIM_TSV)
    js, st_js = read_path(BRIM_JSON)
    assert st_tsv.format == "zeek" and st_js.format == "zeek-json"
    assert tsv.height == js.height == 150
    assert comparable(tsv).equals(comparable(js))
    assert_accounted(st_tsv)
    assert_accounted(st_js)


@pytest.mark.shared
def test_brimdata_tsv_equals_json(shared_data: Path) -> None:
    """53,615 real rows: TSV and JSON give the same canonical table.

    JSON carries rtt at full double precision where TSV writes 6 decimals, so
    rtt is compared rounded to microseconds; every other column is exact.
    """
    tsv, st_tsv = read_path(shared_data / "zeek/brimdata/dns.log.gz")
    js, st_js = read_path(shared_data / "zeek/brimdata/dns.json.gz")
    assert tsv.height == js.height == 53_615
    assert st_tsv.rejected == st_js.rejected == 0
    a, b = comparable(tsv), comparable(js)
    for col in a.columns:
        assert a.get_column(col).equals(b.get_column(col)), col
    assert ((tsv["rtt"] - js["rtt"]).abs() < 1e-6).all()  # same order, too


# --------------------------------------------------------------------------- real corpora


@pytest.mark.shared
def test_rita_hourly_directory(shared_data: Path) -> None:
    """3 days of hourly-rotated, gzipped logs; the conn logs are skipped as a whole."""
    root = shared_data / "zeek/rita/missing_host"
    frames, not_dns, conn_files = [], 0, 0
    for path in iter_input_files([root]):
        df, stats = read_path(path)
        if path.name.startswith("conn."):
            conn_files += 1
            assert df.height == 0
            assert stats.rejected == 0 and set(stats.skipped) == {"not_dns_log"}
            not_dns += stats.skipped["not_dns_log"]
        elif path.name.startswith("dns."):
            assert stats.rejected == 0 and stats.error is None
            frames.append(df)
    events = pl.concat(frames)
    assert events.height == 5_432
    assert conn_files > 0 and not_dns == 105_918
    span_h = (events["ts"].max() - events["ts"].min()).total_seconds() / 3600  # type: ignore[operator, union-attr]
    assert 70 <= span_h <= 72
    assert events["src_ip"].null_count() == 0


@pytest.mark.shared
def test_zeek_testsuite_baselines(shared_data: Path, tmp_path: Path) -> None:
    """Zeek's own dns.log baselines: no adapter errors; every row parses once its
    btest-masked timestamp (``XXXXXXXXXX.XXXXXX``) is replaced by a real one."""
    files = sorted((shared_data / "zeek/testsuite/baseline_dns_logs").glob("*.log"))
    assert len(files) >= 20
    for path in files:
        n_lines = len(data_lines(path))
        df, stats = read_path(path)
        assert stats.format == "zeek" and stats.error is None, path.name
        # btest masks ts: exactly those rows are rejected, for that reason only.
        assert dict(stats.rejects) == {"bad_timestamp": n_lines}, path.name
        unmasked = tmp_path / path.name
        unmasked.write_text(path.read_text().replace(MASKED_TS, "1600000000.000001"))
        df, stats = read_path(unmasked)
        assert stats.rejected == 0, (path.name, stats.to_dict())
        assert df.height == n_lines
        assert df["qname"].null_count() <= df.height
        assert_accounted(stats)


@pytest.mark.shared
def test_json_relative_timestamps(shared_data: Path) -> None:
    df, stats = read_path(shared_data / "zeek/slips/test9-mixed-zeek-dir/dns.log")
    assert stats.format == "zeek-json" and stats.rejected == 0
    assert df.height == 239
    first = df["ts"].min()
    assert first is not None and first.year == 1970  # type: ignore[union-attr]


@pytest.mark.shared
def test_json_conn_log_skipped(shared_data: Path) -> None:
    df, stats = read_path(shared_data / "zeek/rita/json_with_all_fields/conn.log", "zeek-json")
    assert df.height == 0 and stats.rejected == 0 and set(stats.skipped) == {"not_dns_log"}
    dns, stats = read_path(shared_data / "zeek/rita/json_with_all_fields/dns.log")
    assert dns.height == 34 and stats.rejected == 0
    dnscat = dns.filter(pl.col("registered_domain") == "r-1x.com")
    assert dnscat.height == 24 and set(dnscat["qtype"]) == {"TXT"}
    assert dnscat["subdomain"].str.ends_with(".dnsc").all()


# --------------------------------------------------------------------------- field mapping


def _unmasked(name: str) -> bytes:
    return (ZEEK / name).read_bytes().replace(MASKED_TS.encode(), b"1600000000.5")


def test_mapping_of_first_brim_row() -> None:
    df, _ = read_path(BRIM_TSV)
    row = df.row(0, named=True)
    assert row["ts"].isoformat() == "2018-03-24T17:15:20.865716+00:00"
    assert (row["src_ip"], row["src_port"], row["dst_ip"], row["dst_port"]) == (
        "10.47.1.100",
        41772,
        "10.0.0.100",
        53,
    )
    assert (row["proto"], row["trans_id"], row["rtt"]) == ("udp", 36329, 0.00087)
    assert (row["qname"], row["qtype"], row["rcode"]) == ("ise.wrccdc.org", "A", "NOERROR")
    assert row["answers"] == ["ise.wrccdc.cpp.edu", "134.71.3.16"]
    assert row["ttls"] == [2230.0, 41830.0]
    assert (row["aa"], row["tc"], row["rd"], row["ra"]) == (False, False, True, True)
    assert (row["registered_domain"], row["subdomain"], row["tld"]) == ("wrccdc.org", "ise", "org")
    assert row["query_len"] is None


def test_unset_fields_and_unknown_qtype() -> None:
    # qtype 65534 has no mnemonic (Zeek writes query-65534): TYPE65534.
    df, stats = read_bytes(_unmasked("zeek_binds.dns.log"))
    assert stats.rejected == 0
    assert df["qtype"].to_list() == ["TYPE65534"]
    assert set(df["answers"][0]) == {"BIND9 signing signal"}
    # qtype and qtype_name unset (-): null; TXT answers with spaces stay whole.
    df, _ = read_bytes(_unmasked("zeek_multiple_txt_strings.dns.log"))
    row = df.row(0, named=True)
    assert row["qtype"] is None and row["rtt"] is None
    assert len(row["answers"]) == 3 and row["answers"][2].startswith("TXT 127 k=rsa;")
    assert row["ttls"] == [900.0, 900.0, 7200.0]


def test_opcode_and_extra_fields_accepted() -> None:
    # Zeek 8.1 opcode/opcode_name, auth/addl sets and original_query: ignored.
    df, stats = read_bytes(_unmasked("zeek_nsec.dns.log"))
    assert stats.rejected == 0 and df.height == 2
    assert df["qtype"].to_list() == ["AAAA", "A"]
    df, _ = read_bytes(_unmasked("zeek_original_case.dns.log"))
    assert df["qname"].to_list() == ["us.v27.distributed.net"]
    assert df["rcode"].to_list() == [None]


def test_empty_set_and_set_separator_escape() -> None:
    header, data = tsv_lines()
    fields = data[0].rstrip(b"\n").split(b"\t")
    fields[21] = b"(empty)"  # answers
    fields[22] = b"(empty)"  # TTLs
    a = b"\t".join(fields) + b"\n"
    fields[21] = b"TXT 5 a\\x2cb,1.2.3.4"
    fields[22] = b"1.000000,2.000000"
    b = b"\t".join(fields) + b"\n"
    df, stats = read_bytes(b"".join([*header, a, b]))
    assert stats.rejected == 0
    assert df["answers"].to_list() == [[], ["TXT 5 a,b", "1.2.3.4"]]
    assert df["ttls"].to_list() == [[], [1.0, 2.0]]


def test_header_change_mid_file() -> None:
    """Two concatenated logs with different field lists (#close then a new header)."""
    header, data = tsv_lines()
    first = b"".join([*header, *data[:10], b"#close\t2024-04-12-19-34-07\n"])
    # Second log: Zeek 8.1 layout, opcode fields appended.
    h2 = [ln.replace(b"\trejected\n", b"\trejected\topcode\topcode_name\n") for ln in header]
    h2 = [
        ln.replace(b"\tbool\n", b"\tbool\tcount\tstring\n") if ln.startswith(b"#types") else ln
        for ln in h2
    ]
    second = b"".join([*h2, *(ln.rstrip(b"\n") + b"\t0\tquery\n" for ln in data[10:20])])
    df, stats = read_bytes(first + second)
    assert stats.rejected == 0 and df.height == 20
    ref, _ = read_bytes(b"".join([*header, *data[:20]]))
    assert df.drop("sensor").equals(ref.drop("sensor"))


def test_chunking_does_not_change_results() -> None:
    """Tiny chunks (lines and headers cut across chunk ends) give the same table."""
    data = BRIM_TSV.read_bytes()
    ref, _ = read_bytes(data)
    for chunk in (97, 1000, 4096):
        df, stats = read_bytes(data, chunk_bytes=chunk)
        assert df.equals(ref), chunk
        assert stats.bytes_consumed == len(data)
    js = BRIM_JSON.read_bytes()
    ref, _ = read_bytes(js, "zeek-json")
    df, _ = read_bytes(js, "zeek-json", chunk_bytes=777)
    assert df.equals(ref)


def test_json_epoch_and_iso_timestamps() -> None:
    base = json.loads(BRIM_JSON.read_text().splitlines()[0])
    iso = dict(base)
    epoch = dict(base, ts=1521911720.865716)
    offset = dict(base, ts="2018-03-24T19:15:20.865716+02:00")
    lines = "\n".join(json.dumps(x) for x in (iso, epoch, offset)) + "\n"
    df, stats = read_bytes(lines.encode(), "zeek-json")
    assert stats.rejected == 0
    assert df["ts"].n_unique() == 1 and df.height == 3


# --------------------------------------------------------------------------- robustness


def test_truncated_gzip(tmp_path: Path) -> None:
    """A gzip cut short: everything decoded before the cut is kept and counted."""
    header, data = tsv_lines()
    body = b"".join([*header, *(data * 40)])  # 6,000 real rows, ~1.2 MB decoded
    full = gzip.compress(body)
    path = tmp_path / "dns.log.gz"
    path.write_bytes(full[: len(full) * 2 // 3])
    df, stats = read_path(path)
    assert stats.format == "zeek"
    assert "truncated_stream" in stats.rejects
    assert 0 < df.height < 6_000
    assert_accounted(stats)
    # What was read is intact: a prefix of the full read.
    ref, _ = read_bytes(body)
    assert df.drop("sensor").equals(ref.drop("sensor").head(df.height))


def test_garbage_lines_and_binary_junk() -> None:
    header, data = tsv_lines()
    junk = [
        b"hello world\n",
        b"1521911720.1\tonly\tthree\n",
        b"\x00\x01\x02\xff\xfe\xfd binary \x80\x81\n",
        b"\t".join([b"x"] * 40) + b"\n",
        b"not-a-time\t" + data[0].split(b"\t", 1)[1],
    ]
    body = [*header, *data[:50], *junk[:3], *data[50:], *junk[3:]]
    df, stats = read_bytes(b"".join(body))
    assert df.height == 150
    assert dict(stats.rejects) == {"bad_field_count": 4, "bad_timestamp": 1}
    assert stats.records_read == 155
    assert_accounted(stats)


def test_hostile_query_names() -> None:
    header, data = tsv_lines()
    fields = data[0].rstrip(b"\n").split(b"\t")
    names = [
        b"<script>alert(1)</script>.evil.com",
        b"caf\xc3\xa9.example.com",  # valid UTF-8, not ASCII
        b"bad\xff\xfe.Example.COM",  # not UTF-8 at all
        b"zeek\\x00escaped\\x0a.example.com",  # Zeek's own escapes stay
    ]
    rows = []
    for name in names:
        fields[9] = name
        rows.append(b"\t".join(fields) + b"\n")
    df, stats = read_bytes(b"".join([*header, *rows]))
    assert stats.rejected == 0
    assert df["qname"].to_list() == [
        "<script>alert(1)</script>.evil.com",
        "caf\\xc3\\xa9.example.com",
        "bad\\xff\\xfe.example.com",
        "zeek\\x00escaped\\x0a.example.com",
    ]


def test_hostile_json_lines() -> None:
    base = json.loads(BRIM_JSON.read_text().splitlines()[0])
    good = json.dumps(dict(base, query="<script>x</script>.evil.com")).encode()
    raw_bytes = (
        json.dumps(dict(base, query="PLACEHOLDER")).encode().replace(b"PLACEHOLDER", b"bad\xff.com")
    )
    bad_types = json.dumps(dict(base, **{"id.orig_p": "not a port"})).encode()
    lines = [good, b"{not json", raw_bytes, b"[1, 2, 3]", bad_types, b"\x00\x01\x02", good]
    df, stats = read_bytes(b"\n".join(lines) + b"\n", "zeek-json")
    assert df["qname"].to_list() == [
        "<script>x</script>.evil.com",
        "bad\\xff.com",
        "<script>x</script>.evil.com",
    ]
    assert dict(stats.rejects) == {"bad_json": 4}
    assert_accounted(stats)


def test_unknown_fields() -> None:
    header, data = tsv_lines()
    header = [
        ln.rstrip(b"\n") + (b"\tmy_site_field\n" if ln.startswith(b"#fields") else b"\tstring\n")
        if ln.startswith((b"#fields", b"#types"))
        else ln
        for ln in header
    ]
    rows = [ln.rstrip(b"\n") + b"\tsomething\n" for ln in data]
    df, stats = read_bytes(b"".join([*header, *rows]))
    ref, _ = read_path(BRIM_TSV)
    assert stats.rejected == 0
    assert df.drop("sensor").equals(ref.drop("sensor"))


def test_missing_header() -> None:
    _, data = tsv_lines()
    # Zeek's default 24 fields: read with the default field list.
    df, stats = read_bytes(b"".join(data))
    ref, _ = read_path(BRIM_TSV)
    assert stats.rejected == 0 and df.drop("sensor").equals(ref.drop("sensor"))
    # Anything else without a #fields header: counted, not guessed.
    cut = [b"\t".join(ln.split(b"\t")[:12]) + b"\n" for ln in data[:7]]
    df, stats = read_bytes(b"".join(cut))
    assert df.height == 0 and dict(stats.rejects) == {"missing_header": 7}


def test_other_log_in_stream_skipped_as_not_dns() -> None:
    header, data = tsv_lines()
    conn = (
        b"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
        b"#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n"
        b"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\n"
        b"1521911720.1\tCx\t10.0.0.1\t1234\t10.0.0.2\t80\ttcp\n"
        b"1521911720.2\tCy\t10.0.0.1\t1235\t10.0.0.2\t80\ttcp\n"
    )
    df, stats = read_bytes(conn)
    assert df.height == 0 and dict(stats.skipped) == {"not_dns_log": 2} and stats.rejected == 0
    assert_accounted(stats)
    df, stats = read_bytes(conn + b"".join([*header, *data]))
    assert df.height == 150 and dict(stats.skipped) == {"not_dns_log": 2} and stats.rejected == 0


@pytest.mark.parametrize("fmt", ["zeek", "zeek-json"])
def test_empty_and_header_only(fmt: str) -> None:
    inputs = [b"", b"\n\n"] + ([b"".join(tsv_lines()[0])] if fmt == "zeek" else [])
    for data in inputs:
        df, stats = read_bytes(data, fmt)
        assert df.height == 0 and stats.records_read == 0 and stats.rejected == 0
        assert stats.bytes_consumed == len(data)


def test_empty_file_via_read_file(tmp_path: Path) -> None:
    path = tmp_path / "dns.log"
    path.write_bytes(b"")
    df, stats = read_path(path, "zeek")
    assert df.height == 0 and stats.rejected == 0 and stats.error is None


# --------------------------------------------------------------------------- resume


def test_skip_bytes_resume_tsv() -> None:
    header, data = tsv_lines()
    old = b"".join([*header, *data[:100]])
    _, first = read_bytes(old)
    assert first.bytes_consumed == len(old) and first.rows_emitted == 100
    grown = old + b"".join(data[100:])
    df, stats = read_bytes(grown, skip_bytes=first.bytes_consumed)
    full, _ = read_bytes(grown)
    assert df.height == 50 and stats.records_read == 50
    assert df.equals(full.tail(50))
    assert stats.bytes_consumed == len(grown)


def test_skip_bytes_resume_json() -> None:
    lines = BRIM_JSON.read_bytes().splitlines(keepends=True)
    old = b"".join(lines[:90])
    _, first = read_bytes(old, "zeek-json")
    grown = old + b"".join(lines[90:])
    df, _ = read_bytes(grown, "zeek-json", skip_bytes=first.bytes_consumed)
    full, _ = read_bytes(grown, "zeek-json")
    assert df.height == 60 and df.equals(full.tail(60))


def test_skip_bytes_mid_line_and_past_end() -> None:
    header, data = tsv_lines()
    body = b"".join([*header, *data])
    full, _ = read_bytes(body)
    # An offset inside the 11th data line: that record started before it, so it is skipped.
    off = len(b"".join([*header, *data[:10]])) + 5
    df, stats = read_bytes(body, skip_bytes=off, chunk_bytes=1000)
    assert df.equals(full.tail(139)) and stats.records_read == 139
    df, stats = read_bytes(body, skip_bytes=len(body) + 100)
    assert df.height == 0 and stats.records_read == 0


@pytest.mark.parametrize("fmt", ["zeek", "zeek-json"])
def test_partial_last_line_is_read_again_when_complete(fmt: str) -> None:
    """A line still being written (cut, no newline) is not consumed; once the file
    has grown, resuming at bytes_consumed yields it exactly once."""
    if fmt == "zeek":
        header, data = tsv_lines()
        head = b"".join([*header, *data[:20]])
        rest = data[20:30]
    else:
        lines = BRIM_JSON.read_bytes().splitlines(keepends=True)
        head, rest = b"".join(lines[:20]), lines[20:30]
    partial = head + rest[0][:25]
    df1, st1 = read_bytes(partial, fmt)
    assert df1.height == 20 and st1.bytes_consumed == len(head)
    assert dict(st1.rejects) == {"truncated_record": 1}
    grown = head + b"".join(rest)
    df2, _ = read_bytes(grown, fmt, skip_bytes=st1.bytes_consumed)
    full, _ = read_bytes(grown, fmt)
    assert df2.height == 10 and pl.concat([df1, df2]).equals(full)


# --------------------------------------------------------------------------- fuzz

_, _DATA = tsv_lines()
_HEADER = b"".join(tsv_lines()[0])
_JSON_LINES = BRIM_JSON.read_bytes().splitlines()


def _mutate_tsv(line: bytes, field: int, value: bytes) -> bytes:
    parts = line.rstrip(b"\n").split(b"\t")
    parts[field % len(parts)] = value
    return b"\t".join(parts) + b"\n"


tsv_line = st.one_of(
    st.sampled_from(_DATA),
    st.builds(_mutate_tsv, st.sampled_from(_DATA), st.integers(0, 30), st.binary(max_size=30)),
    st.binary(max_size=200).map(lambda b: b + b"\n"),
    st.sampled_from([b"#close\t2024\n", b"#fields\tts\tquery\n", b"#path\tconn\n", b"\n", b"-\n"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(tsv_line, max_size=25), chunk=st.sampled_from([64, 512, 1 << 20]))
def test_fuzz_tsv_never_raises(lines: list[bytes], chunk: int) -> None:
    df, stats = read_bytes(_HEADER + b"".join(lines), "zeek", chunk_bytes=chunk)
    assert_accounted(stats)
    assert df.height == stats.rows_emitted
    assert (
        df["qname"]
        .drop_nulls()
        .map_elements(
            lambda q: re.fullmatch(r"[\x21-\x7e]*", q) is not None, return_dtype=pl.Boolean
        )
        .all()
    )


def _mutate_json(line: bytes, key: str, value: object) -> bytes:
    obj = json.loads(line)
    obj[key] = value
    return json.dumps(obj).encode()


json_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
)
json_line = st.one_of(
    st.sampled_from(_JSON_LINES),
    st.builds(
        _mutate_json,
        st.sampled_from(_JSON_LINES),
        st.sampled_from(
            ["ts", "query", "id.orig_p", "answers", "TTLs", "AA", "qtype", "_path", "x"]
        ),
        json_value,
    ),
    st.binary(max_size=120),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(json_line, max_size=25), chunk=st.sampled_from([64, 1 << 20]))
def test_fuzz_json_never_raises(lines: list[bytes], chunk: int) -> None:
    data = b"\n".join(ln.replace(b"\n", b" ") for ln in lines) + b"\n"
    df, stats = read_bytes(data, "zeek-json", chunk_bytes=chunk)
    assert_accounted(stats)
    assert df.height == stats.rows_emitted


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2000))
def test_fuzz_random_bytes(data: bytes) -> None:
    for fmt in ("zeek", "zeek-json"):
        _, stats = read_bytes(data, fmt)
        assert_accounted(stats)


@given(data=st.binary(max_size=400), chunk=st.integers(1, 64), max_line=st.integers(1, 128))
def test_chunks_cover_the_stream(data: bytes, chunk: int, max_line: int) -> None:
    """Chunks are contiguous, lose nothing, and end at a newline unless cut or final."""
    parts = list(iter_lines_chunks(io.BytesIO(data), chunk, max_line=max_line))
    assert b"".join(p for _, p, _ in parts) == data
    offset = 0
    for i, (off, part, terminated) in enumerate(parts):
        assert off == offset and part
        offset += len(part)
        if not terminated:
            assert i == len(parts) - 1 and b"\n" not in part
        elif not part.endswith(b"\n"):
            assert len(part) >= max_line  # a junk "line" cut for bounded memory


def test_adapter_names() -> None:
    assert ZeekTsvAdapter.name == "zeek" and ZeekJsonAdapter.name == "zeek-json"
    assert len(DEFAULT_FIELDS) == 24
