"""The lake: an append-only Parquet dataset of canonical DNS events.

Layout::

    LAKE/
      events/date=2024-04-21/hour=21/part-<commit id>-<n>.parquet
      _manifest.sqlite     # what has been ingested, and the committed part files
      .lock                # one writer at a time

**Idempotence.**  Every input file is fingerprinted by the SHA-256 of its raw
bytes.  Re-ingesting content already in the manifest is a no-op, whatever the
file is called.  When a file's first N bytes hash to an entry of size N (the
log has grown since it was read) only the new records are ingested.

**Readers see only committed rows.**  The manifest's ``parts`` table is the
list of part files a reader may read; :meth:`Lake.files` and
:meth:`Lake.scan` read that list and never glob the directory.  A writer
writes and fsyncs its part files first and then commits their names with the
``sources`` rows of the files they came from, in one SQLite transaction, so a
crash (even ``kill -9``) at any point leaves readers with exactly the rows of
the commits that completed.  Part files no commit lists are deleted the next
time the lake is opened for writing.

**Small inputs share a commit.**  Consecutive input files are written through
one partition writer and committed together (up to ``commit_rows`` rows or
``commit_files`` files), so 5,000 tiny logs become a few part files and a few
commits, not 5,000 of each.  :meth:`Lake.compact` (``dnsieve lake compact``)
merges small part files of a partition into one; an ingest does so by itself
when a partition it wrote holds ``compact_min_parts`` small parts or more.
Replaced files leave the manifest in the same transaction that lists their
replacement and are deleted from disk ``retire_grace_s`` seconds later, so a
reader that listed them just before keeps working.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import logging
import os
import sqlite3
import stat
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dnsieve.domains import DomainSplitter
from dnsieve.ingest import IngestStats, ReadContext, iter_input_files, read_file
from dnsieve.schema import DNS_EVENT, EVENT_COLUMNS

__all__ = [
    "DELTA_APP_PREFIX",
    "DELTA_EVENT",
    "DeltaLake",
    "FileReport",
    "Lake",
    "exit_status",
    "fingerprint",
    "open_input",
    "open_lake",
]

log = logging.getLogger(__name__)

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
CREATE TABLE IF NOT EXISTS parts (
    path TEXT PRIMARY KEY,          -- relative to the lake root
    ingest_id TEXT NOT NULL,        -- the commit (ingest or compaction) that wrote it
    date TEXT NOT NULL,
    hour INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    committed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS parts_partition ON parts(date, hour);
CREATE TABLE IF NOT EXISTS retired (
    path TEXT PRIMARY KEY,
    retired_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

#: ``FileReport.status`` values that mean the input could not be read at all.
FAILED = "error"


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


def fingerprint(
    path: Path | BinaryIO, prefix_sizes: Iterable[int] = ()
) -> tuple[str, int, dict[int, str]]:
    """SHA-256 of a file (a path or an open binary file), plus the digests of its
    prefixes of the given sizes.

    One pass over the file; prefix digests come from copies of the running
    hash at each boundary.  An open file is read from where it stands and left
    at its end.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"abcdef")
    >>> full, size, pre = fingerprint(Path(f.name), [3])
    >>> size, pre[3] == hashlib.sha256(b"abc").hexdigest()
    (6, True)
    >>> os.unlink(f.name)
    """
    if isinstance(path, Path):
        with open(path, "rb") as own:
            return fingerprint(own, prefix_sizes)
    fh = path
    bounds = sorted({s for s in prefix_sizes if s > 0})
    h = hashlib.sha256()
    prefixes: dict[int, str] = {}
    pos = 0
    bi = 0
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


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _os_reason(exc: OSError, path: Path) -> str:
    """A short, true reason for an ``OSError`` on an input path."""
    import errno

    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.ELOOP:
        return "symlink loop"
    if code == errno.ENOENT:
        return "broken symlink" if os.path.islink(path) else "no such file"
    if code == errno.ENXIO:
        return "not a regular file (a socket)"
    if code == errno.EISDIR:
        return "not a regular file (a directory)"
    return f"cannot read: {exc.strerror or exc}"


def open_input(path: Path) -> tuple[BinaryIO | None, str | None]:
    """Open an input file for reading, or say in a few words why not.

    Returns ``(file, None)`` for a readable regular file, else ``(None,
    reason)``: ``"permission denied"``, ``"no such file"`` (vanished),
    ``"broken symlink"``, ``"symlink loop"``, ``"not a regular file (a
    FIFO)"``, ... .  Never blocks: a FIFO, socket or device is refused before
    it is read (the file is opened non-blocking and checked with ``fstat``,
    so a path swapped for a FIFO after the first check is refused too).

    >>> open_input(Path("/nonexistent/x"))
    (None, 'no such file')
    >>> open_input(Path("/dev/null"))
    (None, 'not a regular file (a character device)')
    """
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            os.listdir(path)  # a directory here is one that could not be walked
        if not stat.S_ISREG(st.st_mode):
            return None, f"not a regular file ({_kind(st.st_mode)})"
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return None, _os_reason(exc, path)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None, f"not a regular file ({_kind(st.st_mode)})"
        return os.fdopen(fd, "rb"), None
    except OSError as exc:
        os.close(fd)
        return None, _os_reason(exc, path)


def exit_status(reports: list[FileReport]) -> int:
    """The process exit status of an ingest: 0 every input was read (records it
    rejected inside a file do not count), 3 some inputs failed and others were
    read, 1 every input failed (or there was none).

    >>> exit_status([FileReport("a", "ingested"), FileReport("b", "unchanged")])
    0
    >>> exit_status([FileReport("a", "ingested"), FileReport("b", "error")])
    3
    >>> exit_status([FileReport("b", "error")])
    1
    """
    failed = sum(r.status == FAILED for r in reports)
    if not reports or failed == len(reports):
        return 1
    return 3 if failed else 0


@dataclass
class _Part:
    path: Path
    date: str
    hour: int
    rows: int


def _write_part(path: Path, table: pa.Table, compression: str | None) -> None:
    """Write ``table`` to ``path`` through a temporary name (not fsynced: see
    :meth:`_PartitionWriter.close`)."""
    tmp = path.with_suffix(".parquet.tmp")
    # Min/max statistics only where readers prune with them: ``ts`` (every time
    # range is a filter on it).  Over names and addresses in arrival order they
    # prune nothing and cost a third of the encoding.
    stats = ["ts"] if "ts" in table.schema.names else True
    pq.write_table(
        table, tmp, compression=compression, row_group_size=128 * 1024, write_statistics=stats
    )
    os.replace(tmp, path)


def _fsync_path(path: Path) -> None:
    """fsync a file, or a directory (so that a rename in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Threads that fsync a commit's part files and directories at once (the
#: waits overlap; the work is the disk's).
_SYNC_THREADS = 8


def _fsync_all(paths: Iterable[Path]) -> None:
    todo = list(dict.fromkeys(paths))
    if len(todo) <= 1:
        for p in todo:
            _fsync_path(p)
        return
    with ThreadPoolExecutor(min(_SYNC_THREADS, len(todo)), "lake-fsync") as pool:
        list(pool.map(_fsync_path, todo))


class _PartitionWriter:
    """Buffers batches per (date, hour) and writes bounded Parquet part files.

    Part files are encoded and written by a background thread (PyArrow
    releases the GIL) while the caller decodes the next input, at most
    ``max_pending`` of them in flight so memory stays bounded.  Nothing is
    fsynced until :meth:`close`, which waits for the writes and then fsyncs
    every part file of the commit and their directories together, once per
    commit: a micro-batch spanning many hours no longer pays one serial fsync
    per hour.  Readers never see a part before the manifest lists it, and the
    manifest lists it only after :meth:`close` returned.
    """

    #: part files being written in the background at once (each holds one table)
    max_pending = 2

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
        #: part files written and fsynced (complete after :meth:`close`)
        self.written: list[_Part] = []
        self.rows = 0
        self.min_ts: Any = None
        self.max_ts: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[_Part, Future[None]]] = deque()
        self._unsynced: list[_Part] = []

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        ts = batch.column("ts")
        lo, hi = pc.min_max(ts).values()
        if self.min_ts is None or lo.as_py() < self.min_ts:
            self.min_ts = lo.as_py()
        if self.max_ts is None or hi.as_py() > self.max_ts:
            self.max_ts = hi.as_py()
        # Partition keys: date string and hour, computed in Arrow.  A batch that
        # spans several hours is ordered by hour once (a stable sort keeps each
        # hour's rows in input order) and cut into runs, instead of being
        # filtered once per hour.
        hours = pc.cast(pc.floor_temporal(ts, unit="hour"), pa.int64())
        h_lo, h_hi = (v.as_py() for v in pc.min_max(hours).values())
        if h_lo == h_hi:
            runs: list[tuple[int, pa.RecordBatch]] = [(h_lo, batch)]
        else:
            order = pc.sort_indices(hours)
            ordered = batch.take(order)
            h_sorted = hours.take(order).to_numpy()
            cuts = np.flatnonzero(np.diff(h_sorted)) + 1
            bounds = [0, *cuts.tolist(), len(h_sorted)]
            runs = [
                (int(h_sorted[a]), ordered.slice(a, b - a)) for a, b in itertools.pairwise(bounds)
            ]
        for h, part in runs:
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

    def _next_part(self, key: tuple[str, int], rows: int) -> _Part:
        date, hour = key
        d = self.root / f"date={date}" / f"hour={hour:02d}"
        d.mkdir(parents=True, exist_ok=True)
        self.seq += 1
        return _Part(d / f"part-{self.ingest_id}-{self.seq:05d}.parquet", date, hour, rows)

    def write_table(self, key: tuple[str, int], table: pa.Table) -> None:
        """Write ``table`` as one part file of partition ``key`` now (tmp, fsync, rename)."""
        part = self._next_part(key, table.num_rows)
        _write_part(part.path, table, self.compression)
        _fsync_all([part.path, part.path.parent])
        self.written.append(part)
        self.rows += table.num_rows

    def submit_table(self, key: tuple[str, int], table: pa.Table) -> None:
        """Write ``table`` as one part file of partition ``key`` in the background;
        :meth:`close` waits for it and makes it durable."""
        part = self._next_part(key, table.num_rows)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="lake-writer")
        while len(self._pending) >= self.max_pending:
            self._collect_one()
        self._pending.append(
            (part, self._pool.submit(_write_part, part.path, table, self.compression))
        )
        self.rows += table.num_rows

    def _collect_one(self) -> None:
        part, fut = self._pending.popleft()
        fut.result()  # a failed write raises here, in the caller's thread
        self._unsynced.append(part)

    def _flush(self, key: tuple[str, int]) -> None:
        batches = self.buffers.pop(key, [])
        n = self.counts.pop(key, 0)
        if not batches:
            return
        self.buffered -= n
        self.submit_table(key, pa.Table.from_batches(batches, schema=DNS_EVENT))

    def close(self) -> None:
        """Write what is buffered, wait for the background writes and fsync them all."""
        for key in list(self.buffers):
            self._flush(key)
        while self._pending:
            self._collect_one()
        self._shutdown()
        if self._unsynced:
            parts, self._unsynced = self._unsynced, []
            _fsync_all([*(p.path for p in parts), *(p.path.parent for p in parts)])
            self.written.extend(parts)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def discard(self) -> None:
        """Delete what was written (the commit will not happen)."""
        for part, fut in self._pending:
            with contextlib.suppress(Exception):
                fut.result()
            part.path.with_suffix(".parquet.tmp").unlink(missing_ok=True)
            part.path.unlink(missing_ok=True)
        self._pending.clear()
        self._shutdown()
        for part in [*self.written, *self._unsynced]:
            part.path.unlink(missing_ok=True)
        self.written.clear()
        self._unsynced.clear()
        self.buffers.clear()
        self.counts.clear()
        self.buffered = 0


