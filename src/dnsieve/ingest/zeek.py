"""Zeek ``dns.log`` adapters: the TSV (ASCII writer) and the JSON-lines format.

Both are vectorised: the decoded stream is read in byte chunks cut at the last
newline, each chunk is parsed by Polars (``read_csv`` / ``read_ndjson``) and
mapped to the canonical columns with Polars expressions; only
:func:`~dnsieve.ingest.base.canonical_batches` finishes the job.

Field mapping (identical for both formats)::

    ts -> ts            id.orig_h -> src_ip    id.orig_p -> src_port
    proto -> proto      id.resp_h -> dst_ip    id.resp_p -> dst_port
    trans_id, rtt       query -> qname         qtype_name -> qtype (else qtype number)
    AA TC RD RA -> aa tc rd ra                 rcode_name -> rcode (else rcode number)
    answers -> answers  TTLs -> ttls

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
  empty list.  Set elements are split on the set separator and Zeek's escape
  of that separator inside an element (``\\x2c`` for ``,``) is undone.
  Other ``\\xNN`` escapes are kept: they already are the canonical form of
  non-printable bytes in a query name.
* Bytes that are not valid UTF-8 are rendered as ``\\xNN`` (byte-faithful)
  before parsing; such lines are still subject to every other check.
* A log whose ``#path`` is not ``dns`` (``conn.log`` beside ``dns.log``), or
  whose ``#fields`` have no ``query`` when there is no ``#path``, is rejected
  as a whole: each of its data lines is counted under ``not_dns_log``.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import polars as pl
import pyarrow as pa

from dnsieve.ingest.base import ReadContext, canonical_batches
from dnsieve.ingest.codes import QTYPES, RCODES

__all__ = [
    "DEFAULT_FIELDS",
    "DEFAULT_FIELDS_81",
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
    stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[int, bytes, bool]]:
    """Read ``stream`` in chunks cut after the last newline.

    Yields ``(offset, data, terminated)``: ``offset`` is the position of
    ``data`` in the decoded stream; every chunk ends with ``\\n`` except a
    final unterminated tail, for which ``terminated`` is False.
    """
    offset = 0
    pending = b""
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            break
        buf = pending + block if pending else block
        cut = buf.rfind(b"\n")
        if cut < 0:
            pending = buf
            continue
        data, pending = buf[: cut + 1], buf[cut + 1 :]
        yield offset, data, True
        offset += len(data)
    if pending:
        yield offset, pending, False


def _skip_prefix(data: bytes, offset: int, skip_bytes: int) -> int:
    """Index in ``data`` of the first line that starts at or after ``skip_bytes``."""
    if skip_bytes <= offset:
        return 0
    idx = skip_bytes - offset
    if idx >= len(data):
        return len(data)
    if data[idx - 1] == 0x0A:
        return idx
    nl = data.find(b"\n", idx)
    return len(data) if nl < 0 else nl + 1


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


def _code_names(name: pl.Expr, number: pl.Expr, table: dict[int, str], prefix: str) -> pl.Expr:
    """The canonical mnemonic: from the numeric code when there is one, else Zeek's name.

    The number wins because Zeek's own names are not always the canonical
    ones (``*`` for ANY, ``query-65534`` / ``?23`` for unassigned codes);
    unassigned numbers become ``TYPE65534`` / ``RCODE23`` as in
    :mod:`dnsieve.ingest.codes`.
    """
    num = number.cast(pl.Int64, strict=False)
    from_num = num.replace_strict(
        list(table.keys()),
        list(table.values()),
        default=pl.lit(prefix) + num.cast(pl.String),
        return_dtype=pl.String,
    )
    return pl.coalesce(from_num, name.cast(pl.String))


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
class _TsvHeader:
    """The Zeek ASCII header in force."""

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


def _parse_header_line(line: str, h: _TsvHeader) -> _TsvHeader:
    """Apply one ``#...`` line to the header state (returns the state in force)."""
    if line.startswith("#separator"):
        value = line[len("#separator") :].strip(" \t\r")
        return _TsvHeader(separator=_unescape(value) or "\t")
    sep = h.separator
    key, _, value = line.partition(sep)
    if not _:
        key, _, value = line.partition(" ")
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


def _read_tsv(data: bytes, names: Sequence[str], h: _TsvHeader) -> pl.DataFrame:
    """Parse data lines into all-String columns, plus a sentinel for extra fields."""
    cols = _dedupe(names)
    schema = {n: pl.String for n in (*cols, _EXTRA)}
    return pl.read_csv(
        data,
        has_header=False,
        separator=h.separator,
        quote_char=None,
        schema=schema,
        # The last field keeps the unset marker so that a missing field (null)
        # can be told from an unset one; the caller nulls it after the check.
        null_values={n: h.unset_field for n in cols[:-1]}
        if h.unset_field
        else None,
        truncate_ragged_lines=True,
        missing_columns="insert",
        raise_if_empty=False,
        eol_char="\n",
    )


