"""pcap / pcapng (or a live interface) into canonical flows with nfstream.

nfstream (``pip install 'dnsieve[flows]'``, LGPL-3.0) bundles libpcap and
nDPI: it assembles bidirectional flows, computes the FlowLabeler statistics
(packet sizes and inter-arrival times per direction, TCP flag counts) and
labels each flow with its nDPI application and category.  FlowLabeler itself
was built on nfstream, so the definitions are the same:

* a flow is the 5-tuple (src, dst, ports, protocol, VLAN), ``src`` the sender
  of its first packet; it ends after ``idle_timeout`` seconds without a packet
  (``end_reason`` ``idle``), after ``active_timeout`` seconds of life
  (``active``), or at the end of the capture (nfstream's custom expiration,
  ``end``);
* bytes and sizes are IP bytes (``accounting_mode=1``: IP header and payload,
  no link layer);
* inter-arrival times are seconds (nfstream writes milliseconds).

Compressed captures (``.pcap.gz``) are decompressed to a temporary file first:
libpcap reads only plain files.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from dnsieve.ingest.base import ReadContext
from dnsieve.ingest.flows_common import PROTO_NAMES, canonical_flow_batches

__all__ = ["INSTALL_HINT", "PcapFlowAdapter", "iter_nfstream", "nfstream_frame", "require_nfstream"]

INSTALL_HINT = "reading flows from pcaps needs nfstream: pip install 'dnsieve[flows]'"

_PCAP_MAGICS = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
)
_DIRS = ("bidirectional", "src2dst", "dst2src")
_FLAGS = ("syn", "cwr", "ece", "urg", "ack", "psh", "rst", "fin")
_END = {0: "idle", 1: "active", -1: "end"}


def require_nfstream() -> Any:
    """The nfstream module, or an ImportError that says what to install."""
    try:
        import nfstream
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return nfstream


def _num(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _row(f: Any) -> dict[str, Any]:
    """One NFlow as flow adapter columns."""
    row: dict[str, Any] = {
        "ts": f.bidirectional_first_seen_ms / 1000.0,
        "ts_last": f.bidirectional_last_seen_ms / 1000.0,
        "duration": f.bidirectional_duration_ms / 1000.0,
        "src2dst_ts_last": f.src2dst_last_seen_ms / 1000.0,
        "dst2src_ts": f.dst2src_first_seen_ms / 1000.0 if f.dst2src_packets else None,
        "dst2src_ts_last": f.dst2src_last_seen_ms / 1000.0 if f.dst2src_packets else None,
        "src_ip": f.src_ip,
        "dst_ip": f.dst_ip,
        "src_port": f.src_port,
        "dst_port": f.dst_port,
        "proto": PROTO_NAMES.get(int(f.protocol), str(f.protocol)),
        "src2dst_packets": f.src2dst_packets,
        "dst2src_packets": f.dst2src_packets,
        "src2dst_bytes": f.src2dst_bytes,
        "dst2src_bytes": f.dst2src_bytes,
        "end_reason": _END.get(int(f.expiration_id), str(f.expiration_id)),
        "application": _num(f.application_name) or None,
        "category": _num(f.application_category_name) or None,
        "server_name": _num(f.requested_server_name) or None,
        "uid": str(f.id),
    }
    for d in _DIRS:
        row[f"{d}_min_ps"] = getattr(f, f"{d}_min_ps")
        row[f"{d}_mean_ps"] = getattr(f, f"{d}_mean_ps")
        row[f"{d}_std_ps"] = getattr(f, f"{d}_stddev_ps")
        row[f"{d}_max_ps"] = getattr(f, f"{d}_max_ps")
        row[f"{d}_min_piat"] = getattr(f, f"{d}_min_piat_ms") / 1000.0
        row[f"{d}_mean_piat"] = getattr(f, f"{d}_mean_piat_ms") / 1000.0
        row[f"{d}_std_piat"] = getattr(f, f"{d}_stddev_piat_ms") / 1000.0
        row[f"{d}_max_piat"] = getattr(f, f"{d}_max_piat_ms") / 1000.0
        for flag in _FLAGS:
            row[f"{d}_{flag}_packets"] = getattr(f, f"{d}_{flag}_packets")
    if not f.dst2src_packets:  # nfstream writes 0 for the statistics of an empty direction
        for k in [
            k
            for k in row
            if k.startswith("dst2src_") and (k.endswith("_ps") or k.endswith("_piat"))
        ]:
            row[k] = None
    return row


def nfstream_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows from :func:`_row` as a frame (typed even when empty)."""
    return pl.DataFrame(rows, infer_schema_length=None)


def iter_nfstream(
    source: str,
    idle_timeout: float = 120.0,
    active_timeout: float = 1800.0,
    n_dissections: int = 20,
) -> Iterator[Any]:
    """The NFlows of a capture file or a live interface name (nfstream defaults,
    FlowLabeler statistics on, IP-layer accounting, one meter process)."""
    nfstream = require_nfstream()
    streamer = nfstream.NFStreamer(
        source=source,
        statistical_analysis=True,
        n_dissections=n_dissections,
        idle_timeout=int(idle_timeout),
        active_timeout=int(active_timeout),
        accounting_mode=1,
        n_meters=1,
    )
    yield from streamer


@contextlib.contextmanager
def _plain_capture(path: Path) -> Iterator[Path]:
    """``path`` itself when it is a plain capture, else a decompressed temporary copy."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic in _PCAP_MAGICS:
        yield path
        return
    from dnsieve.ingest import IngestStats, open_decoded

    stream, _head, raw = open_decoded(path, IngestStats(source=str(path)))
    fd, tmp = tempfile.mkstemp(suffix=".pcap", prefix="dnsieve-flows-")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        yield Path(tmp)
    finally:
        stream.close()
        raw.close()
        os.unlink(tmp)


class PcapFlowAdapter:
    """pcap/pcapng files (and live interfaces) through nfstream."""

    name = "pcap-flows"

    def read_path(self, path: Path, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical flow batches of a capture file."""
        try:
            require_nfstream()
        except ImportError as exc:
            ctx.stats.error = str(exc)
            return
        with _plain_capture(path) as plain:
            yield from self.read_source(str(plain), ctx)
        ctx.stats.bytes_consumed = path.stat().st_size

    def read_source(self, source: str, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical flow batches of a capture file or live interface (``source``)."""
        opts = ctx.options
        rows: list[dict[str, Any]] = []
        try:
            for f in iter_nfstream(
                source,
                idle_timeout=float(opts.get("idle_timeout", 120.0)),
                active_timeout=float(opts.get("active_timeout", 1800.0)),
            ):
                ctx.stats.records_read += 1
                rows.append(_row(f))
                if len(rows) >= ctx.batch_size:
                    yield from canonical_flow_batches(nfstream_frame(rows), ctx)
                    rows = []
        except (ValueError, OSError, RuntimeError) as exc:  # unreadable capture, no permission
            ctx.stats.error = f"nfstream: {exc}"
        if rows:
            yield from canonical_flow_batches(nfstream_frame(rows), ctx)
