"""Suricata EVE JSON (``eve.json``) DNS events, logging versions 1, 2 and 3.

Only ``event_type == "dns"`` records are read.  Every other EVE record (alerts,
flows, TLS...) is counted under the reject reason ``not_dns_event`` and never
becomes a row.  Other reject reasons: ``bad_json`` (not a JSON object),
``bad_dns_record`` (a DNS event without a usable ``dns`` object or type),
``truncated_record`` (an unterminated last line that does not parse; not
counted in ``bytes_consumed``), ``line_too_long``, ``bad_timestamp``.

Record types
------------
* **v1** (Suricata ≤ 4 default): ``query`` records, and one ``answer`` record
  *per answer RR* with top-level ``rrname``/``rrtype``/``ttl``/``rdata`` (the
  RR, not the question).  Consecutive v1 answer records of one response (same
  pairing key and timestamp) are merged into one event.
* **v2** (Suricata 5-7): ``query`` records with ``rrname``/``rrtype`` (the
  question) and ``answer`` records with the question in ``rrname``/``rrtype``,
  answers in ``answers`` (``rrname``, ``rrtype``, ``ttl``, ``rdata``) and/or
  ``grouped`` (rdata by type, no TTLs), ``rcode``, flags ``aa``/``tc``/``rd``/
  ``ra`` and hex ``flags``.
* **v3** (``"version": 3``, Suricata 8): ``request`` and ``response`` records,
  the question(s) in ``queries``.  **A v3 response is logged from the
  responder's side**: its ``src_ip``/``src_port`` is the server and
  ``dest_ip``/``dest_port`` the client, so they are swapped back and the client
  lands in ``src_ip``.  A v1/v2 answer whose source port is a DNS port (53,
  853, 5353) while its destination port is not is swapped too.
* Only the first question of a record is used (multi-question messages do not
  occur in practice).  Answers are the ``answers`` section only (like Zeek);
  structured RDATA (``srv``, ``soa``, ``sshfp``...) is rendered as text.
  Hex ``flags`` win over the boolean flag fields when both are present.

Pairing
-------
A request and its response become **one** event.  The pairing key is
``(flow_id, dns id)`` (or the client/server 5-tuple and id when ``flow_id`` is
missing), and pairing is FIFO *by arrival order* within the key, since one
flow may repeat a transaction id.  Records are not assumed to be in time order
(EVE files written by several threads are not).  ``ts`` is the query's
timestamp (converted to UTC), ``rtt`` the response time minus the query time.
A query that never meets its answer becomes an event with null ``rcode``; an
answer without a query becomes an event too (client taken as above, ``rtt``
null).

**Bounded memory.**  Pending queries are held in arrival order; they are only
emitted unanswered at the end of the stream or when more than
``ctx.options["max_pending"]`` (default 200,000) are waiting, the oldest first.
No time-based expiry is used because the file need not be in time order.

**Grown files.**  When ``ctx.skip_bytes`` is set, the last
``ctx.options["prime_bytes"]`` (default 4 MiB) before it are parsed only to
re-build the pending queries; nothing from before ``skip_bytes`` is emitted.
An answer that pairs with such a query (emitted unanswered by the previous
run) is dropped rather than emitted twice; it is counted under
``answer_for_ingested_query``.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

import pyarrow as pa

from dnsieve.ingest.base import ReadContext
from dnsieve.ingest.codes import qtype_code, qtype_name, rcode_name
from dnsieve.ingest.lines import EventBuffer, Txn, iter_log_lines, safe_str

__all__ = ["SuricataAdapter", "parse_eve_time"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = 1_000_000
_DNS_PORTS = frozenset({53, 853, 5353})
_QUERY_TYPES = frozenset({"query", "request"})
_ANSWER_TYPES = frozenset({"answer", "response"})


def parse_eve_time(value: Any) -> int | None:
    """EVE ``timestamp`` (ISO 8601, offset as ``+0200``) to µs since the epoch (UTC).

    A naive timestamp is taken as UTC.

    >>> parse_eve_time("2021-06-06T16:26:27.431769+0200")
    1622989587431769
    >>> parse_eve_time("garbage") is None
    True
    """
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _US + delta.microseconds


def _port(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535 else None


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return safe_str(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return None


def _qtype(v: Any) -> str | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return qtype_name(v) if 0 <= v <= 65535 else None
    if isinstance(v, str) and v:
        code = qtype_code(v)
        return qtype_name(code) if code is not None else safe_str(v.upper())
    return None


def _rcode(v: Any) -> str | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return rcode_name(v) if 0 <= v <= 4095 else None
    if isinstance(v, str) and v:
        return safe_str(v.upper())
    return None


_STRUCTURED = (
    ("srv", ("priority", "weight", "port", "name")),
    ("soa", ("mname", "rname", "serial", "refresh", "retry", "expire", "minimum")),
    ("sshfp", ("algo", "type", "fingerprint")),
)


def _rdata(rr: dict[str, Any]) -> str | None:
    """Text form of one EVE answer RR's data."""
    rd = rr.get("rdata")
    if isinstance(rd, str):
        return safe_str(rd)
    if rd is not None:
        return safe_str(json.dumps(rd, separators=(",", ":"), ensure_ascii=False))
    for key, fields in _STRUCTURED:
        sub = rr.get(key)
        if isinstance(sub, dict):
            return safe_str(" ".join(str(sub.get(f, "")) for f in fields if f in sub))
    rest = {k: v for k, v in rr.items() if k not in ("rrname", "rrtype", "ttl")}
    if not rest:
        return None
    return safe_str(json.dumps(rest, separators=(",", ":"), ensure_ascii=False, default=str))


