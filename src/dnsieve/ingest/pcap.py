"""pcap / pcapng adapter: DNS over UDP and TCP from packet captures.

Containers
    Classic pcap in all four magic variants (little/big endian, micro- and
    nanosecond timestamps) and pcapng (every section, every interface, with its
    own link type, ``if_tsresol`` and ``if_tsoffset``; Enhanced, Simple and
    obsolete Packet Blocks).  A file cut in the middle of a record yields every
    complete packet before the cut and one ``truncated_file`` reject.

Link and network layers
    Ethernet (802.1Q VLAN, QinQ, MPLS, PPPoE, 802.3 LLC/SNAP), Linux SLL and
    SLL2, raw IP (DLT 12/14/101/228/229), BSD loopback/null, FDDI, PPP, Cisco
    HDLC; IPv4 and IPv6 (extension headers walked), with reassembly of IPv4 and
    IPv6 fragments; IP-in-IP, GRE (incl. PPTP enhanced GRE), VXLAN, Geneve,
    GRE-in-UDP and GTP-U tunnels (at most :data:`MAX_TUNNEL_DEPTH` deep).

Which packets are DNS
    UDP or TCP with port 53, 5353 (mDNS) or 5355 (LLMNR) on *either* side.  No
    payload heuristics on other ports: a random UDP payload very often parses
    as "DNS", so guessing would invent events.  TCP streams are reassembled per
    direction (2-byte length prefix; several messages per segment and messages
    spanning segments; out-of-order segments are held briefly).

Pairing
    Queries and responses are paired by (client ip, client port, server ip,
    server port, proto, transaction id), first-in first-out, in capture order.
    One event per query: ``ts`` is the query time, ``rtt`` the response time
    minus the query time; ``rcode``, ``answers``, ``ttls`` and the AA/TC/RA
    flags come from the response, RD from the query.  A query never answered
    within :data:`PAIR_TIMEOUT` seconds of capture time (or by end of file) is
    emitted with a null ``rcode``.  A response without a query is an event of
    its own whose client is the response's destination.  Queries sent to a
    multicast group (mDNS) are never paired, as in Zeek.  The pending table is
    capped at :data:`MAX_PENDING` entries (the oldest are emitted unanswered).

Rendering (matches Zeek's ``dns.log`` so the two agree row for row)
    Only the answer section becomes ``answers``; an EDNS OPT record is never an
    answer.  A/AAAA as addresses; NS/CNAME/PTR/DNAME/MX/SRV/SOA as the target
    name (Zeek logs MX and SRV without preference, weight or port, and SOA as its
    MNAME); TXT and SPF as ``TXT <len> <string>`` pieces joined by spaces; the
    DNSSEC types as ``RRSIG <type covered> <signer>``, ``DNSKEY <alg>``, ``DS <alg>
    <digest type>``, ``NSEC <owner> <next>``, ``NSEC3``, ``NSEC3PARAM``;
    ``SSHFP: <hex>``, ``LOC:  <size> <hp> <vp>``, ``BIND9 signing signal``;
    others as ``<unknown type=N>``.  WKS adds nothing (as in Zeek).  Non-printable
    bytes in any answer become ``\\xNN``.  Query names are decoded from the raw
    wire labels by our own decoder (pointer hops capped at
    :data:`MAX_POINTER_HOPS`, so compression loops are a counted
    ``malformed_dns``) and rendered by :func:`dnsieve.domains.escape_name`; a
    literal dot inside a label is written ``\\x2e`` so names stay byte-faithful.

Why not dpkt's layer objects
    dpkt decodes names as strict UTF-8 (a binary label raises
    ``UnicodeDecodeError`` and loses the whole message), knows none of the
    DNSSEC/LOC/SSHFP RDATA that Zeek renders, and building its per-layer objects
    costs about 11 µs a packet against well under 1 µs for the ``struct`` slicing
    below, which also gives the byte offsets that ``skip_bytes`` needs.  dpkt is
    used in the tests to craft captures and in ``bench/`` as the reference loop.

``skip_bytes``: packets whose record starts before that offset of the decoded
stream are read past without being decoded (so a response after the offset
whose query was before it becomes a response-only event).  It applies to pcap
and pcapng alike (offsets of the record or block).
"""

from __future__ import annotations

import socket
import struct
from collections import deque
from collections.abc import Iterator
from typing import BinaryIO

import polars as pl
import pyarrow as pa

from dnsieve.domains import escape_name
from dnsieve.ingest.base import IngestStats, ReadContext, canonical_batches
from dnsieve.ingest.codes import qtype_name, rcode_name

__all__ = [
    "DNS_PORTS",
    "MAX_PENDING",
    "MAX_POINTER_HOPS",
    "MAX_TUNNEL_DEPTH",
    "NBNS_PORT",
    "PAIR_TIMEOUT",
    "PcapAdapter",
    "parse_dns_message",
]

#: Ports whose UDP/TCP payload is decoded as DNS (either side).
DNS_PORTS = frozenset({53, 5353, 5355})
#: NetBIOS name service (UDP 137) uses the DNS wire format; Zeek logs it in dns.log too.
NBNS_PORT = 137
_UDP_PORTS = DNS_PORTS | {NBNS_PORT}
#: Seconds of capture time a query waits for its response.
PAIR_TIMEOUT = 60.0
#: Most queries (answered or not) kept in the pairing window.
MAX_PENDING = 200_000
#: Most compression pointers followed while decoding one name.
MAX_POINTER_HOPS = 32
#: Most nested tunnels decapsulated.
MAX_TUNNEL_DEPTH = 4

_MAX_TCP_FLOWS = 10_000
_MAX_TCP_OOO = 64
_MAX_FRAG_DATAGRAMS = 4096
_FRAG_TIMEOUT_US = 30_000_000
_MAX_RECORD = 16 << 20
_CHUNK = 1 << 20

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1),
    b"\xa1\xb2\xc3\xd4": (">", 1),
    b"\x4d\x3c\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\x3c\x4d": (">", 1000),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_HDR = struct.Struct("!HHHHHH").unpack_from
