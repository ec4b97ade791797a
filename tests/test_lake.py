"""The lake: partitioning, idempotent re-ingest, growth, crash recovery."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC
from importlib import resources
from pathlib import Path

import polars as pl
import pytest

from dnsieve.lake import Lake, fingerprint

SAMPLE = Path(str(resources.files("dnsieve") / "data" / "samples" / "wrccdc2018-dns.log.gz"))
N_SAMPLE_ROWS = 3000


@pytest.fixture()
def sample_log(tmp_path: Path) -> Path:
    """The bundled real Zeek sample, decompressed (so it can grow by appends)."""
    out = tmp_path / "dns.log"
    out.write_bytes(gzip.decompress(SAMPLE.read_bytes()))
    return out


def test_ingest_partitions_by_date_and_hour(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    (rep,) = lake.ingest_files([SAMPLE])
    assert rep.status == "ingested", rep
    assert rep.format == "zeek"
    assert rep.rows_written == N_SAMPLE_ROWS
    parts = {f.parent.relative_to(lake.events_dir).as_posix() for f in lake.files()}
    assert parts == {"date=2018-03-24/hour=17"}
    df = lake.scan().collect()
    assert df.height == N_SAMPLE_ROWS
    assert df.schema["ts"] == pl.Datetime("us", "UTC")


def test_reingest_is_a_noop_by_content_not_name(tmp_path: Path, sample_log: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.ingest_files([sample_log])
    renamed = tmp_path / "renamed-copy.txt"
    shutil.copy(sample_log, renamed)
    reps = lake.ingest_files([sample_log, renamed])
    assert [r.status for r in reps] == ["unchanged", "unchanged"]
    assert lake.scan().select(pl.len()).collect().item() == N_SAMPLE_ROWS


def test_same_first_bytes_different_content_is_ingested(tmp_path: Path, sample_log: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.ingest_files([sample_log])
    lines = sample_log.read_bytes().splitlines(keepends=True)
    # Same header and first rows, different last data row: a different file.
    other = tmp_path / "other.log"
    data_idx = max(i for i, ln in enumerate(lines) if not ln.startswith(b"#"))
    changed = lines[data_idx].replace(b"\tudp\t", b"\ttcp\t")
    other.write_bytes(b"".join([*lines[:data_idx], changed, *lines[data_idx + 1 :]]))
    (rep,) = lake.ingest_files([other])
    assert rep.status == "ingested"
    assert rep.rows_written == N_SAMPLE_ROWS


def test_grown_log_ingests_only_new_rows(tmp_path: Path, sample_log: Path) -> None:
    content = sample_log.read_bytes()
    lines = content.splitlines(keepends=True)
    body = [ln for ln in lines if not ln.startswith(b"#")]
    header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
    first = b"".join(header + body[:1000])
    sample_log.write_bytes(first)
    lake = Lake(tmp_path / "lake")
    (r1,) = lake.ingest_files([sample_log])
    assert r1.rows_written == 1000
    with open(sample_log, "ab") as fh:
        fh.write(b"".join(body[1000:1500]))
    (r2,) = lake.ingest_files([sample_log])
    assert r2.status == "grown"
    assert r2.rows_written == 500
    assert lake.scan().select(pl.len()).collect().item() == 1500


def test_recover_removes_uncommitted_parts(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.ingest_files([SAMPLE])
    good = lake.files()
    orphan_dir = lake.events_dir / "date=2018-03-24" / "hour=18"
    orphan_dir.mkdir(parents=True)
    orphan = orphan_dir / "part-00000000-0000-0000-0000-000000000000-00001.parquet"
    shutil.copy(good[0], orphan)
    (orphan_dir / "part-x.parquet.tmp").write_bytes(b"half")
    assert lake.recover() == 2
    assert lake.files() == good


def test_crash_mid_ingest_leaves_nothing_and_retry_ingests(
    tmp_path: Path, sample_log: Path
) -> None:
    lake = Lake(tmp_path / "lake", rows_per_file=1000, max_buffered_rows=1000)

    class Boom(Exception):
        pass

    calls = {"n": 0}

    def explode(path: str, done: int, rows: int) -> None:
        calls["n"] += 1
        if rows >= 1000:
            raise Boom

    with pytest.raises(Boom):
        lake.ingest_files([sample_log], on_progress=explode)
    assert lake.scan().select(pl.len()).collect().item() == 0
    (rep,) = lake.ingest_files([sample_log])
    assert rep.status == "ingested"
    assert lake.scan().select(pl.len()).collect().item() == N_SAMPLE_ROWS


def test_empty_and_junk_files_are_reported_not_raised(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 40)
    lake = Lake(tmp_path / "lake")
    reps = {Path(r.path).name: r for r in lake.ingest_files([tmp_path])}
    assert reps["empty.log"].status == "empty"
    assert reps["junk.bin"].status == "error"
    assert "unrecognised" in (reps["junk.bin"].error or "")
    assert lake.files() == []


def test_scan_since_until(tmp_path: Path) -> None:
    from datetime import datetime

    lake = Lake(tmp_path / "lake")
    lake.ingest_files([SAMPLE])
    t0, t1 = lake.time_range()  # type: ignore[misc]
    mid = t0 + (t1 - t0) / 2
    n_before = lake.scan(until=mid).select(pl.len()).collect().item()
    n_after = lake.scan(since=mid).select(pl.len()).collect().item()
    assert n_before + n_after == N_SAMPLE_ROWS
    assert lake.scan(since=datetime(2030, 1, 1, tzinfo=UTC)).collect().height == 0


def test_fingerprint_prefixes(tmp_path: Path) -> None:
    import hashlib

    f = tmp_path / "x"
    f.write_bytes(b"0123456789" * 300_000)
    full, size, pre = fingerprint(f, [5, 2_000_000])
    assert size == 3_000_000
    assert full == hashlib.sha256(f.read_bytes()).hexdigest()
    assert pre[2_000_000] == hashlib.sha256(f.read_bytes()[:2_000_000]).hexdigest()
    assert pre[5] == hashlib.sha256(b"01234").hexdigest()
