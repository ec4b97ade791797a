"""CSV and Parquet tables of DNS events, with a column mapping.

Column mapping
--------------
``ctx.options["mapping"]`` (a dict *canonical column → source column*) wins.
Every other canonical column is looked up, case-insensitively and ignoring
surrounding spaces, among these aliases (first match wins; the canonical name
itself is always tried first):

==============  ===============================================================
canonical       aliases
==============  ===============================================================
ts              timestamp, time, datetime, date_time, event_time, @timestamp,
                frame.time_epoch, query_time
src_ip          id.orig_h, client, client_ip, src, source_ip, srcip, ip.src
dst_ip          id.resp_h, server, server_ip, dst, dest_ip, destination_ip,
                dstip, ip.dst, resolver
src_port        id.orig_p, client_port, sport, srcport, udp.srcport
dst_port        id.resp_p, server_port, dport, dest_port, dstport, udp.dstport
proto           protocol, transport
trans_id        dns_id, transaction_id, dns.id
qname           query, domain, query_name, qry_name, dns.qry.name, name, fqdn
qtype           qtype_name, type, query_type, record_type, rrtype, dns.qry.type
rcode           rcode_name, response_code, dns.flags.rcode
answers         answer, rdata, dns.a
ttls            ttl, dns.resp.ttl
rtt             latency, response_time, dns.time
aa tc rd ra     (their names; Zeek's ``AA``/``TC``/``RD``/``RA`` match)
query_len       query_size
response_len    response_size
==============  ===============================================================

``qname`` and ``ts`` are required: without them ``stats.error`` says
``missing required column: ...`` and nothing is read.  Unmapped source columns
are ignored.

Values
------
* **ts**: numbers are epoch times whose unit is guessed *per value* by
  magnitude: below 1e11 seconds (up to year 5138), below 1e14 milliseconds,
  below 1e17 microseconds, else nanoseconds; ``ctx.options["ts_unit"]``
  (``s``/``ms``/``us``/``ns``) forces one.  Strings that are not numbers are
  read as ISO 8601 (``T`` or space, optional fraction, ``Z`` or ``±hh:mm`` /
  ``±hhmm`` offset; naive times are UTC).  Rows whose ``ts`` cannot be read
  are rejected as ``bad_timestamp``.
* **qtype / rcode**: numbers become mnemonics (``1`` → ``A``, ``3`` →
  ``NXDOMAIN``), names are upper-cased.
* **answers / ttls** given as text are split on ``ctx.options["list_sep"]``
  (default ``,``); ``-``, ``(empty)`` and empty text are null.
* **aa/tc/rd/ra**: ``T``/``true``/``1``/``yes`` and ``F``/``false``/``0``/``no``.
* Ports and ids that are not integers become null (no reject).

CSV
---
The delimiter is sniffed from the header and the first lines (``,``, tab,
``;``, ``|``) unless ``ctx.options["delimiter"]`` is given.  The decoded stream
is read in chunks of about 8 MiB cut at a row boundary (a newline outside
double quotes), so memory stays bounded; each chunk is parsed by Polars with
every column as text.  A chunk Polars cannot parse is re-read row by row with
the :mod:`csv` module and rows with the wrong number of fields are rejected as
``bad_field_count``.  ``records_read`` counts data rows.

Parquet
-------
Read one row group at a time (``pyarrow.parquet.ParquetFile.iter_batches``);
a corrupt row group is rejected as ``corrupt_row_group`` and reading goes on.
Typed columns (timestamps, integers, lists) are used as they are.  Parquet
files cannot grow by appending, so ``skip_bytes`` does not apply.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dnsieve.ingest.base import ReadContext, canonical_batches
from dnsieve.ingest.codes import qtype_code, qtype_name, rcode_name
from dnsieve.ingest.lines import safe_str

__all__ = [
    "ALIASES",
    "CsvAdapter",
    "ParquetAdapter",
    "map_frame",
    "resolve_mapping",
    "sniff_delimiter",
]

ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("ts", "timestamp", "time", "datetime", "date_time", "event_time", "@timestamp",
           "frame.time_epoch", "query_time"),
    "src_ip": ("src_ip", "id.orig_h", "client", "client_ip", "src", "source_ip", "srcip", "ip.src"),
    "dst_ip": ("dst_ip", "id.resp_h", "server", "server_ip", "dst", "dest_ip", "destination_ip",
               "dstip", "ip.dst", "resolver"),
    "src_port": ("src_port", "id.orig_p", "client_port", "sport", "srcport", "udp.srcport"),
    "dst_port": ("dst_port", "id.resp_p", "server_port", "dport", "dest_port", "dstport",
                 "udp.dstport"),
    "proto": ("proto", "protocol", "transport"),
    "trans_id": ("trans_id", "dns_id", "transaction_id", "dns.id"),
    "qname": ("qname", "query", "domain", "query_name", "qry_name", "dns.qry.name", "name", "fqdn"),
    "qtype": ("qtype", "qtype_name", "type", "query_type", "record_type", "rrtype", "dns.qry.type"),
    "rcode": ("rcode", "rcode_name", "response_code", "dns.flags.rcode"),
    "answers": ("answers", "answer", "rdata", "dns.a"),
    "ttls": ("ttls", "ttl", "dns.resp.ttl"),
    "rtt": ("rtt", "latency", "response_time", "dns.time"),
    "aa": ("aa",),
    "tc": ("tc",),
    "rd": ("rd",),
    "ra": ("ra",),
    "query_len": ("query_len", "query_size"),
    "response_len": ("response_len", "response_size"),
    "sensor": ("sensor",),
}  # fmt: skip

REQUIRED = ("qname", "ts")
_DELIMITERS = (",", "\t", ";", "|")
_CHUNK = 8 << 20
_NULL_TEXT = ("", "-", "(empty)")
_TRUE = ("t", "true", "1", "yes", "y")
_FALSE = ("f", "false", "0", "no", "n")
_NUM_RE = r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$"


class MissingColumnError(ValueError):
    """The table has no column for a required canonical field."""


def resolve_mapping(columns: list[str], options: Mapping[str, Any]) -> dict[str, str]:
    """Canonical column → source column, from the explicit mapping and the aliases.

    >>> resolve_mapping(["Timestamp", "id.orig_h", "query", "qtype"], {})
    {'ts': 'Timestamp', 'src_ip': 'id.orig_h', 'qname': 'query', 'qtype': 'qtype'}
    >>> resolve_mapping(["when", "d"], {"mapping": {"ts": "when", "qname": "d"}})
    {'ts': 'when', 'qname': 'd'}
    """
    explicit = dict(options.get("mapping") or {})
    by_lower: dict[str, str] = {}
    for c in columns:
        by_lower.setdefault(c.strip().lower(), c)
    out: dict[str, str] = {}
    used: set[str] = set()
    for canon, src in explicit.items():
        if canon in ALIASES and isinstance(src, str) and src in columns:
            out[canon] = src
            used.add(src)
    for canon, aliases in ALIASES.items():
        if canon in out:
            continue
        for alias in aliases:
            src = by_lower.get(alias)
            if src is not None and src not in used:
                out[canon] = src
                used.add(src)
                break
    missing = [c for c in REQUIRED if c not in out]
    if missing:
        wanted = "; ".join(f"{c} (one of: {', '.join(ALIASES[c])})" for c in missing)
        raise MissingColumnError(f"missing required column: {wanted}")
    return {k: out[k] for k in ALIASES if k in out}


def sniff_delimiter(sample: bytes) -> str:
    """The delimiter among ``, \\t ; |`` that splits the first lines most consistently.

    >>> sniff_delimiter(b"ts;query;qtype\\n1;a.com;A\\n")
    ';'
    >>> sniff_delimiter(b"ts\\tquery\\n1\\ta.com\\n")
    '\\t'
    """
    lines = [ln for ln in sample.decode("utf-8", "replace").splitlines()[:20] if ln.strip()]
    if len(lines) > 2:
        lines = lines[:-1]  # the last line of a sample may be cut
    best, best_score = ",", -1.0
    for d in _DELIMITERS:
        counts = [len(next(iter(csv.reader([ln], delimiter=d)))) for ln in lines] if lines else [0]
        head = counts[0]
        if head < 2:
            continue
        agree = sum(1 for c in counts if c == head) / len(counts)
        score = agree * 1000 + head
        if score > best_score:
            best, best_score = d, score
    return best


# ---------------------------------------------------------------------------
# value conversion (vectorised)
# ---------------------------------------------------------------------------


def _scale_epoch(num: pl.Expr, unit: str | None) -> pl.Expr:
    """Epoch number → µs (Int64), unit forced or guessed by magnitude."""
    factors = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}
    if unit in factors:
        return (num * factors[unit]).round().cast(pl.Int64, strict=False)
    a = num.abs()
    return (
        pl.when(a < 1e11)
        .then(num * 1e6)
        .when(a < 1e14)
        .then(num * 1e3)
        .when(a < 1e17)
        .then(num)
        .otherwise(num * 1e-3)
        .round()
        .cast(pl.Int64, strict=False)
    )


_ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
)


def _py_iso(s: str | None) -> int | None:
    if s is None:
        return None
    try:
        dt = datetime.fromisoformat(s.strip())
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _ts_from_text(col: pl.Series, unit: str | None) -> pl.Series:
    """Text timestamps (epoch numbers or ISO 8601) → Datetime(us, UTC)."""
    s = col.cast(pl.String).str.strip_chars()
    is_num = s.str.contains(_NUM_RE)
    num = pl.select(
        pl.when(is_num).then(_scale_epoch(pl.lit(s.cast(pl.Float64, strict=False)), unit))
    ).to_series()
    text = pl.select(pl.when(~is_num & s.is_not_null()).then(s)).to_series()
    if text.null_count() == text.len():  # all numeric (or null): no ISO parsing needed
        return num.cast(pl.Datetime("us", "UTC")).alias("ts")
    iso = text.str.replace(r"Z$", "+00:00")
    parsed: pl.Series | None = None
    for fmt in _ISO_FORMATS:
        attempt = iso.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")
        parsed = attempt if parsed is None else parsed.fill_null(attempt)
    assert parsed is not None
    us = parsed.dt.epoch("us")
    left = us.is_null() & text.is_not_null()
    if bool(left.any()):  # rare forms: leave them to Python's ISO parser
        idx = left.arg_true()
        extra = pl.Series([_py_iso(v) for v in text.gather(idx).to_list()], dtype=pl.Int64)
        us = us.scatter(idx, extra)
    return num.fill_null(us).cast(pl.Datetime("us", "UTC")).alias("ts")


def _ts_column(col: pl.Series, unit: str | None) -> pl.Series:
    dt = col.dtype
    if isinstance(dt, pl.Datetime):
        out = col.dt.cast_time_unit("us")
        return (
            out.dt.replace_time_zone("UTC")
            if dt.time_zone is None
            else out.dt.convert_time_zone("UTC")
        ).alias("ts")
    if isinstance(dt, pl.Date):
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts")
    if dt.is_numeric():
        return (
            pl.select(_scale_epoch(pl.lit(col.cast(pl.Float64)), unit))
            .to_series()
            .cast(pl.Datetime("us", "UTC"))
            .alias("ts")
        )
    return _ts_from_text(col, unit)


def _code_names(col: pl.Series, namer: Any) -> pl.Series:
    """Numbers → mnemonics via ``namer``; names upper-cased; null text → null."""
    s = col.cast(pl.String).str.strip_chars()
    uniq = [v for v in s.unique().to_list() if v is not None]
    mapping: dict[str, str | None] = {}
    for v in uniq:
        if v in _NULL_TEXT:
            mapping[v] = None
        elif v.isdigit() and len(v) <= 6:
            mapping[v] = namer(int(v))
        else:
            up = v.upper()
            if namer is qtype_name and up.startswith("TYPE") and up[4:].isdigit():
                code = qtype_code(up)
                mapping[v] = qtype_name(code) if code is not None else up
            else:
                mapping[v] = up
    if not mapping:
        return s
    return s.replace_strict(
        list(mapping.keys()), list(mapping.values()), default=None, return_dtype=pl.String
    )


def _list_column(col: pl.Series, sep: str, inner: pl.DataType) -> pl.Series:
    if isinstance(col.dtype, pl.List):
        return col.cast(pl.List(inner), strict=False)
    s = col.cast(pl.String).str.strip_chars()
    s = pl.select(pl.when(s.is_in(list(_NULL_TEXT))).then(None).otherwise(s)).to_series()
    parts = s.str.split(sep).list.eval(pl.element().str.strip_chars())
    return parts.cast(pl.List(inner), strict=False)


def _bool_column(col: pl.Series) -> pl.Series:
    if col.dtype == pl.Boolean:
        return col
    s = col.cast(pl.String).str.strip_chars().str.to_lowercase()
    return pl.select(
        pl.when(s.is_in(list(_TRUE))).then(True).when(s.is_in(list(_FALSE))).then(False)
    ).to_series()


def _null_text(col: pl.Series) -> pl.Series:
    if col.dtype != pl.String:
        return col.cast(pl.String, strict=False)
    s = col.str.strip_chars()
    return pl.select(pl.when(s.is_in(list(_NULL_TEXT))).then(None).otherwise(s)).to_series()


def _numeric(col: pl.Series, dtype: pl.DataType) -> pl.Series:
    if col.dtype == pl.String:
        col = col.str.strip_chars().cast(pl.Float64, strict=False)
    if dtype.is_integer():
        col = col.cast(pl.Float64, strict=False)
        col = pl.select(pl.when(col == col.round()).then(col)).to_series()
    return col.cast(dtype, strict=False)


def map_frame(
    df: pl.DataFrame, mapping: Mapping[str, str], options: Mapping[str, Any]
) -> pl.DataFrame:
    """Turn a source frame into adapter columns (see the module docs for the rules)."""
    unit = options.get("ts_unit")
    sep = str(options.get("list_sep", ","))
    cols: dict[str, pl.Series] = {}
    for canon, src in mapping.items():
        col = df.get_column(src)
        if canon == "ts":
            out = _ts_column(col, unit)
        elif canon == "qtype":
            out = _code_names(col, qtype_name)
        elif canon == "rcode":
            out = _code_names(col, rcode_name)
        elif canon == "answers":
            out = _list_column(col, sep, pl.String())
        elif canon == "ttls":
            out = _list_column(col, sep, pl.Float64())
        elif canon in ("aa", "tc", "rd", "ra"):
            out = _bool_column(col)
        elif canon in ("src_port", "dst_port", "trans_id", "query_len", "response_len"):
            out = _numeric(col, pl.Int32())
        elif canon == "rtt":
            out = _numeric(col, pl.Float64())
        elif canon == "proto":
            out = _null_text(col).str.to_lowercase()
        else:
            out = _null_text(col)
        cols[canon] = out.alias(canon)
    return pl.DataFrame(cols)


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


def _cut(data: bytes) -> int:
    r"""End of the last complete row in ``data`` (after a newline outside quotes), or -1.

    >>> _cut(b'a,b\n1,"x\ny"\n2,')
    12
    >>> _cut(b'a,b\n1,"x\ny')
    4
    """
    cut = data.rfind(b"\n")
    if cut < 0:
        return -1
    odd = data.count(b'"', 0, cut) % 2
    while odd:  # inside a quoted field: step back (linear in len(data) overall)
        prev = data.rfind(b"\n", 0, cut)
        if prev < 0:
            return -1
        odd ^= data.count(b'"', prev, cut) % 2
        cut = prev
    return cut + 1


class CsvAdapter:
    """Delimited text tables (see the module docs)."""

    name = "csv"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        # 1. the header line (and a sample for the delimiter)
        data = b""
        while True:
            chunk = stream.read(1 << 16)
            data += chunk
            nl = _cut(data)
            if nl > 0 or not chunk:
                break
            if len(data) > (1 << 20):
                ctx.stats.error = "missing required column: no header line found in the first 1 MiB"
                return
        bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        data = data[bom:]
        if not data.strip():
            return
        header_end = data.find(b"\n") + 1 or len(data)
        header = data[:header_end]
        delim = str(ctx.options.get("delimiter") or sniff_delimiter(data[: 1 << 16]))
        try:
            columns = next(
                csv.reader([header.decode("utf-8", "replace").rstrip("\r\n")], delimiter=delim)
            )
        except (csv.Error, StopIteration) as exc:
            ctx.stats.error = f"unreadable CSV header: {exc}"
            return
        columns = _dedupe([c.strip() for c in columns])
        try:
            mapping = resolve_mapping(columns, ctx.options)
        except MissingColumnError as exc:
            ctx.stats.error = str(exc)
            return
        header_bytes = (delim.join(_quote(c, delim) for c in columns) + "\n").encode("utf-8")
        offset = header_end + bom
        rest = data[header_end:]
        ctx.stats.bytes_consumed = offset
        # 2. skip rows already ingested
        if ctx.skip_bytes > offset:
            rest, offset = _skip_to(stream, rest, offset, ctx.skip_bytes)
            ctx.stats.bytes_consumed = offset
        # 3. chunks cut at row boundaries
        eof = False
        while not eof or rest:
            if not eof and len(rest) < _CHUNK:
                more = stream.read(_CHUNK)
                if more:
                    rest += more
                    continue
                eof = True
            if eof:
                body, rest = rest, b""
            else:
                cut = _cut(rest)
                if cut <= 0:  # one row bigger than a chunk: read on, within limits
                    if len(rest) > ctx.max_record_bytes:
                        ctx.stats.records_read += 1
                        ctx.stats.reject("row_too_long", rest[:80].decode("utf-8", "replace"))
                        offset += len(rest)
                        rest = b""
                    more = stream.read(_CHUNK)
                    if not more:
                        eof = True
                    rest += more
                    continue
                body, rest = rest[:cut], rest[cut:]
            offset += len(body)
            if body.strip():
                yield from self._parse(header_bytes, body, columns, delim, mapping, ctx)
            ctx.stats.bytes_consumed = offset

    def _parse(
        self,
        header: bytes,
        body: bytes,
        columns: list[str],
        delim: str,
        mapping: dict[str, str],
        ctx: ReadContext,
    ) -> Iterator[pa.RecordBatch]:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:  # keep undecodable bytes as \xNN text, byte-faithfully
            body = safe_str(body.decode("utf-8", "surrogateescape")).encode("utf-8")
        try:
            df = pl.read_csv(
                io.BytesIO(header + body),
                separator=delim,
                has_header=True,
                infer_schema=False,
                quote_char='"',
                encoding="utf8-lossy",
                raise_if_empty=False,
            )
            if df.width != len(columns):
                raise pl.exceptions.ComputeError("width mismatch")
            df.columns = columns
        except Exception:  # malformed chunk: fall back to row-by-row
            df = self._slow_parse(body, columns, delim, ctx)
        ctx.stats.records_read += df.height
        if df.height == 0:
            return
        yield from _emit(df, mapping, ctx)

    @staticmethod
    def _slow_parse(body: bytes, columns: list[str], delim: str, ctx: ReadContext) -> pl.DataFrame:
        rows: list[list[str]] = []
        text = body.decode("utf-8", "replace").replace("\x00", "")
        reader = csv.reader(io.StringIO(text), delimiter=delim)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                ctx.stats.records_read += 1
                ctx.stats.reject("malformed_row", str(exc))
                continue
            if not row or all(not f.strip() for f in row):
                continue
            if len(row) != len(columns):
                ctx.stats.records_read += 1
                ctx.stats.reject("bad_field_count", delim.join(row)[:160])
                continue
            rows.append(row)
        return pl.DataFrame(
            {c: pl.Series(c, [r[i] for r in rows], dtype=pl.String) for i, c in enumerate(columns)}
        )


def _emit(
    df: pl.DataFrame, mapping: Mapping[str, str], ctx: ReadContext
) -> Iterator[pa.RecordBatch]:
    out = map_frame(df, mapping, ctx.options)
    for start in range(0, out.height, ctx.batch_size):
        yield from canonical_batches(out.slice(start, ctx.batch_size), ctx)


def _dedupe(cols: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, c in enumerate(cols):
        name = c or f"column_{i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def _quote(c: str, delim: str) -> str:
    return '"' + c.replace('"', '""') + '"' if (delim in c or '"' in c or "\n" in c) else c


def _skip_to(stream: BinaryIO, rest: bytes, offset: int, target: int) -> tuple[bytes, int]:
    """Drop bytes up to ``target`` (and to the next row start if it falls mid-row)."""
    while offset + len(rest) < target:
        offset += len(rest)
        rest = stream.read(min(_CHUNK, target - offset) or 1)
        if not rest:
            return b"", offset
    cut = target - offset
    mid_row = cut > 0 and rest[cut - 1 : cut] != b"\n"
    rest, offset = rest[cut:], target
    if mid_row:
        nl = rest.find(b"\n")
        while nl < 0:
            offset += len(rest)
            rest = stream.read(_CHUNK)
            if not rest:
                return b"", offset
            nl = rest.find(b"\n")
        rest, offset = rest[nl + 1 :], offset + nl + 1
    return rest, offset


# ---------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------


class ParquetAdapter:
    """Parquet tables, one row group at a time (see the module docs)."""

    name = "parquet"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        try:
            pf = pq.ParquetFile(stream)
        except Exception as exc:  # not Parquet, or a damaged footer
            ctx.stats.error = f"invalid parquet file: {type(exc).__name__}: {exc}"
            return
        columns = list(pf.schema_arrow.names)
        try:
            mapping = resolve_mapping(columns, ctx.options)
        except MissingColumnError as exc:
            ctx.stats.error = str(exc)
            return
        wanted = list(dict.fromkeys(mapping.values()))
        for i in range(pf.num_row_groups):
            try:
                batches = list(
                    pf.iter_batches(batch_size=ctx.batch_size, row_groups=[i], columns=wanted)
                )
            except Exception as exc:
                n = pf.metadata.row_group(i).num_rows
                ctx.stats.records_read += n
                ctx.stats.reject("corrupt_row_group", f"row group {i}: {exc}", n=n)
                continue
            for batch in batches:
                ctx.stats.records_read += batch.num_rows
                df = pl.from_arrow(batch)
                assert isinstance(df, pl.DataFrame)
                try:
                    yield from _emit(df, mapping, ctx)
                except Exception as exc:  # a column of an unusable type
                    ctx.stats.reject(
                        "bad_column_type", f"{type(exc).__name__}: {exc}", n=batch.num_rows
                    )
        try:
            ctx.stats.bytes_consumed = int(stream.seek(0, 2))
        except (OSError, ValueError, AttributeError):
            ctx.stats.bytes_consumed = 0
