"""Zeek ``conn.log`` adapters (TSV and JSON lines) into canonical flows.

Field mapping (both formats)::

    ts -> ts                     duration -> duration (ts_last = ts + duration)
    id.orig_h/p -> src_ip/port   id.resp_h/p -> dst_ip/port     proto -> proto
    orig_pkts -> src2dst_packets             resp_pkts -> dst2src_packets
    orig_ip_bytes -> src2dst_bytes           resp_ip_bytes -> dst2src_bytes
    orig_bytes -> src2dst_payload_bytes      resp_bytes -> dst2src_payload_bytes
    service -> application       conn_state -> conn_state (and end_reason)  uid -> uid

``end_reason`` from ``conn_state``: ``SF`` → ``end`` (closed normally), ``REJ``
→ ``rejected``, ``RST*`` → ``reset``, ``S1`` → ``open`` (established, not
closed when the log was written), anything else → ``incomplete``.  Zeek
records no per-packet sizes or gaps, so only the mean packet sizes (bytes /
packets) are filled; the min/std/max and inter-arrival statistics stay null,
as do the TCP flag counts (``history`` keeps first occurrences, not counts).

TSV headers may repeat mid-file (concatenated logs); each data line is read
with the header above it.  A log whose ``#path`` is not ``conn`` is counted as
skipped (``not_conn_log``).  Rejects: ``missing_header``, ``bad_field_count``,
``bad_timestamp``, ``missing_address``, ``bad_json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import BinaryIO

import polars as pl
import pyarrow as pa

from dnsieve.ingest.base import ReadContext
from dnsieve.ingest.flows_common import canonical_flow_batches
from dnsieve.ingest.zeek import (
    TsvHeader,
    _parse_header_line,
    _parse_ts,
    _to_utf8,
    iter_lines_chunks,
)

__all__ = ["ConnJsonAdapter", "ConnTsvAdapter", "conn_frame"]

CHUNK_BYTES = 8 * 1024 * 1024
_EXTRA = "__extra_field"

_INT_FIELDS = {
    "orig_pkts": "src2dst_packets",
    "resp_pkts": "dst2src_packets",
    "orig_ip_bytes": "src2dst_bytes",
    "resp_ip_bytes": "dst2src_bytes",
    "orig_bytes": "src2dst_payload_bytes",
    "resp_bytes": "dst2src_payload_bytes",
    "id.orig_p": "src_port",
    "id.resp_p": "dst_port",
}
_STR_FIELDS = {
    "id.orig_h": "src_ip",
    "id.resp_h": "dst_ip",
    "proto": "proto",
    "service": "application",
    "conn_state": "conn_state",
    "uid": "uid",
}

_END_REASON = (
    pl.when(pl.col("conn_state") == "SF")
    .then(pl.lit("end"))
    .when(pl.col("conn_state") == "REJ")
    .then(pl.lit("rejected"))
    .when(pl.col("conn_state").str.starts_with("RST"))
    .then(pl.lit("reset"))
    .when(pl.col("conn_state") == "S1")
    .then(pl.lit("open"))
    .when(pl.col("conn_state").is_not_null())
    .then(pl.lit("incomplete"))
)


def conn_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Map Zeek conn fields (any dtype; unset already null) to flow adapter columns.

    >>> f = conn_frame(pl.DataFrame({"ts": ["1713484795.5"], "id.orig_h": ["10.0.0.1"],
    ...     "id.resp_h": ["1.2.3.4"], "duration": ["2.5"], "conn_state": ["SF"],
    ...     "orig_pkts": ["3"], "orig_ip_bytes": ["180"]}))
    >>> f.select("src_ip", "duration", "src2dst_packets", "end_reason").row(0)
    ('10.0.0.1', 2.5, 3, 'end')
    """
    cols: dict[str, pl.Series] = {"ts": _parse_ts(df.get_column("ts"))}
    for src, dst in _STR_FIELDS.items():
        if src in df.columns:
            cols[dst] = df.get_column(src).cast(pl.String).alias(dst)
    for src, dst in _INT_FIELDS.items():
        if src in df.columns:
            cols[dst] = df.get_column(src).cast(pl.Int64, strict=False).alias(dst)
    if "duration" in df.columns:
        cols["duration"] = (
            df.get_column("duration").cast(pl.Float64, strict=False).alias("duration")
        )
    out = pl.DataFrame(cols)
    if "conn_state" in out.columns:
        out = out.with_columns(end_reason=_END_REASON)
    return out


