"""The lake's ``flows/`` dataset: canonical flows beside ``events/``.

Layout and guarantees are those of the events (see :mod:`dnsieve.lake`)::

    LAKE/flows/date=2024-04-19/hour=00/part-<commit id>-<n>.parquet

* partitioned by the hour of the flow's first packet (``ts``);
* idempotent: every input is fingerprinted (SHA-256 of its raw bytes) in the
  manifest's ``flow_sources`` table; re-ingesting the same content is a no-op,
  and a log that has grown is read from where the last ingest stopped (for the
  formats that can resume: Zeek conn.log TSV and JSON);
* readers see only committed rows: part files are listed in ``flow_parts`` in
  the same SQLite transaction as their sources, and unlisted files are
  deleted by the next writer.

The same writer lock as the events serialises flow and event writers.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from dnsieve.ingest import IngestStats, ReadContext, iter_input_files
from dnsieve.ingest.flows_common import FLOW_POLARS_SCHEMA, read_flow_file
from dnsieve.schema import FLOW_RECORD

if TYPE_CHECKING:
    from dnsieve.lake import FileReport, Lake

__all__ = ["MAX_FLOWS", "flow_files", "flow_rows", "flows_for_alert", "ingest_flows", "scan_flows"]

_FLOW_SQL = """
CREATE TABLE IF NOT EXISTS flow_sources (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    decoded_size INTEGER NOT NULL,
    path TEXT NOT NULL,
    format TEXT NOT NULL,
    ingest_id TEXT NOT NULL,
    records_read INTEGER NOT NULL,
    rows_written INTEGER NOT NULL,
    rejects TEXT NOT NULL,
    ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS flow_parts (
    path TEXT PRIMARY KEY,
    ingest_id TEXT NOT NULL,
    date TEXT NOT NULL,
    hour INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    committed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS flow_parts_partition ON flow_parts(date, hour);
"""

_RESUMABLE = ("zeek-conn", "zeek-conn-json")


def _connect(lake: Lake) -> sqlite3.Connection:
    con = lake._connect()
    con.executescript(_FLOW_SQL)
    return con


def _writer(lake: Lake) -> Any:
    from dnsieve.lake import _PartitionWriter

    class _FlowWriter(_PartitionWriter):
        def _flush(self, key: tuple[str, int]) -> None:
            batches = self.buffers.pop(key, [])
            n = self.counts.pop(key, 0)
            if not batches:
                return
            self.buffered -= n
            self.submit_table(key, pa.Table.from_batches(batches, schema=FLOW_RECORD))

    return _FlowWriter(
        lake.path / "flows",
        str(uuid.uuid4()),
        lake.rows_per_file,
        lake.max_buffered_rows,
        lake.compression,
    )


def _recover(lake: Lake, con: sqlite3.Connection) -> int:
    """Delete flow part files no commit lists (a writer died before its commit)."""
    root = lake.path / "flows"
    if not root.exists():
        return 0
    listed = {r[0] for r in con.execute("SELECT path FROM flow_parts")}
    removed = 0
    for f in root.rglob("part-*"):
        if f.relative_to(lake.path).as_posix() not in listed:
            f.unlink(missing_ok=True)
            removed += 1
    return removed


def _commit(
    lake: Lake, con: sqlite3.Connection, writer: Any, done: list[tuple[FileReport, int, int]]
) -> None:
    writer.close()
    if not done and not writer.written:
        return
    now = time.time()
    with con:
        con.executemany(
            "INSERT OR REPLACE INTO flow_sources VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    r.sha256, size, decoded, r.path, r.format, writer.ingest_id,
                    r.records_read, r.rows_written, json.dumps(r.rejects), now,
                )
                for r, size, decoded in done
            ],
        )  # fmt: skip
        con.executemany(
            "INSERT INTO flow_parts VALUES (?,?,?,?,?,?,?)",
            [
                (
                    p.path.relative_to(lake.path).as_posix(), writer.ingest_id, p.date, p.hour,
                    p.rows, p.path.stat().st_size, now,
                )
                for p in writer.written
            ],
        )  # fmt: skip
    writer.written = []


def ingest_flows(
    lake: Lake,
    paths: Iterable[str | os.PathLike[str]],
    fmt: str = "auto",
    options: dict[str, Any] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[FileReport]:
    """Ingest flow files (Zeek conn.log, FlowLabeler/CICFlowMeter CSV, pcaps) into
    ``LAKE/flows``; one :class:`~dnsieve.lake.FileReport` per input file.

    An input that cannot be read is a report with status ``error``; the others
    are still ingested.  Statuses are those of the events ingest.
    """
    from dnsieve.lake import FAILED, FileReport, fingerprint, open_input

    reports: list[FileReport] = []
    with lake._writer_lock(), contextlib.closing(_connect(lake)) as con:
        _recover(lake, con)
        writer = _writer(lake)
        done: list[tuple[FileReport, int, int]] = []
        try:
            for path in iter_input_files(paths):
                t0 = time.perf_counter()
                rep = FileReport(path=str(path), status="ingested")
                reports.append(rep)
                fh, why = open_input(path)
                if fh is None:
                    rep.status, rep.error = FAILED, why
                    continue
                with fh:
                    size_now = os.fstat(fh.fileno()).st_size
                    sizes = {
                        r[0]
                        for r in con.execute(
                            "SELECT DISTINCT size FROM flow_sources WHERE size < ?", (size_now,)
                        )
                    }
                    digest, size, prefixes = fingerprint(fh, sizes)
                    rep.sha256 = digest
                    seen = con.execute(
                        "SELECT format FROM flow_sources WHERE sha256 = ?", (digest,)
                    ).fetchone()
                    if seen or any(r.sha256 == digest for r, _, _ in done):
                        rep.status, rep.format = "unchanged", seen[0] if seen else ""
                        rep.seconds = time.perf_counter() - t0
                        continue
                    skip, use_fmt = 0, fmt
                    for s in sorted(prefixes, reverse=True):
                        row = con.execute(
                            "SELECT decoded_size, format FROM flow_sources WHERE sha256 = ? AND size = ?",
                            (prefixes[s], s),
                        ).fetchone()
                        if row and row[1] in _RESUMABLE:
                            skip, use_fmt, rep.status = int(row[0]), row[1], "grown"
                            break
                    fh.seek(0)
                    stats = IngestStats(source=str(path))
                    ctx = ReadContext(
                        sensor=str(path),
                        stats=stats,
                        batch_size=lake.batch_size,
                        skip_bytes=skip,
                        options=options or {},
                        max_record_bytes=lake.max_record_bytes,
                    )
                    before = writer.rows + writer.buffered
                    for b in read_flow_file(path, use_fmt, ctx, raw=fh):
                        writer.add(b)
                        if on_progress is not None:
                            on_progress(
                                str(path), ctx.raw_pos(), writer.rows + writer.buffered - before
                            )
                    rep.format = stats.format
                    rep.records_read = stats.records_read
                    rep.rows_written = writer.rows + writer.buffered - before
                    rep.rejects = dict(stats.rejects)
                    rep.skipped = dict(stats.skipped)
                    rep.reject_examples = stats.examples
                    rep.error = stats.error
                    if stats.error and rep.rows_written == 0:
                        rep.status = FAILED
                    elif rep.rows_written == 0 and stats.skipped and not stats.rejects:
                        rep.status = "skipped"
                    elif size == 0:
                        rep.status = "empty"
                    if not (rep.status == FAILED and rep.format in ("", "unknown")):
                        done.append((rep, size, max(stats.bytes_consumed, skip)))
                    rep.seconds = time.perf_counter() - t0
                if writer.rows + writer.buffered >= lake.commit_rows:
                    _commit(lake, con, writer, done)
                    writer, done = _writer(lake), []
            _commit(lake, con, writer, done)
        except BaseException:
            writer.discard()
            raise
    return reports


def flow_files(
    lake: Lake, since: datetime | None = None, until: datetime | None = None
) -> list[Path]:
    """The committed flow part files, optionally only the hours overlapping [since, until)."""
    if not (lake.path / "_manifest.sqlite").exists():
        return []
    with contextlib.closing(_connect(lake)) as con:
        rows = con.execute("SELECT path, date, hour FROM flow_parts ORDER BY path").fetchall()
    lo = _utc(since)
    hi = _utc(until)
    out = []
    for rel, date, hour in rows:
        h = datetime.fromisoformat(date).replace(hour=int(hour), tzinfo=UTC)
        if (lo is not None and h + timedelta(hours=1) <= lo) or (hi is not None and h >= hi):
            continue
        out.append(lake.path / rel)
    return out


def flow_rows(lake: Lake) -> int:
    """Rows in the committed flow part files (from the manifest)."""
    if not (lake.path / "_manifest.sqlite").exists():
        return 0
    with contextlib.closing(_connect(lake)) as con:
        return int(con.execute("SELECT coalesce(sum(rows), 0) FROM flow_parts").fetchone()[0])


def scan_flows(
    lake: Lake, since: datetime | None = None, until: datetime | None = None
) -> pl.LazyFrame:
    """A lazy frame of the lake's canonical flows with ``since <= ts < until``.

    A flow is kept by its first packet; a long flow that started before
    ``since`` is not in the frame (widen ``since`` by the longest flow of
    interest, as the detectors' lookback does).
    """
    files = flow_files(lake, since, until)
    if not files:
        return pl.LazyFrame(schema=FLOW_POLARS_SCHEMA)
    # columns added to FLOW_RECORD later (it only ever grows) read as nulls from older parts
    lf = pl.scan_parquet(
        [str(f) for f in files],
        hive_partitioning=False,
        schema=FLOW_POLARS_SCHEMA,
        missing_columns="insert",
    )
    if since is not None:
        lf = lf.filter(pl.col("ts") >= _utc(since))
    if until is not None:
        lf = lf.filter(pl.col("ts") < _utc(until))
    return lf


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


#: the flows shown for one alert at most
MAX_FLOWS = 200


def flows_for_alert(
    lake: Lake,
    entity_type: str,
    entity: str,
    since: datetime,
    until: datetime,
    limit: int = MAX_FLOWS,
) -> tuple[pl.DataFrame, int, list[str]]:
    """The flows behind an alert, newest first: ``(flows, total, addresses)``.

    * a flow alert on a client × address (``client_dest``): that client's flows to that
      address in the window;
    * a flow alert on a client: the client's flows in the window;
    * a DNS alert on a client × domain: the client's flows to the addresses the domain
      resolved to (in the window and the hour after); on a domain: every client's flows
      to those addresses.

    ``addresses`` are the destination addresses looked at (the DNS answers for a DNS alert).
    """
    client, _, rest = entity.partition("|")
    lo, hi = _utc(since), _utc(until)
    assert lo is not None and hi is not None
    flows = scan_flows(lake, lo - timedelta(hours=1), hi + timedelta(hours=1))
    addresses: list[str] = []
    if entity_type == "client_dest":
        addresses = [rest]
        sel = flows.filter((pl.col("src_ip") == client) & (pl.col("dst_ip") == rest))
    elif entity_type == "client":
        sel = flows.filter(pl.col("src_ip") == entity)
    else:
        domain = rest if entity_type == "client_domain" else entity
        ev = lake.scan(lo, hi + timedelta(hours=1)).filter(pl.col("registered_domain") == domain)
        if entity_type == "client_domain":
            ev = ev.filter(pl.col("src_ip") == client)
        addresses = sorted(
            ev.select(pl.col("answers").explode().drop_nulls().unique())
            .collect()
            .to_series()
            .to_list()
        )
        sel = flows.filter(pl.col("dst_ip").is_in(addresses))
        if entity_type == "client_domain":
            sel = sel.filter(pl.col("src_ip") == client)
    sel = sel.filter(
        (pl.col("ts_last").fill_null(pl.col("ts")) >= lo) & (pl.col("ts") < hi + timedelta(hours=1))
    )
    total = int(sel.select(pl.len()).collect().item())
    shown = sel.sort("ts", descending=True).head(limit).collect()
    return shown, total, addresses