def zeek_tsv_frame(df: pl.DataFrame, h: _TsvHeader) -> pl.DataFrame:
    """Map parsed Zeek TSV columns (all String, unset already null) to adapter columns."""
    cols = df.columns
    empty, sset = h.empty_field, h.set_separator

    def set_col(name: str, inner: pl.DataType) -> pl.Expr:
        if name not in cols:
            return pl.lit(None, dtype=pl.List(inner))
        c = pl.col(name)
        parts = c.str.split(sset) if sset else pl.concat_list(c)
        if inner == pl.Float64:
            parts = parts.list.eval(pl.element().cast(pl.Float64, strict=False))
            empty_list = _EMPTY_F64_LIST
        else:
            esc = "".join(f"\\x{b:02x}" for b in sset.encode())
            if bool(df.get_column(name).str.contains(esc, literal=True).any()):
                parts = parts.list.eval(pl.element().str.replace_all(esc, sset, literal=True))
            empty_list = _EMPTY_STR_LIST
        return pl.when(c == empty).then(empty_list).otherwise(parts)

    s = pl.String()
    exprs = {
        "src_ip": _col("id.orig_h", cols, s),
        "dst_ip": _col("id.resp_h", cols, s),
        "src_port": _col("id.orig_p", cols, s),
        "dst_port": _col("id.resp_p", cols, s),
        "proto": _col("proto", cols, s),
        "trans_id": _col("trans_id", cols, s),
        "qname": _col("query", cols, s),
        "qtype": _code_names(_col("qtype_name", cols, s), _col("qtype", cols, s), QTYPES, "TYPE"),
        "rcode": _code_names(_col("rcode_name", cols, s), _col("rcode", cols, s), RCODES, "RCODE"),
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


class ZeekTsvAdapter:
    """Zeek ASCII (TSV) dns.log, with header changes mid-file."""

    name = "zeek"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical batches; see the module docstring for the rules."""
        chunk_bytes = int(ctx.options.get("chunk_bytes", CHUNK_BYTES))
        h = _TsvHeader()
        for offset, data, terminated in iter_lines_chunks(stream, chunk_bytes):
            pos = 0
            n = len(data)
            while pos < n:
                if data[pos] == 0x23:  # '#': one header/comment line
                    end = data.find(b"\n", pos)
                    end = n if end < 0 else end + 1
                    line = data[pos:end].rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                    h = _parse_header_line(line, h)
                    pos = end
                    ctx.stats.bytes_consumed = offset + pos
                    continue
                nxt = data.find(b"\n#", pos)
                end = n if nxt < 0 else nxt + 1
                start = pos + _skip_prefix(data[pos:end], offset + pos, ctx.skip_bytes)
                if start < end:
                    tail = not terminated and end == n
                    region = data if start == 0 and end == n else data[start:end]
                    ok = yield from self._region(region, h, ctx, tail)
                    if ok or not tail:
                        ctx.stats.bytes_consumed = offset + end
                else:
                    ctx.stats.bytes_consumed = max(ctx.stats.bytes_consumed, offset + end)
                pos = end

    def _region(
        self, data: bytes, h: _TsvHeader, ctx: ReadContext, tail: bool
    ) -> Iterator[pa.RecordBatch]:
        """Parse one run of data lines under header ``h``; returns False if a
        final unterminated line was rejected."""
        stats = ctx.stats
        if not h.is_dns():
            n = _count_lines(data)
            stats.records_read += n
            if n:
                stats.reject("not_dns_log", f"#path {h.path}", n=n)
            return True
        names: Sequence[str] | None = h.fields
        sep = h.separator
        if names is None:
            first = next((ln for ln in data.split(b"\n", 64) if ln.strip()), b"")
            nf = first.count(b"\t") + 1 if first else 0
            if nf in (len(DEFAULT_FIELDS), len(DEFAULT_FIELDS_81)) and sep == "\t":
                names = DEFAULT_FIELDS if nf == len(DEFAULT_FIELDS) else DEFAULT_FIELDS_81
                note = f"no #fields header: assumed Zeek's default {nf}-field dns.log layout"
                if note not in h.notes:
                    h.notes.append(note)
                    log.info("%s: %s", stats.source, note)
            else:
                n = _count_lines(data)
                stats.records_read += n
                if n:
                    stats.reject("missing_header", first[:120].decode("utf-8", "backslashreplace"), n=n)
                return not tail
        if len(sep.encode()) != 1 or sep == "\n":
            n = _count_lines(data)
            stats.records_read += n
            if n:
                stats.reject("unsupported_separator", repr(sep), n=n)
            return True
        try:
            raw = _read_tsv(_to_utf8(data), names, h)
        except Exception as exc:  # polars refuses the chunk: count its lines
            n = _count_lines(data)
            stats.records_read += n
            if n:
                stats.reject("unparseable_chunk", f"{type(exc).__name__}: {exc}", n=n)
            return not tail
        if raw.height == 0:
            return True
        last = raw.columns[-2]
        blank = pl.all_horizontal(pl.all().is_null())
        bad_count = pl.col(_EXTRA).is_not_null() | pl.col(last).is_null()
        flags = raw.select(blank=blank, bad=bad_count & ~blank)
        n_blank = int(flags.get_column("blank").sum())
        n_bad = int(flags.get_column("bad").sum())
        stats.records_read += raw.height - n_blank
        if n_bad or n_blank:
            if n_bad:
                ex = raw.filter(flags.get_column("bad")).row(0)
                example = h.separator.join("" if v is None else v for v in ex[:8])
                reason = "truncated_record" if tail and raw.height - n_blank == 1 else "bad_field_count"
                stats.reject(reason, example, n=n_bad)
            raw = raw.filter(~(flags.get_column("bad") | flags.get_column("blank")))
        if raw.height:
            if h.unset_field:
                raw = raw.with_columns(pl.col(last).replace(h.unset_field, None))
            yield from canonical_batches(zeek_tsv_frame(raw, h), ctx)
        return not (tail and n_bad)


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
        "qtype": _code_names(pl.col("qtype_name"), pl.col("qtype"), QTYPES, "TYPE"),
        "rcode": _code_names(pl.col("rcode_name"), pl.col("rcode"), RCODES, "RCODE"),
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


def _parse_json_lines(lines: list[bytes], ctx: ReadContext, out: list[pl.DataFrame]) -> None:
    """Parse ``lines`` in bulk; on failure bisect, so each bad line is rejected alone."""
    if not lines:
        return
    try:
        df = _read_ndjson(b"\n".join(lines) + b"\n")
    except Exception as exc:
        if len(lines) == 1:
            ctx.stats.records_read += 1
            ctx.stats.reject("bad_json", f"{type(exc).__name__}: {str(exc)[:80]}")
            return
        mid = len(lines) // 2
        _parse_json_lines(lines[:mid], ctx, out)
        _parse_json_lines(lines[mid:], ctx, out)
        return
    ctx.stats.records_read += df.height
    out.append(df)


class ZeekJsonAdapter:
    """Zeek JSON-lines dns.log (``LogAscii::use_json=T``), epoch or ISO-8601 ``ts``."""

    name = "zeek-json"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical batches; bad lines are counted one by one."""
        chunk_bytes = int(ctx.options.get("chunk_bytes", CHUNK_BYTES))
        for offset, chunk, terminated in iter_lines_chunks(stream, chunk_bytes):
            start = _skip_prefix(chunk, offset, ctx.skip_bytes)
            if start >= len(chunk):
                ctx.stats.bytes_consumed = max(ctx.stats.bytes_consumed, offset + len(chunk))
                continue
            data = _to_utf8(chunk[start:], json_safe=True)
            frames: list[pl.DataFrame] = []
            before = ctx.stats.rejects["bad_json"]
            try:
                frames.append(_read_ndjson(data))
                ctx.stats.records_read += frames[0].height
            except Exception:
                lines = [ln for ln in data.split(b"\n") if ln.strip()]
                _parse_json_lines(lines, ctx, frames)
            tail_bad = not terminated and ctx.stats.rejects["bad_json"] > before
            if tail_bad:
                # An unterminated last line that does not parse: it may still be
                # being written; leave it for the next read of a grown file.
                ctx.stats.rejects["bad_json"] -= 1
                ctx.stats.reject("truncated_record", chunk[-80:].decode("utf-8", "replace"))
            else:
                ctx.stats.bytes_consumed = offset + len(chunk)
            for df in frames:
                if df.height == 0:
                    continue
                path = df.get_column("_path")
                # Another log (``_path`` not dns, or no dns fields at all: conn.log lines).
                other = (path.is_not_null() & (path != "dns")) | (
                    path.is_null()
                    & df.get_column("query").is_null()
                    & df.get_column("trans_id").is_null()
                )
                n_other = int(other.sum())
                if n_other:
                    example = str(df.filter(other).row(0, named=True))
                    ctx.stats.reject("not_dns_log", example, n=n_other)
                    df = df.filter(~other)
                if df.height:
                    yield from canonical_batches(zeek_json_frame(df), ctx)
