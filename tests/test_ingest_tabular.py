"""CSV and Parquet adapters: column mapping, time parsing, chunking, errors."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsieve.ingest import IngestStats, ReadContext, read_file, tabular
from dnsieve.ingest.tabular import CsvAdapter
from dnsieve.schema import DNS_EVENT

TD = Path(__file__).parent / "data" / "tabular"


def _frame(batches: list[pa.RecordBatch]) -> pl.DataFrame:
    for b in batches:
        assert b.schema == DNS_EVENT
    df = pl.from_arrow(pa.Table.from_batches(batches, schema=DNS_EVENT))
    assert isinstance(df, pl.DataFrame)
    return df


def _read(path: Path, fmt: str = "auto", **options: Any) -> tuple[pl.DataFrame, IngestStats]:
    ctx = ReadContext(sensor="t", stats=IngestStats(), options=options)
    return _frame(list(read_file(path, fmt, ctx))), ctx.stats


def _csv(data: bytes, **kw: Any) -> tuple[pl.DataFrame, ReadContext]:
    ctx = ReadContext(sensor="t", stats=IngestStats(), **kw)
    return _frame(list(CsvAdapter().read(io.BytesIO(data), ctx))), ctx


def test_zeek_named_csv() -> None:
    df, stats = _read(TD / "zeek_names.csv")
    assert stats.format == "csv" and stats.rejected == 0 and stats.error is None
    assert df.height == 4
    r = df.row(1, named=True)
    assert r["qname"] == "www.myedimax.com"
    assert r["answers"] == ["ddns.myedimax.com", "ns.myedimax.com", "122.248.252.67"]
    assert r["ttls"] == [580.0, 280.0, 580.0]
    assert (r["qtype"], r["rcode"], r["rd"], r["aa"]) == ("A", "NOERROR", True, False)
    assert (r["src_ip"], r["src_port"], r["dst_port"], r["trans_id"]) == (
        "192.168.1.129",
        39422,
        53,
        3,
    )
    assert str(df["ts"][0]) == "2021-06-06 14:26:27.431769+00:00"
    nx = df.row(2, named=True)
    assert (nx["qtype"], nx["rcode"], nx["rtt"], nx["answers"], nx["proto"]) == (
        "TXT",
        "NXDOMAIN",
        None,
        None,
        "tcp",
    )
    mdns = df.row(3, named=True)
    assert (mdns["qtype"], mdns["rcode"], mdns["aa"]) == ("PTR", None, True)


def test_semicolon_aliases_iso_times_and_bad_time() -> None:
    df, stats = _read(TD / "semicolon_iso.csv")
    assert stats.rejects == {"bad_timestamp": 1}
    assert stats.records_read == 5
    assert df["qname"].to_list() == [
        "www.example.com", "mail.example.co.uk", "abc.github.io", "epoch.example.com",
    ]  # fmt: skip
    assert [str(t) for t in df["ts"]] == [
        "2021-06-06 14:26:27.431769+00:00",
        "2021-06-06 14:26:28+00:00",
        "2021-06-06 14:26:29.500000+00:00",
        "2021-06-06 14:26:30+00:00",
    ]
    assert df["rcode"].to_list() == ["NOERROR", "NOERROR", "NXDOMAIN", "SERVFAIL"]
    assert df["qtype"].to_list() == ["A", "MX", "AAAA", "HTTPS"]
    assert df["registered_domain"].to_list()[1:3] == ["example.co.uk", "abc.github.io"]


def test_explicit_mapping_and_epoch_ms(tmp_path: Path) -> None:
    mapping = {"ts": "when_ms", "src_ip": "who", "qname": "asked", "qtype": "kind"}
    df, stats = _read(TD / "custom_mapping.tsv", "csv", mapping=mapping)
    assert stats.error is None
    assert df["qname"].to_list() == ["www.example.com", "api.example.com"]
    assert str(df["ts"][0]) == "2021-06-06 14:26:27.431000+00:00"
    assert df["src_ip"].to_list() == ["10.1.1.1", "10.1.1.2"]
    # without the mapping there is no qname column: a clear error, no rows
    df, stats = _read(TD / "custom_mapping.tsv", "csv")
    assert df.height == 0
    assert stats.error is not None and stats.error.startswith("missing required column: qname")
    assert "; ts (one of: ts, timestamp" in stats.error


def test_missing_qname_column_is_a_clear_error() -> None:
    df, stats = _read(TD / "no_qname.csv")
    assert df.height == 0
    assert stats.error is not None and stats.error.startswith("missing required column: qname")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1622989587", "2021-06-06 14:26:27+00:00"),
        ("1622989587.25", "2021-06-06 14:26:27.250000+00:00"),
        ("1622989587250", "2021-06-06 14:26:27.250000+00:00"),
        ("1622989587250000", "2021-06-06 14:26:27.250000+00:00"),
        ("1622989587250000000", "2021-06-06 14:26:27.250000+00:00"),
        ("2021-06-06T14:26:27.25", "2021-06-06 14:26:27.250000+00:00"),
        ("2021-06-06 16:26:27.25+02:00", "2021-06-06 14:26:27.250000+00:00"),
        ("2021-06-06T14:26:27,25Z", "2021-06-06 14:26:27.250000+00:00"),
    ],
)
def test_time_forms(value: str, expected: str) -> None:
    df, ctx = _csv(f'ts,query\n"{value}",a.example.com\n'.encode())
    assert ctx.stats.rejected == 0
    assert str(df["ts"][0]) == expected


def test_ts_unit_option() -> None:
    df, _ = _csv(b"ts,query\n1000,a.example.com\n", options={"ts_unit": "ms"})
    assert str(df["ts"][0]) == "1970-01-01 00:00:01+00:00"


@pytest.mark.parametrize("delim", [",", "\t", ";", "|"])
def test_delimiter_sniffing(delim: str) -> None:
    rows = [["timestamp", "client_ip", "query_name", "qtype", "answers"],
            ["1622989587", "10.0.0.1", "a.example.com", "1", "1.2.3.4,5.6.7.8"],
            ["1622989588", "10.0.0.2", "b.example.com", "28", ""]]  # fmt: skip
    buf = io.StringIO()
    csv.writer(buf, delimiter=delim, lineterminator="\n").writerows(rows)
    df, ctx = _csv(buf.getvalue().encode())
    assert ctx.stats.error is None
    assert df["qname"].to_list() == ["a.example.com", "b.example.com"]
    assert df["qtype"].to_list() == ["A", "AAAA"]
    assert df["answers"].to_list() == [["1.2.3.4", "5.6.7.8"], None]


def test_chunks_cut_at_row_boundaries_even_inside_quotes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular, "_CHUNK", 64)
    lines = ["ts,query,answers"]
    for i in range(200):
        lines.append(f'{1622989587 + i},q{i}.example.com,"line one\nline two {i}"')
    data = ("\n".join(lines) + "\n").encode()
    df, ctx = _csv(data, batch_size=16)
    assert df.height == 200 and ctx.stats.rejected == 0
    assert df["qname"].to_list() == [f"q{i}.example.com" for i in range(200)]
    assert df["answers"][5].to_list() == ["line one\nline two 5"]
    assert ctx.stats.bytes_consumed == len(data)


def test_grown_csv_reads_only_new_rows() -> None:
    head = b"ts,query\n1622989587,a.example.com\n1622989588,b.example.com\n"
    full = head + b"1622989589,c.example.com\n"
    _first, c1 = _csv(head)
    assert c1.stats.bytes_consumed == len(head)
    second, c2 = _csv(full, skip_bytes=c1.stats.bytes_consumed)
    assert second["qname"].to_list() == ["c.example.com"]
    assert c2.stats.records_read == 1


def test_ragged_rows_non_utf8_and_hostile_names() -> None:
    data = (
        b"ts,query,qtype\n"
        b"1622989587,<script>alert(1)</script>.example.com,A\n"
        b"1622989588,caf\xe9.example.com,A\n"
        b"1622989589,too,many,fields,here\n"
        b'1622989590,"unterminated,A\n'
    )
    df, ctx = _csv(data)
    names = df["qname"].to_list()
    assert "<script>alert(1)</script>.example.com" in names
    assert "caf\\xe9.example.com" in names
    assert ctx.stats.records_read >= 3
    assert df.height + ctx.stats.rejected <= ctx.stats.records_read


def test_empty_and_header_only() -> None:
    for data in (b"", b"ts,query\n", b"\n\n"):
        df, ctx = _csv(data)
        assert df.height == 0 and ctx.stats.records_read == 0


def _events_table() -> pa.Table:
    return pa.table(
        {
            "timestamp": pa.array(
                [1_622_989_587_000_000 + i for i in range(10)], pa.timestamp("us", tz="UTC")
            ),
            "client": pa.array([f"10.0.0.{i}" for i in range(10)]),
            "domain": pa.array([f"Q{i}.Example.com." for i in range(10)]),
            "qtype": pa.array([1, 28] * 5, pa.int64()),
            "answers": pa.array([["1.2.3.4"], None] * 5, pa.list_(pa.string())),
            "ttls": pa.array([[60], None] * 5, pa.list_(pa.int64())),
            "extra": pa.array(range(10)),
        }
    )


def test_parquet_row_groups_and_typed_columns(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pq.write_table(_events_table(), path, row_group_size=3)
    ctx = ReadContext(sensor="t", stats=IngestStats(), batch_size=2)
    batches = list(read_file(path, "auto", ctx))
    assert ctx.stats.format == "parquet"
    assert all(b.num_rows <= 2 for b in batches)
    df = _frame(batches)
    assert df.height == 10 and ctx.stats.records_read == 10
    assert df["qname"].to_list() == [f"q{i}.example.com" for i in range(10)]
    assert df["qtype"].to_list()[:2] == ["A", "AAAA"]
    assert df["ttls"].to_list()[:2] == [[60.0], None]
    assert str(df["ts"][0]) == "2021-06-06 14:26:27+00:00"


def test_parquet_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1" + b"\x00" * 100)
    df, stats = _read(bad)
    assert df.height == 0 and stats.error is not None and "invalid parquet" in stats.error
    nocol = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"ts": [1.0], "x": ["a"]}), nocol)
    df, stats = _read(nocol)
    assert stats.error is not None and stats.error.startswith("missing required column: qname")


_cell = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(
        ["1622989587", "2021-06-06T14:26:27Z", "-", "(empty)", "1,2", '"', "T", "NXDOMAIN"]
    ),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(_cell, min_size=1, max_size=5), max_size=20),
    st.sampled_from([",", ";", "\t", "|"]),
)
def test_fuzz_never_raises_and_counts_add_up(rows: list[list[str]], delim: str) -> None:
    body = "\n".join(delim.join(r) for r in rows)
    data = ("ts" + delim + "query" + delim + "answers\n" + body).encode("utf-8")
    ctx = ReadContext(sensor="t", stats=IngestStats(), batch_size=3)
    batches = list(CsvAdapter().read(io.BytesIO(data), ctx))
    n = sum(b.num_rows for b in batches)
    assert all(b.num_rows <= 3 for b in batches)
    assert n == ctx.stats.rows_emitted
    assert n + ctx.stats.rejected <= max(ctx.stats.records_read, 0) + ctx.stats.rejects.get(
        "bad_field_count", 0
    )
    assert ctx.stats.error is None