_Q = struct.Struct("!HH").unpack_from
_RR = struct.Struct("!HHIH").unpack_from
_UDP = struct.Struct("!HHH").unpack_from
_TCP = struct.Struct("!HHI").unpack_from


class DnsFormatError(ValueError):
    """A DNS message that cannot be decoded (the text says why)."""


# --------------------------------------------------------------------------- DNS wire format


def _read_name(buf: bytes, off: int) -> tuple[bytes, int]:
    """Decode a (possibly compressed) name at ``off``: raw wire text and the next offset.

    Labels are joined with ``.``; a dot inside a label becomes ``\\x2e``.
    Raises :class:`DnsFormatError` on loops, bad label types or overruns.
    """
    n = len(buf)
    labels: list[bytes] = []
    end = -1
    hops = 0
    total = 0
    while True:
        if off >= n:
            raise DnsFormatError(f"name runs past end of message at {off}")
        ln = buf[off]
        if ln == 0:
            off += 1
            break
        if ln >= 0xC0:
            if off + 1 >= n:
                raise DnsFormatError("compression pointer cut")
            if end < 0:
                end = off + 2
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise DnsFormatError(f"compression loop (more than {MAX_POINTER_HOPS} pointers)")
            off = ((ln & 0x3F) << 8) | buf[off + 1]
            continue
        if ln > 63:
            raise DnsFormatError(f"unsupported label type 0x{ln:02x} at {off}")
        if off + 1 + ln > n:
            raise DnsFormatError("label runs past end of message")
        total += ln + 1
        if total > 255:
            raise DnsFormatError("name longer than 255 bytes")
        label = buf[off + 1 : off + 1 + ln]
        labels.append(label.replace(b".", b"\\x2e") if b"." in label else label)
        off += 1 + ln
    return b".".join(labels), (end if end >= 0 else off)


_NAMES: dict[bytes, str] = {}


def _qname(raw: bytes) -> str:
    """:func:`~dnsieve.domains.escape_name` of ``raw``, with a fast path and a bounded cache."""
    s = _NAMES.get(raw)
    if s is not None:
        return s
    if raw.isascii() and (t := raw.decode("ascii")).isprintable() and " " not in t:
        s = t.lower()
        if s.endswith(".") and len(s) > 1:
            s = s[:-1]
    else:
        s = escape_name(raw)
    if len(_NAMES) >= 65_536:
        _NAMES.clear()
    _NAMES[raw] = s
    return s


def _skip_name(buf: bytes, off: int) -> int:
    """Offset just past the name at ``off`` (no decoding, no pointer following)."""
    n = len(buf)
    while off < n:
        ln = buf[off]
        if ln == 0:
            return off + 1
        if ln >= 0xC0:
            return off + 2
        if ln > 63:
            raise DnsFormatError(f"unsupported label type 0x{ln:02x} at {off}")
        off += 1 + ln
    raise DnsFormatError("name runs past end of message")


def _name_text(raw: bytes) -> str:
    """A name inside RDATA as Zeek logs it: ASCII lower-cased, non-printables escaped."""
    return _text(raw.lower())


def _text(b: bytes) -> str:
    """Bytes as text: printable ASCII kept, everything else ``\\xNN`` (as Zeek logs)."""
    try:
        s = b.decode("ascii")
    except UnicodeDecodeError:
        return "".join(chr(c) if 0x20 <= c <= 0x7E else f"\\x{c:02x}" for c in b)
    if s.isprintable():
        return s
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in s)


def _char_strings(buf: bytes, off: int, end: int) -> list[bytes]:
    out = []
    while off < end:
        ln = buf[off]
        out.append(buf[off + 1 : min(off + 1 + ln, end)])
        off += 1 + ln
    return out


def _ip6_text(b: bytes) -> str:
    if b[:12] == b"\x00" * 10 + b"\xff\xff":  # v4-mapped: Zeek prints the IPv4 form
        return socket.inet_ntop(socket.AF_INET, b[12:])
    return socket.inet_ntop(socket.AF_INET6, b)


_SIMPLE: dict[int, str] = {
    50: "NSEC3",
    51: "NSEC3PARAM",
    65534: "BIND9 signing signal",
}


def _render(buf: bytes, rtype: int, off: int, rdlen: int, owner: bytes) -> str | None:
    """One answer's RDATA as Zeek's dns.log renders it (``None``: adds no answer)."""
    end = off + rdlen
    if rtype == 1:
        return socket.inet_ntop(socket.AF_INET, buf[off:end]) if rdlen == 4 else None
    if rtype == 28:
        return _ip6_text(buf[off:end]) if rdlen == 16 else None
    if rtype in (2, 5, 12, 39):  # NS, CNAME, PTR, DNAME
        return _name_text(_read_name(buf, off)[0])
    if rtype == 15:  # MX: Zeek logs the exchange only
        return _name_text(_read_name(buf, off + 2)[0])
    if rtype == 33:  # SRV: the target only
        return _name_text(_read_name(buf, off + 6)[0])
    if rtype == 6:  # SOA: MNAME
        return _name_text(_read_name(buf, off)[0])
    if rtype in (16, 99):
        tag = "TXT" if rtype == 16 else "SPF"
        parts = _char_strings(buf, off, end)
        return " ".join(f"{tag} {len(p)} {_text(p)}" for p in parts) or None
    if rtype in (11, 41, 249, 250):
        # OPT is never an answer; Zeek adds nothing for WKS, TKEY and TSIG.
        return None
    if rtype in _SIMPLE:
        return _SIMPLE[rtype]
    if rtype == 46 and rdlen >= 18:  # RRSIG
        signer = _read_name(buf, off + 18)[0]
        return f"RRSIG {_U16(buf, off)[0]} {_name_text(signer) if signer else '<Root>'}"
    if rtype == 48 and rdlen >= 4:
        return f"DNSKEY {buf[off + 3]}"
    if rtype == 43 and rdlen >= 4:
        return f"DS {buf[off + 2]} {buf[off + 3]}"
    if rtype == 47:
        return f"NSEC {_name_text(owner)} {_name_text(_read_name(buf, off)[0])}"
    if rtype == 44 and rdlen >= 2:
        return f"SSHFP: {buf[off + 2 : end].hex()}"
    if rtype == 29 and rdlen >= 4:
        return f"LOC:  {buf[off + 1]} {buf[off + 2]} {buf[off + 3]}"
    if rtype == 13:  # HINFO
        return " ".join(_text(p) for p in _char_strings(buf, off, end)) or None
    if rtype == 257 and rdlen >= 2:  # CAA
        tl = buf[off + 1]
        return f"{buf[off]} {_text(buf[off + 2 : off + 2 + tl])} {_text(buf[off + 2 + tl : end])}"
    if rtype in (64, 65) and rdlen >= 3:  # SVCB, HTTPS
        target = _name_text(_read_name(buf, off + 2)[0]) or "."
        return f"{'SVCB' if rtype == 64 else 'HTTPS'} {_U16(buf, off)[0]} {target}"
    return f"<unknown type={rtype}>"


