"""The fast ingest paths give the same rows as the simple ones (issue 14, ingest write path).

Real Zeek data (``tests/data/zeek/brim_dns_head.*``, the same 150 events as TSV and JSON),
spread over several hours where a test needs it:

* a batch spanning several hours is cut into hour partitions by one sort: every row lands in
  its hour, in input order, exactly once;
* the domain split remembers names across batches (and starts over past ``cache_size``)
  without changing a single split;
* the Zeek JSON adapter parses one chunk ahead in a worker: small chunks, bad lines in the
  middle and an unterminated tail give the rows and rejects of one whole-file parse;
* the background part writer: ``close`` lists every part (durable), ``discard`` leaves none;
* a stream's appends sweep orphan part files on their first append, then once a minute.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dnsieve.domains import DomainSplitter
from dnsieve.ingest import IngestStats, ReadContext, read_file, read_stream
from dnsieve.lake import Lake, _PartitionWriter
from dnsieve.schema import DNS_EVENT

DATA = Path(__file__).parent / "data" / "zeek"


def _events(name: str = "brim_dns_head.log", fmt: str = "zeek") -> pa.Table:
    ctx = ReadContext(sensor="t", stats=IngestStats())
    return pa.Table.from_batches(list(read_file(DATA / name, fmt, ctx)), schema=DNS_EVENT)


def _spread(table: pa.Table, hours: int) -> pa.Table:
    """The events with row i moved ``i % hours`` hours later (rows of hours interleave)."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    shift = pl.int_range(pl.len()) % hours
    df = df.with_columns(pl.col("ts") + pl.duration(hours=shift))
    return df.to_arrow().cast(DNS_EVENT)


def test_a_batch_over_many_hours_lands_in_its_hours_in_input_order(tmp_path: Path) -> None:
    table = _spread(_events(), 7).append_column("_i", pa.array(range(150)))
    w = _PartitionWriter(tmp_path, "id", 10_000, 100_000, "zstd")
    w.add(table.drop_columns(["_i"]).combine_chunks().to_batches()[0])
    w.close()
    assert len(w.written) == 7 and w.rows == 150
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    got = []
    for part in w.written:
        rows = pl.read_parquet(part.path)
        hours = rows.get_column("ts").dt.truncate("1h").unique()
        assert hours.len() == 1
        h = hours.item()
        assert (part.date, part.hour) == (h.strftime("%Y-%m-%d"), h.hour)
        got.append(rows)
    want = df.with_columns(h=pl.col("ts").dt.truncate("1h")).sort("h", "_i", maintain_order=True)
    assert pl.concat(got).equals(want.drop("h", "_i"))


def test_split_cache_across_batches_changes_no_split() -> None:
    names = _events().column("qname").to_pylist()
    more = [f"x{i}.{n}" for i, n in enumerate(names)] + ["wpad", "a..b", "foo.github.io", None]
    series = [pl.Series("q", names[:80]), pl.Series("q", names), pl.Series("q", more)]
    fresh = [DomainSplitter().split_series(s) for s in series]
    for cache_size in (1_000_000, 40):  # 40: the memory starts over mid-way
        sp = DomainSplitter(cache_size=cache_size)
        for s, want in zip(series, fresh, strict=True):
            assert sp.split_series(s).equals(want)
        assert sp._seen is None or sp._seen.height <= cache_size


@pytest.mark.parametrize("chunk", [1_000, 7_919, 1 << 24])
def test_zeek_json_read_ahead_matches_one_parse(chunk: int) -> None:
    lines = (DATA / "brim_dns_head.json").read_bytes().splitlines()
    bad = [b'{"_path":"dns","ts":', b"not json", b'{"_path":"conn","ts":1.0,"uid":"C1"}']
    # bad lines in the middle, and an unterminated (still being written) tail
    data = b"\n".join(lines[:60] + bad + lines[60:]) + b"\n" + b'{"_path":"dns","ts":"20'

    def read(chunk_bytes: int) -> tuple[pa.Table, IngestStats]:
        stats = IngestStats()
        ctx = ReadContext(sensor="t", stats=stats, options={"chunk_bytes": chunk_bytes})
        got = list(read_stream(io.BytesIO(data), "zeek-json", ctx))
        return pa.Table.from_batches(got, schema=DNS_EVENT), stats

    want, ws = read(1 << 26)
    got, gs = read(chunk)
    assert got.num_rows == want.num_rows == 150
    assert got.equals(want)
    assert gs.rejects == ws.rejects and gs.skipped == ws.skipped
    assert gs.rejects["bad_json"] == 2 and gs.rejects["truncated_record"] == 1
    assert gs.skipped["not_dns_log"] == 1
    assert gs.records_read == ws.records_read and gs.bytes_consumed == ws.bytes_consumed
    assert gs.bytes_consumed == len(data) - len(b'{"_path":"dns","ts":"20')


def test_background_writes_are_listed_after_close_and_gone_after_discard(tmp_path: Path) -> None:
    table = _spread(_events(), 5)
    w = _PartitionWriter(tmp_path / "a", "id", 10, 20, "zstd")  # a flush every few rows
    for b in table.to_batches(max_chunksize=16):
        w.add(b)
    w.close()
    assert sum(p.rows for p in w.written) == w.rows == 150
    assert sum(pq.read_metadata(p.path).num_rows for p in w.written) == 150
    assert not list((tmp_path / "a").rglob("*.tmp"))

    d = _PartitionWriter(tmp_path / "b", "id", 10, 20, "zstd")
    for b in table.to_batches(max_chunksize=16):
        d.add(b)
    d.discard()
    assert not [f for f in (tmp_path / "b").rglob("*") if f.is_file()]


def test_stream_appends_sweep_orphans_on_the_first_append(tmp_path: Path) -> None:
    table = _events()
    lake = Lake(tmp_path)
    lake.append_stream(table.to_batches(), "s/", {"p": 150})
    part = next((tmp_path / "events").rglob("part-*.parquet"))
    orphan = part.with_name("part-00000000-dead-beef-0000-000000000000-00001.parquet")
    orphan.write_bytes(part.read_bytes())  # a writer killed before its commit
    later = _spread(table, 2).to_pandas()
    later["ts"] = later["ts"] + timedelta(hours=3)
    batch = pa.Table.from_pandas(later, schema=DNS_EVENT, preserve_index=False)
    lake.append_stream(batch.to_batches(), "s/", {"p": 300})
    assert orphan.exists()  # the same process swept a moment ago: no walk of the lake
    Lake(tmp_path).append_stream([], "s/", {"p": 300})  # a new process sweeps first
    assert not orphan.exists()
    assert Lake(tmp_path).committed_rows() == 300
    assert lake.stream_positions("s/") == {"p": 300}
