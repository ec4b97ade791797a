"""What every ingest adapter shares: the adapter protocol, reject accounting,
and the one function that turns a frame of adapter columns into canonical
:data:`~dnsieve.schema.DNS_EVENT` batches.

Adapters are pure: bytes in, Arrow batches out.  They never raise on bad
records; they count them in :class:`IngestStats` under a short reason and go
on.  Only a failure of the stream itself (for example a truncated gzip) ends a
file early, and that too is recorded as a reject, not raised.
"""

from __future__ import annotations

import re
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
    "MAX_LABEL_BYTES",
    "MAX_NAME_BYTES",
    "Adapter",
    "IngestStats",
    "ReadContext",
    "canonical_batches",
    "canonicalize",
    "is_name_too_long",
    "name_too_long",
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
    #: longest line or record an adapter holds in memory (bytes); longer ones are
    #: skipped and counted (``line_too_long``, ``row_too_long``, ``record_too_long``)
    max_record_bytes: int = 65_536
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
    out = _drop_long_names(out, ctx)
    out = out.with_columns(normalize_qnames(out.get_column("qname")))
    out = _drop_long_names(out, ctx, normalized=True)
    parts = ctx.splitter.split_series(out.get_column("qname"))
    return pl.concat([out, parts], how="horizontal")


#: RFC 1035 §2.3.4 / RFC 2181 §11: a name is at most 255 octets on the wire, which
#: is 253 characters of dotted text; a label at most 63 octets.
MAX_NAME_BYTES = 253
MAX_LABEL_BYTES = 63
_ESCAPE = r"\\x[0-9a-f]{2}"


def name_too_long(qname: pl.Expr, normalized: bool = True) -> pl.Expr:
    """True where a query name is past the protocol's limits: over
    :data:`MAX_NAME_BYTES` bytes of text, or a label over :data:`MAX_LABEL_BYTES`.

    Canonical names write a byte outside printable ASCII as ``\\xNN``; with
    ``normalized`` each such escape counts as the one byte it stands for.
    Null names are not too long.

    >>> s = pl.Series("q", ["a" * 63 + ".com", "a" * 64 + ".com", "b." * 126 + "c",
    ...                     "b." * 127, "\\\\xff" * 63, None])
    >>> pl.select(name_too_long(pl.lit(s))).to_series().to_list()
    [False, True, False, True, False, False]
    """
    text = qname.str.replace_all(_ESCAPE, "_") if normalized else qname.str.strip_suffix(".")
    labels = text.str.split(".").list.eval(pl.element().str.len_bytes()).list.max()
    too_long = (text.str.len_bytes() > MAX_NAME_BYTES) | (labels > MAX_LABEL_BYTES)
    return too_long.fill_null(False)


_ESCAPE_RE = re.compile(_ESCAPE)


def is_name_too_long(name: str) -> bool:
    """:func:`name_too_long` for one canonical name (``\\xNN`` counts as one byte).

    >>> is_name_too_long("a" * 63 + ".com"), is_name_too_long("a" * 64 + ".com")
    (False, True)
    """
    text = _ESCAPE_RE.sub("_", name)
    if len(text.encode()) > MAX_NAME_BYTES:
        return True
    return any(len(label.encode()) > MAX_LABEL_BYTES for label in text.split("."))


def _drop_long_names(df: pl.DataFrame, ctx: ReadContext, normalized: bool = False) -> pl.DataFrame:
    """Count and drop rows whose query name is past the protocol's limits (``name_too_long``).

    Before normalisation only names too long even if every byte were written
    ``\\xNN`` are dropped (cheaply, so a 50 MB name is never escaped); after it,
    the exact rule of :func:`name_too_long`.
    """
    q = df.get_column("qname")
    lengths = q.str.len_bytes()
    limit = 4 * MAX_NAME_BYTES if not normalized else MAX_LABEL_BYTES
    if not bool((lengths > limit).any()):
        return df
    if normalized:
        # Only names longer than a label's limit can break a limit: judge those.
        cand = (lengths > limit).fill_null(False)
        judged = pl.select(name_too_long(pl.lit(q.filter(cand)))).to_series().fill_null(False)
        bad = pl.Series("qname", [False], dtype=pl.Boolean).new_from_index(0, df.height)
        bad = bad.scatter(cand.arg_true(), judged)
    else:
        bad = (lengths > limit).fill_null(False)
    n = int(bad.sum())
    if n:
        example = q.filter(bad).item(0)
        ctx.stats.reject("name_too_long", f"{len(example.encode())} bytes: {example[:60]}", n=n)
        df = df.filter(~bad)
    return df


def canonical_batches(df: pl.DataFrame, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Canonicalise ``df`` and yield Arrow batches of at most ``ctx.batch_size`` rows."""
    out = canonicalize(df, ctx)
    if out.height == 0:
        return
    table = out.to_arrow().cast(DNS_EVENT)
    ctx.stats.rows_emitted += table.num_rows
    yield from table.to_batches(max_chunksize=ctx.batch_size)
