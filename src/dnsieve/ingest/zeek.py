"""Zeek ``dns.log`` adapters: the TSV (ASCII writer) and the JSON-lines format.

Both are vectorised: the decoded stream is read in byte chunks cut at the last
newline, each chunk is parsed by Polars (``read_csv`` / ``read_ndjson``) and
mapped to the canonical columns with Polars expressions; only
:func:`~dnsieve.ingest.base.canonical_batches` finishes the job.

Field mapping (identical for both formats)::

    ts -> ts            id.orig_h -> src_ip    id.orig_p -> src_port
    proto -> proto      id.resp_h -> dst_ip    id.resp_p -> dst_port
    trans_id, rtt       query -> qname         qtype (number; else qtype_name) -> qtype
    AA TC RD RA -> aa tc rd ra                 rcode (number; else rcode_name) -> rcode
    answers -> answers  TTLs -> ttls

qtype/rcode names come from the numeric code through :mod:`dnsieve.ingest.codes`
when it is present, because Zeek's own names are not the canonical ones for
ANY (``*``) or unassigned codes (``query-65534``, ``?23``); Zeek's name is the
fallback when the number is unset.

Other fields (``uid``, ``qclass``, ``Z``, ``rejected``, Zeek 8.1's ``opcode`` and
``opcode_name``, ``auth``, ``addl``, ``original_query``, site-specific
additions) are accepted and ignored.

TSV conventions
---------------
* The header (``#separator``, ``#set_separator``, ``#empty_field``,
  ``#unset_field``, ``#path``, ``#fields``, ``#types``) may appear again
  mid-file when logs are concatenated; a ``#separator`` line starts a new
  header, and each data line is read with the header in force above it.
* The unset field (``-``) becomes null, the empty field (``(empty)``) an
  empty list (or, for ``query``, the empty string: Zeek writes both so).  Set elements are split on the set separator and Zeek's escape
  of that separator inside an element (``\\x2c`` for ``,``) is undone.
  Other ``\\xNN`` escapes are kept: they already are the canonical form of
  non-printable bytes in a query name.
* Bytes that are not valid UTF-8 are rendered as ``\\xNN`` (byte-faithful)
  before parsing; such lines are still subject to every other check.
* A log whose ``#path`` is not ``dns`` (``conn.log`` beside ``dns.log``), or
  whose ``#fields`` have no ``query`` when there is no ``#path``, is not read:
  each of its data lines is counted under ``not_dns_log`` (which
  :class:`~dnsieve.ingest.base.IngestStats` files as *skipped*, not rejected).
  JSON lines whose ``_path`` is not ``dns``, or with neither ``query`` nor
  ``trans_id``, are counted the same way.
* Data before any ``#fields`` header is read with Zeek's default dns.log field
  list when its lines have exactly as many fields as that list (24 fields, or
  26 with Zeek 8.1's opcode fields, tab separated); otherwise each such line
  is rejected as ``missing_header``.

Reject reasons: ``bad_field_count`` (a line with too few or too many fields),
``bad_timestamp`` (unparseable or out-of-range ``ts``), ``missing_header``,
``not_dns_log``, ``unsupported_separator`` (a multi-byte separator),
``truncated_record`` (an unterminated last line that does not parse; it is not
counted in ``bytes_consumed`` so a grown file re-reads it), and for JSON
``bad_json`` (a line that is not a JSON object of the expected field types).
Blank lines and ``#`` comment lines are not records.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import BinaryIO

import polars as pl
import pyarrow as pa

from dnsieve.ingest.base import ReadContext, canonical_batches
from dnsieve.ingest.codes import QTYPES, RCODES

__all__ = [
    "DEFAULT_FIELDS",
    "DEFAULT_FIELDS_81",
    "TsvHeader",
    "ZeekJsonAdapter",
    "ZeekTsvAdapter",
    "iter_lines_chunks",
    "zeek_json_frame",
    "zeek_tsv_frame",
]

log = logging.getLogger(__name__)

#: Zeek's default dns.log fields (Zeek 3.x to 8.0).
DEFAULT_FIELDS: tuple[str, ...] = (
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "trans_id",
    "rtt", "query", "qclass", "qclass_name", "qtype", "qtype_name", "rcode", "rcode_name",
    "AA", "TC", "RD", "RA", "Z", "answers", "TTLs", "rejected",
)  # fmt: skip
#: Zeek 8.1 adds the opcode fields.
DEFAULT_FIELDS_81: tuple[str, ...] = (*DEFAULT_FIELDS, "opcode", "opcode_name")

#: Default chunk of decoded bytes parsed at once.
CHUNK_BYTES = 16 * 1024 * 1024
#: Size of one read from the decoded stream.
READ_BYTES = 1024 * 1024

# Plausible epoch seconds: anything beyond year ~5000 or before 1900 is junk.
_TS_MIN = -2_208_988_800.0
_TS_MAX = 95_617_584_000.0

_EMPTY_STR_LIST = pl.lit([], dtype=pl.List(pl.String))
_EMPTY_F64_LIST = pl.lit([], dtype=pl.List(pl.Float64))


def _json_bytes_escape(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: invalid byte -> ``\\\\xNN`` (a JSON-escaped ``\\xNN``)."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    bad = err.object[err.start : err.end]
    return "".join(f"\\\\x{b:02x}" for b in bad), err.end


codecs.register_error("dnsieve-json-xescape", _json_bytes_escape)


def _to_utf8(data: bytes, json_safe: bool = False) -> bytes:
    """Return ``data`` as valid UTF-8, invalid bytes rendered as ``\\xNN``."""
    if data.isascii():
        return data
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        handler = "dnsieve-json-xescape" if json_safe else "backslashreplace"
        return data.decode("utf-8", handler).encode("utf-8")


def iter_lines_chunks(
    stream: BinaryIO,
    chunk_bytes: int = CHUNK_BYTES,
    max_line: int | None = None,
    on_long: Callable[[int, bytes], None] | None = None,
) -> Iterator[tuple[int, bytes, bool]]:
    """Read ``stream`` in chunks cut after the last newline.

    Yields ``(offset, data, terminated)``: ``offset`` is the position of
    ``data`` in the decoded stream; every chunk ends with ``\\n`` except a
    final unterminated tail, for which ``terminated`` is False.

    Lines longer than ``max_line`` (default ``max(4 * chunk_bytes, 64 MiB)``):
    without ``on_long`` such a "line" is cut there and yielded in pieces (such
    junk is then rejected like any bad record); with ``on_long`` it is never
    held in memory nor yielded: ``on_long(its offset, its first bytes)`` is called once for it,
    the chunk is split around it (offsets stay true) and reading resumes after
    its newline.  Memory stays within about ``chunk_bytes + max_line``
    whatever the input.
    """
    if max_line is None:
        max_line = max(4 * chunk_bytes, 64 * 1024 * 1024)
    offset = 0
    pending = b""
    discarding = False  # inside an over-long line that is being skipped
    while True:
        # Read in modest blocks: a decoder failure (truncated gzip) loses at most
        # the block being decoded, not a whole chunk.
        blocks = [pending] if pending else []
        size = len(pending)
        got = False
        while size < chunk_bytes or not got:  # at least one read per chunk
            want = chunk_bytes - size if size < chunk_bytes else chunk_bytes
            block = stream.read(min(READ_BYTES, want))
            if not block:
                break
            if discarding:
                nl = block.find(b"\n")
                offset += len(block) if nl < 0 else nl + 1
                if nl < 0:
                    continue
                discarding = False
                block = block[nl + 1 :]
                if not block:
                    continue
            blocks.append(block)
            size += len(block)
            got = True
        if not got:
            break
        j = len(blocks) - 1
        cut = blocks[j].rfind(b"\n")
        while cut < 0 and j > 0:
            j -= 1
            cut = blocks[j].rfind(b"\n")
        if cut < 0:
            pending = b"".join(blocks)
            if len(pending) >= max_line:
                if on_long is not None:
                    on_long(offset, pending[:80])
                    offset += len(pending)
                    pending = b""
                    discarding = True
                    continue
                # Binary junk without newlines: cut it rather than grow without bound.
                yield offset, pending, True
                offset += len(pending)
                pending = b""
            continue
        if j == 0 and len(blocks) == 1 and cut == len(blocks[0]) - 1:
            data = blocks[0]  # no copy
        else:  # one copy: whole blocks, then the last one up to its last newline
            data = b"".join([*blocks[:j], memoryview(blocks[j])[: cut + 1]])
        rest = blocks[j][cut + 1 :]
        pending = b"".join([rest, *blocks[j + 1 :]]) if j + 1 < len(blocks) else rest
        if on_long is not None and len(data) > max_line:
            prev = 0
            for lo, hi in _long_lines(data, max_line):
                on_long(offset + lo, data[lo : lo + 80])
                if lo > prev:
                    yield offset + prev, data[prev:lo], True
                prev = hi
            if prev < len(data):
                yield offset + prev, data[prev:], True
            offset += len(data)
            continue
        yield offset, data, True
        offset += len(data)
    if pending:
        if on_long is not None and len(pending) > max_line:
            on_long(offset, pending[:80])
        else:
            yield offset, pending, False


def _long_lines(data: bytes, max_line: int) -> list[tuple[int, int]]:
    """``(start, end after newline)`` of each line of ``data`` longer than ``max_line``.

    Steps through ``data`` a window of ``max_line + 1`` bytes at a time: the
    last newline in the window ends a run of lines that all fit, so a chunk of
    ordinary lines costs about ``len(data) / max_line`` searches, not a pass per
    byte.  An unterminated tail is not a line yet (the caller carries it over).

    >>> _long_lines(b"ab\\nxxxxxx\\ncd\\n", 3)
    [(3, 10)]
    >>> _long_lines(b"abc\\nxxxx\\nyyyyy", 3)
    [(4, 9)]
    """
    out: list[tuple[int, int]] = []
    p, n = 0, len(data)
    while p < n:
        hi = p + max_line + 1
        if hi >= n:
            break  # every terminated line left fits in max_line bytes
        k = data.rfind(b"\n", p, hi)
        if k >= 0:
            p = k + 1
            continue
        e = data.find(b"\n", hi)
        if e < 0:
            break
        out.append((p, e + 1))
        p = e + 1
    return out


def _long_counter(ctx: ReadContext) -> Callable[[int, bytes], None]:
    """The ``on_long`` of :func:`iter_lines_chunks` for an adapter: one ``line_too_long``
    (not for lines before ``ctx.skip_bytes``: those were counted when first read)."""

    def count(offset: int, head: bytes) -> None:
        if offset < ctx.skip_bytes:
            return
        ctx.stats.records_read += 1
        ctx.stats.reject("line_too_long", head.decode("utf-8", "backslashreplace"))

    return count


def _next_header(data: bytes, pos: int) -> int:
    """Start of the first ``#`` line after ``pos`` (``len(data)`` when none).

    Searches for the single byte ``#`` (memchr-fast) and checks that it starts
    a line; ``#`` inside data lines is rare.
    """
    i = data.find(b"#", pos + 1)
    while i > 0 and data[i - 1] != 0x0A:
        i = data.find(b"#", i + 1)
    return len(data) if i < 0 else i


def _skip_prefix(
    data: bytes, offset: int, skip_bytes: int, start: int = 0, end: int | None = None
) -> int:
    """Index in ``data`` of the first line in ``data[start:end]`` that starts at or
    after stream offset ``skip_bytes`` (``data[0]`` is at stream ``offset``)."""
    end = len(data) if end is None else end
    if skip_bytes <= offset + start:
        return start
    idx = skip_bytes - offset
    if idx >= end:
        return end
    if data[idx - 1] == 0x0A:
        return idx
    nl = data.find(b"\n", idx, end)
    return end if nl < 0 else nl + 1


# --------------------------------------------------------------------------- shared mapping


def _parse_ts(ts: pl.Series) -> pl.Series:
    """Zeek ``ts`` (epoch seconds as text or number, or ISO-8601 text) -> Datetime[us, UTC].

    Values that do not parse, or lie outside years 1900-5000, become null
    (and are then counted as ``bad_timestamp`` by ``canonicalize``).
    """
    if ts.dtype.is_numeric():
        secs = ts.cast(pl.Float64)
        text = None
    else:
        text = ts.cast(pl.String)
        secs = text.cast(pl.Float64, strict=False)
    ok = secs.is_finite() & (secs > _TS_MIN) & (secs < _TS_MAX)
    us = (
        pl.DataFrame({"s": secs, "ok": ok})
        .select(
            pl.when(pl.col("ok"))
            .then((pl.col("s") * 1_000_000).round())
            .otherwise(None)
            .cast(pl.Int64, strict=False)
            .cast(pl.Datetime("us", "UTC"))
        )
        .to_series()
    )
    if text is not None:
        todo = us.is_null() & text.is_not_null() & secs.is_null()
        if bool(todo.any()):
            iso = text.str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.f%#z", strict=False, time_unit="us", time_zone="UTC"
            )
            naive = text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
            iso = iso.fill_null(naive.dt.replace_time_zone("UTC"))
            us = us.fill_null(iso)
    return us.alias("ts")


def _code_names(
    df: pl.DataFrame, name: str, number: str, table: dict[int, str], prefix: str, limit: int
) -> pl.Expr:
    """The canonical mnemonic: from the numeric code when there is one, else Zeek's name.

    The number wins because Zeek's own names are not always the canonical
    ones (``*`` for ANY, ``query-65534`` / ``?23`` for unassigned codes);
    unassigned numbers become ``TYPE65534`` / ``RCODE23`` as in
    :mod:`dnsieve.ingest.codes`.  Known codes are replaced in bulk from the
    table; only unassigned ones (rare) are mapped one distinct value at a time.
    """
    name_expr = pl.col(name).cast(pl.String) if name in df.columns else pl.lit(None, pl.String)
    if number not in df.columns:
        return name_expr
    col = df.get_column(number)
    text = col.dtype == pl.String
    keys: list[object] = [str(k) for k in table] if text else list(table)
    known = col.replace_strict(keys, list(table.values()), default=None, return_dtype=pl.String)
    missing = known.is_null() & col.is_not_null()
    if bool(missing.any()):
        extra_old: list[object] = []
        extra_new: list[str] = []
        for v in col.filter(missing).unique().to_list():
            try:
                code = int(v)
            except (TypeError, ValueError, OverflowError):
                continue
            if 0 <= code <= limit:
                extra_old.append(v)
                extra_new.append(table.get(code, f"{prefix}{code}"))
        if extra_old:
            known = known.fill_null(
                col.replace_strict(extra_old, extra_new, default=None, return_dtype=pl.String)
            )
    return pl.coalesce(pl.lit(known), name_expr)


def _flag(col: str, cols: Sequence[str], truthy: str = "T", falsy: str = "F") -> pl.Expr:
    if col not in cols:
        return pl.lit(None, dtype=pl.Boolean)
    c = pl.col(col)
    return pl.when(c == truthy).then(True).when(c == falsy).then(False).otherwise(None)


def _col(name: str, cols: Sequence[str], dtype: pl.DataType) -> pl.Expr:
    return pl.col(name) if name in cols else pl.lit(None, dtype=dtype)


def _adapter_frame(df: pl.DataFrame, exprs: dict[str, pl.Expr]) -> pl.DataFrame:
    ts = _parse_ts(df.get_column("ts")) if "ts" in df.columns else None
    out = df.select(**exprs)
    if ts is None:
        ts = pl.Series("ts", [None], dtype=pl.Datetime("us", "UTC")).new_from_index(0, df.height)
    return out.insert_column(0, ts)


# --------------------------------------------------------------------------- TSV


@dataclass
class TsvHeader:
    """The Zeek ASCII header in force (defaults: Zeek's own)."""

    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"
    path: str | None = None
    fields: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None
    notes: list[str] = field(default_factory=list)

    def is_dns(self) -> bool:
        if self.path is not None:
            return self.path == "dns" or self.path.startswith("dns")
        return self.fields is None or "query" in self.fields


_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _parse_header_line(line: str, h: TsvHeader) -> TsvHeader:
    """Apply one ``#...`` line to the header state (returns the state in force)."""
    if line.startswith("#separator"):
        value = line[len("#separator") :].strip(" \t\r")
        return TsvHeader(separator=_unescape(value) or "\t")
    sep = h.separator
    key, found, value = line.partition(sep)
    if not found:
        key, found, value = line.partition(" ")
    value = value.rstrip("\r")
    if key == "#set_separator":
        h.set_separator = _unescape(value)
    elif key == "#empty_field":
        h.empty_field = value
    elif key == "#unset_field":
        h.unset_field = value
    elif key == "#path":
        h.path = value
    elif key == "#fields":
        h.fields = tuple(value.split(sep))
    elif key == "#types":
        h.types = tuple(value.split(sep))
    return h


def _dedupe(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}__dup{k}")
    return out


_EXTRA = "__extra_field"


#: The Zeek fields the mapping reads; others are not materialised.
USED_FIELDS = frozenset(
    {
        "ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "trans_id", "rtt",
        "query", "qtype", "qtype_name", "rcode", "rcode_name", "AA", "TC", "RD", "RA",
        "answers", "TTLs",
    }
)  # fmt: skip


def _read_tsv(data: bytes, names: Sequence[str], h: TsvHeader) -> pl.DataFrame:
    """Parse data lines into String columns: the used fields, the last field (to
    detect short lines) and a sentinel that catches extra fields."""
    cols = _dedupe(names)
    schema = {n: pl.String for n in (*cols, _EXTRA)}
    keep = [i for i, n in enumerate(cols) if n in USED_FIELDS or i >= len(cols) - 1]
    return pl.read_csv(
        data,
        has_header=False,
        separator=h.separator,
        quote_char=None,
        schema=schema,
        columns=[*keep, len(cols)],
        # The last field keeps the unset marker so that a missing field (null)
        # can be told from an unset one; the caller nulls it after the check.
        null_values={n: h.unset_field for n in cols[:-1]} if h.unset_field else None,
        truncate_ragged_lines=True,
        missing_columns="insert",
        raise_if_empty=False,
        eol_char="\n",
    )


def zeek_tsv_frame(df: pl.DataFrame, h: TsvHeader) -> pl.DataFrame:
    """Map parsed Zeek TSV columns (all String, unset already null) to adapter columns."""
    cols = df.columns
    empty, sset = h.empty_field, h.set_separator

    def has(name: str, value: str) -> bool:
        return bool((df.get_column(name) == value).any())

    def set_col(name: str, inner: pl.DataType) -> pl.Expr:
        if name not in cols:
            return pl.lit(None, dtype=pl.List(inner))
        c = pl.col(name)
        parts = c.str.split(sset) if sset else pl.concat_list(c)
        if inner == pl.Float64:
            parts = parts.cast(pl.List(pl.Float64), strict=False)
            empty_list = _EMPTY_F64_LIST
        else:
            esc = "".join(f"\\x{b:02x}" for b in sset.encode())
            if bool(df.get_column(name).str.contains(esc, literal=True).any()):
                parts = parts.list.eval(pl.element().str.replace_all(esc, sset, literal=True))
            empty_list = _EMPTY_STR_LIST
        # (Zeek writes empty sets rarely; skip the row-wise choice when there are none.)
        return pl.when(c == empty).then(empty_list).otherwise(parts) if has(name, empty) else parts

    qname = _col("query", cols, pl.String())
    if "query" in cols and has("query", empty):
        # Zeek writes an empty string as the empty-field marker too.
        qname = pl.when(qname == empty).then(pl.lit("")).otherwise(qname)

    s = pl.String()
    exprs = {
        "src_ip": _col("id.orig_h", cols, s),
        "dst_ip": _col("id.resp_h", cols, s),
        "src_port": _col("id.orig_p", cols, s),
        "dst_port": _col("id.resp_p", cols, s),
        "proto": _col("proto", cols, s),
        "trans_id": _col("trans_id", cols, s),
        "qname": qname,
        "qtype": _code_names(df, "qtype_name", "qtype", QTYPES, "TYPE", 65535),
        "rcode": _code_names(df, "rcode_name", "rcode", RCODES, "RCODE", 4095),
        "answers": set_col("answers", pl.String()),
        "ttls": set_col("TTLs", pl.Float64()),
        "rtt": _col("rtt", cols, s),
        "aa": _flag("AA", cols),
        "tc": _flag("TC", cols),
        "rd": _flag("RD", cols),
        "ra": _flag("RA", cols),
    }
    return _adapter_frame(df, exprs)


def _count_lines(data: bytes) -> int:
    """Non-blank lines in ``data``."""
    return sum(1 for ln in data.split(b"\n") if ln.strip())


@dataclass
class _Prepared:
    """A region parsed, checked and mapped (by the worker): what the main thread applies."""

    frame: pl.DataFrame | None  # adapter columns, ready for canonical_batches
    records: int  # records read (blank lines excluded)
    rejects: list[tuple[str, str, int]]  # (reason, example, count)
    ok: bool  # False: a final unterminated line was rejected (not consumed)


@dataclass
class _Region:
    """A run of data lines under one header, on its way through the pipeline."""

    data: bytes
    header: TsvHeader
    end: int  # offset in the decoded stream just after the region
    tail: bool  # an unterminated last line at end of input
    names: Sequence[str] | None = None
    reject: str | None = None  # reject every line under this reason instead of parsing
    example: str = ""
    prepared: Future[_Prepared] | None = None


def _plan_region(data: bytes, h: TsvHeader, end: int, tail: bool, source: str) -> _Region:
    """Decide how a run of data lines is read (field names, or a wholesale reject)."""
    region = _Region(data, h, end, tail, names=h.fields)
    if not h.is_dns():
        region.reject, region.example = "not_dns_log", f"#path {h.path}"
    elif len(h.separator.encode()) != 1 or h.separator in "\n\r":
        region.reject, region.example = "unsupported_separator", repr(h.separator)
    elif h.fields is None:
        first = next((ln for ln in data.split(b"\n", 64) if ln.strip()), b"")
        nf = first.count(b"\t") + 1 if first else 0
        if nf in (len(DEFAULT_FIELDS), len(DEFAULT_FIELDS_81)) and h.separator == "\t":
            region.names = DEFAULT_FIELDS if nf == len(DEFAULT_FIELDS) else DEFAULT_FIELDS_81
            note = f"no #fields header: assumed Zeek's default {nf}-field dns.log layout"
            if note not in h.notes:
                h.notes.append(note)
                log.info("%s: %s", source, note)
        else:
            region.reject = "missing_header"
            region.example = first[:120].decode("utf-8", "backslashreplace")
    return region


def _prepare_region(region: _Region) -> _Prepared:
    """Parse, check and map one region.  Pure (no shared state): runs in the worker."""
    h = region.header
    if region.reject is not None or region.names is None:
        n = _count_lines(region.data)
        reason = region.reject or "missing_header"
        whole = [(reason, region.example, n)] if n else []
        return _Prepared(None, n, whole, reason == "not_dns_log" or not region.tail)
    try:
        raw = _read_tsv(_to_utf8(region.data), region.names, h)
    except Exception as exc:  # polars refused the chunk: count its lines
        n = _count_lines(region.data)
        example = f"{type(exc).__name__}: {exc}"
        return _Prepared(None, n, [("unparseable_chunk", example, n)] if n else [], not region.tail)
    if raw.height == 0:
        return _Prepared(None, 0, [], True)
    last = raw.columns[-2]
    blank = pl.all_horizontal(pl.all().is_null())
    bad_count = pl.col(_EXTRA).is_not_null() | pl.col(last).is_null()
    flags = raw.select(blank=blank, bad=bad_count & ~blank)
    n_blank = int(flags.get_column("blank").sum())
    n_bad = int(flags.get_column("bad").sum())
    n_records = raw.height - n_blank
    rejects: list[tuple[str, str, int]] = []
    if n_bad or n_blank:
        if n_bad:
            ex = raw.filter(flags.get_column("bad")).row(0)
            example = h.separator.join("" if v is None else v for v in ex[:8])
            reason = "truncated_record" if region.tail and n_records == 1 else "bad_field_count"
            rejects.append((reason, example, n_bad))
        raw = raw.filter(~(flags.get_column("bad") | flags.get_column("blank")))
    frame = None
    if raw.height:
        if h.unset_field:
            raw = raw.with_columns(pl.col(last).replace(h.unset_field, None))
        frame = zeek_tsv_frame(raw, h)
    return _Prepared(frame, n_records, rejects, not (region.tail and n_bad))


class ZeekTsvAdapter:
    """Zeek ASCII (TSV) dns.log, with header changes mid-file.

    A worker thread parses and maps one region ahead (``polars.read_csv`` and
    the column expressions release the GIL) while the main thread
    canonicalises the previous one; results are emitted in input order and
    all accounting happens on the main thread.  ``ctx.options['chunk_bytes']``
    sets the chunk size (default 16 MiB).
    """

    name = "zeek"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical batches; see the module docstring for the rules."""
        chunk_bytes = int(ctx.options.get("chunk_bytes", CHUNK_BYTES))
        h = TsvHeader()
        queue: deque[_Region | int] = deque()  # regions, or offsets consumed by header lines
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zeek-tsv") as pool:
            for offset, data, terminated in iter_lines_chunks(
                stream, chunk_bytes, ctx.max_record_bytes, _long_counter(ctx)
            ):
                pos, n = 0, len(data)
                while pos < n:
                    if data[pos] == 0x23:  # '#': one header/comment line
                        end = data.find(b"\n", pos)
                        end = n if end < 0 else end + 1
                        line = data[pos:end].rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                        h = _parse_header_line(line, h)
                        queue.append(offset + end)
                        pos = end
                        continue
                    end = _next_header(data, pos)
                    start = _skip_prefix(data, offset, ctx.skip_bytes, pos, end)
                    if start >= end:
                        queue.append(offset + end)
                    else:
                        chunk = data if start == 0 and end == n else data[start:end]
                        tail = not terminated and end == n
                        region = _plan_region(
                            chunk, replace(h), offset + end, tail, ctx.stats.source
                        )
                        region.prepared = pool.submit(_prepare_region, region)
                        queue.append(region)
                    pos = end
                # Keep at most one region in the worker while this one is canonicalised.
                while sum(isinstance(q, _Region) for q in queue) > 1:
                    yield from self._drain_one(queue, ctx)
            while queue:
                yield from self._drain_one(queue, ctx)

    def _drain_one(self, queue: deque[_Region | int], ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Finish the oldest queued item (header offsets are just bookkeeping)."""
        item = queue.popleft()
        stats = ctx.stats
        if isinstance(item, int):
            stats.bytes_consumed = max(stats.bytes_consumed, item)
            return
        assert item.prepared is not None
        prep = item.prepared.result()
        item.data = b""  # release the raw bytes early
        stats.records_read += prep.records
        for reason, example, count in prep.rejects:
            stats.reject(reason, example, n=count)
        if prep.frame is not None:
            yield from canonical_batches(prep.frame, ctx)
        if prep.ok or not item.tail:
            stats.bytes_consumed = max(stats.bytes_consumed, item.end)


# --------------------------------------------------------------------------- JSON


_JSON_SCHEMA: dict[str, pl.DataType] = {
    "_path": pl.String(),
    "ts": pl.String(),
    "id.orig_h": pl.String(),
    "id.orig_p": pl.Int64(),
    "id.resp_h": pl.String(),
    "id.resp_p": pl.Int64(),
    "proto": pl.String(),
    "trans_id": pl.Int64(),
    "rtt": pl.Float64(),
    "query": pl.String(),
    "qtype": pl.Int64(),
    "qtype_name": pl.String(),
    "rcode": pl.Int64(),
    "rcode_name": pl.String(),
    "AA": pl.Boolean(),
    "TC": pl.Boolean(),
    "RD": pl.Boolean(),
    "RA": pl.Boolean(),
    "answers": pl.List(pl.String()),
    "TTLs": pl.List(pl.Float64()),
}


def zeek_json_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Map Zeek JSON columns (typed as in the JSON schema) to adapter columns."""
    exprs = {
        "src_ip": pl.col("id.orig_h"),
        "dst_ip": pl.col("id.resp_h"),
        "src_port": pl.col("id.orig_p"),
        "dst_port": pl.col("id.resp_p"),
        "proto": pl.col("proto"),
        "trans_id": pl.col("trans_id"),
        "qname": pl.col("query"),
        "qtype": _code_names(df, "qtype_name", "qtype", QTYPES, "TYPE", 65535),
        "rcode": _code_names(df, "rcode_name", "rcode", RCODES, "RCODE", 4095),
        "answers": pl.col("answers"),
        "ttls": pl.col("TTLs"),
        "rtt": pl.col("rtt"),
        "aa": pl.col("AA"),
        "tc": pl.col("TC"),
        "rd": pl.col("RD"),
        "ra": pl.col("RA"),
    }
    return _adapter_frame(df, exprs)


def _read_ndjson(data: bytes) -> pl.DataFrame:
    return pl.read_ndjson(data, schema=_JSON_SCHEMA)


def _parse_json_lines(
    lines: list[bytes], ctx: ReadContext, out: list[pl.DataFrame], reason: str = "bad_json"
) -> None:
    """Parse ``lines`` in bulk; on failure bisect, so each bad line is rejected alone."""
    if not lines:
        return
    try:
        df = _read_ndjson(b"\n".join(lines) + b"\n")
    except Exception as exc:
        if len(lines) == 1:
            ctx.stats.records_read += 1
            ctx.stats.reject(reason, f"{type(exc).__name__}: {str(exc)[:80]}")
            return
        mid = len(lines) // 2
        _parse_json_lines(lines[:mid], ctx, out, reason)
        _parse_json_lines(lines[mid:], ctx, out, reason)
        return
    ctx.stats.records_read += df.height
    out.append(df)


@dataclass
class _JsonPrepared:
    """A chunk of JSON lines parsed and mapped (by the worker), or None when it
    did not parse as a whole (the main thread then bisects it line by line)."""

    frame: pl.DataFrame | None  # adapter columns of the dns lines
    records: int
    other: int  # lines of another log (not_dns_log)
    example: str


def _map_json(df: pl.DataFrame) -> tuple[pl.DataFrame | None, int, str]:
    """Adapter columns of the dns lines of ``df``; (frame, lines of other logs, an example)."""
    if df.height == 0:
        return None, 0, ""
    path = df.get_column("_path")
    # Another log (``_path`` not dns, or no dns fields at all: conn.log lines).
    other = (path.is_not_null() & (path != "dns")) | (
        path.is_null() & df.get_column("query").is_null() & df.get_column("trans_id").is_null()
    )
    n_other = int(other.sum())
    example = ""
    if n_other:
        example = str(df.filter(other).row(0, named=True))
        df = df.filter(~other)
    return (zeek_json_frame(df) if df.height else None), n_other, example


def _prepare_json(data: bytes) -> _JsonPrepared | None:
    """Parse and map a chunk of complete lines.  Pure: runs in the worker."""
    try:
        df = _read_ndjson(data)
    except Exception:
        return None
    frame, n_other, example = _map_json(df)
    return _JsonPrepared(frame, df.height, n_other, example)


class ZeekJsonAdapter:
    """Zeek JSON-lines dns.log (``LogAscii::use_json=T``), epoch or ISO-8601 ``ts``.

    As for TSV, a worker thread parses and maps one chunk ahead
    (``polars.read_ndjson`` releases the GIL) while the main thread
    canonicalises the previous one; accounting stays on the main thread and
    in input order.
    """

    name = "zeek-json"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical batches; bad lines are counted one by one."""
        chunk_bytes = int(ctx.options.get("chunk_bytes", CHUNK_BYTES))
        # (end offset, data or None for a chunk wholly before skip_bytes, prepared)
        queue: deque[tuple[int, bytes | None, Future[_JsonPrepared | None] | None]] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zeek-json") as pool:
            for offset, chunk, terminated in iter_lines_chunks(
                stream, chunk_bytes, ctx.max_record_bytes, _long_counter(ctx)
            ):
                start = _skip_prefix(chunk, offset, ctx.skip_bytes)
                if start >= len(chunk):
                    queue.append((offset + len(chunk), None, None))
                    continue
                data = _to_utf8(chunk[start:], json_safe=True)
                if terminated:
                    queue.append((offset + len(chunk), data, pool.submit(_prepare_json, data)))
                    while len(queue) > 1:
                        yield from self._finish(queue.popleft(), ctx)
                    continue
                while queue:
                    yield from self._finish(queue.popleft(), ctx)
                # An unterminated last line that does not parse may still be being
                # written: it is rejected as truncated_record and not consumed, so
                # the next read of the grown file picks it up.
                frames: list[pl.DataFrame] = []
                before = ctx.stats.rejects["truncated_record"]
                _parse_json_lines([data] if data.strip() else [], ctx, frames, "truncated_record")
                if ctx.stats.rejects["truncated_record"] == before:
                    ctx.stats.bytes_consumed = offset + len(chunk)
                yield from self._emit(frames, ctx)
            while queue:
                yield from self._finish(queue.popleft(), ctx)

    def _finish(
        self,
        item: tuple[int, bytes | None, Future[_JsonPrepared | None] | None],
        ctx: ReadContext,
    ) -> Iterator[pa.RecordBatch]:
        end, data, fut = item
        if data is None or fut is None:
            ctx.stats.bytes_consumed = max(ctx.stats.bytes_consumed, end)
            return
        prep = fut.result()
        if prep is None:  # some line is bad: bisect, so each bad line is rejected alone
            frames: list[pl.DataFrame] = []
            lines = [ln for ln in data.split(b"\n") if ln.strip()]
            _parse_json_lines(lines, ctx, frames)
            ctx.stats.bytes_consumed = end
            yield from self._emit(frames, ctx)
            return
        ctx.stats.records_read += prep.records
        ctx.stats.bytes_consumed = end
        if prep.other:
            ctx.stats.reject("not_dns_log", prep.example, n=prep.other)
        if prep.frame is not None:
            yield from canonical_batches(prep.frame, ctx)

    @staticmethod
    def _emit(frames: list[pl.DataFrame], ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        for df in frames:
            frame, n_other, example = _map_json(df)
            if n_other:
                ctx.stats.reject("not_dns_log", example, n=n_other)
            if frame is not None:
                yield from canonical_batches(frame, ctx)