class DnsMessage:
    """The parts of one DNS message that become an event."""

    __slots__ = (
        "aa",
        "answers",
        "id",
        "opcode",
        "qname",
        "qname_raw",
        "qr",
        "qtype",
        "ra",
        "rcode",
        "rd",
        "tc",
        "ttls",
    )

    def __init__(self) -> None:
        self.id = 0
        self.qr = False
        self.opcode = 0
        self.aa = self.tc = self.rd = self.ra = False
        self.rcode = 0
        self.qname: str | None = None
        self.qname_raw: bytes | None = None
        self.qtype: int | None = None
        self.answers: list[str] = []
        self.ttls: list[float] = []


def netbios_name(raw: bytes) -> bytes:
    """Decode a NetBIOS first-level encoded name (``EBEC...``) as Zeek does.

    The 32-letter first label becomes 15 characters (the 16th, the service
    suffix, and any scope are dropped), cut at the first non-printable byte and
    stripped of trailing spaces.  Anything else is returned unchanged.

    >>> netbios_name(b"FHEPFCELEHFCEPFFFACACACACACACABN")
    b'WORKGROUP'
    """
    label = raw.split(b".", 1)[0]
    if len(label) != 32 or any(c < 0x41 or c > 0x50 for c in label):
        return raw
    dec = bytes(((label[i] - 0x41) << 4) | (label[i + 1] - 0x41) for i in range(0, 30, 2))
    for i, c in enumerate(dec):
        if not 0x20 <= c <= 0x7E:
            dec = dec[:i]
            break
    return dec.rstrip(b" ")


def parse_dns_message(buf: bytes) -> DnsMessage:
    """Decode header, first question and (for responses) the answer section.

    For responses the extended RCODE of an EDNS OPT record is applied.  A
    response without a question takes its name from the first answer (as
    Zeek does).  Raises :class:`DnsFormatError` when the header or question
    cannot be decoded; a bad answer record ends the answer list there.
    """
    if len(buf) < 12:
        raise DnsFormatError(f"message of {len(buf)} bytes is shorter than a header")
    tid, flags, qd, an, ns, ar = _HDR(buf, 0)
    m = DnsMessage()
    m.id = tid
    m.qr = bool(flags & 0x8000)
    m.opcode = (flags >> 11) & 0xF
    m.aa = bool(flags & 0x0400)
    m.tc = bool(flags & 0x0200)
    m.rd = bool(flags & 0x0100)
    m.ra = bool(flags & 0x0080)
    m.rcode = flags & 0xF
    off = 12
    for i in range(qd):
        if i == 0:
            raw, off = _read_name(buf, off)
            if off + 4 > len(buf):
                raise DnsFormatError("question cut")
            m.qname_raw = raw
            m.qname = _qname(raw)
            m.qtype = _Q(buf, off)[0]
        else:
            off = _skip_name(buf, off)
            if off + 4 > len(buf):
                raise DnsFormatError("question cut")
        off += 4
    if not m.qr:
        return m
    n = len(buf)
    try:
        for _ in range(an):
            owner, off = _read_name(buf, off)
            if off + 10 > n:
                raise DnsFormatError("answer record cut")
            rtype, _cls, ttl, rdlen = _RR(buf, off)
            off += 10
            if off + rdlen > n:
                raise DnsFormatError("answer data cut")
            if m.qname_raw is None:
                m.qname_raw = owner
                m.qname = _qname(owner)
            text = _render(buf, rtype, off, rdlen, owner)
            off += rdlen
            if text:
                m.answers.append(text)
                m.ttls.append(float(ttl))
        if ar:
            for _ in range(ns + ar):
                off = _skip_name(buf, off)
                if off + 10 > n:
                    break
                rtype, _cls, ttl, rdlen = _RR(buf, off)
                if rtype == 41:
                    m.rcode |= (ttl >> 24) << 4
                    break
                off += 10 + rdlen
    except (DnsFormatError, IndexError, struct.error, ValueError):
        pass  # keep the answers decoded so far (Zeek does the same)
    return m


# --------------------------------------------------------------------------- containers


class _Chunks:
    """Exact-size sequential reads over a stream, with the running offset."""

    def __init__(self, stream: BinaryIO) -> None:
        self._s = stream
        self._buf = b""
        self._pos = 0
        self.offset = 0

    def peek(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at end of stream) without consuming them."""
        data = self.read(n)
        self._pos -= len(data)
        self.offset -= len(data)
        return data

    def read(self, n: int) -> bytes:
        pos = self._pos
        end = pos + n
        if end <= len(self._buf):
            self._pos = end
            self.offset += n
            return self._buf[pos:end]
        parts = [self._buf[pos:]]
        have = len(parts[0])
        while have < n:
            chunk = self._s.read(max(_CHUNK, n - have))
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        self._buf = b"".join(parts)
        out = self._buf[:n]
        self._pos = len(out)
        self.offset += len(out)
        return out


def _iter_pcap(
    src: _Chunks, magic: bytes, stats: IngestStats
) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield (record offset, ts µs, linktype, frame) from a classic pcap."""
    endian, div = _PCAP_MAGIC[magic]
    rest = src.read(24)[4:]
    if len(rest) < 20:
        stats.reject("truncated_file", "pcap file header cut")
        return
    linktype = struct.unpack(endian + "I", rest[16:20])[0] & 0xFFFF
    rec = struct.Struct(endian + "IIII").unpack
    while True:
        start = src.offset
        hdr = src.read(16)
        if not hdr:
            return
        if len(hdr) < 16:
            stats.reject("truncated_file", f"record header at offset {start} cut")
            return
        sec, frac, caplen, _orig = rec(hdr)
        if caplen > _MAX_RECORD:
            stats.reject("bad_record", f"record at offset {start} claims {caplen} bytes")
            return
        data = src.read(caplen)
        if len(data) < caplen:
            stats.reject(
                "truncated_file", f"record at offset {start}: {len(data)} of {caplen} bytes"
            )
            return
        yield start, sec * 1_000_000 + frac // div, linktype, data