def _ttl(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


def _answers(d: dict[str, Any]) -> tuple[list[str] | None, list[float | None] | None]:
    """Answers and TTLs of a v2/v3 response (detailed list, else grouped)."""
    detailed = d.get("answers")
    if isinstance(detailed, list):
        answers: list[str] = []
        ttls: list[float | None] = []
        for rr in detailed:
            if not isinstance(rr, dict):
                continue
            text = _rdata(rr)
            if text is None:
                continue
            answers.append(text)
            ttls.append(_ttl(rr.get("ttl")))
        return answers, ttls
    grouped = d.get("grouped")
    if isinstance(grouped, dict):
        flat: list[str] = []
        for values in grouped.values():
            if isinstance(values, list):
                for v in values:
                    t = _text(v) if not isinstance(v, dict) else _rdata(v)
                    if t is not None:
                        flat.append(t)
        return flat, None
    return None, None


def _flags(d: dict[str, Any]) -> tuple[bool | None, bool | None, bool | None, bool | None]:
    """(aa, tc, rd, ra) from hex ``flags``, else from the boolean fields."""
    hx = d.get("flags")
    if isinstance(hx, str):
        try:
            f = int(hx, 16)
        except ValueError:
            f = -1
        if 0 <= f <= 0xFFFF:
            return bool(f & 0x0400), bool(f & 0x0200), bool(f & 0x0100), bool(f & 0x0080)
    names = ("aa", "tc", "rd", "ra")
    if not any(k in d for k in names):
        return None, None, None, None
    a, t, r, ra = (d.get(k) is True for k in names)
    return a, t, r, ra


def _question(d: dict[str, Any]) -> tuple[str | None, str | None]:
    queries = d.get("queries")
    if isinstance(queries, list):
        for q in queries:
            if isinstance(q, dict):
                return _text(q.get("rrname")), _qtype(q.get("rrtype"))
        return None, None
    return _text(d.get("rrname")), _qtype(d.get("rrtype"))


class SuricataAdapter:
    """Suricata EVE JSON lines, DNS events (see the module docs)."""

    name = "suricata"

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        self._ctx = ctx
        self._cap = int(ctx.options.get("max_pending", 200_000))
        self._pending: OrderedDict[Any, deque[Txn]] = OrderedDict()
        self._n_pending = 0
        self._buf = EventBuffer(ctx)
        # v1 answers of one response, merged while still in the buffer: key -> (ts, txn)
        self._v1_last: dict[Any, tuple[int | None, Txn]] = {}
        prime = int(ctx.options.get("prime_bytes", 4 << 20)) if ctx.skip_bytes else 0
        for offset, raw, terminated in iter_log_lines(stream, ctx, prime_bytes=prime):
            s = raw.strip()
            if not s:
                continue
            priming = offset < ctx.skip_bytes
            if not priming:
                ctx.stats.records_read += 1
            ok = self._record(s, priming, terminated)
            if not terminated and ok and not priming:
                ctx.stats.bytes_consumed = offset + len(raw)
            if self._buf.full:
                self._v1_last.clear()
                yield from self._buf.flush()
        for q in self._pending.values():
            for txn in q:
                self._buf.add(txn)
        self._pending.clear()
        yield from self._buf.flush()

    # -- one record ---------------------------------------------------------

    def _reject(self, reason: str, example: str, priming: bool, terminated: bool) -> bool:
        if not priming:
            self._ctx.stats.reject(reason if terminated else "truncated_record", example[:160])
        return False

    def _record(self, s: bytes, priming: bool, terminated: bool) -> bool:
        if not s.startswith(b"{"):
            return self._reject("bad_json", s[:120].decode("utf-8", "replace"), priming, terminated)
        if b'"dns"' not in s:
            # event_type "dns" always appears as the bytes "dns"; anything else is not DNS.
            if terminated or s.endswith(b"}"):
                if not priming:
                    self._ctx.stats.reject("not_dns_event")
                return True
            return self._reject("truncated_record", "", priming, terminated)
        try:
            obj = json.loads(s.decode("utf-8", "surrogateescape"))
        except (ValueError, RecursionError) as exc:
            return self._reject("bad_json", f"{type(exc).__name__}: {exc}", priming, terminated)
        if not isinstance(obj, dict):
            return self._reject("bad_json", "not a JSON object", priming, terminated)
        if obj.get("event_type") != "dns":
            if not priming:
                self._ctx.stats.reject("not_dns_event")
            return True
        d = obj.get("dns")
        typ = d.get("type") if isinstance(d, dict) else None
        if not isinstance(d, dict) or not isinstance(typ, str):
            return self._reject(
                "bad_dns_record", safe_str(s[:120].decode("utf-8", "replace")), priming, True
            )
        if typ in _QUERY_TYPES:
            self._query(obj, d, priming)
        elif typ in _ANSWER_TYPES:
            self._answer(obj, d, typ, priming)
        else:
            return self._reject("bad_dns_record", f"dns.type {typ!r}", priming, True)
        return True

    @staticmethod
    def _endpoints(obj: dict[str, Any], swap: bool) -> tuple[Any, Any, Any, Any]:
        src, sport = obj.get("src_ip"), _port(obj.get("src_port"))
        dst, dport = obj.get("dest_ip"), _port(obj.get("dest_port"))
        if swap:
            return dst, dport, src, sport
        return src, sport, dst, dport

    @staticmethod
    def _key(
        obj: dict[str, Any], d: dict[str, Any], client: Any, cport: Any, server: Any, sport: Any
    ) -> Any:
        tid = d.get("id")
        flow = obj.get("flow_id")
        if flow is not None and not isinstance(flow, (dict, list)):
            return ("f", flow, tid)
        return ("t", client, cport, server, sport, tid)

    def _base(self, obj: dict[str, Any], d: dict[str, Any], swap: bool) -> Txn:
        client, cport, server, sport = self._endpoints(obj, swap)
        proto = obj.get("proto")
        app = obj.get("app_proto")
        tid = d.get("id")
        return Txn(
            ts=parse_eve_time(obj.get("timestamp")),
            src_ip=_text(client),
            src_port=cport,
            dst_ip=_text(server),
            dst_port=sport,
            proto="doh"
            if app in ("doh2", "doh")
            else (proto.lower() if isinstance(proto, str) else None),
            trans_id=tid if isinstance(tid, int) and not isinstance(tid, bool) else None,
            key=self._key(obj, d, client, cport, server, sport),
        )

    def _query(self, obj: dict[str, Any], d: dict[str, Any], priming: bool) -> None:
        txn = self._base(obj, d, swap=False)
        txn.qname, txn.qtype = _question(d)
        txn.aa, txn.tc, txn.rd, txn.ra = _flags(d)
        txn.emit = not priming
        q = self._pending.get(txn.key)
        if q is None:
            q = self._pending[txn.key] = deque()
        q.append(txn)
        self._n_pending += 1
        while self._n_pending > self._cap:
            key, oldest = next(iter(self._pending.items()))
            self._buf.add(oldest.popleft())
            self._n_pending -= 1
            if not oldest:
                del self._pending[key]

    def _answer(self, obj: dict[str, Any], d: dict[str, Any], typ: str, priming: bool) -> None:
        version = d.get("version")
        v3 = isinstance(version, int) and version >= 3
        sport, dport = _port(obj.get("src_port")), _port(obj.get("dest_port"))
        swap = v3 or (sport in _DNS_PORTS and dport not in _DNS_PORTS)
        resp = self._base(obj, d, swap=swap)
        v1 = version is None and typ == "answer" and "answers" not in d and "grouped" not in d
        if v1:
            self._answer_v1(resp, d, priming)
            return
        q = self._pending.get(resp.key)
        if q:
            txn = q.popleft()
            self._n_pending -= 1
            if not q:
                del self._pending[resp.key]
            if not txn.emit:
                if not priming:
                    self._ctx.stats.reject("answer_for_ingested_query")
                return
            if txn.ts is not None and resp.ts is not None:
                txn.rtt = max(0.0, (resp.ts - txn.ts) / _US)
            for attr in ("src_ip", "src_port", "dst_ip", "dst_port", "proto"):
                if getattr(txn, attr) is None:
                    setattr(txn, attr, getattr(resp, attr))
            if txn.qname is None:
                txn.qname, txn.qtype = _question(d)
        else:
            txn = resp
            txn.qname, txn.qtype = _question(d)
            txn.emit = not priming
        txn.rcode = _rcode(d.get("rcode"))
        txn.answers, txn.ttls = _answers(d)
        txn.aa, txn.tc, rd, txn.ra = _flags(d)
        txn.rd = rd if rd is not None else txn.rd
        self._buf.add(txn)

    def _answer_v1(self, resp: Txn, d: dict[str, Any], priming: bool) -> None:
        """v1: one record per answer RR; merge those of one response."""
        last = self._v1_last.get(resp.key)
        if last is not None and last[0] == resp.ts:
            txn = last[1]
        else:
            q = self._pending.get(resp.key)
            if q:
                txn = q.popleft()
                self._n_pending -= 1
                if not q:
                    del self._pending[resp.key]
                if not txn.emit:
                    if not priming:
                        self._ctx.stats.reject("answer_for_ingested_query")
                    return
                if txn.ts is not None and resp.ts is not None:
                    txn.rtt = max(0.0, (resp.ts - txn.ts) / _US)
            else:
                txn = resp
                txn.qname, txn.qtype = _question(d)
                txn.emit = not priming
            txn.rcode = _rcode(d.get("rcode")) or "NOERROR"
            txn.aa, txn.tc, rd, txn.ra = _flags(d)
            txn.rd = rd if rd is not None else txn.rd
            self._v1_last[resp.key] = (resp.ts, txn)
            self._buf.add(txn)
        text = _rdata(d) if ("rdata" in d or any(k in d for k, _ in _STRUCTURED)) else None
        if text is not None:
            if txn.answers is None:
                txn.answers, txn.ttls = [], []
            txn.answers.append(text)
            if txn.ttls is not None:
                txn.ttls.append(_ttl(d.get("ttl")))
