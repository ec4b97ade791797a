"""Line-oriented logs: resumable line iteration, safe text and transaction buffers.

Shared by the resolver query-log adapters (:mod:`dnsieve.ingest.querylog`) and
the Suricata EVE adapter: :func:`iter_log_lines` reads a decoded stream in
chunks and honours ``ctx.skip_bytes`` (a grown file is read from where the
last ingest stopped), :func:`safe_str` turns undecodable bytes into ``\\xNN``,
and :class:`EventBuffer` turns assembled :class:`Txn` records into canonical
batches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import polars as pl
import pyarrow as pa

from dnsieve.ingest.base import ADAPTER_DTYPES, ReadContext, canonical_batches

__all__ = ["MAX_LINE", "EventBuffer", "Txn", "iter_log_lines", "safe_str"]

#: the longest line any caller may ask for; adapters use ``ctx.max_record_bytes``
#: (``ingest.max_record_bytes``, 64 KiB by default)
MAX_LINE = 64 << 20
_CHUNK = 1 << 20

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _esc_surrogate(m: re.Match[str]) -> str:
    ch = m.group(0)
    try:
        raw = ch.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = ch.encode("utf-8", "surrogatepass")
    return "".join(f"\\x{b:02x}" for b in raw)


def safe_str(s: str) -> str:
    """Make ``s`` valid UTF-8 text: lone surrogates (undecodable bytes) become ``\\xNN``.

    >>> safe_str(b"ab\\xffc".decode("utf-8", "surrogateescape"))
    'ab\\\\xffc'
    >>> safe_str("caf\\u00e9")
    'café'
    """
    if s.isascii():
        return s
    return _SURROGATE.sub(_esc_surrogate, s)


def iter_log_lines(
    stream: BinaryIO,
    ctx: ReadContext,
    *,
    prime_bytes: int = 0,
    chunk_size: int = _CHUNK,
    max_line: int | None = None,
) -> Iterator[tuple[int, bytes, bool]]:
    """Yield ``(offset, line, terminated)`` for each line of a decoded stream.

    ``offset`` is where the line starts in the decoded stream; the newline (and
    a trailing CR) is stripped.  Lines starting before ``ctx.skip_bytes -
    prime_bytes`` are not yielded at all (callers that need a little context
    before the skip point ask for ``prime_bytes``; they must still emit nothing
    from lines before ``ctx.skip_bytes``).  ``terminated`` is False only for an
    unterminated last line.  ``ctx.stats.bytes_consumed`` is advanced past
    every terminated line; for the last one the caller decides.  Lines longer
    than ``max_line`` (default ``ctx.max_record_bytes``) are skipped and counted
    as ``line_too_long``, and never held whole in memory.
    """
    if max_line is None:
        max_line = min(ctx.max_record_bytes, MAX_LINE)
    skip_from = max(0, ctx.skip_bytes - prime_bytes)
    offset = 0  # stream offset of buf[0]
    buf = b""
    discarding = False
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        data = buf + chunk if buf else chunk
        base = offset
        pos = 0
        if discarding:
            nl = data.find(b"\n")
            if nl < 0:
                offset = base + len(data)
                buf = b""
                continue
            pos = nl + 1
            discarding = False
            ctx.stats.bytes_consumed = base + pos
        last_nl = data.rfind(b"\n")
        if last_nl >= pos:
            end = last_nl + 1
            if base + end > skip_from:
                p = pos
                for line in data[pos:last_nl].split(b"\n"):
                    start = base + p
                    p += len(line) + 1
                    if start < skip_from:
                        continue
                    if len(line) > max_line:
                        if start >= ctx.skip_bytes:
                            ctx.stats.records_read += 1
                            ctx.stats.reject("line_too_long", line[:80].decode("utf-8", "replace"))
                        continue
                    yield start, line[:-1] if line.endswith(b"\r") else line, True
            ctx.stats.bytes_consumed = base + end
            pos = end
        if len(data) - pos > max_line:
            if base + pos >= ctx.skip_bytes:
                ctx.stats.records_read += 1
                ctx.stats.reject("line_too_long", data[pos : pos + 80].decode("utf-8", "replace"))
            discarding = True
            offset = base + len(data)
            buf = b""
        else:
            buf = data[pos:]
            offset = base + pos
    if buf and not discarding:
        yield offset, buf[:-1] if buf.endswith(b"\r") else buf, False
    elif discarding:
        ctx.stats.bytes_consumed = offset


@dataclass(slots=True)
class Txn:
    """One DNS transaction being assembled from log records (times in µs UTC)."""

    ts: int | None = None
    src_ip: str | None = None
    dst_ip: str | None = None
    src_port: int | None = None
    dst_port: int | None = None
    proto: str | None = None
    trans_id: int | None = None
    qname: str | None = None
    qtype: str | None = None
    rcode: str | None = None
    answers: list[str] | None = None
    ttls: list[float | None] | None = None
    rtt: float | None = None
    aa: bool | None = None
    tc: bool | None = None
    rd: bool | None = None
    ra: bool | None = None
    query_len: int | None = None
    response_len: int | None = None
    # assembly state, not emitted
    key: Any = None
    seen: int | None = None
    chain: set[str] = field(default_factory=set)
    emit: bool = True


#: the :class:`Txn` fields emitted, with their dtypes (every adapter column but ``ts`` and
#: ``sensor``, which canonicalisation fills)
_TXN_COLUMNS: dict[str, pl.DataType] = {k: v for k, v in ADAPTER_DTYPES.items() if k != "sensor"}


def _int32(v: int | None) -> int | None:
    return v if v is not None and -(2**31) <= v < 2**31 else None


class EventBuffer:
    """Collects finished :class:`Txn` objects and turns them into canonical batches."""

    def __init__(self, ctx: ReadContext) -> None:
        self.ctx = ctx
        self.rows: list[Txn] = []

    def add(self, txn: Txn) -> None:
        if txn.emit:
            self.rows.append(txn)

    @property
    def full(self) -> bool:
        return len(self.rows) >= self.ctx.batch_size

    def flush(self) -> Iterator[pa.RecordBatch]:
        """Yield the buffered rows as canonical batches and empty the buffer."""
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        cols: dict[str, pl.Series] = {
            "ts": pl.Series("ts", [r.ts for r in rows], dtype=pl.Int64).cast(
                pl.Datetime("us", "UTC")
            )
        }
        for name, dtype in _TXN_COLUMNS.items():
            vals = [getattr(r, name) for r in rows]
            if name in ("src_port", "dst_port", "trans_id", "query_len", "response_len"):
                vals = [_int32(v) for v in vals]
            cols[name] = pl.Series(name, vals, dtype=dtype)
        yield from canonical_batches(pl.DataFrame(cols), self.ctx)