def _idb(body: bytes, e: str) -> tuple[int, int, int]:
    """(linktype, ticks per second, offset µs) of an Interface Description Block body."""
    linktype = struct.unpack_from(e + "H", body, 0)[0]
    resol = 1_000_000
    tsoff = 0
    off = 8
    while off + 4 <= len(body):
        code, ln = struct.unpack_from(e + "HH", body, off)
        val = body[off + 4 : off + 4 + ln]
        if code == 0:
            break
        if code == 9 and ln >= 1:
            v = val[0]
            resol = 2 ** (v & 0x7F) if v & 0x80 else 10 ** (v & 0x7F)
        elif code == 14 and ln == 8:
            tsoff = struct.unpack(e + "q", val)[0] * 1_000_000
        off += 4 + ((ln + 3) & ~3)
    return linktype, max(resol, 1), tsoff


def _iter_pcapng(src: _Chunks, stats: IngestStats) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield (block offset, ts µs, linktype, frame) from a pcapng stream."""
    e = "<"
    ifaces: list[tuple[int, int, int]] = []
    last_ts: int | None = None
    first = True
    while True:
        start = src.offset
        head = src.read(8)
        if not head:
            return
        if len(head) < 8:
            stats.reject("truncated_file", f"block header at offset {start} cut")
            return
        if head[:4] == _PCAPNG_SHB:
            bom = src.read(4)
            if len(bom) < 4:
                stats.reject("truncated_file", f"section header at offset {start} cut")
                return
            if bom == b"\x4d\x3c\x2b\x1a":
                e = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                e = ">"
            else:
                stats.reject("bad_record", f"bad byte-order magic at offset {start}")
                return
            blen = struct.unpack(e + "I", head[4:8])[0]
            if blen < 28 or blen % 4 or blen > _MAX_RECORD:
                stats.reject("bad_record", f"section header at offset {start}: length {blen}")
                return
            body = src.read(blen - 12)
            if len(body) < blen - 12:
                stats.reject("truncated_file", f"section header at offset {start} cut")
                return
            ifaces = []
            first = False
            continue
        if first:
            stats.reject("bad_file_header", "pcapng stream does not start with a section header")
            return
        btype, blen = struct.unpack(e + "II", head)
        if blen < 12 or blen % 4 or blen > _MAX_RECORD:
            stats.reject("bad_record", f"block at offset {start}: length {blen}")
            return
        rest = src.read(blen - 8)
        if len(rest) < blen - 8:
            stats.reject(
                "truncated_file", f"block at offset {start}: {len(rest) + 8} of {blen} bytes"
            )
            return
        body = rest[:-4]
        if btype == 1:
            if len(body) < 8:
                stats.reject("bad_record", f"interface block at offset {start} too short")
                continue
            ifaces.append(_idb(body, e))
            continue
        if btype == 6 or btype == 2:
            if len(body) < 20:
                stats.records_read += 1
                stats.reject("bad_record", f"packet block at offset {start} too short")
                continue
            if btype == 6:
                iface, hi, lo, caplen, _orig = struct.unpack_from(e + "IIIII", body, 0)
            else:
                iface, _drops, hi, lo, caplen, _orig = struct.unpack_from(e + "HHIIII", body, 0)
            data = body[20 : 20 + caplen]
            if iface >= len(ifaces):
                stats.records_read += 1
                stats.reject("bad_record", f"packet block at offset {start}: no interface {iface}")
                continue
            linktype, resol, tsoff = ifaces[iface]
            ticks = (hi << 32) | lo
            last_ts = ticks * 1_000_000 // resol + tsoff if resol != 1_000_000 else ticks + tsoff
            yield start, last_ts, linktype, data
        elif btype == 3:
            if not ifaces or len(body) < 4:
                stats.records_read += 1
                stats.reject("bad_record", f"simple packet block at offset {start} unusable")
                continue
            if last_ts is None:
                stats.records_read += 1
                stats.reject("no_timestamp", f"simple packet block at offset {start}")
                continue
            orig = struct.unpack_from(e + "I", body, 0)[0]
            yield start, last_ts, ifaces[0][0], body[4 : 4 + orig]


# --------------------------------------------------------------------------- packet decoding


def _is_multicast(addr: bytes) -> bool:
    return (len(addr) == 4 and 224 <= addr[0] <= 239) or (len(addr) == 16 and addr[0] == 0xFF)


class _Query:
    __slots__ = ("client", "cport", "matched", "msg", "proto", "qlen", "server", "sport", "ts")

    def __init__(
        self,
        ts: int,
        client: bytes,
        cport: int,
        server: bytes,
        sport: int,
        proto: str,
        msg: DnsMessage,
        qlen: int,
    ) -> None:
        self.ts = ts
        self.client = client
        self.cport = cport
        self.server = server
        self.sport = sport
        self.proto = proto
        self.msg = msg
        self.qlen = qlen
        self.matched = False


class _Fragments:
    """Fragments of one IP datagram being reassembled."""

    __slots__ = ("first_ts", "parts", "proto", "total")

    def __init__(self, ts: int, proto: int) -> None:
        self.first_ts = ts
        self.total: int | None = None
        self.parts: dict[int, bytes] = {}
        self.proto = proto


class _TcpFlow:
    __slots__ = ("buf", "next_seq", "ooo")

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        self.buf = bytearray()
        self.ooo: dict[int, bytes] = {}


_COLS = (
    "ts",
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "proto",
    "trans_id",
    "qname",
    "qtype",
    "rcode",
    "answers",
    "ttls",
    "rtt",
    "aa",
    "tc",
    "rd",
    "ra",
    "query_len",
    "response_len",
)
_ARROW: dict[str, pa.DataType] = {
    "ts": pa.timestamp("us", tz="UTC"),
    "src_ip": pa.string(),
    "dst_ip": pa.string(),
    "src_port": pa.int32(),
    "dst_port": pa.int32(),
    "proto": pa.string(),
    "trans_id": pa.int32(),
    "qname": pa.string(),
    "qtype": pa.string(),
    "rcode": pa.string(),
    "answers": pa.list_(pa.string()),
    "ttls": pa.list_(pa.float64()),
    "rtt": pa.float64(),
    "aa": pa.bool_(),
    "tc": pa.bool_(),
    "rd": pa.bool_(),
    "ra": pa.bool_(),
    "query_len": pa.int32(),
    "response_len": pa.int32(),
}


class _Decoder:
    """Per-file decoding state: fragments, TCP streams, pending queries, output columns."""

    def __init__(self, ctx: ReadContext) -> None:
        self.ctx = ctx
        self.stats = ctx.stats
        self.cols: dict[str, list[object]] = {c: [] for c in _COLS}
        self.frags: dict[tuple[object, ...], _Fragments] = {}
        self.flows: dict[tuple[bytes, int, bytes, int], _TcpFlow] = {}
        self.pending: dict[tuple[object, ...], deque[_Query]] = {}
        self.window: deque[_Query] = deque()
        self.timeout_us = int(PAIR_TIMEOUT * 1_000_000)
        self._addr: dict[bytes, str] = {}
        self._qtypes: dict[int, str] = {}
        self._rcodes: dict[int, str] = {}
        self._now = 0

    # ---- output
    def rows(self) -> int:
        return len(self.cols["ts"])

    def flush(self) -> Iterator[pa.RecordBatch]:
        if not self.cols["ts"]:
            return
        table = pa.table({c: pa.array(v, type=_ARROW[c]) for c, v in self.cols.items()})
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        self.cols = {c: [] for c in _COLS}
        yield from canonical_batches(df, self.ctx)

    def _ip(self, b: bytes) -> str:
        s = self._addr.get(b)
        if s is None:
            s = socket.inet_ntop(socket.AF_INET if len(b) == 4 else socket.AF_INET6, b)
            if len(self._addr) > 100_000:
                self._addr.clear()
            self._addr[b] = s
        return s

    def _qt(self, code: int | None) -> str | None:
        if code is None:
            return None
        s = self._qtypes.get(code)
        if s is None:
            s = self._qtypes[code] = qtype_name(code)
        return s

    def _rc(self, code: int) -> str:
        s = self._rcodes.get(code)
        if s is None:
            s = self._rcodes[code] = rcode_name(code)
        return s

    def _emit(
        self, q: _Query | None, r: DnsMessage | None, rts: int, rinfo: tuple[object, ...]
    ) -> None:
        """Append one event: query ``q`` and/or response ``r`` (at ``rts``)."""
        c = self.cols
        if q is not None:
            m = q.msg
            c["ts"].append(q.ts)
            c["src_ip"].append(self._ip(q.client))
            c["dst_ip"].append(self._ip(q.server))
            c["src_port"].append(q.cport)
            c["dst_port"].append(q.sport)
            c["proto"].append(q.proto)
            c["trans_id"].append(m.id)
            c["qname"].append(m.qname)
            c["qtype"].append(self._qt(m.qtype))
            c["rd"].append(m.rd)
            c["query_len"].append(q.qlen)
            if r is None:
                for k in ("rcode", "answers", "ttls", "rtt", "aa", "tc", "ra", "response_len"):
                    c[k].append(None)
                return
            c["rtt"].append((rts - q.ts) / 1e6)
        else:
            assert r is not None
            client, cport, server, sport, proto, _rlen = rinfo
            c["ts"].append(rts)
            c["src_ip"].append(self._ip(client))  # type: ignore[arg-type]
            c["dst_ip"].append(self._ip(server))  # type: ignore[arg-type]
            c["src_port"].append(cport)
            c["dst_port"].append(sport)
            c["proto"].append(proto)
            c["trans_id"].append(r.id)
            c["qname"].append(r.qname)
            c["qtype"].append(self._qt(r.qtype))
            c["rd"].append(r.rd)
            c["query_len"].append(None)
            c["rtt"].append(None)
        c["rcode"].append(self._rc(r.rcode))
        c["answers"].append(r.answers or None)
        c["ttls"].append(r.ttls or None)
        c["aa"].append(r.aa)
        c["tc"].append(r.tc)
        c["ra"].append(r.ra)
        c["response_len"].append(rinfo[5])

    # ---- pairing
    def expire(self, now: int, force: bool = False) -> None:
        """Emit queries older than the pairing window (all of them when ``force``)."""
        win = self.window
        limit = now - self.timeout_us
        while win and (force or win[0].ts < limit or len(win) > MAX_PENDING):
            q = win.popleft()
            if q.matched:
                continue
            key = (q.client, q.cport, q.server, q.sport, q.proto, q.msg.id)
            lst = self.pending.get(key)
            if lst:
                lst.remove(q)
                if not lst:
                    del self.pending[key]
            self._emit(q, None, 0, ())

    def dns(
        self,
        ts: int,
        proto: str,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        payload: bytes,
        cut: bool,
    ) -> None:
        try:
            m = parse_dns_message(payload)
        except (DnsFormatError, IndexError, struct.error, ValueError) as exc:
            reason = "truncated_packet" if cut else "malformed_dns"
            self.stats.reject(reason, f"{self._ip(src)}:{sport} > {self._ip(dst)}:{dport}: {exc}")
            return
        if m.qname_raw is not None and NBNS_PORT in (sport, dport) and proto == "udp":
            m.qname = escape_name(netbios_name(m.qname_raw))
        if not m.qr:
            q = _Query(ts, src, sport, dst, dport, proto, m, len(payload))
            if _is_multicast(dst):
                self._emit(q, None, 0, ())
                return
            key = (src, sport, dst, dport, proto, m.id)
            lst = self.pending.get(key)
            if lst is None:
                self.pending[key] = deque((q,))
            else:
                lst.append(q)
            self.window.append(q)
            return
        key = (dst, dport, src, sport, proto, m.id)
        lst = self.pending.get(key)
        rinfo = (dst, dport, src, sport, proto, len(payload))
        if lst:
            q = lst.popleft()
            if not lst:
                del self.pending[key]
            q.matched = True
            if ts - q.ts <= self.timeout_us:
                self._emit(q, m, ts, rinfo)
                return
            self._emit(q, None, 0, ())  # too late to be its answer: both stand alone
        self._emit(None, m, ts, rinfo)

    # ---- layers
    def packet(self, ts: int, linktype: int, b: bytes) -> None:
        """Decode one captured frame of ``linktype``."""
        self._now = ts
        if linktype == 1:
            self.ether(ts, b, 0, 0)
        elif linktype in (101, 12, 14):
            self.ip_any(ts, b, 0, 0)
        elif linktype == 228:
            self.ipv4(ts, b, 0, 0)
        elif linktype == 229:
            self.ipv6(ts, b, 0, 0)
        elif linktype == 0 or linktype == 108:
            if len(b) < 4:
                self.stats.reject("truncated_packet", "loopback header cut")
                return
            fam = b[0] or b[3]
            if fam == 2:
                self.ipv4(ts, b, 4, 0)
            elif fam in (10, 24, 28, 30):
                self.ipv6(ts, b, 4, 0)
        elif linktype == 113:
            if len(b) < 16:
                self.stats.reject("truncated_packet", "SLL header cut")
                return
            self.ethertype(ts, _U16(b, 14)[0], b, 16, 0)
        elif linktype == 276:
            if len(b) < 20:
                self.stats.reject("truncated_packet", "SLL2 header cut")
                return
            self.ethertype(ts, _U16(b, 0)[0], b, 20, 0)
        elif linktype == 10:  # FDDI: FC + 2 addresses, then LLC/SNAP
            if len(b) < 21 or b[13:16] != b"\xaa\xaa\x03":
                return
            self.ethertype(ts, _U16(b, 19)[0], b, 21, 0)
        elif linktype in (9, 50):  # PPP, PPP in HDLC framing
            self.ppp(ts, b, 0, 0)
        elif linktype == 104:  # Cisco HDLC
            if len(b) >= 4:
                self.ethertype(ts, _U16(b, 2)[0], b, 4, 0)
        else:
            self.stats.reject("unsupported_linktype", f"link type {linktype}")

    def ether(self, ts: int, b: bytes, off: int, depth: int) -> None:
        if len(b) < off + 14:
            self.stats.reject("truncated_packet", "ethernet header cut")
            return
        et = (b[off + 12] << 8) | b[off + 13]
        off += 14
        while et in (0x8100, 0x88A8, 0x9100, 0x9200):
            if len(b) < off + 4:
                self.stats.reject("truncated_packet", "VLAN tag cut")
                return
            et = (b[off + 2] << 8) | b[off + 3]
            off += 4
        self.ethertype(ts, et, b, off, depth)

    def ethertype(self, ts: int, et: int, b: bytes, off: int, depth: int) -> None:
        if et == 0x0800:
            self.ipv4(ts, b, off, depth)
        elif et == 0x86DD:
            self.ipv6(ts, b, off, depth)
        elif et in (0x8100, 0x88A8, 0x9100):
            if len(b) >= off + 4:
                self.ethertype(ts, _U16(b, off + 2)[0], b, off + 4, depth)
        elif et in (0x8847, 0x8848):  # MPLS: pop labels to the bottom of the stack
            for _ in range(16):
                if len(b) < off + 4:
                    return
                bottom = b[off + 2] & 1
                off += 4
                if bottom:
                    self.ip_any(ts, b, off, depth)
                    return
        elif et == 0x8864:  # PPPoE session
            self.ppp(ts, b, off + 6, depth)
        elif et < 0x600 and b[off : off + 3] == b"\xaa\xaa\x03" and len(b) >= off + 8:
            self.ethertype(ts, _U16(b, off + 6)[0], b, off + 8, depth)

    def ppp(self, ts: int, b: bytes, off: int, depth: int) -> None:
        if b[off : off + 2] == b"\xff\x03":
            off += 2
        if len(b) < off + 1:
            return
        if b[off] & 1:  # protocol field compressed to one byte
            proto, off = b[off], off + 1
        else:
            if len(b) < off + 2:
                return
            proto, off = _U16(b, off)[0], off + 2
        if proto == 0x21:
            self.ipv4(ts, b, off, depth)
        elif proto == 0x57:
            self.ipv6(ts, b, off, depth)

    def ip_any(self, ts: int, b: bytes, off: int, depth: int) -> None:
        if len(b) <= off:
            self.stats.reject("truncated_packet", "IP header cut")
            return
        v = b[off] >> 4
        if v == 4:
            self.ipv4(ts, b, off, depth)
        elif v == 6:
            self.ipv6(ts, b, off, depth)

    def ipv4(self, ts: int, b: bytes, off: int, depth: int) -> None:
        if len(b) < off + 20:
            self.stats.reject("truncated_packet", "IPv4 header cut")
            return
        ihl = (b[off] & 0xF) * 4
        tot = _U16(b, off + 2)[0]
        if ihl < 20 or len(b) < off + ihl:
            self.stats.reject("truncated_packet", "bad IPv4 header length")
            return
        end = off + tot if tot >= ihl else len(b)
        cut = end > len(b)
        proto = b[off + 9]
        src = b[off + 12 : off + 16]
        dst = b[off + 16 : off + 20]
        payload = b[off + ihl : end]
        fo = _U16(b, off + 6)[0]
        if fo & 0x3FFF:
            if cut:
                self.stats.reject("truncated_packet", "IPv4 fragment cut")
                return
            key = (4, src, dst, _U16(b, off + 4)[0], proto)
            whole = self.reassemble(ts, key, (fo & 0x1FFF) * 8, bool(fo & 0x2000), payload, proto)
            if whole is None:
                return
            payload = whole[0]
        self.l4(ts, src, dst, proto, payload, cut, depth)

    def ipv6(self, ts: int, b: bytes, off: int, depth: int) -> None:
        if len(b) < off + 40:
            self.stats.reject("truncated_packet", "IPv6 header cut")
            return
        plen = _U16(b, off + 4)[0]
        end = off + 40 + plen if plen else len(b)
        cut = end > len(b)
        self.ipv6_chain(
            ts,
            b[off + 8 : off + 24],
            b[off + 24 : off + 40],
            b[off + 6],
            b[off + 40 : end],
            cut,
            depth,
        )

    def ipv6_chain(
        self, ts: int, src: bytes, dst: bytes, nxt: int, p: bytes, cut: bool, depth: int
    ) -> None:
        pos = 0
        for _ in range(16):
            if nxt not in (0, 43, 44, 51, 60, 135, 139, 140):
                break
            if len(p) < pos + 8:
                self.stats.reject("truncated_packet", "IPv6 extension header cut")
                return
            if nxt == 44:
                fo = _U16(p, pos + 2)[0]
                inner = p[pos]
                if fo & 0xFFF9 == 0:  # atomic fragment
                    nxt, pos = inner, pos + 8
                    continue
                if cut:
                    self.stats.reject("truncated_packet", "IPv6 fragment cut")
                    return
                key = (6, src, dst, _U32(p, pos + 4)[0])
                whole = self.reassemble(ts, key, fo & 0xFFF8, bool(fo & 1), p[pos + 8 :], inner)
                if whole is None:
                    return
                p, nxt, pos = whole[0], whole[1], 0
                continue
            hlen = (p[pos + 1] + 2) * 4 if nxt == 51 else (p[pos + 1] + 1) * 8
            nxt = p[pos]
            pos += hlen
        self.l4(ts, src, dst, nxt, p[pos:], cut, depth)

    def reassemble(
        self, ts: int, key: tuple[object, ...], offset: int, more: bool, data: bytes, proto: int
    ) -> tuple[bytes, int] | None:
        """Add one fragment; the whole datagram and its protocol once complete."""
        ent = self.frags.get(key)
        if ent is None:
            if len(self.frags) >= _MAX_FRAG_DATAGRAMS:
                self.expire_frags(ts, force_one=True)
            ent = self.frags[key] = _Fragments(ts, proto)
        parts = ent.parts
        if offset + len(data) > 65_535 + 40 or len(parts) > 1024:
            self.stats.reject("bad_fragment", "fragment beyond the largest datagram")
            del self.frags[key]
            return None
        parts.setdefault(offset, data)
        if offset == 0:
            ent.proto = proto
        if not more:
            ent.total = offset + len(data)
        total = ent.total
        if total is None:
            return None
        have = 0
        chunks = []
        for o in sorted(parts):
            d = parts[o]
            if o > have:
                return None
            if o + len(d) > have:
                chunks.append(d[have - o :])
                have = o + len(d)
        if have < total:
            return None
        del self.frags[key]
        return b"".join(chunks)[:total], ent.proto

    def expire_frags(self, now: int, force_one: bool = False) -> None:
        stale = [k for k, v in self.frags.items() if now - v.first_ts > _FRAG_TIMEOUT_US]
        if force_one and not stale and self.frags:
            stale = [next(iter(self.frags))]
        for k in stale:
            del self.frags[k]
        if stale:
            self.stats.reject("incomplete_fragments", n=len(stale))

    def l4(
        self, ts: int, src: bytes, dst: bytes, proto: int, p: bytes, cut: bool, depth: int
    ) -> None:
        if proto == 17:
            if len(p) < 8:
                self.stats.reject("truncated_packet", "UDP header cut")
                return
            sport, dport, ulen = _UDP(p, 0)
            if 8 <= ulen <= len(p):
                data = p[8:ulen]
            else:
                data = p[8:]
                cut = cut or ulen > len(p)
            if sport in _UDP_PORTS or dport in _UDP_PORTS:
                self.dns(ts, "udp", src, sport, dst, dport, data, cut)
            elif depth < MAX_TUNNEL_DEPTH:
                self.udp_tunnel(ts, sport, dport, data, depth + 1)
        elif proto == 6:
            if len(p) < 20:
                self.stats.reject("truncated_packet", "TCP header cut")
                return
            sport, dport, seq = _TCP(p, 0)
            if sport in DNS_PORTS or dport in DNS_PORTS:
                doff = (p[12] >> 4) * 4
                if doff < 20 or doff > len(p):
                    self.stats.reject("truncated_packet", "bad TCP header length")
                    return
                self.tcp(ts, src, sport, dst, dport, seq, p[13], p[doff:])
        elif depth >= MAX_TUNNEL_DEPTH:
            return
        elif proto == 47:
            self.gre(ts, p, depth + 1)
        elif proto == 4:
            self.ipv4(ts, p, 0, depth + 1)
        elif proto == 41:
            self.ipv6(ts, p, 0, depth + 1)

    def udp_tunnel(self, ts: int, sport: int, dport: int, d: bytes, depth: int) -> None:
        if 4789 in (sport, dport) or 8472 in (sport, dport):  # VXLAN
            if len(d) >= 8 and d[0] & 0x08:
                self.ether(ts, d, 8, depth)
        elif 6081 in (sport, dport):  # Geneve
            if len(d) >= 8:
                start = 8 + (d[0] & 0x3F) * 4
                ptype = _U16(d, 2)[0]
                if ptype == 0x6558:
                    self.ether(ts, d, start, depth)
                else:
                    self.ethertype(ts, ptype, d, start, depth)
        elif 4754 in (sport, dport):  # GRE-in-UDP
            self.gre(ts, d, depth)
        elif 2152 in (sport, dport):  # GTP-U, G-PDU only
            if len(d) < 8 or d[0] >> 5 != 1 or d[1] != 0xFF:
                return
            off = 8
            if d[0] & 0x07:
                off = 12
                nxt = d[11] if len(d) >= 12 and d[0] & 0x04 else 0
                while nxt and off < len(d):
                    ln = d[off] * 4
                    if ln == 0 or off + ln > len(d):
                        return
                    nxt = d[off + ln - 1]
                    off += ln
            self.ip_any(ts, d, off, depth)

    def gre(self, ts: int, d: bytes, depth: int) -> None:
        if len(d) < 4:
            return
        flags, ptype = _Q(d, 0)
        off = 4
        if flags & 0x8000:
            off += 4
        if flags & 0x2000:
            off += 4
        if flags & 0x1000:
            off += 4
        if flags & 7 == 1 and flags & 0x0080:  # PPTP enhanced GRE acknowledgment
            off += 4
        if ptype == 0x6558:
            self.ether(ts, d, off, depth)
        elif ptype == 0x880B:
            self.ppp(ts, d, off, depth)
        else:
            self.ethertype(ts, ptype, d, off, depth)

    def tcp(
        self,
        ts: int,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        seq: int,
        flags: int,
        data: bytes,
    ) -> None:
        key = (src, sport, dst, dport)
        flow = self.flows.get(key)
        if flags & 0x02:  # SYN
            self.flows.pop(key, None)
            flow = None
            seq = (seq + 1) & 0xFFFFFFFF
        if data:
            if flow is None:
                if len(self.flows) >= _MAX_TCP_FLOWS:
                    self.flows.pop(next(iter(self.flows)))
                flow = self.flows[key] = _TcpFlow(seq)
            self.tcp_data(ts, key, flow, seq, data)
        elif flow is None and flags & 0x02:
            if len(self.flows) >= _MAX_TCP_FLOWS:
                self.flows.pop(next(iter(self.flows)))
            self.flows[key] = _TcpFlow(seq)
        if flags & 0x05:  # FIN or RST: the direction is done
            self.flows.pop(key, None)

    def tcp_data(
        self, ts: int, key: tuple[bytes, int, bytes, int], flow: _TcpFlow, seq: int, data: bytes
    ) -> None:
        diff = (seq - flow.next_seq) & 0xFFFFFFFF
        if diff >= 0x80000000:  # retransmission or overlap
            overlap = 0x100000000 - diff
            if overlap >= len(data):
                return
            data = data[overlap:]
            diff = 0
        if diff:
            if len(flow.ooo) >= _MAX_TCP_OOO:
                self.stats.reject(
                    "tcp_gap", "too many out-of-order segments; stream resynchronised"
                )
                flow.buf.clear()
                flow.ooo.clear()
                flow.next_seq = seq
            else:
                flow.ooo.setdefault(seq, data)
                return
        flow.buf += data
        flow.next_seq = (flow.next_seq + len(data)) & 0xFFFFFFFF
        while flow.ooo:
            nxt = flow.ooo.pop(flow.next_seq, None)
            if nxt is None:
                break
            flow.buf += nxt
            flow.next_seq = (flow.next_seq + len(nxt)) & 0xFFFFFFFF
        buf = flow.buf
        src, sport, dst, dport = key
        pos = 0
        while len(buf) - pos >= 2:
            ln = (buf[pos] << 8) | buf[pos + 1]
            if ln < 12:
                self.stats.reject("malformed_dns", f"TCP DNS length prefix {ln}")
                pos = len(buf)
                break
            if len(buf) - pos - 2 < ln:
                break
            self.dns(ts, "tcp", src, sport, dst, dport, bytes(buf[pos + 2 : pos + 2 + ln]), False)
            pos += 2 + ln
        if pos:
            del buf[:pos]

    def finish(self) -> None:
        """End of input: emit unanswered queries, count unfinished fragments and streams."""
        self.expire(0, force=True)
        if self.frags:
            self.stats.reject("incomplete_fragments", n=len(self.frags))
            self.frags.clear()
        partial = sum(1 for f in self.flows.values() if f.buf)
        if partial:
            self.stats.reject("tcp_partial_message", n=partial)
        self.flows.clear()


# --------------------------------------------------------------------------- adapter


class PcapAdapter:
    """DNS events from pcap / pcapng captures (see the module documentation)."""

    name = "pcap"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        """Yield canonical batches of at most ``ctx.batch_size`` events."""
        stats = ctx.stats
        src = _Chunks(stream)
        magic = src.peek(4)
        if not magic:
            stats.reject("empty_file", "no bytes")
            return
        records: Iterator[tuple[int, int, int, bytes]]
        if magic in _PCAP_MAGIC:
            records = _iter_pcap(src, magic, stats)
        elif magic == _PCAPNG_SHB:
            records = _iter_pcapng(src, stats)
        else:
            stats.reject("bad_file_header", f"not a pcap or pcapng file (magic {magic.hex()})")
            return
        dec = _Decoder(ctx)
        skip = ctx.skip_bytes
        batch = ctx.batch_size
        count = 0
        for off, ts, linktype, data in records:
            stats.bytes_consumed = src.offset
            if off < skip:
                continue
            stats.records_read += 1
            try:
                dec.packet(ts, linktype, data)
            except Exception as exc:  # a decoder bug must not lose the file
                stats.reject("decode_error", f"packet at offset {off}: {type(exc).__name__}: {exc}")
            count += 1
            if count & 0x3FF == 0:
                dec.expire(ts)
                if dec.frags:
                    dec.expire_frags(ts)
            if dec.rows() >= batch:
                yield from dec.flush()
        if not stats.rejects["truncated_file"] and not stats.rejects["bad_record"]:
            stats.bytes_consumed = src.offset
        dec.finish()
        yield from dec.flush()
