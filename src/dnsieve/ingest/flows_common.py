"""What every flow adapter shares: the canonical :data:`~dnsieve.schema.FLOW_RECORD`
frame, format sniffing for flow inputs, and reading one flow file.

Flow adapters follow the rules of the DNS ones (:mod:`dnsieve.ingest.base`):
bytes in, bounded Arrow batches out, bad records counted in
:class:`~dnsieve.ingest.base.IngestStats` under a short reason and never
raised.  Formats (``FLOW_FORMATS``):

``zeek-conn`` / ``zeek-conn-json``
    Zeek ``conn.log``, ASCII (TSV) or JSON lines (:mod:`dnsieve.ingest.flows_zeek`).
``flowlabeler``
    FlowLabeler CSV (``pktTotalCount``, ``f_*``, ``b_*``, ``flowEndReason``, ...).
``cicflow``
    Unicauca 87-attribute / CICFlowMeter CSV (``Flow.Duration``, ``Total.Fwd.Packets``,
    ``L7Protocol``, ``ProtocolName``; dots or spaces) (:mod:`dnsieve.ingest.flows_csv`).
``pcap-flows``
    pcap / pcapng through nfstream (:mod:`dnsieve.ingest.flows_pcap`, ``dnsieve[flows]``).

>>> sniff_flows(b"#separator \\\\x09\\n#path\\tconn\\n#fields\\tts\\tuid\\n")
'zeek-conn'
>>> sniff_flows(b'{"ts":1.5,"uid":"C1","id.orig_h":"10.0.0.1","conn_state":"SF"}\\n{}\\n')
'zeek-conn-json'
>>> sniff_flows(b"flow_key,src_ip,src_port,dst_ip,dst_port,proto,pktTotalCount,octetTotalCount\\n")
'flowlabeler'
>>> sniff_flows(b"Flow.ID,Source.IP,Source.Port,Destination.IP,Total.Fwd.Packets,L7Protocol\\n")
'cicflow'
>>> sniff_flows(b"#separator \\\\x09\\n#path\\tdns\\n") is None
True
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa

from dnsieve.ingest.base import IngestStats, ReadContext
from dnsieve.schema import FLOW_RECORD

__all__ = [
    "FLOW_FORMATS",
    "FLOW_POLARS_SCHEMA",
    "canonical_flow_batches",
    "canonicalize_flows",
    "input_kind",
    "normalize_column",
    "read_flow_file",
    "sniff_flows",
]

FLOW_FORMATS: tuple[str, ...] = (
    "zeek-conn",
    "zeek-conn-json",
    "flowlabeler",
    "cicflow",
    "pcap-flows",
)

FLOW_POLARS_SCHEMA: pl.Schema = pl.from_arrow(FLOW_RECORD.empty_table()).schema  # type: ignore[union-attr]

_REGISTRY: dict[str, tuple[str, str]] = {
    "zeek-conn": ("dnsieve.ingest.flows_zeek", "ConnTsvAdapter"),
    "zeek-conn-json": ("dnsieve.ingest.flows_zeek", "ConnJsonAdapter"),
    "flowlabeler": ("dnsieve.ingest.flows_csv", "FlowCsvAdapter"),
    "cicflow": ("dnsieve.ingest.flows_csv", "FlowCsvAdapter"),
    "pcap-flows": ("dnsieve.ingest.flows_pcap", "PcapFlowAdapter"),
}

#: IP protocol numbers to the canonical names.
PROTO_NAMES: dict[int, str] = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp"}

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalize_column(name: str) -> str:
    """A column name for matching: lower case, runs of other characters as ``_``.

    ``Flow.Duration``, `` Flow Duration`` and ``flow_duration`` are all ``flow_duration``.

    >>> normalize_column(" Total.Fwd.Packets"), normalize_column("Fwd IAT Min")
    ('total_fwd_packets', 'fwd_iat_min')
    """
    return _NON_ALNUM.sub("_", name.strip().lower()).strip("_")


_FLOWLABELER_MARKS = {"pkttotalcount", "octettotalcount", "f_pkttotalcount", "flowendreason"}
_CIC_MARKS = {"total_fwd_packets", "flow_duration", "total_backward_packets", "l7protocol"}


def sniff_flows(head: bytes, name: str = "") -> str | None:
    """The flow format of a decoded stream from its first bytes, or ``None``.

    pcap files are not claimed here (their DNS is read by the DNS adapter);
    :func:`input_kind` decides where a pcap goes.
    """
    text = head.lstrip(b"\xef\xbb\xbf")
    if text.startswith(b"#separator") or b"\n#fields\t" in text[:4096] or text.startswith(b"#"):
        m = re.search(rb"^#path[\t ]+(\S+)", text[:4096], re.MULTILINE)
        if m is not None:
            return "zeek-conn" if m.group(1).startswith(b"conn") else None
        f = re.search(rb"^#fields\t(.*)$", text[:4096], re.MULTILINE)
        if f is not None:
            fields = set(f.group(1).decode("utf-8", "replace").split("\t"))
            if {"conn_state", "orig_bytes"} & fields and "query" not in fields:
                return "zeek-conn"
        return None
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if len(lines) > 1:
        lines = lines[:-1]
    conn = other = 0
    for ln in lines:
        s = ln.strip()
        if not s.startswith(b"{"):
            continue
        try:
            obj = json.loads(s)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        path = obj.get("_path")
        if path == "conn" or (
            path is None and "id.orig_h" in obj and ({"conn_state", "orig_bytes"} & obj.keys())
        ):
            conn += 1
        else:
            other += 1
    if conn or other:
        return "zeek-conn-json" if conn > other else None
    if lines:
        header = {
            normalize_column(c.decode("utf-8", "replace")) for c in re.split(rb"[,;\t|]", lines[0])
        }
        if len(header & _FLOWLABELER_MARKS) >= 2:
            return "flowlabeler"
        if len(header & _CIC_MARKS) >= 2:
            return "cicflow"
    return None


def input_kind(path: str | os.PathLike[str]) -> str:
    """``"flows"``, ``"dns"`` or ``"pcap"`` (both) for one input file, from its content.

    Anything a flow adapter does not claim is ``"dns"``: the DNS ingest then
    reads it or reports why not.
    """
    from dnsieve.ingest import open_decoded
    from dnsieve.ingest.sniff import sniff

    stats = IngestStats(source=str(path))
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "dns"  # a FIFO or device would block the sniff; the DNS ingest refuses it
        stream, head, raw = open_decoded(Path(path), stats)
    except OSError:
        return "dns"  # the DNS ingest reports the open error
    try:
        if sniff_flows(head, Path(path).name) is not None:
            return "flows"
        return "pcap" if sniff(head, Path(path).name) == "pcap" else "dns"
    finally:
        stream.close()
        raw.close()


def _to_ts(col: pl.Series) -> pl.Series:
    """Epoch seconds (float) or a Datetime -> Datetime[us, UTC] (nulls stay null)."""
    if isinstance(col.dtype, pl.Datetime):
        ts = col.dt.cast_time_unit("us")
        if ts.dtype.time_zone is None:  # type: ignore[attr-defined]
            return ts.dt.replace_time_zone("UTC")
        return ts.dt.convert_time_zone("UTC")
    secs = col.cast(pl.Float64, strict=False)
    ok = secs.is_finite() & (secs > -2_208_988_800.0) & (secs < 95_617_584_000.0)
    return (
        pl.select(pl.when(pl.lit(ok)).then((pl.lit(secs) * 1_000_000).round()).otherwise(None))
        .to_series()
        .cast(pl.Int64)
        .cast(pl.Datetime("us", "UTC"))
    )


def canonicalize_flows(df: pl.DataFrame, ctx: ReadContext) -> pl.DataFrame:
    """Adapter columns (any subset of FLOW_RECORD; ``ts`` required, epoch seconds
    or Datetime) to a canonical flow frame.

    Fills what can be derived: ``ts_last`` from ``ts + duration`` and back,
    ``duration`` from the two, the mean packet sizes from bytes / packets.
    Rows without a valid ``ts`` are rejected as ``bad_timestamp``, rows without
    both addresses as ``missing_address``.
    """
    if df.height == 0:
        return pl.DataFrame(schema=FLOW_POLARS_SCHEMA)
    cols: dict[str, pl.Series] = {}
    for name, dtype in FLOW_POLARS_SCHEMA.items():
        if name in ("ts", "ts_last", "src2dst_ts_last", "dst2src_ts", "dst2src_ts_last") and (
            name in df.columns
        ):
            cols[name] = _to_ts(df.get_column(name)).alias(name)
        elif name in df.columns:
            cols[name] = df.get_column(name).cast(dtype, strict=False).alias(name)
        elif name == "sensor":
            cols[name] = pl.Series(name, [ctx.sensor], dtype=pl.String).new_from_index(0, df.height)
        else:
            cols[name] = pl.Series(name, [None], dtype=dtype).new_from_index(0, df.height)
    out = pl.DataFrame(cols)
    bad = out.get_column("ts").is_null()
    n_bad = int(bad.sum())
    if n_bad:
        ctx.stats.reject("bad_timestamp", n=n_bad)
        out = out.filter(~bad)
    no_addr = out.get_column("src_ip").is_null() | out.get_column("dst_ip").is_null()
    n_addr = int(no_addr.sum())
    if n_addr:
        ctx.stats.reject("missing_address", n=n_addr)
        out = out.filter(~no_addr)
    dur_us = (pl.col("duration") * 1_000_000).round().cast(pl.Int64)
    out = out.with_columns(
        ts_last=pl.coalesce(
            pl.col("ts_last"), pl.col("ts") + pl.duration(microseconds=dur_us.fill_null(0))
        ),
        src_ip=pl.col("src_ip").str.strip_chars(),
        dst_ip=pl.col("dst_ip").str.strip_chars(),
        proto=pl.col("proto").str.to_lowercase(),
    ).with_columns(
        duration=pl.coalesce(
            pl.col("duration"),
            (pl.col("ts_last") - pl.col("ts")).dt.total_microseconds() / 1e6,
        ),
    )
    fills = []
    for direction, pk, by in (
        ("src2dst", "src2dst_packets", "src2dst_bytes"),
        ("dst2src", "dst2src_packets", "dst2src_bytes"),
    ):
        fills.append(
            pl.coalesce(
                pl.col(f"{direction}_mean_ps"),
                pl.when(pl.col(pk) > 0).then(pl.col(by) / pl.col(pk)),
            ).alias(f"{direction}_mean_ps")
        )
    total_p = pl.col("src2dst_packets").fill_null(0) + pl.col("dst2src_packets").fill_null(0)
    total_b = pl.col("src2dst_bytes").fill_null(0) + pl.col("dst2src_bytes").fill_null(0)
    fills.append(
        pl.coalesce(
            pl.col("bidirectional_mean_ps"), pl.when(total_p > 0).then(total_b / total_p)
        ).alias("bidirectional_mean_ps")
    )
    return out.with_columns(fills).select(list(FLOW_POLARS_SCHEMA))


def canonical_flow_batches(df: pl.DataFrame, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Canonicalise ``df`` and yield FLOW_RECORD batches of at most ``ctx.batch_size`` rows."""
    out = canonicalize_flows(df, ctx)
    if out.height == 0:
        return
    table = out.to_arrow().cast(FLOW_RECORD)
    ctx.stats.rows_emitted += table.num_rows
    yield from table.to_batches(max_chunksize=ctx.batch_size)