def _read_region(data: bytes, h: TsvHeader, ctx: ReadContext) -> pl.DataFrame | None:
    """Parse data lines under header ``h`` (counting bad lines); None when none are good."""
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if h.fields is None:
        ctx.stats.records_read += n_lines
        ctx.stats.reject("missing_header", data[:80].decode("utf-8", "replace"), n=n_lines)
        return None
    if h.path is not None and not h.path.startswith("conn"):
        ctx.stats.records_read += n_lines
        ctx.stats.skipped["not_conn_log"] += n_lines
        return None
    names = list(h.fields)
    schema = {n: pl.String for n in (*names, _EXTRA)}
    df = pl.read_csv(
        _to_utf8(data),
        has_header=False,
        separator=h.separator,
        quote_char=None,
        schema=schema,
        # the last field keeps the unset marker, so a short line (null there) can be told
        # from an unset last field; it is nulled after the check
        null_values={n: h.unset_field for n in names[:-1]} if h.unset_field else None,
        truncate_ragged_lines=True,
        missing_columns="insert",
        raise_if_empty=False,
        eol_char="\n",
    )
    df = df.filter(~pl.all_horizontal(pl.all().is_null()))  # blank lines
    ctx.stats.records_read += df.height
    bad = pl.col(_EXTRA).is_not_null() | pl.col(names[-1]).is_null()
    n_bad = int(df.select(bad.sum()).item())
    if n_bad:
        ex = df.filter(bad).row(0)
        ctx.stats.reject("bad_field_count", "\t".join(str(v) for v in ex if v is not None), n=n_bad)
        df = df.filter(~bad)
    if "ts" not in df.columns:
        ctx.stats.reject("missing_header", "no ts field", n=df.height)
        return None
    if not df.height:
        return None
    last = pl.col(names[-1])
    df = df.drop(_EXTRA).with_columns(
        pl.when(last == h.unset_field).then(None).otherwise(last).alias(names[-1])
    )
    return conn_frame(df)


class ConnTsvAdapter:
    """Zeek ASCII ``conn.log``; header changes mid-file are honoured."""

    name = "zeek-conn"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical flow batches of at most ``ctx.batch_size`` rows."""
        h = TsvHeader()
        chunk_bytes = int(ctx.options.get("chunk_bytes", CHUNK_BYTES))
        for offset, data, _terminated in iter_lines_chunks(stream, chunk_bytes):
            pos, n = 0, len(data)
            while pos < n:
                if data[pos] == 0x23:  # '#'
                    end = data.find(b"\n", pos)
                    end = n if end < 0 else end + 1
                    line = data[pos:end].rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                    h = _parse_header_line(line, h)
                    pos = end
                    continue
                nxt = data.find(b"\n#", pos)
                end = n if nxt < 0 else nxt + 1
                start = max(pos, ctx.skip_bytes - offset)  # rows before skip_bytes are in already
                if start < end:
                    frame = _read_region(data[start:end], replace(h), ctx)
                    if frame is not None:
                        yield from canonical_flow_batches(frame, ctx)
                pos = end
            ctx.stats.bytes_consumed = offset + n


class ConnJsonAdapter:
    """Zeek JSON-lines ``conn.log`` (one object per line)."""

    name = "zeek-conn-json"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical flow batches; lines of other logs are skipped, bad JSON rejected."""
        chunk_bytes = int(ctx.options.get("chunk_bytes", CHUNK_BYTES))
        for offset, data, _terminated in iter_lines_chunks(stream, chunk_bytes):
            if offset + len(data) <= ctx.skip_bytes:
                continue
            if offset < ctx.skip_bytes:  # rows before skip_bytes are in already
                data = data[ctx.skip_bytes - offset :]
                offset = ctx.skip_bytes
            rows: list[dict[str, object]] = []
            for line in _to_utf8(data, json_safe=True).splitlines():
                s = line.strip()
                if not s:
                    continue
                ctx.stats.records_read += 1
                try:
                    obj = json.loads(s)
                except ValueError:
                    ctx.stats.reject("bad_json", s[:80].decode("utf-8", "replace"))
                    continue
                if not isinstance(obj, dict):
                    ctx.stats.reject("bad_json", s[:80].decode("utf-8", "replace"))
                    continue
                path = obj.get("_path")
                if path is not None and path != "conn":
                    ctx.stats.skipped["not_conn_log"] += 1
                    continue
                rows.append({k: _scalar(v) for k, v in obj.items()})
            if rows:
                df = pl.DataFrame(
                    rows, schema_overrides={"ts": pl.String}, infer_schema_length=None
                )
                df = df.with_columns(pl.all().cast(pl.String))
                if "ts" not in df.columns:
                    ctx.stats.reject("bad_timestamp", n=df.height)
                else:
                    yield from canonical_flow_batches(conn_frame(df), ctx)
            ctx.stats.bytes_consumed = offset + len(data)


def _scalar(v: object) -> str | None:
    """A JSON value as text (lists joined with ``,``; null stays null)."""
    if v is None:
        return None
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    if isinstance(v, bool):
        return "T" if v else "F"
    return str(v)
