"""Ingest: one adapter per input format, all emitting canonical DnsEvent batches.

Entry points:

* :func:`get_adapter` -- the adapter for a format name;
* :func:`read_file` -- decode (gzip/bz2/xz), sniff and parse one file, never raising
  on bad content;
* :func:`iter_input_files` -- expand paths and directories into files.
"""

from __future__ import annotations

import bz2
import gzip
import importlib
import lzma
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from dnsieve.ingest.base import Adapter, IngestStats, ReadContext
from dnsieve.ingest.sniff import FORMATS, sniff

__all__ = [
    "FORMATS",
    "Adapter",
    "IngestStats",
    "ReadContext",
    "SafeStream",
    "get_adapter",
    "iter_input_files",
    "open_decoded",
    "read_file",
    "read_stream",
]

# format name -> (module, class)
_REGISTRY: dict[str, tuple[str, str]] = {
    "zeek": ("dnsieve.ingest.zeek", "ZeekTsvAdapter"),
    "zeek-json": ("dnsieve.ingest.zeek", "ZeekJsonAdapter"),
    "suricata": ("dnsieve.ingest.suricata", "SuricataAdapter"),
    "pcap": ("dnsieve.ingest.pcap", "PcapAdapter"),
    "dnsmasq": ("dnsieve.ingest.querylog", "DnsmasqAdapter"),
    "bind": ("dnsieve.ingest.querylog", "BindAdapter"),
    "unbound": ("dnsieve.ingest.querylog", "UnboundAdapter"),
    "csv": ("dnsieve.ingest.tabular", "CsvAdapter"),
    "parquet": ("dnsieve.ingest.tabular", "ParquetAdapter"),
}

SNIFF_BYTES = 64 * 1024


def get_adapter(fmt: str) -> Adapter:
    """Instantiate the adapter registered for ``fmt``."""
    try:
        mod_name, cls_name = _REGISTRY[fmt]
    except KeyError:
        raise ValueError(
            f"unknown format {fmt!r}; choose one of: auto, {', '.join(FORMATS)}"
        ) from None
    cls = getattr(importlib.import_module(mod_name), cls_name)
    adapter: Adapter = cls()
    return adapter


class SafeStream:
    """A read-only binary stream that turns decoder failures into a clean EOF.

    A truncated gzip raises ``EOFError`` half-way; here that becomes a recorded
    reject (``truncated_stream``) and an end of input, so everything decoded up
    to that point is still ingested.
    """

    def __init__(self, raw: BinaryIO, stats: IngestStats) -> None:
        self._raw = raw
        self._stats = stats
        self._failed = False
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        if self._failed:
            return b""
        try:
            data = self._raw.read(n)
        except (EOFError, zlib.error, OSError, lzma.LZMAError) as exc:
            self._failed = True
            self._stats.reject("truncated_stream", f"{type(exc).__name__}: {exc}")
            return b""
        self.pos += len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        self._raw.close()


def open_decoded(
    path: Path, stats: IngestStats, raw: BinaryIO | None = None
) -> tuple[SafeStream, bytes, BinaryIO]:
    """Open ``path`` (or read the already open ``raw``), transparently decompressing;
    return the stream and its head.

    The head (first 64 KiB of decoded bytes) is consumed from the stream; the
    caller gets a stream that replays it (see :class:`_Replay`), and the raw
    file handle (its ``tell()`` measures progress through compressed input).
    """
    if raw is None:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller through SafeStream
    magic = raw.read(6)
    raw.seek(0)
    inner: BinaryIO
    if magic[:2] == b"\x1f\x8b":
        inner = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    elif magic[:3] == b"BZh":
        inner = bz2.BZ2File(raw, mode="rb")  # type: ignore[assignment]
    elif magic[:6] == b"\xfd7zXZ\x00":
        inner = lzma.LZMAFile(raw, mode="rb")  # type: ignore[assignment]  # noqa: SIM115
    else:
        inner = raw
    safe = SafeStream(inner, stats)
    head = safe.read(SNIFF_BYTES)
    return SafeStream(_Replay(head, safe), stats), head, raw  # type: ignore[arg-type]


class _Replay:
    """A stream that first returns ``head`` and then the rest of ``rest``."""

    def __init__(self, head: bytes, rest: SafeStream) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                out = self._head + self._rest.read()
                self._head = b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            if len(out) < n:
                out += self._rest.read(n - len(out))
            return out
        return self._rest.read(n)

    def close(self) -> None:
        self._rest.close()


def read_stream(stream: BinaryIO, fmt: str, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Parse an already-open decoded stream with the adapter for ``fmt``.

    Any exception escaping an adapter is a bug; it is still contained here and
    recorded as ``adapter_error`` so a run never dies on one bad file.
    """
    adapter = get_adapter(fmt)
    ctx.stats.format = fmt
    try:
        yield from adapter.read(stream, ctx)
    except Exception as exc:  # pragma: no cover - adapters should not raise
        ctx.stats.error = f"{fmt} adapter failed: {type(exc).__name__}: {exc}"
        ctx.stats.reject("adapter_error", repr(exc))


def read_file(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    ctx: ReadContext | None = None,
    raw: BinaryIO | None = None,
) -> Iterator[pa.RecordBatch]:
    """Read one file of any supported format into canonical batches.

    ``fmt='auto'`` sniffs the decoded content.  Unknown formats are recorded
    in ``ctx.stats.error`` and yield nothing.  ``raw``: the file already open
    (positioned at its start; the lake passes the handle it fingerprinted, so
    what is hashed is what is read); it is closed on return.
    """
    p = Path(path)
    if ctx is None:
        ctx = ReadContext(sensor=str(p), stats=IngestStats(source=str(p)))
    ctx.stats.source = ctx.stats.source or str(p)
    try:
        stream, head, raw = open_decoded(p, ctx.stats, raw)
    except OSError as exc:
        ctx.stats.error = f"cannot open: {exc.strerror or exc}"
        return
    ctx.raw_tell = raw.tell
    try:
        if fmt == "auto":
            detected = sniff(head, p.name)
            if detected is None:
                ctx.stats.format = "unknown"
                ctx.stats.error = "unrecognised format (use --format to force one)"
                if head:
                    ctx.stats.reject("unrecognised_format", head[:80].decode("utf-8", "replace"))
                return
            fmt = detected
        if fmt == "parquet":
            # Parquet needs random access to the raw file, not the decoded stream.
            raw.seek(0)
            yield from read_stream(raw, fmt, ctx)
            return
        yield from read_stream(stream, fmt, ctx)  # type: ignore[arg-type]
    finally:
        stream.close()
        raw.close()


def iter_input_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand files and directories (recursively, sorted) into input files.

    Hidden files and directories are skipped.  Missing paths, and directories
    that cannot be listed, are yielded so the caller can report them (an
    unreadable subdirectory is a failure to report, not a silent gap).
    """
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            errors: list[OSError] = []
            for root, dirs, files in os.walk(p, onerror=errors.append):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if not f.startswith("."):
                        yield Path(root) / f
                while errors:
                    yield Path(errors.pop(0).filename)
            while errors:
                yield Path(errors.pop(0).filename)
        else:
            yield p