@dataclass
class _Batch:
    """Input files written through one partition writer and committed together."""

    writer: _PartitionWriter
    #: (report, raw size, decoded size) of each file in the commit
    sources: list[tuple[FileReport, int, int]] = field(default_factory=list)
    #: (sha256, size) of every file in the batch, for idempotence before the commit
    digests: dict[tuple[str, int], FileReport] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.writer.rows + self.writer.buffered


def _partition_key(hour_us: int) -> tuple[str, int]:
    secs = hour_us // 1_000_000
    t = time.gmtime(secs)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", t.tm_hour)


def _part_ingest_id(name: str) -> str:
    iid = name[len("part-") :].split("-", 5)
    return "-".join(iid[:5]) if len(iid) >= 5 else ""


#: seconds between two orphan sweeps (:meth:`Lake.recover`) of a stream's appends
_STREAM_SWEEP_S = 60.0


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
        max_record_bytes: int = 65_536,
        commit_rows: int = 250_000,
        commit_files: int = 2_000,
        compact_min_parts: int = 16,
        retire_grace_s: float = 600.0,
    ) -> None:
        self.path = Path(path)
        self.events_dir = self.path / "events"
        self.rows_per_file = rows_per_file
        self.max_buffered_rows = max_buffered_rows
        self.compression = compression
        self.batch_size = batch_size
        self.max_record_bytes = max_record_bytes
        self.commit_rows = commit_rows
        self.commit_files = commit_files
        self.compact_min_parts = compact_min_parts
        self.retire_grace_s = retire_grace_s
        self.splitter = DomainSplitter(private_suffixes=private_suffixes)
        self._swept: float | None = None  # when append_stream last swept orphans

    @classmethod
    def from_settings(cls, settings: Any, path: str | os.PathLike[str] | None = None) -> Lake:
        """Build a lake from a :class:`dnsieve.config.Settings` tree (``[lake] format``)."""
        if cls is Lake and getattr(settings.lake, "format", "parquet") == "delta":
            return DeltaLake.from_settings(settings, path)
        return cls(
            path if path is not None else settings.lake.path,
            rows_per_file=settings.lake.rows_per_file,
            max_buffered_rows=settings.lake.max_buffered_rows,
            compression=settings.lake.compression,
            batch_size=settings.ingest.batch_size,
            private_suffixes=settings.domains.private_suffixes,
            max_record_bytes=settings.ingest.max_record_bytes,
            commit_rows=settings.lake.commit_rows,
            commit_files=settings.lake.commit_files,
            compact_min_parts=settings.lake.compact_min_parts,
            retire_grace_s=settings.lake.retire_grace_seconds,
        )

    @property
    def _small_rows(self) -> int:
        """Part files below this many rows are "small" (candidates for compaction)."""
        return max(1, self.rows_per_file // 4)

    # ------------------------------------------------------------------ manifest
    def _connect(self) -> sqlite3.Connection:
        self.path.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path / "_manifest.sqlite", timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.executescript(_SCHEMA_SQL)
        self._migrate(con)
        return con

    def _migrate(self, con: sqlite3.Connection) -> None:
        """List the part files of a lake written before the manifest listed them.

        Such a lake's committed files are those whose name carries a committed
        ingest id (the rule its writer's recovery used).
        """
        if con.execute("SELECT 1 FROM meta WHERE key = 'parts_listed'").fetchone():
            return
        with con:
            con.execute("BEGIN IMMEDIATE")
            if con.execute("SELECT 1 FROM meta WHERE key = 'parts_listed'").fetchone():
                return
            committed = {r[0] for r in con.execute("SELECT ingest_id FROM ingests")}
            rows = []
            if committed and self.events_dir.is_dir():
                for f in sorted(self.events_dir.rglob("part-*.parquet")):
                    iid = _part_ingest_id(f.name)
                    key = _dir_partition(f)
                    if iid not in committed or key is None:
                        continue
                    n = pq.read_metadata(f).num_rows
                    rel = f.relative_to(self.path).as_posix()
                    rows.append((rel, iid, key[0], key[1], n, f.stat().st_size, time.time()))
            con.executemany("INSERT OR IGNORE INTO parts VALUES (?,?,?,?,?,?,?)", rows)
            con.execute("INSERT INTO meta VALUES ('parts_listed', '1')")

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def recover(self, con: sqlite3.Connection | None = None) -> int:
        """Delete part files no commit lists, and retired files past their grace
        period; returns how many files were deleted.  Call with the writer lock held
        (``ingest_files`` and ``compact`` do)."""
        if con is None:
            with contextlib.closing(self._connect()) as own:
                return self.recover(own)
        listed = {r[0] for r in con.execute("SELECT path FROM parts")}
        cutoff = time.time() - self.retire_grace_s
        expired = [
            r[0] for r in con.execute("SELECT path FROM retired WHERE retired_at <= ?", (cutoff,))
        ]
        grace = {r[0] for r in con.execute("SELECT path FROM retired")} - set(expired)
        removed = 0
        for rel in expired:
            (self.path / rel).unlink(missing_ok=True)
            removed += 1
        with con:
            con.executemany("DELETE FROM retired WHERE path = ?", [(r,) for r in expired])
        if not self.events_dir.exists():
            return removed
        for f in self.events_dir.rglob("part-*"):
            rel = f.relative_to(self.path).as_posix()
            if rel in listed or rel in grace:
                continue
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

        A file that cannot be read (permission denied, vanished, a FIFO, socket
        or device, a symlink loop) is one report with status ``error`` and its
        reason; the other files are still ingested.  ``on_progress(path,
        raw_bytes_done, rows_so_far)`` is called after each batch, for progress
        bars.
        """
        reports: list[FileReport] = []
        self.splitter.warm()  # the suffix list loads while the inputs are hashed
        with self._writer_lock(), contextlib.closing(self._connect()) as con:
            self.recover(con)
            batch = self._new_batch()
            try:
                for p in iter_input_files(paths):
                    rep = self._ingest_one(con, batch, p, fmt, options or {}, on_progress)
                    reports.append(rep)
                    if batch.rows >= self.commit_rows or len(batch.sources) >= self.commit_files:
                        self._commit(con, batch)
                        batch = self._new_batch()
                self._commit(con, batch)
            except BaseException:
                # Leave no half-written commit behind: its part files are removed
                # (and, should this process die first, the next writer removes them).
                batch.writer.discard()
                raise
        return reports

    def stream_positions(self, prefix: str) -> dict[str, int]:
        """The positions a stream has appended up to (see :meth:`append_stream`).

        Keys are the stream's own (``<stream>/<partition>``) without ``prefix``;
        the value is the first position *not* yet in the lake.
        """
        if not (self.path / "_manifest.sqlite").exists():
            return {}
        tag = f"stream:{prefix}"
        with contextlib.closing(self._connect()) as con:
            rows = con.execute(
                "SELECT key, value FROM meta WHERE key >= ? AND key < ?", (tag, tag + "\uffff")
            ).fetchall()
        return {k[len(tag) :]: int(v) for k, v in rows}

    def append_stream(
        self, batches: Iterable[pa.RecordBatch], prefix: str, positions: dict[str, int]
    ) -> int:
        """Append canonical ``batches`` of a stream and its new ``positions`` in one commit.

        Idempotence for streams (ARCHITECTURE §1): the caller drops records
        below :meth:`stream_positions` before calling, and the part files and
        the advanced positions are listed in one SQLite transaction, so a
        replayed offset range writes nothing twice, and a crash leaves either
        both or neither.  Returns the rows written.
        """
        with self._writer_lock(), contextlib.closing(self._connect()) as con:
            # A stream appends every few seconds: walking the whole lake for orphans
            # each time would cost more as the lake grows.  Orphans are never read
            # (readers go by the manifest), so sweeping once a minute is enough.
            now = time.monotonic()
            if self._swept is None or now - self._swept >= _STREAM_SWEEP_S:
                self.recover(con)
                self._swept = now
            writer = self._new_batch().writer
            try:
                for b in batches:
                    writer.add(b)
                writer.close()
                now = time.time()
                with con:
                    if writer.written:
                        con.execute(
                            "INSERT INTO ingests VALUES (?,?,?,?,?)",
                            (
                                writer.ingest_id,
                                now,
                                writer.rows,
                                str(writer.min_ts) if writer.min_ts else None,
                                str(writer.max_ts) if writer.max_ts else None,
                            ),
                        )
                        con.executemany(
                            "INSERT INTO parts VALUES (?,?,?,?,?,?,?)",
                            [self._part_row(p, writer.ingest_id, now) for p in writer.written],
                        )
                    con.executemany(
                        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        [(f"stream:{prefix}{k}", str(int(v))) for k, v in positions.items()],
                    )
            except BaseException:
                writer.discard()
                raise
            return writer.rows

    def _new_batch(self) -> _Batch:
        return _Batch(
            _PartitionWriter(
                self.events_dir,
                str(uuid.uuid4()),
                self.rows_per_file,
                self.max_buffered_rows,
                self.compression,
            )
        )

    def _ingest_one(
        self,
        con: sqlite3.Connection,
        batch: _Batch,
        path: Path,
        fmt: str,
        options: dict[str, Any],
        on_progress: Callable[[str, int, int], None] | None,
    ) -> FileReport:
        t0 = time.perf_counter()
        rep = FileReport(path=str(path), status="ingested")
        fh, why = open_input(path)
        if fh is None:
            rep.status, rep.error = FAILED, why
            rep.seconds = time.perf_counter() - t0
            return rep
        with fh:
            return self._ingest_open(con, batch, path, fh, rep, fmt, options, on_progress, t0)

    def _ingest_open(
        self,
        con: sqlite3.Connection,
        batch: _Batch,
        path: Path,
        fh: BinaryIO,
        rep: FileReport,
        fmt: str,
        options: dict[str, Any],
        on_progress: Callable[[str, int, int], None] | None,
        t0: float,
    ) -> FileReport:
        size_now = os.fstat(fh.fileno()).st_size
        sizes = {
            r[0]
            for r in con.execute("SELECT DISTINCT size FROM sources WHERE size < ?", (size_now,))
        }
        pending = {s for (_, s) in batch.digests if s < size_now}
        try:
            digest, size, prefixes = fingerprint(fh, sizes | pending)
        except OSError as exc:  # an I/O error half-way through the file
            rep.status, rep.error = FAILED, _os_reason(exc, path)
            rep.seconds = time.perf_counter() - t0
            return rep
        rep.sha256 = digest
        if any((prefixes.get(s), s) in batch.digests for s in pending):
            # This file is a grown copy of one in the open batch: commit that first
            # so the manifest can say which bytes are already in.
            self._commit(con, batch)
            self._reset(batch)
        earlier = batch.digests.get((digest, size))
        seen = con.execute("SELECT format FROM sources WHERE sha256 = ?", (digest,)).fetchone()
        if seen or earlier is not None:
            rep.status, rep.format = "unchanged", seen[0] if seen else earlier.format  # type: ignore[union-attr]
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
            self._add_source(batch, rep, size, 0)
            rep.seconds = time.perf_counter() - t0
            return rep

        fh.seek(0)
        stats = IngestStats(source=str(path))
        ctx = ReadContext(
            sensor=str(path),
            stats=stats,
            batch_size=self.batch_size,
            skip_bytes=skip,
            splitter=self.splitter,
            options=options,
            max_record_bytes=self.max_record_bytes,
        )
        writer = batch.writer
        rows_before = batch.rows
        for b in read_file(path, fmt, ctx, raw=fh):
            writer.add(b)
            rep.rows_written = batch.rows - rows_before
            if on_progress is not None:
                on_progress(str(path), ctx.raw_pos(), rep.rows_written)
        rep.format = stats.format
        rep.records_read = stats.records_read
        rep.rows_written = batch.rows - rows_before
        rep.rejects = dict(stats.rejects)
        rep.skipped = dict(stats.skipped)
        rep.reject_examples = stats.examples
        rep.error = stats.error
        if stats.error and rep.rows_written == 0:
            rep.status = FAILED
        elif rep.rows_written == 0 and stats.skipped and not stats.rejects:
            rep.status = "skipped"
        self._add_source(batch, rep, size, max(stats.bytes_consumed, skip))
        rep.seconds = time.perf_counter() - t0
        return rep

    @staticmethod
    def _add_source(batch: _Batch, rep: FileReport, size: int, decoded: int) -> None:
        if rep.status == FAILED and rep.format in ("", "unknown"):
            # Unrecognised content is not remembered: a later --format may read it.
            return
        batch.sources.append((rep, size, decoded))
        batch.digests[(rep.sha256, size)] = rep

    def _reset(self, batch: _Batch) -> None:
        fresh = self._new_batch()
        batch.writer, batch.sources, batch.digests = fresh.writer, [], {}

    def _commit(self, con: sqlite3.Connection, batch: _Batch) -> None:
        """Write out the batch's buffers, then list its parts and sources in one transaction."""
        writer = batch.writer
        writer.close()
        if not batch.sources and not writer.written:
            return
        now = time.time()
        with con:
            con.executemany(
                "INSERT OR REPLACE INTO sources VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        rep.sha256,
                        size,
                        decoded,
                        rep.path,
                        rep.format,
                        writer.ingest_id,
                        rep.records_read,
                        rep.rows_written,
                        json.dumps(rep.rejects),
                        now,
                    )
                    for rep, size, decoded in batch.sources
                ],
            )
            con.execute(
                "INSERT INTO ingests VALUES (?,?,?,?,?)",
                (
                    writer.ingest_id,
                    now,
                    writer.rows,
                    str(writer.min_ts) if writer.min_ts else None,
                    str(writer.max_ts) if writer.max_ts else None,
                ),
            )
            con.executemany(
                "INSERT INTO parts VALUES (?,?,?,?,?,?,?)",
                [self._part_row(p, writer.ingest_id, now) for p in writer.written],
            )
        touched = {(p.date, p.hour) for p in writer.written}
        writer.written = []
        if self.compact_min_parts > 0:
            for key in sorted(touched):
                n_small = con.execute(
                    "SELECT count(*) FROM parts WHERE date = ? AND hour = ? AND rows < ?",
                    (key[0], key[1], self._small_rows),
                ).fetchone()[0]
                if n_small >= self.compact_min_parts:
                    try:
                        self._compact_partition(con, key)
                    except (OSError, pa.ArrowException) as exc:
                        # The ingest is committed; a part that cannot be read (disk
                        # error, a file damaged outside dnsieve) must not fail it or
                        # every later ingest into this partition.
                        log.warning("lake %s: compaction of %s skipped: %s", self.path, key, exc)

    def _part_row(self, p: _Part, commit_id: str, now: float) -> tuple[Any, ...]:
        rel = p.path.relative_to(self.path).as_posix()
        return (rel, commit_id, p.date, p.hour, p.rows, p.path.stat().st_size, now)

    # ------------------------------------------------------------------ compaction
    def compact(self) -> dict[str, int]:
        """Merge the small part files of every partition (``dnsieve lake compact``).

        Returns ``{"partitions": ..., "parts_before": ..., "parts_after": ...,
        "failed": ...}``: a partition with an unreadable part is left as it was,
        counted in ``failed``, and the others are still compacted.
        Readers see the old files or the merged one, never both and never
        neither: the swap is one manifest transaction.
        """
        with self._writer_lock(), contextlib.closing(self._connect()) as con:
            self.recover(con)
            before = con.execute("SELECT count(*) FROM parts").fetchone()[0]
            keys = con.execute(
                "SELECT date, hour FROM parts WHERE rows < ? GROUP BY date, hour "
                "HAVING count(*) >= 2 ORDER BY date, hour",
                (self._small_rows,),
            ).fetchall()
            failed = 0
            for date, hour in keys:
                try:
                    self._compact_partition(con, (date, int(hour)))
                except (OSError, pa.ArrowException) as exc:
                    failed += 1
                    log.warning(
                        "lake %s: compaction of %s %s failed: %s", self.path, date, hour, exc
                    )
            after = con.execute("SELECT count(*) FROM parts").fetchone()[0]
        return {
            "partitions": len(keys) - failed,
            "parts_before": before,
            "parts_after": after,
            "failed": failed,
        }

    def _compact_partition(self, con: sqlite3.Connection, key: tuple[str, int]) -> None:
        small = con.execute(
            "SELECT path, rows FROM parts WHERE date = ? AND hour = ? AND rows < ? ORDER BY path",
            (key[0], key[1], self._small_rows),
        ).fetchall()
        groups: list[list[str]] = [[]]
        n = 0
        for rel, rows in small:
            if groups[-1] and n + rows > self.rows_per_file:
                groups.append([])
                n = 0
            groups[-1].append(rel)
            n += rows
        for group in groups:
            if len(group) < 2:
                continue
            writer = _PartitionWriter(
                self.events_dir,
                str(uuid.uuid4()),
                self.rows_per_file,
                self.max_buffered_rows,
                self.compression,
            )
            try:
                table = pa.concat_tables(
                    [pq.read_table(self.path / rel, schema=DNS_EVENT) for rel in group]
                )
                writer.write_table(key, table)
                now = time.time()
                with con:
                    con.executemany("DELETE FROM parts WHERE path = ?", [(r,) for r in group])
                    con.executemany(
                        "INSERT OR REPLACE INTO retired VALUES (?, ?)", [(r, now) for r in group]
                    )
                    con.executemany(
                        "INSERT INTO parts VALUES (?,?,?,?,?,?,?)",
                        [self._part_row(p, writer.ingest_id, now) for p in writer.written],
                    )
            except BaseException:
                writer.discard()
                raise
        if self.retire_grace_s <= 0:
            self.recover(con)

    # ------------------------------------------------------------------ read
    def files(self, since: datetime | None = None, until: datetime | None = None) -> list[Path]:
        """The committed part files (from the manifest, never a directory listing),
        optionally only the hour partitions that overlap [since, until)."""
        if not (self.path / "_manifest.sqlite").exists():
            return []
        with contextlib.closing(self._connect()) as con:
            rows = con.execute("SELECT path, date, hour FROM parts ORDER BY path").fetchall()
        lo = _utc(since) if since is not None else None
        hi = _utc(until) if until is not None else None
        out = []
        for rel, date, hour in rows:
            if lo is not None or hi is not None:
                h = datetime.fromisoformat(date).replace(hour=int(hour), tzinfo=UTC)
                if (lo is not None and h + timedelta(hours=1) <= lo) or (
                    hi is not None and h >= hi
                ):
                    continue
            out.append(self.path / rel)
        return out

    def committed_rows(self) -> int:
        """Rows in the committed part files (from the manifest, without reading them)."""
        if not (self.path / "_manifest.sqlite").exists():
            return 0
        with contextlib.closing(self._connect()) as con:
            return int(con.execute("SELECT coalesce(sum(rows), 0) FROM parts").fetchone()[0])

    def scan(self, since: datetime | None = None, until: datetime | None = None) -> pl.LazyFrame:
        """Lazy frame of canonical events, optionally restricted to [since, until)."""
        files = self.files(since, until)
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

    # ------------------------------------------------------------------ flows
    # Flows live beside the events in ``flows/`` (see dnsieve.ingest.flows_lake).
    @property
    def flows_dir(self) -> Path:
        """The flows dataset directory (``LAKE/flows``)."""
        return self.path / "flows"

    def ingest_flow_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        fmt: str = "auto",
        options: dict[str, Any] | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> list[FileReport]:
        """Ingest flow inputs (conn.log, flow CSV, pcaps) into ``flows/``; one report per file."""
        from dnsieve.ingest.flows_lake import ingest_flows

        return ingest_flows(self, paths, fmt, options, on_progress)

    def flow_files(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[Path]:
        """The committed flow part files overlapping [since, until)."""
        from dnsieve.ingest.flows_lake import flow_files

        return flow_files(self, since, until)

    def scan_flows(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> pl.LazyFrame:
        """Lazy frame of canonical flows (FLOW_RECORD) with ``since <= ts < until``."""
        from dnsieve.ingest.flows_lake import scan_flows

        return scan_flows(self, since, until)


def _dir_partition(f: Path) -> tuple[str, int] | None:
    """``(date, hour)`` of a part file from its ``date=``/``hour=`` directories."""
    try:
        date = f.parent.parent.name.removeprefix("date=")
        hour = int(f.parent.name.removeprefix("hour="))
        datetime.fromisoformat(date)
    except ValueError:
        return None
    return date, hour


def _utc(t: datetime) -> datetime:

    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


# ---------------------------------------------------------------------------- Delta Lake
#: the app-transaction id prefix of an ingest commit; the input's SHA-256 follows it.
DELTA_APP_PREFIX = "dnsieve-ingest-"


class DeltaLake(Lake):
    """The lake as a Delta table (``[lake] format = "delta"``), written with delta-rs.

    Layout: ``LAKE/events/`` is a Delta table partitioned by ``date`` (UTC
    ``YYYY-MM-DD``) and ``hour``, with the :data:`~dnsieve.schema.DNS_EVENT`
    columns; ``_delta_log/`` holds its commits.  Any Delta reader (Spark with
    delta-spark, Databricks, DuckDB, Polars) reads it natively.

    **Atomic, idempotent appends.**  Each input file is one Delta commit: its
    rows appear together or not at all.  The commit carries an *app
    transaction* whose id is :data:`DELTA_APP_PREFIX` + the SHA-256 of the
    file's bytes, so re-ingesting content already committed (under any name)
    is a no-op; a writer lock (``LAKE/.lock``) makes the check and the append
    one step for concurrent writers on one machine, and delta-rs's optimistic
    concurrency keeps concurrent appends from several machines consistent.
    **Grown logs resume.**  Each commit also records the input's size and
    how many of its (decoded) bytes were read.  A log that has grown since it
    was ingested (its first ``size`` bytes hash to a committed input) is read
    from where that commit stopped, so only the new records are appended, as
    in the Parquet lake; the grown file's own digest is the new commit's app
    transaction.

    **Time travel.**  ``DeltaLake(path, version=3)`` (or ``as_of=datetime``)
    reads the table as of that commit: :meth:`files`, :meth:`scan` and every
    engine see exactly the rows of that version, so a detection can be
    reproduced as it was.  :meth:`history` lists the versions.

    Engines read the table through :meth:`files` (the table's file list at the
    version), so the Spark engine needs no delta-spark JARs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        version: int | None = None,
        as_of: datetime | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, **kwargs)
        if version is not None and as_of is not None:
            raise ValueError("give a Delta version or an as-of time, not both")
        self.version = version
        self.as_of = as_of

    # ------------------------------------------------------------------ reading
    def table(self) -> Any:
        """The :class:`deltalake.DeltaTable` at this lake's version (None when not created)."""
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(str(self.events_dir)):
            return None
        dt = DeltaTable(str(self.events_dir), version=self.version)
        if self.as_of is not None:
            dt.load_as_version(_utc(self.as_of))
        return dt

    def files(self, since: datetime | None = None, until: datetime | None = None) -> list[Path]:
        """The table's data files at this version, pruned to the hours overlapping [since, until)."""
        dt = self.table()
        if dt is None:
            return []
        actions = pl.DataFrame(dt.get_add_actions(flatten=True))  # Arrow C stream
        lo = _utc(since) if since is not None else None
        hi = _utc(until) if until is not None else None
        out = []
        for rel, date, hour in actions.select(
            "path", "partition.date", "partition.hour"
        ).iter_rows():
            if lo is not None or hi is not None:
                h = datetime.fromisoformat(str(date)).replace(hour=int(hour), tzinfo=UTC)
                if (lo is not None and h + timedelta(hours=1) <= lo) or (
                    hi is not None and h >= hi
                ):
                    continue
            out.append(self.events_dir / rel)
        return sorted(out)

    def committed_rows(self) -> int:
        """Rows in the table at this version (from the log's file statistics)."""
        dt = self.table()
        if dt is None:
            return 0
        actions = pl.DataFrame(dt.get_add_actions(flatten=True))  # Arrow C stream
        return int(actions.get_column("num_records").sum()) if actions.height else 0

    def history(self) -> list[dict[str, Any]]:
        """The table's commits, newest first: version, timestamp, operation, source file."""
        dt = self.table()
        return [] if dt is None else list(dt.history())

    def sources(self) -> list[dict[str, Any]]:
        """The ingested inputs, oldest first, from the commits' metadata."""
        out = []
        for c in reversed(self.history()):
            if "dnsieve.sha256" in c:
                out.append(
                    {
                        "sha256": c["dnsieve.sha256"],
                        "path": c.get("dnsieve.source", ""),
                        "format": c.get("dnsieve.format", ""),
                        "rows_written": int(c.get("dnsieve.rows", 0)),
                        "version": c.get("version"),
                    }
                )
        return out

    def _committed_inputs(self) -> dict[tuple[str, int], tuple[int, str]]:
        """``(sha256, size) -> (bytes read, format)`` of every committed input that
        recorded its size (commits written before sizes were recorded cannot be resumed)."""
        out: dict[tuple[str, int], tuple[int, str]] = {}
        for c in self.history():
            sha, size, read = (
                c.get("dnsieve.sha256"),
                c.get("dnsieve.size"),
                c.get("dnsieve.decoded"),
            )
            if sha and size is not None and read is not None:
                out[(str(sha), int(size))] = (int(read), str(c.get("dnsieve.format", "")))
        return out

    def compact(self) -> dict[str, int]:
        """Compact small files with Delta's OPTIMIZE (a new version; old ones stay readable)."""
        dt = self.table()
        if dt is None:
            return {"partitions": 0, "parts_before": 0, "parts_after": 0, "failed": 0}
        before = len(dt.file_uris())
        metrics = dt.optimize.compact()
        after = len(self.table().file_uris())
        return {
            "partitions": int(metrics.get("partitionsOptimized", 0)),
            "parts_before": before,
            "parts_after": after,
            "failed": 0,
        }

    # ------------------------------------------------------------------ writing
    def ingest_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        fmt: str = "auto",
        options: dict[str, Any] | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> list[FileReport]:
        """Ingest files and directories, one atomic Delta commit per input file.

        Reports as :meth:`Lake.ingest_files`; content already committed is
        ``unchanged``.  Reading a time-travelled lake for writing is an error.
        """
        if self.version is not None or self.as_of is not None:
            raise ValueError("a Delta lake opened at a past version is read-only")
        reports: list[FileReport] = []
        self.splitter.warm()
        with self._writer_lock():
            for p in iter_input_files(paths):
                reports.append(self._ingest_delta(p, fmt, options or {}, on_progress))
        return reports

    def _ingest_delta(
        self,
        path: Path,
        fmt: str,
        options: dict[str, Any],
        on_progress: Callable[[str, int, int], None] | None,
    ) -> FileReport:
        from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

        t0 = time.perf_counter()
        rep = FileReport(path=str(path), status="ingested")
        fh, why = open_input(path)
        if fh is None:
            rep.status, rep.error = FAILED, why
            rep.seconds = time.perf_counter() - t0
            return rep
        with fh:
            size_now = os.fstat(fh.fileno()).st_size
            table = str(self.events_dir)
            committed = self._committed_inputs() if DeltaTable.is_deltatable(table) else {}
            try:
                digest, size, prefixes = fingerprint(
                    fh, {s for (_, s) in committed if s < size_now}
                )
            except OSError as exc:
                rep.status, rep.error = FAILED, _os_reason(exc, path)
                rep.seconds = time.perf_counter() - t0
                return rep
            rep.sha256 = digest
            app_id = DELTA_APP_PREFIX + digest
            done = DeltaTable.is_deltatable(table) and DeltaTable(table).transaction_version(app_id)
            if done is not None and done is not False:
                rep.status = "unchanged"
                rep.seconds = time.perf_counter() - t0
                return rep
            if size == 0:
                rep.status, rep.error = "empty", "empty file"
                rep.seconds = time.perf_counter() - t0
                return rep
            skip = 0
            for s in sorted(prefixes, reverse=True):
                hit = committed.get((prefixes[s], s))
                if hit is not None:  # a grown copy of a committed input: read only the rest
                    skip, known = hit
                    fmt = known if fmt == "auto" and known else fmt
                    rep.status = "grown"
                    break
            fh.seek(0)
            stats = IngestStats(source=str(path))
            ctx = ReadContext(
                sensor=str(path),
                stats=stats,
                batch_size=self.batch_size,
                skip_bytes=skip,
                splitter=self.splitter,
                options=options,
                max_record_bytes=self.max_record_bytes,
            )
            batches = []
            for b in read_file(path, fmt, ctx, raw=fh):
                batches.append(_with_partition_columns(b))
                rep.rows_written += b.num_rows
                if on_progress is not None:
                    on_progress(str(path), ctx.raw_pos(), rep.rows_written)
        rep.format = stats.format
        rep.records_read = stats.records_read
        rep.rejects = dict(stats.rejects)
        rep.skipped = dict(stats.skipped)
        rep.reject_examples = stats.examples
        rep.error = stats.error
        if rep.rows_written:
            self.events_dir.mkdir(parents=True, exist_ok=True)
            data = pa.Table.from_batches(batches, schema=DELTA_EVENT)
            write_deltalake(
                table,
                data,
                mode="append",
                partition_by=["date", "hour"],
                commit_properties=CommitProperties(
                    custom_metadata={
                        "dnsieve.sha256": digest,
                        "dnsieve.source": str(path),
                        "dnsieve.format": rep.format,
                        "dnsieve.rows": str(rep.rows_written),
                        "dnsieve.size": str(size),
                        "dnsieve.decoded": str(max(stats.bytes_consumed, skip)),
                    },
                    app_transactions=[Transaction(app_id, 1)],
                ),
            )
        elif stats.error:
            rep.status = FAILED
        elif stats.skipped and not stats.rejects:
            rep.status = "skipped"
        rep.seconds = time.perf_counter() - t0
        return rep


#: the Delta table's schema: the canonical event plus its two partition columns.
DELTA_EVENT: pa.Schema = DNS_EVENT.append(pa.field("date", pa.string())).append(
    pa.field("hour", pa.int32())
)


def _with_partition_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A canonical batch with the ``date`` and ``hour`` (UTC) partition columns appended."""
    ts = batch.column("ts")
    date = pc.strftime(ts, format="%Y-%m-%d", locale="C")
    hour = pc.cast(pc.hour(ts), pa.int32())
    cols = [*batch.columns, date, hour]
    return pa.RecordBatch.from_arrays(cols, schema=DELTA_EVENT)


def open_lake(path: str | os.PathLike[str], *, version: int | None = None, **kwargs: Any) -> Lake:
    """The lake at ``path``: a :class:`DeltaLake` when ``events/`` is a Delta table, else a :class:`Lake`.

    ``version`` (Delta only) opens the table as of that version.
    """
    p = Path(path)
    if (p / "events" / "_delta_log").is_dir():
        return DeltaLake(p, version=version, **kwargs)
    if version is not None:
        raise ValueError(f"{p} is not a Delta lake: it has no versions to travel to")
    return Lake(p, **kwargs)
