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
    "FLOW_COLUMNS",
    "FLOW_RECORD",
    "FLOW_RECORD_DOCS",
    "TS_TYPE",
    "empty_events",
    "empty_flows",
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


# --------------------------------------------------------------------------- flows
#: The statistics kept per direction and both ways: (min, mean, std, max).
_STATS = ("min", "mean", "std", "max")


def _flow_fields() -> list[pa.Field]:
    fields = [
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("ts_last", TS_TYPE),
        pa.field("duration", pa.float64()),
        pa.field("src2dst_ts_last", TS_TYPE),
        pa.field("dst2src_ts", TS_TYPE),
        pa.field("dst2src_ts_last", TS_TYPE),
        pa.field("src_ip", pa.string()),
        pa.field("dst_ip", pa.string()),
        pa.field("src_port", pa.int32()),
        pa.field("dst_port", pa.int32()),
        pa.field("proto", pa.string()),
        pa.field("src2dst_packets", pa.int64()),
        pa.field("dst2src_packets", pa.int64()),
        pa.field("src2dst_bytes", pa.int64()),
        pa.field("dst2src_bytes", pa.int64()),
        pa.field("src2dst_payload_bytes", pa.int64()),
        pa.field("dst2src_payload_bytes", pa.int64()),
    ]
    for quantity in ("ps", "piat"):
        for direction in ("bidirectional", "src2dst", "dst2src"):
            fields.extend(
                pa.field(f"{direction}_{stat}_{quantity}", pa.float64()) for stat in _STATS
            )
    for direction in ("bidirectional", "src2dst", "dst2src"):
        fields.extend(
            pa.field(f"{direction}_{flag}_packets", pa.int32())
            for flag in ("syn", "cwr", "ece", "urg", "ack", "psh", "rst", "fin")
        )
    fields += [
        pa.field("end_reason", pa.string()),
        pa.field("conn_state", pa.string()),
        pa.field("application", pa.string()),
        pa.field("category", pa.string()),
        pa.field("server_name", pa.string()),
        pa.field("uid", pa.string()),
        pa.field("sensor", pa.string()),
    ]
    return fields


#: One bidirectional flow (ARCHITECTURE §1, "Flows beside DNS").  ``src`` is the
#: side that sent the first packet (Zeek's originator, FlowLabeler's forward
#: direction ``f_*``, CICFlowMeter's ``Fwd``); ``dst`` is the responder (``b_*``,
#: ``Bwd``).  Packet sizes are IP bytes; inter-arrival times (``piat``) are seconds.
FLOW_RECORD = pa.schema(_flow_fields())

FLOW_COLUMNS: tuple[str, ...] = tuple(FLOW_RECORD.names)

FLOW_RECORD_DOCS: dict[str, str] = {
    "ts": "first packet seen (UTC, microseconds); the lake partitions flows by its hour",
    "ts_last": "last packet seen",
    "duration": "ts_last - ts, seconds",
    "src2dst_ts_last": "last packet from the originator (pcap only)",
    "dst2src_ts": "first packet from the responder (pcap only)",
    "dst2src_ts_last": "last packet from the responder (pcap only)",
    "src_ip": "the originator: the host that sent the first packet (the client)",
    "dst_ip": "the responder",
    "src_port": "originator port (ICMP: type)",
    "dst_port": "responder port (ICMP: code)",
    "proto": "tcp, udp, icmp, icmp6, or the IP protocol number as text",
    "src2dst_packets": "packets from the originator",
    "dst2src_packets": "packets from the responder",
    "src2dst_bytes": "IP bytes from the originator (headers included)",
    "dst2src_bytes": "IP bytes from the responder",
    "src2dst_payload_bytes": "transport payload bytes from the originator (Zeek orig_bytes)",
    "dst2src_payload_bytes": "transport payload bytes from the responder (Zeek resp_bytes)",
    "{direction}_{min,mean,std,max}_ps": "packet size statistics (IP bytes), per direction "
    "(bidirectional, src2dst, dst2src); std is the population standard deviation",
    "{direction}_{min,mean,std,max}_piat": "packet inter-arrival time statistics, seconds",
    "{direction}_{flag}_packets": "packets carrying a TCP flag (syn cwr ece urg ack psh rst "
    "fin), per direction",
    "end_reason": "why the flow ended: idle, active, end (FIN/RST), eof (end of capture) or "
    "the source's own words",
    "conn_state": "Zeek's conn_state (SF, S0, REJ, ...) where known",
    "application": "application label (nDPI name such as TLS.YouTube, Zeek service, "
    "Unicauca ProtocolName)",
    "category": "application category (nDPI category such as Media, Web, Network)",
    "server_name": "requested server name: TLS SNI, HTTP Host or DNS query, where known",
    "uid": "the source's flow id (Zeek uid, FlowLabeler flow_key, CICFlowMeter Flow ID)",
    "sensor": "where the flow came from (file or interface)",
}


def empty_flows() -> pa.Table:
    """An empty table with the canonical flow schema.

    >>> empty_flows().num_columns == len(FLOW_COLUMNS)
    True
    """
    return FLOW_RECORD.empty_table()
