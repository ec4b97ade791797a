"""The lake: an append-only Parquet dataset of canonical DNS events.

Layout::

    LAKE/
      events/date=2024-04-21/hour=21/part-<ingest id>-<n>.parquet
      _manifest.sqlite     # what has been ingested, by content fingerprint
      .lock                # one writer at a time

**Idempotence.**  Every input file is fingerprinted by the SHA-256 of its raw
bytes.  Re-ingesting content already in the manifest is a no-op, whatever the
file is called.  When a file's first N bytes hash to an entry of size N (the
log has grown since it was read) only the new records are ingested.

**Crash safety.**  Part files carry their ingest id.  The manifest row of an
ingest is committed only after all its part files are written and synced;
opening the lake for writing deletes part files of ingests that never
committed, so a crash mid-ingest leaves neither half a file's rows behind nor a
manifest entry that would make the retry a no-op.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dnsieve.domains import DomainSplitter
from dnsieve.ingest import IngestStats, ReadContext, iter_input_files, read_file
from dnsieve.schema import DNS_EVENT, EVENT_COLUMNS

__all__ = ["FileReport", "Lake", "fingerprint"]

_HASH_CHUNK = 1 << 20
_EVENT_SCHEMA = pl.DataFrame(DNS_EVENT.empty_table()).schema

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS sources (
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
CREATE INDEX IF NOT EXISTS sources_size ON sources(size);
CREATE TABLE IF NOT EXISTS ingests (
    ingest_id TEXT PRIMARY KEY,
    committed_at REAL NOT NULL,
    rows_written INTEGER NOT NULL,
    min_ts TEXT,
    max_ts TEXT
);
"""


@dataclass
class FileReport:
    """What happened to one input file."""

    path: str
    status: str  # ingested | grown | unchanged | skipped | error | empty
    format: str = ""
    records_read: int = 0
    rows_written: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    reject_examples: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    sha256: str = ""
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "format": self.format,
            "rows_read": self.records_read,
            "rows_written": self.rows_written,
            "rejected": self.rejected,
            "rejects": self.rejects,
            "skipped": self.skipped,
            "reject_examples": self.reject_examples,
            "error": self.error,
            "sha256": self.sha256,
            "seconds": round(self.seconds, 3),
        }


def fingerprint(path: Path, prefix_sizes: Iterable[int] = ()) -> tuple[str, int, dict[int, str]]:
    """SHA-256 of a file, plus the digests of its prefixes of the given sizes.

    One pass over the file; prefix digests come from copies of the running
    hash at each boundary.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"abcdef")
    >>> full, size, pre = fingerprint(Path(f.name), [3])
    >>> size, pre[3] == hashlib.sha256(b"abc").hexdigest()
    (6, True)
    >>> os.unlink(f.name)
    """
    bounds = sorted({s for s in prefix_sizes if s > 0})
    h = hashlib.sha256()
    prefixes: dict[int, str] = {}
    pos = 0
    bi = 0
    with open(path, "rb") as fh:
        while True:
            want = _HASH_CHUNK
            if bi < len(bounds):
                want = min(want, bounds[bi] - pos)
            chunk = fh.read(want)
            if not chunk:
                break
            h.update(chunk)
            pos += len(chunk)
            while bi < len(bounds) and bounds[bi] == pos:
                prefixes[pos] = h.copy().hexdigest()
                bi += 1
    return h.hexdigest(), pos, prefixes


class _PartitionWriter:
    """Buffers batches per (date, hour) and writes bounded Parquet part files."""

    def __init__(
        self, root: Path, ingest_id: str, rows_per_file: int, max_buffered: int, compression: str
    ) -> None:
        self.root = root
        self.ingest_id = ingest_id
        self.rows_per_file = rows_per_file
        self.max_buffered = max_buffered
        self.compression = None if compression == "none" else compression
        self.buffers: dict[tuple[str, int], list[pa.RecordBatch]] = {}
        self.counts: dict[tuple[str, int], int] = {}
        self.buffered = 0
        self.seq = 0
        self.written: list[Path] = []
        self.rows = 0
        self.min_ts: Any = None
        self.max_ts: Any = None

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        ts = batch.column("ts")
        lo, hi = pc.min_max(ts).values()
        if self.min_ts is None or lo.as_py() < self.min_ts:
            self.min_ts = lo.as_py()
        if self.max_ts is None or hi.as_py() > self.max_ts:
            self.max_ts = hi.as_py()
        # Partition keys: date string and hour, computed in Arrow.
        hours = pc.cast(pc.floor_temporal(ts, unit="hour"), pa.int64())
        uniq = pc.unique(hours)
        for h in uniq.to_pylist():
            mask = pc.equal(hours, h)
            part = batch.filter(mask) if len(uniq) > 1 else batch
            key = _partition_key(h)
            self.buffers.setdefault(key, []).append(part)
            self.counts[key] = self.counts.get(key, 0) + part.num_rows
            self.buffered += part.num_rows
            if self.counts[key] >= self.rows_per_file:
                self._flush(key)
        if self.buffered >= self.max_buffered:
            for key in sorted(self.buffers, key=lambda k: -self.counts[k]):
                self._flush(key)
                if self.buffered < self.max_buffered // 2:
                    break

    def _flush(self, key: tuple[str, int]) -> None:
        batches = self.buffers.pop(key, [])
        n = self.counts.pop(key, 0)
        if not batches:
            return
        self.buffered -= n
        date, hour = key
        d = self.root / f"date={date}" / f"hour={hour:02d}"
        d.mkdir(parents=True, exist_ok=True)
        self.seq += 1
        final = d / f"part-{self.ingest_id}-{self.seq:05d}.parquet"
        tmp = final.with_suffix(".parquet.tmp")
        table = pa.Table.from_batches(batches, schema=DNS_EVENT)
        pq.write_table(table, tmp, compression=self.compression, row_group_size=128 * 1024)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        self.written.append(final)
        self.rows += n

    def close(self) -> None:
        for key in list(self.buffers):
            self._flush(key)


