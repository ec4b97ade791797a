"""What every ingest adapter shares: the adapter protocol, reject accounting,
and the one function that turns a frame of adapter columns into canonical
:data:`~dnsieve.schema.DNS_EVENT` batches.

Adapters are pure: bytes in, Arrow batches out.  They never raise on bad
records; they count them in :class:`IngestStats` under a short reason and go
on.  Only a failure of the stream itself (for example a truncated gzip) ends a
file early, and that too is recorded as a reject, not raised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

import polars as pl
import pyarrow as pa

from dnsieve.domains import DomainSplitter, normalize_qnames
from dnsieve.schema import DNS_EVENT

__all__ = [
    "ADAPTER_DTYPES",
    "Adapter",
    "IngestStats",
    "ReadContext",
    "canonical_batches",
    "canonicalize",
]

#: Columns an adapter may provide (everything in DNS_EVENT but the derived ones).
ADAPTER_COLUMNS = tuple(
    n for n in DNS_EVENT.names if n not in ("registered_domain", "subdomain", "tld")
)

_MAX_EXAMPLES = 3

#: Records that are valid but not DNS (a conn.log beside dns.log, Suricata flow
#: events, dnsmasq DHCP lines).  They are counted as *skipped*, not rejected:
#: nothing is wrong with them, they are just not ours.
SKIP_REASONS = frozenset({"not_dns_log", "not_dns_event", "not_dns_line"})


@dataclass
class IngestStats:
    """Counts for one input: records read, rows emitted, rejects by reason."""

    source: str = ""
    format: str = ""
    records_read: int = 0
    rows_emitted: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    bytes_consumed: int = 0
    error: str | None = None

    def reject(self, reason: str, example: str | None = None, n: int = 1) -> None:
        """Count ``n`` rejected records under ``reason`` (keeps a few examples).

        Reasons in :data:`SKIP_REASONS` are counted as skipped instead.
        """
        if reason in SKIP_REASONS:
            self.skipped[reason] += n
            return
        self.rejects[reason] += n
        if example is not None:
            ex = self.examples.setdefault(reason, [])
            if len(ex) < _MAX_EXAMPLES:
                ex.append(example[:200])

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "records_read": self.records_read,
            "rows": self.rows_emitted,
            "rejected": self.rejected,
            "rejects": dict(sorted(self.rejects.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "reject_examples": self.examples,
            "error": self.error,
        }


@dataclass
class ReadContext:
    """Everything an adapter needs besides the bytes.

    ``skip_bytes``: records that start before this offset of the *decoded*
    stream were ingested already (the file has grown since); adapters still
    read headers before it but emit nothing from it.
    """

    sensor: str
    stats: IngestStats
    batch_size: int = 65_536
    skip_bytes: int = 0
    splitter: DomainSplitter = field(default_factory=DomainSplitter)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: set by :func:`dnsieve.ingest.read_file`: position in the raw (compressed) file.
    raw_tell: Callable[[], int] | None = None

    def raw_pos(self) -> int:
        """Bytes of the raw input consumed so far (0 when unknown), for progress bars."""
        if self.raw_tell is None:
            return 0
        try:
            return self.raw_tell()
        except (OSError, ValueError):
            return 0


class Adapter(Protocol):
    """One input format."""

    name: str

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical batches of at most ``ctx.batch_size`` rows."""
        ...


#: Polars dtypes of the adapter columns (``ts`` aside): what :func:`canonicalize` casts to.
ADAPTER_DTYPES: dict[str, pl.DataType] = {
    "src_ip": pl.String(),
    "dst_ip": pl.String(),
    "src_port": pl.Int32(),
    "dst_port": pl.Int32(),
    "proto": pl.String(),
    "trans_id": pl.Int32(),
    "qname": pl.String(),
    "qtype": pl.String(),
    "rcode": pl.String(),
    "answers": pl.List(pl.String()),
    "ttls": pl.List(pl.Float64()),
    "rtt": pl.Float64(),
    "aa": pl.Boolean(),
    "tc": pl.Boolean(),
    "rd": pl.Boolean(),
    "ra": pl.Boolean(),
    "query_len": pl.Int32(),
    "response_len": pl.Int32(),
    "sensor": pl.String(),
}


def canonicalize(df: pl.DataFrame, ctx: ReadContext) -> pl.DataFrame:
    """Turn adapter columns into a canonical DnsEvent frame.

    ``df`` holds any subset of :data:`ADAPTER_COLUMNS`; ``ts`` is required and
    may be a Datetime or float epoch seconds.  Rows whose ``ts`` is null are
    counted as rejects (``bad_timestamp``) and dropped.  Query names are
    normalised and the registered-domain split is added.
    """
    if df.height == 0:
        return pl.from_arrow(DNS_EVENT.empty_table())  # type: ignore[return-value]
    ts = df.get_column("ts")
    if ts.dtype.is_numeric():
        ts = (ts.cast(pl.Float64) * 1_000_000).round().cast(pl.Int64).cast(pl.Datetime("us", "UTC"))
    elif isinstance(ts.dtype, pl.Datetime):
        ts = ts.dt.cast_time_unit("us")
        naive = ts.dtype.time_zone is None  # type: ignore[attr-defined]
        ts = ts.dt.replace_time_zone("UTC") if naive else ts.dt.convert_time_zone("UTC")
    else:
        raise TypeError(f"ts column has unsupported dtype {ts.dtype}")
    cols: dict[str, pl.Series] = {"ts": ts.alias("ts")}
    for name, dtype in ADAPTER_DTYPES.items():
        if name in df.columns:
            cols[name] = df.get_column(name).cast(dtype, strict=False).alias(name)
        elif name == "sensor":
            cols[name] = pl.Series(name, [ctx.sensor], dtype=pl.String).new_from_index(0, df.height)
        else:
            cols[name] = pl.Series(name, [None], dtype=dtype).new_from_index(0, df.height)
    out = pl.DataFrame(cols)
    bad_ts = out.get_column("ts").is_null()
    n_bad = int(bad_ts.sum())
    if n_bad:
        ctx.stats.reject("bad_timestamp", n=n_bad)
        out = out.filter(~bad_ts)
    out = out.with_columns(normalize_qnames(out.get_column("qname")))
    parts = ctx.splitter.split_series(out.get_column("qname"))
    return pl.concat([out, parts], how="horizontal")


def canonical_batches(df: pl.DataFrame, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Canonicalise ``df`` and yield Arrow batches of at most ``ctx.batch_size`` rows."""
    out = canonicalize(df, ctx)
    if out.height == 0:
        return
    table = out.to_arrow().cast(DNS_EVENT)
    ctx.stats.rows_emitted += table.num_rows
    yield from table.to_batches(max_chunksize=ctx.batch_size)
