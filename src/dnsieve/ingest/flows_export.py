"""Write canonical flows out: FlowLabeler's CSV layout, or the canonical columns.

``dnsieve flows PCAP... --out flows.csv --format flowlabeler`` reads captures
(or any flow input, or a live interface) and writes one row per flow in the
layout of FlowLabeler (the Unicauca 2019 flow datasets)::

    flow_key, src_ip_numeric, src_ip, src_port, dst_ip, dst_port, proto,
    pktTotalCount, octetTotalCount, min_ps, max_ps, avg_ps, std_dev_ps,
    flowStart, flowEnd, flowDuration, min_piat, max_piat, avg_piat, std_dev_piat,
    f_pktTotalCount, ... f_std_dev_piat, b_pktTotalCount, ... b_std_dev_piat,
    flowEndReason, category, application_protocol, web_service, application_name

Times are epoch seconds, durations and inter-arrival times seconds, sizes IP
bytes; ``proto`` is the IP protocol number; ``flowEndReason`` the IPFIX code
(1 idle, 2 active, 3 end of flow, 4 forced end); ``application_protocol`` and
``web_service`` split nDPI's ``TLS.YouTube`` into ``TLS`` and ``YouTube``.
Reading this file back (``dnsieve ingest``) gives the same canonical flows,
up to what the layout cannot hold (payload bytes, TCP flags, SNI).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from dnsieve.ingest.base import IngestStats, ReadContext
from dnsieve.ingest.flows_common import PROTO_NAMES, read_flow_file

__all__ = ["EXPORT_FORMATS", "FLOWLABELER_COLUMNS", "export_flows", "flowlabeler_frame"]

EXPORT_FORMATS = ("flowlabeler", "canonical")

_STATS = (("min", "min"), ("max", "max"), ("avg", "mean"), ("std_dev", "std"))


def _flowlabeler_columns() -> list[str]:
    cols = ["flow_key", "src_ip_numeric", "src_ip", "src_port", "dst_ip", "dst_port", "proto"]
    for pre in ("", "f_", "b_"):
        cols += [f"{pre}pktTotalCount", f"{pre}octetTotalCount"]
        cols += [f"{pre}{s}_ps" for s, _ in _STATS]
        cols += [f"{pre}flowStart", f"{pre}flowEnd", f"{pre}flowDuration"]
        cols += [f"{pre}{s}_piat" for s, _ in _STATS]
    return [
        *cols,
        "flowEndReason",
        "category",
        "application_protocol",
        "web_service",
        "application_name",
    ]


#: FlowLabeler's columns, in its order.
FLOWLABELER_COLUMNS: tuple[str, ...] = tuple(_flowlabeler_columns())

_PROTO_NUMBERS = {v: k for k, v in PROTO_NAMES.items()}
_END_CODES = {"idle": 1, "active": 2, "end": 3, "forced": 4, "resources": 5}


def _numeric_ip(addr: str | None) -> int | None:
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return None
    return int(ip) if ip.version == 4 else None


def _epoch(col: str) -> pl.Expr:
    return pl.col(col).dt.epoch("us") / 1e6


def flowlabeler_frame(flows: pl.DataFrame) -> pl.DataFrame:
    """Canonical flows in FlowLabeler's layout (:data:`FLOWLABELER_COLUMNS`).

    >>> from dnsieve.ingest.flows_common import FLOW_POLARS_SCHEMA
    >>> f = pl.DataFrame({"ts": [1.0], "src_ip": ["10.0.0.1"], "dst_ip": ["1.1.1.1"],
    ...     "proto": ["tcp"], "src2dst_packets": [3], "dst2src_packets": [2],
    ...     "application": ["TLS.YouTube"], "end_reason": ["idle"]})
    >>> f = f.with_columns(pl.from_epoch("ts").dt.replace_time_zone("UTC").dt.cast_time_unit("us"))
    >>> row = flowlabeler_frame(f).row(0, named=True)
    >>> row["proto"], row["pktTotalCount"], row["web_service"], row["flowEndReason"]
    (6, 5, 'YouTube', 1)
    """
    f = flows
    for c in ("src2dst_ts_last", "dst2src_ts", "dst2src_ts_last", "application", "category"):
        if c not in f.columns:
            f = f.with_columns(pl.lit(None).alias(c))
    for c in (
        "src_port", "dst_port", "uid", "end_reason", "ts_last", "duration",
        "src2dst_bytes", "dst2src_bytes", "src2dst_packets", "dst2src_packets",
    ):  # fmt: skip
        if c not in f.columns:
            f = f.with_columns(pl.lit(None).alias(c))
    exprs: dict[str, pl.Expr] = {
        "flow_key": pl.col("uid").cast(pl.String),
        "src_ip_numeric": pl.col("src_ip").map_elements(_numeric_ip, return_dtype=pl.Int64),
        "src_ip": pl.col("src_ip"),
        "src_port": pl.col("src_port"),
        "dst_ip": pl.col("dst_ip"),
        "dst_port": pl.col("dst_port"),
        "proto": pl.col("proto")
        .replace_strict(_PROTO_NUMBERS, default=None, return_dtype=pl.Int64)
        .fill_null(pl.col("proto").cast(pl.Int64, strict=False)),
    }
    for pre, d in (("", "bidirectional"), ("f_", "src2dst"), ("b_", "dst2src")):
        if d == "bidirectional":
            pk = pl.col("src2dst_packets").fill_null(0) + pl.col("dst2src_packets").fill_null(0)
            by = pl.col("src2dst_bytes").fill_null(0) + pl.col("dst2src_bytes").fill_null(0)
            start, end = _epoch("ts"), _epoch("ts_last")
        elif d == "src2dst":
            pk, by = pl.col("src2dst_packets"), pl.col("src2dst_bytes")
            start, end = _epoch("ts"), pl.coalesce(_epoch("src2dst_ts_last"), _epoch("ts_last"))
        else:
            pk, by = pl.col("dst2src_packets"), pl.col("dst2src_bytes")
            start, end = _epoch("dst2src_ts"), _epoch("dst2src_ts_last")
        exprs[f"{pre}pktTotalCount"] = pk
        exprs[f"{pre}octetTotalCount"] = by
        for s, canon in _STATS:
            exprs[f"{pre}{s}_ps"] = (
                pl.col(f"{d}_{canon}_ps") if f"{d}_{canon}_ps" in f.columns else pl.lit(None)
            )
        exprs[f"{pre}flowStart"] = start
        exprs[f"{pre}flowEnd"] = end
        exprs[f"{pre}flowDuration"] = end - start
        for s, canon in _STATS:
            col = f"{d}_{canon}_piat"
            exprs[f"{pre}{s}_piat"] = pl.col(col) if col in f.columns else pl.lit(None)
    app = pl.col("application").cast(pl.String)
    exprs["flowEndReason"] = pl.col("end_reason").replace_strict(
        _END_CODES, default=None, return_dtype=pl.Int64
    )
    exprs["category"] = pl.col("category")
    exprs["application_protocol"] = app.str.split(".").list.first()
    exprs["web_service"] = pl.when(app.str.contains(r"\.")).then(app.str.split(".").list.last())
    exprs["application_name"] = app
    return f.select([exprs[c].alias(c) for c in FLOWLABELER_COLUMNS])


def _sources(
    inputs: Iterable[str | os.PathLike[str]], interface: str | None, options: dict[str, Any]
) -> Iterator[tuple[str, Iterator[pa.RecordBatch], IngestStats]]:
    from dnsieve.ingest import iter_input_files

    if interface:
        from dnsieve.ingest.flows_pcap import PcapFlowAdapter

        stats = IngestStats(source=f"interface:{interface}", format="pcap-flows")
        ctx = ReadContext(sensor=f"interface:{interface}", stats=stats, options=options)
        yield interface, PcapFlowAdapter().read_source(interface, ctx), stats
    for p in iter_input_files(inputs):
        stats = IngestStats(source=str(p))
        ctx = ReadContext(sensor=str(p), stats=stats, options=options)
        yield str(p), read_flow_file(p, "auto", ctx), stats


def export_flows(
    inputs: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    fmt: str = "flowlabeler",
    interface: str | None = None,
    options: dict[str, Any] | None = None,
) -> list[IngestStats]:
    """Read flow inputs (captures, conn.log, flow CSVs; or a live ``interface``)
    and write them to the CSV ``out`` in ``fmt`` (FlowLabeler or canonical).

    Writes batch by batch (bounded memory; a live capture stopped with Ctrl-C
    keeps every flow written so far).  Returns each input's counts.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(
            f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    done: list[IngestStats] = []
    path = Path(out)
    header = True
    with open(path, "wb") as fh:
        try:
            for _name, batches, stats in _sources(inputs, interface, options or {}):
                done.append(stats)
                for b in batches:
                    frame = pl.from_arrow(b)
                    assert isinstance(frame, pl.DataFrame)
                    if fmt == "flowlabeler":
                        frame = flowlabeler_frame(frame)
                    else:
                        frame = frame.with_columns(pl.col(pl.Datetime).dt.epoch("us") / 1e6)
                    frame.write_csv(fh, include_header=header)
                    header = False
        except KeyboardInterrupt:  # a live capture is stopped by the user: keep what was written
            pass
        if header:  # nothing read: still a valid, empty table
            cols = FLOWLABELER_COLUMNS if fmt == "flowlabeler" else _canonical_columns()
            fh.write((",".join(cols) + "\n").encode())
    return done


def _canonical_columns() -> tuple[str, ...]:
    from dnsieve.schema import FLOW_COLUMNS

    return FLOW_COLUMNS