def get_flow_adapter(fmt: str) -> object:
    """The flow adapter registered for ``fmt``."""
    import importlib

    try:
        mod_name, cls_name = _REGISTRY[fmt]
    except KeyError:
        raise ValueError(
            f"unknown flow format {fmt!r}; choose one of: auto, {', '.join(FLOW_FORMATS)}"
        ) from None
    return getattr(importlib.import_module(mod_name), cls_name)()


def read_flow_file(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    ctx: ReadContext | None = None,
    raw: BinaryIO | None = None,
) -> Iterator[pa.RecordBatch]:
    """Read one flow file into canonical FLOW_RECORD batches (never raises on content).

    ``fmt='auto'`` sniffs: Zeek conn.log (TSV/JSON), FlowLabeler and
    Unicauca/CICFlowMeter CSV; a pcap is read with nfstream (``pcap-flows``).
    """
    from dnsieve.ingest import open_decoded
    from dnsieve.ingest.sniff import sniff

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
            detected = sniff_flows(head, p.name)
            if detected is None and sniff(head, p.name) == "pcap":
                detected = "pcap-flows"
            if detected is None:
                ctx.stats.format = "unknown"
                ctx.stats.error = (
                    "not a flow format (Zeek conn.log, FlowLabeler or CICFlowMeter CSV, pcap)"
                )
                return
            fmt = detected
        adapter = get_flow_adapter(fmt)
        ctx.stats.format = fmt
        try:
            if fmt == "pcap-flows":
                yield from adapter.read_path(p, ctx)  # type: ignore[attr-defined]
            else:
                yield from adapter.read(stream, ctx)  # type: ignore[attr-defined]
        except Exception as exc:  # pragma: no cover - adapters should not raise
            ctx.stats.error = f"{fmt} adapter failed: {type(exc).__name__}: {exc}"
            ctx.stats.reject("adapter_error", repr(exc))
    finally:
        stream.close()
        raw.close()


def route_inputs(files: list[Path], pcap_flows: bool = False) -> tuple[list[Path], list[Path]]:
    """Split input files by kind: ``(dns_files, flow_files)``.

    Zeek conn.log and flow CSVs go to the flows; everything else (DNS logs,
    unreadable or unknown files, which the DNS ingest then reports) to the
    events.  A pcap goes to the events, and to the flows too when
    ``pcap_flows`` (nfstream) is on.
    """
    dns: list[Path] = []
    flows: list[Path] = []
    for f in files:
        kind = input_kind(f)
        if kind == "flows":
            flows.append(f)
        else:
            dns.append(f)
            if kind == "pcap" and pcap_flows:
                flows.append(f)
    return dns, flows
