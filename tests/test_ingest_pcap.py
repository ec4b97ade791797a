"""pcap / pcapng adapter: Zeek parity, every capture in the corpus, robustness and fuzzing.

Local fixtures (tests/data/pcap, from Zeek's test suite, BSD-3) keep the unit
tests running without the shared corpus; the Zeek comparison over all golden
logs and the "every capture" sweep read ../shared/data in place.
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dpkt
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsieve.ingest import read_file, read_stream
from dnsieve.ingest.base import IngestStats, ReadContext
from dnsieve.ingest.codes import qtype_code
from dnsieve.ingest.pcap import (
    MAX_POINTER_HOPS,
    DnsFormatError,
    PcapAdapter,
    netbios_name,
    parse_dns_message,
)
from dnsieve.schema import DNS_EVENT

PCAPS = "zeek/testsuite/pcaps"
BASELINES = "zeek/testsuite/baseline_dns_logs"

# ----------------------------------------------------------------------------- helpers


def _ctx(**kw: Any) -> ReadContext:
    return ReadContext(sensor="test", stats=IngestStats(source="test"), **kw)


def read_path(path: Path, **kw: Any) -> tuple[list[dict[str, Any]], IngestStats]:
    ctx = _ctx(**kw)
    batches = list(read_file(path, "pcap", ctx))
    for b in batches:
        assert b.schema.equals(DNS_EVENT)
        assert b.num_rows <= ctx.batch_size
    rows = [r for b in batches for r in b.to_pylist()]
    return rows, ctx.stats


def read_bytes(data: bytes, **kw: Any) -> tuple[list[dict[str, Any]], IngestStats]:
    ctx = _ctx(**kw)
    batches = list(read_stream(io.BytesIO(data), "pcap", ctx))
    for b in batches:
        assert b.schema.equals(DNS_EVENT)
    rows = [r for b in batches for r in b.to_pylist()]
    return rows, ctx.stats


def wire_name(name: bytes) -> bytes:
    """Uncompressed wire form of a dotted name (labels may hold any byte but a dot)."""
    out = b""
    for label in name.split(b".") if name else []:
        out += bytes([len(label)]) + label
    return out + b"\x00"


def dns_msg(
    tid: int,
    qname: bytes | None = b"example.com",
    qtype: int = 1,
    *,
    response: bool = False,
    rcode: int = 0,
    answers: list[tuple[int, int, bytes]] = (),  # type: ignore[assignment]
    additional: list[bytes] = (),  # type: ignore[assignment]
    raw_question: bytes | None = None,
) -> bytes:
    """A DNS message; answers are (type, ttl, rdata) owned by the question name (pointer)."""
    flags = 0x0100 | (0x8180 if response else 0) | rcode
    question = (
        raw_question
        if raw_question is not None
        else (wire_name(qname) + struct.pack("!HH", qtype, 1) if qname is not None else b"")
    )
    qd = 1 if question else 0
    body = question
    for rtype, ttl, rdata in answers:
        body += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata
    for rr in additional:
        body += rr
    return struct.pack("!HHHHHH", tid, flags, qd, len(answers), 0, len(additional)) + body


def opt_rr(ext_rcode: int = 0, udp_size: int = 1232) -> bytes:
    return b"\x00" + struct.pack("!HHIH", 41, udp_size, ext_rcode << 24, 0)


def udp4(src: str, sport: int, dst: str, dport: int, payload: bytes) -> dpkt.ip.IP:
    u = dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload)
    return dpkt.ip.IP(src=_a4(src), dst=_a4(dst), p=17, ttl=64, data=u)


def udp6(src: str, sport: int, dst: str, dport: int, payload: bytes) -> dpkt.ip6.IP6:
    import socket

    u = dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload)
    ip = dpkt.ip6.IP6(
        src=socket.inet_pton(socket.AF_INET6, src),
        dst=socket.inet_pton(socket.AF_INET6, dst),
        nxt=17,
        hlim=64,
        data=u,
    )
    ip.plen = len(bytes(u))
    return ip


def _a4(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


def ether(ip: dpkt.Packet, *, vlans: tuple[int, ...] = ()) -> bytes:
    et = 0x86DD if isinstance(ip, dpkt.ip6.IP6) else 0x0800
    tags = b""
    tpids = [0x88A8] * (len(vlans) - 1) + [0x8100] if vlans else []
    for i, vid in enumerate(vlans):
        tags += struct.pack("!HH", tpids[i], vid)
    # put the TPID of the first tag in the ethertype slot
    if vlans:
        first, rest = tags[:2], tags[2:]
        return b"\x02" * 6 + b"\x04" * 6 + first + rest + struct.pack("!H", et) + bytes(ip)
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", et) + bytes(ip)


def pcap_bytes(frames: list[tuple[float, bytes]], linktype: int = 1) -> bytes:
    buf = io.BytesIO()
    w = dpkt.pcap.Writer(buf, linktype=linktype)
    for ts, frame in frames:
        w.writepkt(frame, ts=ts)
    return buf.getvalue()


def query_response(
    tid: int = 7, qname: bytes = b"example.com", t0: float = 1000.0
) -> list[tuple[float, bytes]]:
    q = dns_msg(tid, qname)
    r = dns_msg(tid, qname, response=True, answers=[(1, 300, b"\x01\x02\x03\x04")])
    return [
        (t0, ether(udp4("10.0.0.1", 40000, "10.0.0.53", 53, q))),
        (t0 + 0.25, ether(udp4("10.0.0.53", 53, "10.0.0.1", 40000, r))),
    ]


# ----------------------------------------------------------------------------- Zeek parity

#: Golden dns.log (name without ".dns.log") -> the trace Zeek's btest reads, as it is named in
#: the corpus (Traces/dns/x.pcap -> dns_x.pcap, Traces/dnssec/x.pcap -> dnssec_x.pcap,
#: x.trace -> x.pcap).  Found in each baseline's btest script (testing/btest/...).
BASELINE_TO_PCAP = {
    "core.ipv6-frag": "ipv6-fragmented-dns.pcap",
    "opt.basic": "wikipedia.pcap",
    "scripts.base.protocols.dns.binds": "dns_dns-binds.pcap",
    "scripts.base.protocols.dns.dns-key": "dnssec_dnskey2.pcap",
    "scripts.base.protocols.dns.dnskey": "dnssec_dnskey.pcap",
    "scripts.base.protocols.dns.ds": "dnssec_ds.pcap",
    "scripts.base.protocols.dns.duplicate-reponses": "dns-two-responses.pcap",
    "scripts.base.protocols.dns.dynamic-update": "dns_dynamic-update.pcap",
    "scripts.base.protocols.dns.flip": "dns53.pcap",
    "scripts.base.protocols.dns.loc": "dns_loc-29-trunc.pcap",
    "scripts.base.protocols.dns.mdns-no-assoc": "dns_mdns-no-assoc.pcap",
    "scripts.base.protocols.dns.multiple-txt-strings": "dns-txt-multiple.pcap",
    "scripts.base.protocols.dns.notify": "dns_dns_notify2.pcap",
    "scripts.base.protocols.dns.nsec": "dnssec_nsec.pcap",
    "scripts.base.protocols.dns.nsec3": "dnssec_nsec3.pcap",
    "scripts.base.protocols.dns.nsec3param": "dnssec_nsec3param.pcap",
    "scripts.base.protocols.dns.rrsig": "dnssec_rrsig.pcap",
    "scripts.base.protocols.dns.spf": "dns-spf.pcap",
    "scripts.base.protocols.dns.sshfp": "dns_sshfp-trunc.pcap",
    "scripts.base.protocols.dns.tkey": "dns_tkey.pcap",
    "scripts.base.protocols.dns.wks": "dns_dns-wks.pcap",
    "scripts.base.protocols.dns.zero-responses": "dns-zero-RRs.pcap",
    "scripts.policy.protocols.dns.original_case": "dns_original_case.pcap",
}

#: Golden logs whose trace is not in the corpus (Zeek's btest trace named after the arrow).
BASELINES_WITHOUT_PCAP = {
    "core.tunnels.gre": "Traces/tunnels/gre-sample.pcap",
    "core.tunnels.gre-over-udp": "Traces/tunnels/gre-over-udp-4754.pcap",
    "core.tunnels.gre-pptp": "Traces/tunnels/gre-pptp.pcap",
    "core.tunnels.gtp.false_gtp": "Traces/tunnels/gtp/gtp3_false_gtp.pcap",
}

_RESPONSE_ONLY_QTYPE = (
    "only the response was seen: Zeek sets qtype only from a request, dnsieve takes it from "
    "the response's question section"
)
_UPDATE = (
    "DNS UPDATE (opcode 5): Zeek logs the first prerequisite RR's owner as the query and renders "
    "the request's prerequisite/update sections ('pre: NoRRSet ...', 'add: ...') as answers; "
    "dnsieve logs the zone from the question section (type SOA) and the response's answer section"
)

#: Every known disagreement with Zeek: (baseline, row index, field) -> reason.  The test fails on
#: any disagreement not listed here, and on any entry here that no longer disagrees.
KNOWN_DEVIATIONS: dict[tuple[str, int, str], str] = {
    ("scripts.base.protocols.dns.duplicate-reponses", 1, "qtype"): _RESPONSE_ONLY_QTYPE,
    ("scripts.base.protocols.dns.flip", 0, "qtype"): _RESPONSE_ONLY_QTYPE,
    ("scripts.base.protocols.dns.multiple-txt-strings", 0, "qtype"): _RESPONSE_ONLY_QTYPE,
    ("scripts.base.protocols.dns.spf", 0, "qtype"): _RESPONSE_ONLY_QTYPE,
    ("scripts.base.protocols.dns.notify", 1, "qtype"): _RESPONSE_ONLY_QTYPE,
    ("scripts.base.protocols.dns.notify", 1, "qname"): (
        "only a response with no answers was seen: Zeek takes the query name only from a request "
        "or the first answer and logs '-'; dnsieve takes it from the response's question section"
    ),
    ("scripts.base.protocols.dns.dynamic-update", 0, "qname"): _UPDATE,
    ("scripts.base.protocols.dns.dynamic-update", 0, "qtype"): _UPDATE,
    ("scripts.base.protocols.dns.dynamic-update", 0, "answers"): _UPDATE,
    ("scripts.base.protocols.dns.dynamic-update", 1, "qname"): _UPDATE,
    ("scripts.base.protocols.dns.dynamic-update", 1, "qtype"): _UPDATE,
    ("scripts.base.protocols.dns.dynamic-update", 1, "answers"): _UPDATE,
}


def _unescape(s: str) -> bytes:
    return re.sub(
        rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), s.encode("latin-1")
    )


def _printable(b: bytes) -> str:
    return "".join(chr(c) if 0x20 <= c <= 0x7E else f"\\x{c:02x}" for c in b)


def zeek_rows(path: Path) -> list[dict[str, str]]:
    """A tiny reader for Zeek TSV logs (header ``#fields``; ``-`` unset, ``(empty)`` empty)."""
    fields: list[str] = []
    rows = []
    for line in path.read_text("latin-1").splitlines():
        if line.startswith("#fields\t"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def _zeek_view(r: dict[str, str]) -> dict[str, Any]:
    def opt(v: str) -> str | None:
        return None if v == "-" else v

    query = opt(r["query"])
    answers = opt(r["answers"])
    return {
        "qname": _unescape(query).decode("latin-1").lower() if query is not None else None,
        "qtype": int(r["qtype"]) if r["qtype"] != "-" else None,
        "rcode": int(r["rcode"]) if r["rcode"] != "-" else None,
        "answers": [_printable(_unescape(a)) for a in answers.split(",")] if answers else None,
    }


def _our_view(e: dict[str, Any]) -> dict[str, Any]:
    from dnsieve.ingest.codes import RCODES

    by_name = {v: k for k, v in RCODES.items()}
    rcode = e["rcode"]
    if rcode is not None:
        rcode = by_name.get(rcode, int(rcode[5:]) if rcode.startswith("RCODE") else None)
    return {
        "qname": e["qname"] or None,
        "qtype": qtype_code(e["qtype"]) if e["qtype"] else None,
        "rcode": rcode,
        "answers": e["answers"],
    }


def _flow_key(a: str, ap: Any, b: str, bp: Any, tid: Any) -> tuple[Any, ...]:
    return (*sorted([(a, int(ap)), (b, int(bp))]), int(tid))


def compare_with_zeek(baseline: str, log: Path, pcap: Path) -> set[tuple[str, int, str]]:
    """Disagreements (baseline, zeek row index, field) between Zeek's log and our events."""
    zeek = zeek_rows(log)
    ours, stats = read_path(pcap)
    assert "decode_error" not in stats.rejects
    pool: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in ours:
        key = _flow_key(e["src_ip"], e["src_port"], e["dst_ip"], e["dst_port"], e["trans_id"])
        pool.setdefault(key, []).append(e)
    out: set[tuple[str, int, str]] = set()
    for i, r in enumerate(zeek):
        key = _flow_key(
            r["id.orig_h"], r["id.orig_p"], r["id.resp_h"], r["id.resp_p"], r["trans_id"]
        )
        cands = pool.get(key)
        if not cands:
            out.add((baseline, i, "missing"))
            continue
        want = _zeek_view(r)
        # the candidate agreeing on most fields (several events can share a flow and id)
        best = max(cands, key=lambda e: sum(_our_view(e)[f] == want[f] for f in want))
        cands.remove(best)
        got = _our_view(best)
        out |= {(baseline, i, f) for f in want if got[f] != want[f]}
    for key, left in pool.items():
        for _ in left:
            out.add((baseline, -1, f"extra event {key}"))
    return out


@pytest.mark.shared
def test_every_baseline_is_mapped(shared_data: Path) -> None:
    names = {p.name.removesuffix(".dns.log") for p in (shared_data / BASELINES).glob("*.dns.log")}
    assert names == set(BASELINE_TO_PCAP) | set(BASELINES_WITHOUT_PCAP)
    for pcap in BASELINE_TO_PCAP.values():
        assert (shared_data / PCAPS / pcap).is_file(), pcap
    for trace in BASELINES_WITHOUT_PCAP.values():
        assert not (shared_data / PCAPS / Path(trace).name).exists()


@pytest.mark.shared
def test_pcap_decoder_agrees_with_zeek(shared_data: Path) -> None:
    found: set[tuple[str, int, str]] = set()
    for baseline, pcap in BASELINE_TO_PCAP.items():
        found |= compare_with_zeek(
            baseline, shared_data / BASELINES / f"{baseline}.dns.log", shared_data / PCAPS / pcap
        )
    unexpected = sorted(found - set(KNOWN_DEVIATIONS))
    stale = sorted(set(KNOWN_DEVIATIONS) - found)
    assert not unexpected, f"deviations from Zeek not in KNOWN_DEVIATIONS: {unexpected}"
    assert not stale, f"KNOWN_DEVIATIONS entries that no longer deviate: {stale}"


@pytest.mark.parametrize(
    "baseline,pcap",
    [
        ("scripts.base.protocols.dns.duplicate-reponses", "dns-two-responses.pcap"),
        ("scripts.base.protocols.dns.rrsig", "dnssec_rrsig.pcap"),
        ("core.ipv6-frag", "ipv6-fragmented-dns.pcap"),
        ("opt.basic", "wikipedia.pcap"),
    ],
)
def test_local_fixtures_agree_with_zeek(test_data: Path, baseline: str, pcap: str) -> None:
    d = test_data / "pcap"
    found = compare_with_zeek(baseline, d / f"{baseline}.dns.log", d / pcap)
    assert found == {k for k in KNOWN_DEVIATIONS if k[0] == baseline}


# ----------------------------------------------------------------------------- the whole corpus

#: Captures in the corpus that hold no decodable DNS event, and why.
NO_DNS_EVENTS = {
    "dns_dns-invalid-names.pcap": "three queries with invalid names: counted malformed_dns",
    "dns_proto255.pcap": "a packet with IP protocol 255 (not UDP/TCP)",
}


@pytest.mark.shared
def test_every_capture_in_the_corpus(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = sorted(p for p in shared_data.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    assert len(paths) >= 70
    assert any(p.suffix == ".pcapng" and "tunnel" in p.parts for p in paths)
    lines = []
    for p in paths:
        ctx = _ctx()
        n = sum(b.num_rows for b in read_file(p, "auto", ctx))
        s = ctx.stats
        lines.append(
            f"{p.relative_to(shared_data)}: {s.records_read} packets, {n} events, {dict(s.rejects)}"
        )
        assert s.error is None, (p, s.error)
        assert s.format == "pcap"
        assert not {"adapter_error", "decode_error"} & set(s.rejects), (p, s.rejects, s.examples)
        assert s.records_read > 0
        if p.name in NO_DNS_EVENTS:
            assert n == 0
        else:
            assert n > 0, p
    with capsys.disabled():
        print("\n" + "\n".join(lines))


@pytest.mark.shared
def test_domainator_tunnel_captures(shared_data: Path) -> None:
    rows, stats = read_path(
        shared_data / "tunnel/domainator/dnscat/dnscat_upload-big_240731.pcapng"
    )
    assert len(rows) == 182 and not stats.rejects
    # dnscat2 encodes data in long hex labels under its C2 domain
    long_names = [r for r in rows if r["qname"] and len(r["subdomain"] or "") > 30]
    assert len(long_names) > 100
    assert all(r["ts"] is not None for r in rows)
    assert sum(r["rcode"] is not None for r in rows) > 150


# ----------------------------------------------------------------------------- local fixtures


def test_duplicate_responses(test_data: Path) -> None:
    rows, stats = read_path(test_data / "pcap/dns-two-responses.pcap")
    assert stats.records_read == 3 and not stats.rejects
    paired, extra = sorted(rows, key=lambda r: r["query_len"] is None)
    assert paired["rtt"] > 0 and paired["query_len"] > 0 and paired["response_len"] > 0
    assert paired["qname"] == "www.cmu.edu" and paired["registered_domain"] == "cmu.edu"
    assert paired["answers"][0] == "www-cmu.andrew.cmu.edu"  # Zeek lower-cases answer names
    assert extra["rtt"] is None and extra["query_len"] is None
    assert extra["src_ip"] == paired["src_ip"] == "55.247.223.174"  # the client, both times


def test_unanswered_query_has_null_rcode(test_data: Path) -> None:
    rows, _ = read_path(test_data / "pcap/dnssec_rrsig.pcap")
    unanswered = [r for r in rows if r["rcode"] is None]
    assert len(rows) == 4 and len(unanswered) == 1
    u = unanswered[0]
    assert u["rd"] is False and u["aa"] is None and u["answers"] is None and u["rtt"] is None


def test_invalid_names_are_counted(test_data: Path) -> None:
    rows, stats = read_path(test_data / "pcap/dns_dns-invalid-names.pcap")
    assert rows == [] and stats.rejects == {"malformed_dns": 3}
    assert any("compression loop" in ex for ex in stats.examples["malformed_dns"])


def test_ipv6_fragments_are_reassembled(test_data: Path) -> None:
    rows, stats = read_path(test_data / "pcap/ipv6-fragmented-dns.pcap")
    big = [r for r in rows if r["answers"] and len(r["answers"][0]) > 1000]
    assert len(big) == 1 and big[0]["src_ip"] == "2001:470:1f11:81f:d138:5f55:6d4:1fe2"
    assert big[0]["response_len"] > 1500  # larger than one packet
    assert stats.rejects == {"incomplete_fragments": 1}  # a response Zeek did not see either


def test_dns_over_tcp(test_data: Path) -> None:
    rows, stats = read_path(test_data / "pcap/dns-edns-cookie.pcap")
    assert len(rows) == 2 and not stats.rejects
    assert {r["proto"] for r in rows} == {"tcp"}
    assert all(r["answers"] == ["208.80.154.224"] and r["rtt"] > 0 for r in rows)


def test_tunnels_and_link_types(test_data: Path) -> None:
    rows, _ = read_path(test_data / "pcap/tunnels_geneve-vxlan-dns-truncated.pcap")
    assert [(r["qname"], r["answers"]) for r in rows] == [("corelight.com", ["199.60.103.6"])]
    rows, _ = read_path(test_data / "pcap/dns_dns_extended_rcode.pcap")  # raw IPv4 (DLT 228)
    assert [r["rcode"] for r in rows] == ["BADVERS"]  # the EDNS extended RCODE is applied
    rows, _ = read_path(test_data / "pcap/dns-svcb.pcap")  # BSD loopback (DLT 0)
    assert [r["answers"] for r in rows] == [["SVCB 0 foo.example.com"]]
    rows, _ = read_path(test_data / "pcap/dns-inverse-query.pcap")  # FDDI, DNS over TCP
    assert [(r["proto"], r["answers"]) for r in rows] == [("tcp", ["4.3.2.1"])]


def test_mdns_llmnr_netbios(test_data: Path) -> None:
    rows, _ = read_path(test_data / "pcap/wikipedia.pcap")
    names = {r["qname"] for r in rows}
    assert {"gemini._sftp-ssh._tcp.local", "brwc0cb383d1f42", "workgroup"} <= names
    assert netbios_name(b"EBEC") == b"EBEC"  # not an encoded NetBIOS name: unchanged


# ----------------------------------------------------------------------------- crafted captures


def test_hostile_query_names() -> None:
    names = [
        b"<script>alert(1)</script>.example.com",
        b'"onmouseover=alert(1)//.example.com',
        b"caf\xc3\xa9\xff\x00 x.example.com",
        b"a" * 63 + b"." + b"b" * 63 + b"." + b"c" * 63 + b"." + b"d" * 57 + b".com",
    ]
    frames = [
        (100.0 + i, ether(udp4("10.0.0.1", 1000 + i, "10.0.0.53", 53, dns_msg(i, n))))
        for i, n in enumerate(names)
    ]
    # a label holding a dot must not be confused with two labels
    dotted = wire_name(b"x.example.com").replace(b"\x01x", b"\x03a.b", 1)
    raw_q = dotted + struct.pack("!HH", 1, 1)
    frames.append(
        (200.0, ether(udp4("10.0.0.1", 2000, "10.0.0.53", 53, dns_msg(9, raw_question=raw_q))))
    )
    rows, stats = read_bytes(pcap_bytes(frames))
    assert not stats.rejects
    got = [r["qname"] for r in sorted(rows, key=lambda r: r["ts"])]
    assert got == [
        "<script>alert(1)</script>.example.com",
        '"onmouseover=alert(1)//.example.com',
        "caf\\xc3\\xa9\\xff\\x00\\x20x.example.com",
        names[3].decode(),
        "a\\x2eb.example.com",
    ]
    assert len(got[3]) == 253


def test_malformed_names_are_rejects() -> None:
    loop = b"\xc0\x0c" + struct.pack("!HH", 1, 1)  # a name that points at itself
    chain = b"".join(struct.pack("!H", 0xC000 | (12 + 2 * (i + 1))) for i in range(40)) + b"\x00"
    long_name = wire_name(b".".join([b"x" * 60] * 5))  # 305 bytes: longer than 255
    bad = [
        loop,
        chain + struct.pack("!HH", 1, 1),  # forward pointers, 40 hops
        b"\xfa\x41" + struct.pack("!HH", 1, 1),  # length byte 250: a pointer past the end
        b"\x45abc\x00" + struct.pack("!HH", 1, 1),  # extended label type 0x40
        long_name + struct.pack("!HH", 1, 1),
        b"\x07abc",  # label cut
    ]
    frames = [
        (10.0 + i, ether(udp4("10.0.0.1", 3000 + i, "10.0.0.53", 53, dns_msg(i, raw_question=q))))
        for i, q in enumerate(bad)
    ]
    frames.append((50.0, ether(udp4("10.0.0.1", 4000, "10.0.0.53", 53, b"\x00\x01"))))
    rows, stats = read_bytes(pcap_bytes(frames))
    assert rows == []
    assert stats.rejects == {"malformed_dns": 7}
    text = " ".join(stats.examples["malformed_dns"])
    assert "compression loop" in text
    with pytest.raises(ValueError, match=f"more than {MAX_POINTER_HOPS} pointers"):
        parse_dns_message(dns_msg(1, raw_question=chain + b"\x00\x01\x00\x01"))


def test_edns_opt_is_not_an_answer_and_rdata_rendering() -> None:
    txt = b"\x05hello\x03a\x00b"
    answers = [
        (1, 60, b"\xc0\x00\x02\x01"),
        (28, 60, bytes(10) + b"\xff\xff\x01\x02\x03\x04"),
        (5, 60, wire_name(b"Target.Example.NET")),
        (15, 60, b"\x00\x0a" + wire_name(b"mx.example.com")),
        (16, 60, txt),
        (41, 0, b""),  # an OPT in the answer section: never an answer
        (12345, 60, b"\x00"),
    ]
    q = dns_msg(5, b"example.com", 255, additional=[opt_rr()])
    r = dns_msg(5, b"example.com", 255, response=True, answers=answers, additional=[opt_rr()])
    frames = [
        (1.0, ether(udp4("10.0.0.1", 5000, "10.0.0.53", 53, q))),
        (1.5, ether(udp4("10.0.0.53", 53, "10.0.0.1", 5000, r))),
    ]
    rows, stats = read_bytes(pcap_bytes(frames))
    assert not stats.rejects and len(rows) == 1
    row = rows[0]
    assert row["qtype"] == "ANY" and row["rcode"] == "NOERROR" and row["rtt"] == 0.5
    assert row["answers"] == [
        "192.0.2.1",
        "1.2.3.4",  # an IPv4-mapped AAAA, printed as Zeek does
        "target.example.net",
        "mx.example.com",
        "TXT 5 hello TXT 3 a\\x00b",
        "<unknown type=12345>",
    ]
    assert row["ttls"] == [60.0] * 6
    assert row["query_len"] == len(q) and row["response_len"] == len(r)
    assert row["aa"] is False and row["ra"] is True and row["rd"] is True and row["tc"] is False


def test_ipv6_vlan_qinq_and_link_types() -> None:
    q6 = dns_msg(11, b"v6.example.org", 28)
    r6 = dns_msg(11, b"v6.example.org", 28, response=True, answers=[(28, 30, bytes(15) + b"\x01")])
    frames = [
        (1.0, ether(udp6("2001:db8::1", 5353 + 1, "2001:db8::53", 53, q6), vlans=(100,))),
        (1.1, ether(udp6("2001:db8::53", 53, "2001:db8::1", 5354, r6), vlans=(100,))),
        (
            2.0,
            ether(
                udp4("10.1.1.1", 6000, "10.1.1.53", 53, dns_msg(12, b"qinq.example.org")),
                vlans=(10, 20),
            ),
        ),
    ]
    rows, stats = read_bytes(pcap_bytes(frames))
    assert not stats.rejects
    by = {r["qname"]: r for r in rows}
    assert by["v6.example.org"]["src_ip"] == "2001:db8::1" and by["v6.example.org"]["answers"] == [
        "::1"
    ]
    assert by["qinq.example.org"]["dst_ip"] == "10.1.1.53"
    ip = bytes(udp4("10.0.0.1", 7000, "10.0.0.53", 53, dns_msg(13, b"link.example")))
    linked = {
        0: struct.pack("<I", 2) + ip,  # BSD loopback, host byte order
        108: struct.pack(">I", 2) + ip,  # OpenBSD loopback
        101: ip,
        228: ip,
        113: b"\x00\x00\x00\x01\x00\x06" + bytes(8) + b"\x08\x00" + ip,  # Linux SLL
        276: b"\x08\x00" + bytes(18) + ip,  # Linux SLL2
    }
    for lt, frame in linked.items():
        rows, stats = read_bytes(pcap_bytes([(3.0, frame)], linktype=lt))
        assert [r["qname"] for r in rows] == ["link.example"], lt
    rows, stats = read_bytes(pcap_bytes([(3.0, ip)], linktype=147))
    assert rows == [] and stats.rejects == {"unsupported_linktype": 1}


def test_ipv4_fragments_out_of_order() -> None:
    big = dns_msg(
        21, b"frag.example", 16, response=True, answers=[(16, 5, b"\xff" + b"z" * 255)] * 6
    )
    payload = bytes(udp4("10.0.0.53", 53, "10.0.0.1", 9000, big).data)
    cut = 800
    hdr = dict(src=_a4("10.0.0.53"), dst=_a4("10.0.0.1"), p=17, ttl=64, id=777)
    f1 = dpkt.ip.IP(**hdr, mf=1, data=payload[:cut])
    f2 = dpkt.ip.IP(**hdr, offset=cut // 8, data=payload[cut:])
    q = dns_msg(21, b"frag.example", 16)
    frames = [
        (1.0, ether(udp4("10.0.0.1", 9000, "10.0.0.53", 53, q))),
        (1.2, ether(f2)),
        (1.3, ether(f1)),
    ]
    rows, stats = read_bytes(pcap_bytes(frames))
    assert not stats.rejects and len(rows) == 1
    assert rows[0]["response_len"] == len(big) and len(rows[0]["answers"]) == 6


def _tcp(
    src: str, sport: int, dst: str, dport: int, seq: int, data: bytes, flags: int = 0x18
) -> bytes:
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, flags=flags, data=data)
    return ether(dpkt.ip.IP(src=_a4(src), dst=_a4(dst), p=6, ttl=64, data=seg))


def test_dns_over_tcp_two_messages_per_segment_and_split_messages() -> None:
    q1, q2 = dns_msg(31, b"one.example"), dns_msg(32, b"two.example")
    r1 = dns_msg(31, b"one.example", response=True, answers=[(1, 1, b"\x01\x01\x01\x01")])
    r2 = dns_msg(32, b"two.example", response=True, answers=[(1, 1, b"\x02\x02\x02\x02")])
    lp = lambda m: struct.pack("!H", len(m)) + m  # noqa: E731
    c, s = ("10.0.0.1", 40001), ("10.0.0.53", 53)
    stream_back = lp(r1) + lp(r2)
    frames = [
        (1.0, _tcp(*c, *s, 999, b"", flags=0x02)),  # SYN
        (1.1, _tcp(*c, *s, 1000, lp(q1) + lp(q2))),  # two queries in one segment
        (1.2, _tcp(*s, *c, 5000, stream_back[:10])),  # responses split across segments
        (1.3, _tcp(*s, *c, 5000, stream_back[:10])),  # a retransmission
        (1.4, _tcp(*s, *c, 5010 + 20, stream_back[30:])),  # out of order
        (1.5, _tcp(*s, *c, 5010, stream_back[10:30])),
    ]
    rows, stats = read_bytes(pcap_bytes(frames))
    assert not stats.rejects
    got = sorted((r["qname"], r["answers"][0], r["proto"], round(r["rtt"], 3)) for r in rows)
    assert got == [("one.example", "1.1.1.1", "tcp", 0.4), ("two.example", "2.2.2.2", "tcp", 0.4)]
    assert {r["query_len"] for r in rows} == {len(q1), len(q2)}


def test_pairing_rules() -> None:
    c, s = ("10.0.0.1", 1111), ("10.0.0.53", 53)
    q = dns_msg(40, b"late.example")
    r = dns_msg(40, b"late.example", response=True)
    orphan = dns_msg(41, b"orphan.example", response=True, rcode=3)
    mq = dns_msg(0, b"printer.local", 1)
    mr = dns_msg(0, b"printer.local", 1, response=True, answers=[(1, 120, b"\x0a\x00\x00\x09")])
    frames = [
        (0.0, ether(udp4(*c, *s, q))),
        (100.0, ether(udp4(*s, *c, r))),  # after the pairing window: two events
        (101.0, ether(udp4(*s, *c, orphan))),
        (102.0, ether(udp4("10.0.0.9", 5353, "224.0.0.251", 5353, mq))),
        (102.1, ether(udp4("10.0.0.7", 5353, "10.0.0.9", 5353, mr))),  # multicast: never paired
        (103.0, ether(udp4(*c, *s, dns_msg(42, b"same.id")))),
        (103.1, ether(udp4(*c, *s, dns_msg(42, b"same.id")))),
        (103.2, ether(udp4(*s, *c, dns_msg(42, b"same.id", response=True)))),
    ]
    rows, _ = read_bytes(pcap_bytes(frames))
    rows.sort(key=lambda r: (r["ts"], r["query_len"] is None))
    summary = [(r["qname"], r["rcode"], r["rtt"] is not None, r["src_ip"]) for r in rows]
    assert summary == [
        ("late.example", None, False, "10.0.0.1"),
        ("late.example", "NOERROR", False, "10.0.0.1"),
        ("orphan.example", "NXDOMAIN", False, "10.0.0.1"),  # client = the response's destination
        ("printer.local", None, False, "10.0.0.9"),
        ("printer.local", "NOERROR", False, "10.0.0.9"),
        ("same.id", "NOERROR", True, "10.0.0.1"),  # first in, first answered
        ("same.id", None, False, "10.0.0.1"),
    ]


def test_timestamp_variants_and_pcapng() -> None:
    frames = query_response(t0=1_700_000_000.123456)
    le = pcap_bytes(frames)
    rows_le, _ = read_bytes(le)
    want = [(r["ts"], r["qname"], r["answers"], r["rtt"]) for r in rows_le]
    assert rows_le[0]["ts"].timestamp() == pytest.approx(1_700_000_000.123456)

    def convert(big: bool, nano: bool) -> bytes:
        e = ">" if big else "<"
        magic = 0xA1B23C4D if nano else 0xA1B2C3D4
        out = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
        for ts, frame in frames:
            sec = int(ts)
            frac = round((ts - sec) * (1e9 if nano else 1e6))
            out += struct.pack(e + "IIII", sec, frac, len(frame), len(frame)) + frame
        return out

    for big in (False, True):
        for nano in (False, True):
            rows, stats = read_bytes(convert(big, nano))
            assert [(r["ts"], r["qname"], r["answers"], r["rtt"]) for r in rows] == want
            assert stats.bytes_consumed == len(convert(big, nano))
    buf = io.BytesIO()
    w = dpkt.pcapng.Writer(buf)
    for ts, frame in frames:
        w.writepkt(frame, ts=ts)
    ng = buf.getvalue()
    rows, stats = read_bytes(ng)
    assert [(r["qname"], r["answers"]) for r in rows] == [(w[1], w[2]) for w in want]
    assert rows[0]["ts"].timestamp() == pytest.approx(1_700_000_000.123456)
    rows, stats = read_bytes(ng[:-7])
    assert stats.rejects["truncated_file"] == 1 and stats.records_read == 1


def test_truncated_capture_keeps_complete_packets(test_data: Path) -> None:
    data = (test_data / "pcap/wikipedia.pcap").read_bytes()
    full, full_stats = read_bytes(data)
    offsets = []
    off = 24
    while off < len(data):
        offsets.append(off)
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    cut_record = 100
    for cut in (offsets[cut_record] + 5, offsets[cut_record] + 30):  # in the header, in the data
        rows, stats = read_bytes(data[:cut])
        assert stats.rejects == {"truncated_file": 1}
        assert stats.records_read == cut_record
        assert stats.bytes_consumed == offsets[cut_record]
        assert 0 < len(rows) <= len(full)
    assert full_stats.records_read == len(offsets) == 136


def test_truncated_packets_are_counted() -> None:
    frames = query_response()
    snapped = [(ts, f[: len(f) - 6]) for ts, f in frames] + [(5.0, frames[0][1][:20])]
    rows, stats = read_bytes(pcap_bytes(snapped))
    assert stats.rejects == {"truncated_packet": 2}  # the query's question and a bare header
    # the response's header and question survive: an event, without the cut answer
    assert [(r["qname"], r["rcode"], r["answers"]) for r in rows] == [
        ("example.com", "NOERROR", None)
    ]


def test_junk_and_empty_inputs() -> None:
    assert read_bytes(b"") == ([], read_bytes(b"")[1])
    _, stats = read_bytes(b"")
    assert stats.rejects == {"empty_file": 1}
    _, stats = read_bytes(b"\x00\x01junk" * 50)
    assert stats.rejects == {"bad_file_header": 1}
    _, stats = read_bytes(b"\xd4\xc3\xb2\xa1" + b"\xff" * 40)
    assert stats.rejects == {"bad_record": 1}
    _, stats = read_bytes(b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00junk")
    assert stats.rejects == {"bad_record": 1}
    _, stats = read_bytes(b"\xd4\xc3\xb2\xa1\x02\x00")
    assert stats.rejects == {"truncated_file": 1}


def test_skip_bytes_and_batch_size(test_data: Path) -> None:
    data = (test_data / "pcap/wikipedia.pcap").read_bytes()
    full, _ = read_bytes(data)
    small, stats = read_bytes(data, batch_size=3)
    assert len(small) == len(full) == 34
    rows, stats = read_bytes(data, skip_bytes=len(data))
    assert rows == [] and stats.records_read == 0
    half = len(data) // 2
    rows, stats = read_bytes(data, skip_bytes=half)
    assert 0 < stats.records_read < 136 and 0 < len(rows) < len(full)
    t_half = min(r["ts"] for r in rows)
    assert all(r["ts"] >= t_half for r in rows)


def test_adapter_name() -> None:
    assert PcapAdapter.name == "pcap"


# ----------------------------------------------------------------------------- fuzzing


def _fuzz_read(data: bytes) -> None:
    ctx = _ctx(batch_size=16)
    for b in read_stream(io.BytesIO(data), "pcap", ctx):
        assert b.schema.equals(DNS_EVENT)
    assert not {"adapter_error", "decode_error"} & set(ctx.stats.rejects), ctx.stats.examples


def _seed() -> bytes:
    frames = query_response()
    frames.append(
        (
            1001.0,
            ether(udp6("2001:db8::1", 999, "2001:db8::53", 53, dns_msg(3, b"x.y")), vlans=(5,)),
        )
    )
    q = dns_msg(4, b"tcp.example")
    frames.append(
        (1002.0, _tcp("10.0.0.1", 999, "10.0.0.53", 53, 1, struct.pack("!H", len(q)) + q))
    )
    return pcap_bytes(frames)


SEED = _seed()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=len(SEED)),
    st.binary(min_size=0, max_size=64),
    st.integers(min_value=0, max_value=64),
    st.booleans(),
)
def test_fuzz_pcap_never_raises(pos: int, junk: bytes, width: int, append: bool) -> None:
    data = SEED + junk if append else SEED[:pos] + junk + SEED[pos + width :]
    _fuzz_read(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.booleans())
def test_fuzz_dns_payload_never_raises(payload: bytes, tcp: bool) -> None:
    if tcp:
        frame = _tcp("10.0.0.1", 999, "10.0.0.53", 53, 1, struct.pack("!H", len(payload)) + payload)
    else:
        frame = ether(udp4("10.0.0.53", 53, "10.0.0.1", 999, payload))
    _fuzz_read(pcap_bytes([(1.0, frame)]))
    with contextlib.suppress(DnsFormatError):  # the only exception it may raise
        parse_dns_message(payload)


def _iter_names(rows: list[dict[str, Any]]) -> Iterator[str]:
    for r in rows:
        if r["qname"]:
            yield r["qname"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=63), min_size=1, max_size=4))
def test_fuzz_names_are_byte_faithful(labels: list[bytes]) -> None:
    raw = b"".join(bytes([len(lb)]) + lb for lb in labels) + b"\x00"
    q = dns_msg(1, raw_question=raw + b"\x00\x01\x00\x01")
    rows, stats = read_bytes(pcap_bytes([(1.0, ether(udp4("10.0.0.1", 9, "10.0.0.53", 53, q)))]))
    names = list(_iter_names(rows))
    total = sum(len(lb) + 1 for lb in labels)
    if total > 255:
        assert stats.rejects == {"malformed_dns": 1}
        return
    assert len(names) <= 1 and not stats.rejects
    if names:
        assert all(0x21 <= ord(ch) <= 0x7E for ch in names[0])  # printable, escaped


def test_batches_are_arrow() -> None:
    rows, _ = read_bytes(pcap_bytes(query_response()))
    assert pa.Table.from_pylist(rows, schema=DNS_EVENT).num_rows == 1
