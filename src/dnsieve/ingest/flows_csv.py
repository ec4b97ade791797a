"""FlowLabeler and Unicauca/CICFlowMeter CSV into canonical flows, read by column name.

Column names are matched after :func:`~dnsieve.ingest.flows_common.normalize_column`
(``Flow.Duration``, `` Flow Duration`` and ``flow_duration`` are the same), so
the Unicauca 87-attribute release (dotted names), CICFlowMeter / CIC-IDS
(spaced names) and FlowLabeler's own layout all read.  The full mapping is
documented in ``docs/flows.md``; :data:`COLUMN_MAP` is its source.

Units: FlowLabeler writes epoch seconds and seconds (``flowStart``,
``min_piat``); CICFlowMeter writes microseconds (``Flow Duration``, ``Flow IAT
Min``) and a wall-clock ``Timestamp`` (``26/04/201711:11:17`` in Unicauca,
``03/07/2017 08:55:58`` in CIC-IDS2017: day first, UTC unless
``ctx.options["tz"]`` names the capture's zone).  CICFlowMeter's packet
lengths are payload lengths; its header lengths are added to get IP bytes.

Rejects: ``bad_timestamp``, ``missing_address``, ``bad_field_count``,
``malformed_row``, ``row_too_long``; a table without a time or address column
is an error (``stats.error``), not a stream of rejects.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import BinaryIO

import polars as pl
import pyarrow as pa

from dnsieve.ingest.base import ReadContext
from dnsieve.ingest.flows_common import PROTO_NAMES, canonical_flow_batches, normalize_column
from dnsieve.ingest.tabular import CsvAdapter, _cut, _dedupe, sniff_delimiter

__all__ = ["COLUMN_MAP", "END_REASONS", "FlowCsvAdapter", "flow_csv_frame"]

_CHUNK = 8 * 1024 * 1024

#: canonical column -> (normalised source names, first match wins; scale to canonical units).
#: A scale of 1e-6 turns CICFlowMeter microseconds into seconds.
COLUMN_MAP: dict[str, tuple[tuple[str, ...], float]] = {
    "uid": (("flow_key", "flow_id", "uid"), 1.0),
    "src_ip": (("src_ip", "source_ip", "srcip", "id_orig_h"), 1.0),
    "dst_ip": (("dst_ip", "destination_ip", "dstip", "id_resp_h"), 1.0),
    "src_port": (("src_port", "source_port", "sport"), 1.0),
    "dst_port": (("dst_port", "destination_port", "dport"), 1.0),
    "proto": (("proto", "protocol"), 1.0),
    "duration": (("flowduration", "flow_duration"), 1.0),
    "src2dst_packets": (("f_pkttotalcount", "total_fwd_packets", "tot_fwd_pkts"), 1.0),
    "dst2src_packets": (
        ("b_pkttotalcount", "total_backward_packets", "total_bwd_packets", "tot_bwd_pkts"),
        1.0,
    ),
    "src2dst_bytes": (("f_octettotalcount",), 1.0),
    "dst2src_bytes": (("b_octettotalcount",), 1.0),
    "src2dst_payload_bytes": (
        ("total_length_of_fwd_packets", "totlen_fwd_pkts", "total_length_of_fwd_packet"),
        1.0,
    ),
    "dst2src_payload_bytes": (
        ("total_length_of_bwd_packets", "totlen_bwd_pkts", "total_length_of_bwd_packet"),
        1.0,
    ),
    "end_reason": (("flowendreason",), 1.0),
    "application": (
        ("application_name", "web_service", "application_protocol", "protocolname", "service"),
        1.0,
    ),
    "category": (("category", "application_category_name"), 1.0),
    "server_name": (("requested_server_name", "server_name", "sni"), 1.0),
}
# packet sizes and inter-arrival times: FlowLabeler (min_ps, f_avg_ps, ...) and CIC names
for _d, _fl, _cic_ps, _cic_iat in (
    ("bidirectional", "", "packet_length", "flow_iat"),
    ("src2dst", "f_", "fwd_packet_length", "fwd_iat"),
    ("dst2src", "b_", "bwd_packet_length", "bwd_iat"),
):
    for _stat, _fls in (("min", "min"), ("mean", "avg"), ("std", "std_dev"), ("max", "max")):
        _cic_stat = {"min": "min", "mean": "mean", "std": "std", "max": "max"}[_stat]
        _extra_ps = (
            (f"{_stat}_packet_length",) if _d == "bidirectional" and _stat in ("min", "max") else ()
        )
        COLUMN_MAP[f"{_d}_{_stat}_ps"] = (
            (f"{_fl}{_fls}_ps", f"{_cic_ps}_{_cic_stat}", *_extra_ps),
            1.0,
        )
        COLUMN_MAP[f"{_d}_{_stat}_piat"] = ((f"{_fl}{_fls}_piat",), 1.0)
        COLUMN_MAP[f"{_d}_{_stat}_piat_us"] = ((f"{_cic_iat}_{_cic_stat}",), 1e-6)
for _flag in ("syn", "cwr", "ece", "urg", "ack", "psh", "rst", "fin"):
    _cic = "cwe" if _flag == "cwr" else _flag
    COLUMN_MAP[f"bidirectional_{_flag}_packets"] = ((f"{_cic}_flag_count",), 1.0)
    COLUMN_MAP[f"src2dst_{_flag}_packets"] = ((f"fwd_{_flag}_flags",), 1.0)
    COLUMN_MAP[f"dst2src_{_flag}_packets"] = ((f"bwd_{_flag}_flags",), 1.0)

#: IPFIX flowEndReason codes (RFC 5102 §5.11.3) as FlowLabeler writes them.
END_REASONS: dict[str, str] = {
    "1": "idle",
    "2": "active",
    "3": "end",
    "4": "forced",
    "5": "resources",
}

_TIME_FORMATS = (
    "%d/%m/%Y%H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %I:%M:%S %p",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
)


def _pick(norm: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((norm[n] for n in names if n in norm), None)


def _wallclock(text: pl.Series, tz: str) -> pl.Series:
    out = pl.Series("ts", [None] * len(text), dtype=pl.Datetime("us"))
    for fmt in _TIME_FORMATS:
        got = text.str.strip_chars().str.to_datetime(fmt, strict=False, time_unit="us")
        out = out.fill_null(got)
    return out.dt.replace_time_zone(
        tz, ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")


def flow_csv_frame(df: pl.DataFrame, options: dict[str, object] | None = None) -> pl.DataFrame:
    """Map a table of text columns (FlowLabeler or CICFlowMeter names) to flow adapter columns.

    >>> t = pl.DataFrame({"src_ip": ["10.0.0.1"], "dst_ip": ["1.1.1.1"], "proto": ["6"],
    ...     "flowStart": ["1556000000.5"], "flowEnd": ["1556000002.5"], "f_pktTotalCount": ["4"],
    ...     "f_avg_ps": ["60.5"], "flowEndReason": ["3"], "web_service": ["Google"]})
    >>> flow_csv_frame(t).select("proto", "src2dst_packets", "end_reason", "application").row(0)
    ('tcp', 4.0, 'end', 'Google')
    """
    options = options or {}
    norm: dict[str, str] = {}
    for c in df.columns:
        norm.setdefault(normalize_column(c), c)
    cols: dict[str, pl.Series] = {}
    for canon, (names, scale) in COLUMN_MAP.items():
        src = _pick(norm, names)
        if src is None:
            continue
        raw = df.get_column(src).cast(pl.String).str.strip_chars()
        target = canon.removesuffix("_us")
        if target in cols:
            continue
        if canon in ("uid", "src_ip", "dst_ip", "application", "category", "server_name"):
            cols[target] = raw.replace({"": None}).alias(target)
        elif canon == "proto":
            num = raw.cast(pl.Int64, strict=False)
            named = num.replace_strict(PROTO_NAMES, default=None, return_dtype=pl.String)
            cols[target] = named.fill_null(num.cast(pl.String)).fill_null(raw).alias(target)
        elif canon == "end_reason":
            cols[target] = raw.replace(END_REASONS).alias(target)
        else:
            value = raw.cast(pl.Float64, strict=False)
            value = value.replace([float("inf"), float("-inf")], None)
            cols[target] = (value * scale).alias(target)
    # time: FlowLabeler flowStart/flowEnd (epoch s), or a wall-clock / epoch Timestamp
    start = _pick(norm, ("flowstart", "ts", "first_seen"))
    end = _pick(norm, ("flowend", "last_seen"))
    if start is not None:
        cols["ts"] = df.get_column(start).cast(pl.Float64, strict=False).alias("ts")
        if end is not None:
            cols["ts_last"] = df.get_column(end).cast(pl.Float64, strict=False).alias("ts_last")
        for name, canon in (
            ("f_flowend", "src2dst_ts_last"),
            ("b_flowstart", "dst2src_ts"),
            ("b_flowend", "dst2src_ts_last"),
        ):
            if name in norm:
                cols[canon] = df.get_column(norm[name]).cast(pl.Float64, strict=False).alias(canon)
    else:
        stamp = _pick(norm, ("timestamp", "time", "date_time"))
        if stamp is not None:
            text = df.get_column(stamp).cast(pl.String)
            epoch = text.cast(pl.Float64, strict=False)
            wall = _wallclock(text, str(options.get("tz") or "UTC"))
            secs = (wall.dt.epoch("us").cast(pl.Float64) / 1e6).fill_null(epoch)
            cols["ts"] = secs.alias("ts")
        if "duration" in cols:  # CICFlowMeter: microseconds
            cols["duration"] = (cols["duration"] * 1e-6).alias("duration")
    if "ts" not in cols:
        cols["ts"] = pl.Series("ts", [None] * df.height, dtype=pl.Float64)
    # CICFlowMeter: IP bytes = payload + header lengths; packets in total
    for d, hdr in (("src2dst", "fwd_header_length"), ("dst2src", "bwd_header_length")):
        h = _pick(norm, (hdr, f"{hdr}_1"))
        pay = cols.get(f"{d}_payload_bytes")
        if f"{d}_bytes" not in cols and h is not None and pay is not None:
            hb = df.get_column(h).cast(pl.Float64, strict=False).abs()
            cols[f"{d}_bytes"] = (pay + hb).alias(f"{d}_bytes")
    return pl.DataFrame(cols)


class FlowCsvAdapter:
    """FlowLabeler / Unicauca / CICFlowMeter CSV (delimiter sniffed), bounded chunks."""

    name = "flow-csv"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical flow batches of at most ``ctx.batch_size`` rows."""
        data = b""
        while True:
            chunk = stream.read(1 << 16)
            data += chunk
            if _cut(data) > 0 or not chunk:
                break
            if len(data) > (1 << 20):
                ctx.stats.error = "no CSV header line in the first 1 MiB"
                return
        data = data.removeprefix(b"\xef\xbb\xbf")
        if not data.strip():
            return
        header_end = data.find(b"\n") + 1 or len(data)
        delim = str(ctx.options.get("delimiter") or sniff_delimiter(data[: 1 << 16]))
        columns = _dedupe(
            [
                c.strip()
                for c in next(
                    csv.reader(
                        [data[:header_end].decode("utf-8", "replace").rstrip("\r\n")],
                        delimiter=delim,
                    )
                )
            ]
        )
        norm = {normalize_column(c) for c in columns}
        has_time = bool(norm & {"flowstart", "ts", "first_seen", "timestamp", "time", "date_time"})
        has_addr = bool(norm & {"src_ip", "source_ip", "srcip"}) and bool(
            norm & {"dst_ip", "destination_ip", "dstip"}
        )
        if not (has_time and has_addr):
            ctx.stats.error = "not a flow table: needs a start time and both addresses"
            return
        header = data[:header_end]
        rest = data[header_end:]
        eof = False
        while rest or not eof:
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
                if cut <= 0:
                    if len(rest) > ctx.max_record_bytes:
                        ctx.stats.records_read += 1
                        ctx.stats.reject("row_too_long", rest[:80].decode("utf-8", "replace"))
                        rest = b""
                    continue
                body, rest = rest[:cut], rest[cut:]
            if not body.strip():
                continue
            try:
                df = pl.read_csv(
                    io.BytesIO(header + body),
                    separator=delim,
                    infer_schema=False,
                    encoding="utf8-lossy",
                    raise_if_empty=False,
                )
                if df.width != len(columns):
                    raise pl.exceptions.ComputeError("width mismatch")
                df.columns = columns
            except Exception:
                df = CsvAdapter._slow_parse(body, columns, delim, ctx)
            ctx.stats.records_read += df.height
            if df.height:
                yield from canonical_flow_batches(flow_csv_frame(df, dict(ctx.options)), ctx)
