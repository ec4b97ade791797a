"""The Arrow schemas at the middle of dnsieve (ARCHITECTURE §2).

Every ingest adapter emits record batches of :data:`DNS_EVENT`; nothing after
ingest knows which format an event came from.  :data:`ANOMALY` is what the
detectors emit.

Column conventions
------------------
* ``src_ip`` is always the client (the querier), whatever the source format.
* ``qname`` is lower-cased (ASCII letters only), has its trailing dot removed
  and is byte-faithful: bytes outside printable ASCII are written as ``\\xNN``
  escapes (the same convention as Zeek), so a hostile name can never break a
  parser or a terminal, and two different wire names never collide.
* ``qtype`` and ``rcode`` are mnemonic names (``A``, ``TXT``, ``NXDOMAIN``).
  Codes without a mnemonic are kept as ``TYPE65399`` / ``RCODE23``.
* ``registered_domain``, ``subdomain`` and ``tld`` are derived from the
  bundled Public Suffix List snapshot, private section included (see
  :mod:`dnsieve.domains`).

>>> DNS_EVENT.field("ts").type
TimestampType(timestamp[us, tz=UTC])
>>> DNS_EVENT.names[:3]
['ts', 'src_ip', 'dst_ip']
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "ANOMALY",
    "DNS_EVENT",
    "DNS_EVENT_DOCS",
    "EVENT_COLUMNS",
    "TS_TYPE",
    "empty_events",
]

TS_TYPE = pa.timestamp("us", tz="UTC")

DNS_EVENT = pa.schema(
    [
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("src_ip", pa.string()),
        pa.field("dst_ip", pa.string()),
        pa.field("src_port", pa.int32()),
        pa.field("dst_port", pa.int32()),
        pa.field("proto", pa.string()),
        pa.field("trans_id", pa.int32()),
        pa.field("qname", pa.string()),
        pa.field("qtype", pa.string()),
        pa.field("rcode", pa.string()),
        pa.field("answers", pa.list_(pa.string())),
        pa.field("ttls", pa.list_(pa.float64())),
        pa.field("rtt", pa.float64()),
        pa.field("aa", pa.bool_()),
        pa.field("tc", pa.bool_()),
        pa.field("rd", pa.bool_()),
        pa.field("ra", pa.bool_()),
        pa.field("query_len", pa.int32()),
        pa.field("response_len", pa.int32()),
        pa.field("sensor", pa.string()),
        pa.field("registered_domain", pa.string()),
        pa.field("subdomain", pa.string()),
        pa.field("tld", pa.string()),
    ]
)

EVENT_COLUMNS: tuple[str, ...] = tuple(DNS_EVENT.names)

DNS_EVENT_DOCS: dict[str, str] = {
    "ts": "query time (UTC, microseconds)",
    "src_ip": "the client that asked; always the querier, even for Suricata v3 answers",
    "dst_ip": "the server that was asked",
    "src_port": "client port",
    "dst_port": "server port",
    "proto": "udp, tcp, dot or doh",
    "trans_id": "DNS transaction id",
    "qname": "query name: lower-case, no trailing dot, non-printable bytes escaped as \\xNN",
    "qtype": "query type mnemonic (A, TXT, ...), TYPEnnn when unknown",
    "rcode": "response code mnemonic (NOERROR, NXDOMAIN, ...), null when no answer was seen",
    "answers": "answer RDATA as text, in wire order",
    "ttls": "TTL of each answer, seconds",
    "rtt": "seconds between query and response",
    "aa": "authoritative answer flag",
    "tc": "truncated flag",
    "rd": "recursion desired flag",
    "ra": "recursion available flag",
    "query_len": "DNS payload bytes of the query (pcap only)",
    "response_len": "DNS payload bytes of the response (pcap only)",
    "sensor": "where the event came from (file, interface or topic)",
    "registered_domain": "public suffix + one label (foo.github.io counts as its own site)",
    "subdomain": "labels left of the registered domain ('' when none)",
    "tld": "the public suffix (co.uk, github.io, com)",
}

# An anomaly as emitted by any detector: one entity, one window, one score.
ANOMALY = pa.schema(
    [
        pa.field("detector", pa.string(), nullable=False),
        pa.field("entity_type", pa.string(), nullable=False),
        pa.field("entity", pa.string(), nullable=False),
        pa.field("window_start", TS_TYPE, nullable=False),
        pa.field("window_end", TS_TYPE, nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("p_value", pa.float64()),
        pa.field("evidence", pa.string()),  # JSON object, human-readable fields
    ]
)


def empty_events() -> pa.Table:
    """An empty table with the canonical event schema."""
    return DNS_EVENT.empty_table()