def _partition_key(hour_us: int) -> tuple[str, int]:
    secs = hour_us // 1_000_000
    t = time.gmtime(secs)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", t.tm_hour)


class Lake:
    """An hour-partitioned Parquet dataset of canonical events with an ingest manifest."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rows_per_file: int = 500_000,
        max_buffered_rows: int = 1_000_000,
        compression: str = "zstd",
        batch_size: int = 65_536,
        private_suffixes: bool = True,
    ) -> None:
        self.path = Path(path)
        self.events_dir = self.path / "events"
        self.rows_per_file = rows_per_file
        self.max_buffered_rows = max_buffered_rows
        self.compression = compression
        self.batch_size = batch_size
        self.splitter = DomainSplitter(private_suffixes=private_suffixes)

    @classmethod
    def from_settings(cls, settings: Any, path: str | os.PathLike[str] | None = None) -> Lake:
        """Build a lake from a :class:`dnsieve.config.Settings` tree."""
        return cls(
            path if path is not None else settings.lake.path,
            rows_per_file=settings.lake.rows_per_file,
            max_buffered_rows=settings.lake.max_buffered_rows,
            compression=settings.lake.compression,
            batch_size=settings.ingest.batch_size,
            private_suffixes=settings.domains.private_suffixes,
        )

    # ------------------------------------------------------------------ manifest
    def _connect(self) -> sqlite3.Connection:
        self.path.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path / "_manifest.sqlite", timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.executescript(_SCHEMA_SQL)
        return con

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def recover(self) -> int:
        """Delete part files of ingests that never committed; returns how many."""
        if not self.events_dir.exists():
            return 0
        with contextlib.closing(self._connect()) as con:
            committed = {r[0] for r in con.execute("SELECT ingest_id FROM ingests")}
        removed = 0
        for f in self.events_dir.rglob("part-*"):
            name = f.name
            iid = name[len("part-") :].split("-", 5)
            ingest_id = "-".join(iid[:5]) if len(iid) >= 5 else ""
            if name.endswith(".tmp") or ingest_id not in committed:
                f.unlink(missing_ok=True)
                removed += 1
        return removed

    def sources(self) -> list[dict[str, Any]]:
        """Every ingested source, newest first (for reports and the web UI)."""
        if not (self.path / "_manifest.sqlite").exists():
            return []
        with contextlib.closing(self._connect()) as con:
            con.row_factory = sqlite3.Row
            rows = con.execute("SELECT * FROM sources ORDER BY ingested_at DESC").fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["rejects"] = json.loads(d["rejects"])
            out.append(d)
        return out

    # ------------------------------------------------------------------ ingest
    def ingest_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        fmt: str = "auto",
        options: dict[str, Any] | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> list[FileReport]:
        """Ingest files and directories; returns one report per input file.

        ``on_progress(path, raw_bytes_done, rows_so_far)`` is called after each
        batch, for progress bars.
        """
        reports: list[FileReport] = []
        with self._writer_lock():
            self.recover()
            for p in iter_input_files(paths):
                reports.append(self._ingest_one(p, fmt, options or {}, on_progress))
        return reports

    def _ingest_one(
        self,
        path: Path,
        fmt: str,
        options: dict[str, Any],
        on_progress: Callable[[str, int, int], None] | None,
    ) -> FileReport:
        t0 = time.perf_counter()
        rep = FileReport(path=str(path), status="ingested")
        if not path.is_file():
            rep.status, rep.error = "error", "no such file"
            return rep
        with contextlib.closing(self._connect()) as con:
            sizes = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT size FROM sources WHERE size < ?", (path.stat().st_size,)
                )
            ]
            digest, size, prefixes = fingerprint(path, sizes)
            rep.sha256 = digest
            seen = con.execute("SELECT format FROM sources WHERE sha256 = ?", (digest,)).fetchone()
            if seen:
                rep.status, rep.format = "unchanged", seen[0]
                rep.seconds = time.perf_counter() - t0
                return rep
            skip = 0
            for s in sorted(prefixes, reverse=True):
                row = con.execute(
                    "SELECT decoded_size, format FROM sources WHERE sha256 = ? AND size = ?",
                    (prefixes[s], s),
                ).fetchone()
                if row:
                    skip = int(row[0])
                    if fmt == "auto":
                        fmt = row[1]
                    rep.status = "grown"
                    break
        if size == 0:
            rep.status, rep.format = "empty", fmt if fmt != "auto" else ""
            rep.error = "empty file"
            self._commit(str(uuid.uuid4()), rep, size, 0, None)
            rep.seconds = time.perf_counter() - t0
            return rep

        ingest_id = str(uuid.uuid4())
        stats = IngestStats(source=str(path))
        ctx = ReadContext(
            sensor=str(path),
            stats=stats,
            batch_size=self.batch_size,
            skip_bytes=skip,
            splitter=self.splitter,
            options=options,
        )
        writer = _PartitionWriter(
            self.events_dir, ingest_id, self.rows_per_file, self.max_buffered_rows, self.compression
        )
        try:
            for batch in read_file(path, fmt, ctx):
                writer.add(batch)
                if on_progress is not None:
                    on_progress(str(path), ctx.raw_pos(), writer.rows + writer.buffered)
            writer.close()
        except BaseException:
            # Leave no half-ingested rows behind: uncommitted parts are removed.
            for f in writer.written:
                f.unlink(missing_ok=True)
            raise
        rep.format = stats.format
        rep.records_read = stats.records_read
        rep.rows_written = writer.rows
        rep.rejects = dict(stats.rejects)
        rep.skipped = dict(stats.skipped)
        rep.reject_examples = stats.examples
        rep.error = stats.error
        if stats.error and writer.rows == 0:
            rep.status = "error"
        elif writer.rows == 0 and stats.skipped and not stats.rejects:
            rep.status = "skipped"
        decoded = max(stats.bytes_consumed, skip)
        self._commit(ingest_id, rep, size, decoded, writer)
        rep.seconds = time.perf_counter() - t0
        return rep

    def _commit(
        self,
        ingest_id: str,
        rep: FileReport,
        size: int,
        decoded: int,
        writer: _PartitionWriter | None,
    ) -> None:
        if rep.status == "error" and rep.format in ("", "unknown"):
            # Unrecognised content is not remembered: a later --format may read it.
            return
        with contextlib.closing(self._connect()) as con, con:
            con.execute(
                "INSERT OR REPLACE INTO sources VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    rep.sha256,
                    size,
                    decoded,
                    rep.path,
                    rep.format,
                    ingest_id,
                    rep.records_read,
                    rep.rows_written,
                    json.dumps(rep.rejects),
                    time.time(),
                ),
            )
            con.execute(
                "INSERT INTO ingests VALUES (?,?,?,?,?)",
                (
                    ingest_id,
                    time.time(),
                    rep.rows_written,
                    str(writer.min_ts) if writer and writer.min_ts else None,
                    str(writer.max_ts) if writer and writer.max_ts else None,
                ),
            )

    # ------------------------------------------------------------------ read
    def files(self) -> list[Path]:
        """Committed part files."""
        if not self.events_dir.exists():
            return []
        return sorted(self.events_dir.rglob("part-*.parquet"))

    def scan(self, since: datetime | None = None, until: datetime | None = None) -> pl.LazyFrame:
        """Lazy frame of canonical events, optionally restricted to [since, until)."""
        files = self.files()
        if not files:
            return pl.LazyFrame(schema=_EVENT_SCHEMA)
        lf = pl.scan_parquet(
            [str(f) for f in files],
            hive_partitioning=False,
            schema=_EVENT_SCHEMA,
        )
        if since is not None:
            lf = lf.filter(pl.col("ts") >= _utc(since))
        if until is not None:
            lf = lf.filter(pl.col("ts") < _utc(until))
        return lf.select(list(EVENT_COLUMNS))

    def time_range(self) -> tuple[datetime, datetime] | None:
        """(first, last) event time in the lake, or None when empty."""
        if not self.files():
            return None
        row = (
            self.scan()
            .select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
            .collect()
        )
        lo, hi = row.item(0, "lo"), row.item(0, "hi")
        return None if lo is None else (lo, hi)


def _utc(t: datetime) -> datetime:

    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
