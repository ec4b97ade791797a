"""Resolver query logs: dnsmasq, BIND (``querylog``) and Unbound (``log-queries`` /
``log-replies``).

All three are line-oriented text logs.  Each line may carry a syslog-style
prefix; these timestamp forms are recognised at the start of a line:

* ``[1700000000]`` or ``[1700000000.123]`` -- epoch seconds (Unbound's own log file);
* ``2026-11-22T10:00:00.123+01:00`` -- RFC 3339 / ISO 8601 (rsyslog, journald
  ``-o short-iso``, BIND ``print-time iso8601``, Unbound ``log-time-iso``);
  without an offset the time zone option applies (below);
* ``Nov 22 10:00:00`` -- BSD syslog, which carries no year (dnsmasq's
  ``log-facility`` file, Unbound ``log-time-ascii``, classic syslog);
* ``22-Nov-2026 10:00:00.123`` -- BIND's default ``print-time yes``.

**Year and time zone.**  A BSD syslog stamp has no year.  The year is taken from
``ctx.options["year"]`` when given; otherwise it is the current (UTC) year, or
the year before if that would put the *first* stamp of the file more than one
day in the future (a December log read in January).  Within a file the year is
incremented when the month steps from December to January.  Times without an
offset are read in ``ctx.options["tz"]`` (an IANA name, default ``UTC``).

**Line accounting.**  ``records_read`` counts non-blank lines.  Lines that are
part of a DNS transaction (queries, replies, ``forwarded``, ``cached``,
``validation``...) are consumed without a reject; each transaction becomes one
canonical row, so ``rows`` is smaller than ``records_read``.  Lines that are
not DNS transaction lines (start-up banners, DHCP, statistics) are counted
under the reject reason ``not_dns_line``; lines of the program that look like
a query/reply but do not parse under ``malformed_line``; an unterminated last
line that does not parse under ``truncated_record`` (it is not counted in
``bytes_consumed``, so a grown file re-reads it); an over-long line (1 MiB)
under ``line_too_long``; events whose time cannot be read under
``bad_timestamp``.

**Pairing state is bounded.**  Queries waiting for their reply are kept in
arrival order and emitted unanswered (``rcode`` null) when they are more than
``ctx.options["pair_window"]`` seconds (default 60, by log time, in either
direction, so a log that jumps back in time flushes too) older than the line
being read, when more than ``ctx.options["max_pending"]`` (default 100,000) are
waiting, or at the end of the stream.

dnsmasq (``log-queries``, optionally ``log-queries=extra``)
-----------------------------------------------------------
Lines are ``<source> <name> <verb> <dest>`` after ``dnsmasq[pid]:``, as written
by dnsmasq's ``log_query()`` (``src/cache.c``).  With ``log-queries=extra``
each line starts with a serial number and the requestor's ``addr/port``; the
serial then pairs lines exactly (and gives ``src_port``).  Without it a query
(``query[A] name from 10.0.0.1``) is paired with the next reply lines for the
same name (FIFO per name).  A reply is ``<source> <name> is <dest>`` where the
source is ``reply``, ``cached``, ``config``, ``DHCP``, a hosts file path or
similar; consecutive reply lines for the same response (several records, or a
CNAME chain, where dnsmasq logs ``is <CNAME>`` then the target's own reply
lines) join one event, and each ``<CNAME>`` is replaced by the chain's next
name.  Reverse (PTR) replies, logged as ``reply 1.2.3.4 is host``, pair with a
pending ``x.x.x.x.in-addr.arpa`` query.

=================================  ==========================================
reply destination                  rcode / answers
=================================  ==========================================
an address, a name, ``<SRV>``...   NOERROR, the text is an answer
``NXDOMAIN``                       NXDOMAIN, no answers
``NODATA``, ``NODATA-IPv4/IPv6``   NOERROR, no answers
``SERVFAIL``, ``REFUSED``          that rcode
``not implemented``, a number      NOTIMP, the rcode of that number
=================================  ==========================================

A reply whose name is ``error`` (``config error is REFUSED``) carries no name
and is attached to the most recent unanswered query.  dnsmasq writes names with
unprintable bytes as ``<name unprintable>``; that text is kept as the query
name (it normalises to ``<name\\x20unprintable>``).  A reply with no pending
query becomes an event of its own (no client), its qtype inferred where the
reply shows it (an IPv4 address: A, ``NODATA-IPv6``: AAAA, ``<TXT>``: TXT).

BIND (``category queries``)
---------------------------
``client [@0x...] 192.0.2.1#53000 [(name)]: [view v: ]query: name IN A +E(0)K
[(198.51.100.1)]``, with or without ``queries: info:`` and any prefix above.
``+``/``-`` is the RD flag, ``T`` in the flags means TCP; the address in the
last parentheses is the server address that received the query (``dst_ip``).
BIND logs queries only: ``rcode`` is null.

Unbound (``log-queries``, ``log-replies``)
------------------------------------------
``info: 192.0.2.1 www.example.com. A IN`` (query) and
``info: 192.0.2.1 www.example.com. A IN NOERROR 0.000123 0 57`` (reply: rcode,
processing time in seconds, cached flag, reply size), also tagged ``query:`` /
``reply:`` with ``log-tag-queryreply``.  Query and reply lines are paired FIFO
per (client, name, type).  ``rtt`` is the logged processing time;
``response_len`` the reply size.  A reply with no logged query is an event of
its own whose ``ts`` is the reply time minus the processing time.
"""

from __future__ import annotations

import calendar
import ipaddress
import re
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import pyarrow as pa

from dnsieve.ingest.base import ReadContext
from dnsieve.ingest.codes import qtype_code, qtype_name, rcode_name
from dnsieve.ingest.lines import EventBuffer, Txn, iter_log_lines, safe_str

__all__ = ["BindAdapter", "DnsmasqAdapter", "LogClock", "UnboundAdapter"]

_US = 1_000_000

# ---------------------------------------------------------------------------
# timestamps
# ---------------------------------------------------------------------------

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_TS_EPOCH = re.compile(r"\[(\d{9,11})(?:\.(\d{1,9}))?\] ")
_TS_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)? "
)
_TS_SYSLOG = re.compile(r"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? ")
_TS_BIND = re.compile(r"(\d{1,2})-([A-Z][a-z]{2})-(\d{4}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? ")


def _frac_us(frac: str | None) -> int:
    return int((frac + "000000")[:6]) if frac else 0


class LogClock:
    """Parses the timestamp prefix of a log line into µs since the epoch (UTC).

    Keeps the state needed for year-less syslog stamps (see the module docs).

    >>> c = LogClock({"year": 2021})
    >>> c.parse("Aug  8 18:53:23 dnsmasq[1]: x")
    (1628448803000000, 'dnsmasq[1]: x')
    >>> c.parse("[1700000000] unbound[1:0] info: x")[0]
    1700000000000000
    >>> c.parse("22-Nov-2026 10:00:00.123 queries: x")[0]
    1795341600123000
    >>> c.parse("2021-06-06T16:26:27.5+02:00 host x")[0]
    1622989587500000
    >>> c.parse("no stamp")
    (None, 'no stamp')
    """

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        opts = options or {}
        year = opts.get("year")
        self._year: int | None = int(year) if year is not None else None
        self._last_month: int | None = None
        tz = opts.get("tz") or "UTC"
        self._tz = None if tz in ("UTC", "utc", "Z") else ZoneInfo(str(tz))

    def _epoch(self, y: int, mo: int, d: int, h: int, mi: int, s: int, us: int) -> int | None:
        try:
            if self._tz is None:
                datetime(y, mo, d)  # validates the date
                return (calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))) * _US + us
            dt = datetime(y, mo, d, h, mi, s, us, tzinfo=self._tz)
            return int(dt.timestamp()) * _US + us
        except (ValueError, OverflowError):
            return None

    def _syslog_year(self, month: int, day: int, hms: tuple[int, int, int]) -> int:
        if self._year is None:
            now = datetime.now(UTC)
            year = now.year
            t = self._epoch(year, month, day, *hms, 0)
            if t is not None and t > (now.timestamp() + 86400) * _US:
                year -= 1
            self._year = year
        elif self._last_month == 12 and month == 1:
            self._year += 1
        self._last_month = month
        return self._year

    def parse(self, line: str) -> tuple[int | None, str]:
        """Return ``(µs or None, rest of the line)`` for a line with an optional stamp."""
        if not line:
            return None, line
        c = line[0]
        if c == "[":
            m = _TS_EPOCH.match(line)
            if m:
                return int(m.group(1)) * _US + _frac_us(m.group(2)), line[m.end() :]
        elif c.isdigit():
            m = _TS_ISO.match(line)
            if m:
                y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
                us = _frac_us(m.group(7))
                off = m.group(8)
                if off is None:
                    return self._epoch(y, mo, d, h, mi, s, us), line[m.end() :]
                t = self._utc(y, mo, d, h, mi, s, us)
                if t is not None and off != "Z":
                    sign = -1 if off[0] == "-" else 1
                    digits = off[1:].replace(":", "")
                    t -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * _US
                return t, line[m.end() :]
            m = _TS_BIND.match(line)
            if m:
                bmo = _MONTHS.get(m.group(2))
                if bmo is None:
                    return None, line[m.end() :]
                return self._epoch(
                    int(m.group(3)), bmo, int(m.group(1)),
                    int(m.group(4)), int(m.group(5)), int(m.group(6)), _frac_us(m.group(7)),
                ), line[m.end() :]  # fmt: skip
        elif c.isupper():
            m = _TS_SYSLOG.match(line)
            if m:
                smo = _MONTHS.get(m.group(1))
                if smo is None:
                    return None, line
                hms = (int(m.group(3)), int(m.group(4)), int(m.group(5)))
                day = int(m.group(2))
                year = self._syslog_year(smo, day, hms)
                return self._epoch(year, smo, day, *hms, _frac_us(m.group(6))), line[m.end() :]
        return None, line

    @staticmethod
    def _utc(y: int, mo: int, d: int, h: int, mi: int, s: int, us: int) -> int | None:
        try:
            datetime(y, mo, d)
            return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * _US + us
        except (ValueError, OverflowError):
            return None


# ---------------------------------------------------------------------------
# pairing state
# ---------------------------------------------------------------------------


class _Pending:
    """Queries waiting for replies: FIFO per key, bounded by age and count."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.window_us = int(float(options.get("pair_window", 60)) * _US)
        self.cap = int(options.get("max_pending", 100_000))
        self.by_key: OrderedDict[Any, deque[Txn]] = OrderedDict()
        self.n = 0
        self.newest: Txn | None = None

    def push(self, txn: Txn) -> Iterator[Txn]:
        """Add a query; yields queries evicted to respect the cap."""
        q = self.by_key.get(txn.key)
        if q is None:
            q = self.by_key[txn.key] = deque()
        q.append(txn)
        self.n += 1
        self.newest = txn
        while self.n > self.cap:
            yield self._pop_oldest()

    def pop(self, key: Any, qtype: str | None = None) -> Txn | None:
        """The oldest query waiting under ``key``, removed; None if there is none.

        With ``qtype``, the oldest one of that qtype is preferred.
        """
        q = self.by_key.get(key)
        if not q:
            return None
        if qtype is not None and q[0].qtype != qtype:
            for i, t in enumerate(q):
                if t.qtype == qtype:
                    del q[i]
                    self.n -= 1
                    if not q:
                        del self.by_key[key]
                    if t is self.newest:
                        self.newest = None
                    return t
        txn = q.popleft()
        self.n -= 1
        if not q:
            del self.by_key[key]
        if txn is self.newest:
            self.newest = None
        return txn

    def pop_newest(self) -> Txn | None:
        """The most recently added query if it is still waiting, removed."""
        txn = self.newest
        if txn is None:
            return None
        q = self.by_key.get(txn.key)
        if not q or q[-1] is not txn:
            self.newest = None
            return None
        q.pop()
        self.n -= 1
        if not q:
            del self.by_key[txn.key]
        self.newest = None
        return txn

    def _pop_oldest(self) -> Txn:
        key, q = next(iter(self.by_key.items()))
        txn = q.popleft()
        self.n -= 1
        if not q:
            del self.by_key[key]
        if txn is self.newest:
            self.newest = None
        return txn

    def expire(self, now: int | None) -> Iterator[Txn]:
        """Yield queries whose first sighting is more than the window away from ``now``."""
        if now is None:
            return
        while self.by_key:
            q = next(iter(self.by_key.values()))
            seen = q[0].seen
            if seen is not None and abs(now - seen) <= self.window_us:
                return
            yield self._pop_oldest()

    def drain(self) -> Iterator[Txn]:
        while self.by_key:
            yield self._pop_oldest()


def _normalise_qtype(t: str) -> str:
    """``A`` -> ``A``, ``type=65`` / ``TYPE65`` -> ``HTTPS``, ``NSAP_PTR`` -> ``NSAP-PTR``."""
    up = t.strip().upper()
    if up.startswith("TYPE="):
        up = "TYPE" + up[5:]
    code = qtype_code(up.replace("_", "-"))
    return qtype_name(code) if code is not None else safe_str(up)


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


class _LineAdapter:
    """Common driver: line iteration, skip/bytes accounting, the event buffer."""

    name = ""

    def read(self, stream: BinaryIO, ctx: ReadContext) -> Iterator[pa.RecordBatch]:
        buf = EventBuffer(ctx)
        self._setup(ctx)
        for offset, raw, terminated in iter_log_lines(stream, ctx):
            if not raw.strip():
                continue
            if offset < ctx.skip_bytes:
                continue
            line = raw.decode("utf-8", "surrogateescape")
            ctx.stats.records_read += 1
            try:
                ok = self._line(line, ctx, buf, terminated)
            except Exception as exc:  # a bad line must never end the file
                ok = False
                ctx.stats.reject("malformed_line", f"{type(exc).__name__}: {safe_str(line)[:120]}")
            if not terminated and ok:
                ctx.stats.bytes_consumed = offset + len(raw)
            if buf.full:
                yield from buf.flush()
        for txn in self._finish():
            buf.add(txn)
        yield from buf.flush()

    def _reject_line(self, ctx: ReadContext, reason: str, line: str, terminated: bool) -> bool:
        if not terminated:
            reason = "truncated_record"
        ctx.stats.reject(reason, safe_str(line)[:160])
        return False

    # hooks
    def _setup(self, ctx: ReadContext) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _line(self, line: str, ctx: ReadContext, buf: EventBuffer, terminated: bool) -> bool:
        raise NotImplementedError  # pragma: no cover - overridden

    def _finish(self) -> Iterator[Txn]:
        return iter(())


# ---------------------------------------------------------------------------
# dnsmasq
# ---------------------------------------------------------------------------

_DNSMASQ_TAG = re.compile(r"^(?:\S+ )?dnsmasq(?:\[\d+\])?: ")
_DNSMASQ_EXTRA = re.compile(r"^(\d+) (?:([0-9A-Fa-f:.]+)/(\d+) )?")
_DNSMASQ_MSG = re.compile(
    r"^(?P<source>.+?) (?P<name>\S+) (?P<verb>is|from|to) (?P<dest>.+?)"
    r"(?P<extra> \((?:EDE: [^)]*|DNSSEC signed)\)|#\d+)?$"
)
_UNPRINTABLE = "<name unprintable>"
_UNPRINTABLE_TOKEN = "\x00unprintable\x00"
_CNAME = "<CNAME>"
_RCODE_WORDS = {"SERVFAIL": "SERVFAIL", "REFUSED": "REFUSED", "not implemented": "NOTIMP"}
_QTYPE_FROM_TAG = re.compile(r"^<([A-Za-z0-9_=-]+)>$")


class DnsmasqAdapter(_LineAdapter):
    """dnsmasq ``log-queries`` logs (see the module docs)."""

    name = "dnsmasq"

    def _setup(self, ctx: ReadContext) -> None:
        self.clock = LogClock(ctx.options)
        self.pending = _Pending(ctx.options)
        self.current: Txn | None = None  # the transaction whose reply lines are being read

    def _close_current(self, buf: EventBuffer) -> None:
        if self.current is not None:
            buf.add(self.current)
            self.current = None

    def _finish(self) -> Iterator[Txn]:
        if self.current is not None:
            yield self.current
            self.current = None
        yield from self.pending.drain()

    def _line(self, line: str, ctx: ReadContext, buf: EventBuffer, terminated: bool) -> bool:
        ts, rest = self.clock.parse(line)
        m = _DNSMASQ_TAG.match(rest)
        if m is None:
            return self._reject_line(ctx, "not_dns_line", line, terminated)
        msg = rest[m.end() :]
        for txn in self.pending.expire(ts):
            buf.add(txn)
        serial: int | None = None
        caddr: str | None = None
        cport: int | None = None
        em = _DNSMASQ_EXTRA.match(msg)
        if em is not None:
            serial = int(em.group(1))
            caddr = em.group(2)
            cport = int(em.group(3)) if em.group(3) else None
            msg = msg[em.end() :]
        msg = msg.replace(_UNPRINTABLE, _UNPRINTABLE_TOKEN)
        mm = _DNSMASQ_MSG.match(msg)
        if mm is None:
            return self._reject_line(ctx, "not_dns_line", line, terminated)
        source, name, verb, dest = mm.group("source", "name", "verb", "dest")
        name = name.replace(_UNPRINTABLE_TOKEN, _UNPRINTABLE)
        dest = dest.replace(_UNPRINTABLE_TOKEN, _UNPRINTABLE)
        if verb == "from":
            if not (source.startswith("query[") and source.endswith("]")):
                return self._reject_line(ctx, "not_dns_line", line, terminated)
            self._close_current(buf)
            txn = Txn(
                ts=ts,
                src_ip=safe_str(caddr or dest),
                src_port=cport,
                qname=safe_str(name),
                qtype=_normalise_qtype(source[6:-1]),
                key=serial if serial is not None else name,
                seen=ts,
            )
            txn.chain.add(name)
            for old in self.pending.push(txn):
                buf.add(old)
            return True
        if verb == "to":
            if source == "forwarded" or source.startswith("dnssec"):
                return True
            return self._reject_line(ctx, "not_dns_line", line, terminated)
        # verb == "is": a reply-like line
        if source == "validation" or source.startswith(("ipset", "nftset")):
            return True
        self._reply(ts, serial, caddr, cport, name, dest, buf)
        return True

    def _reply(
        self,
        ts: int | None,
        serial: int | None,
        caddr: str | None,
        cport: int | None,
        name: str,
        dest: str,
        buf: EventBuffer,
    ) -> None:
        cur = self.current
        if cur is not None:
            same = cur.key == serial if serial is not None else (name in cur.chain)
            cname_next = bool(cur.answers) and cur.answers[-1] == _CNAME  # type: ignore[index]
            if same or (cname_next and (serial is None or cur.key == serial)):
                self._apply(cur, name, dest)
                return
            self._close_current(buf)
        txn: Txn | None
        if serial is not None:
            txn = self.pending.pop(serial)
        else:
            txn = self.pending.pop(name, _infer_qtype(name, dest))
            if txn is None and _is_ip(name):
                txn = self.pending.pop(ipaddress.ip_address(name).reverse_pointer)
            if txn is None and name == "error":
                txn = self.pending.pop_newest()
        if txn is None:
            txn = Txn(ts=ts, src_ip=safe_str(caddr) if caddr else None, src_port=cport)
            txn.key = serial if serial is not None else name
            if name != "error":
                txn.qname = safe_str(name)
                txn.chain.add(name)
            txn.qtype = _infer_qtype(name, dest)
        elif ts is not None and txn.ts is not None:
            txn.rtt = max(0.0, (ts - txn.ts) / _US)
        self.current = txn
        self._apply(txn, name, dest)

    @staticmethod
    def _apply(txn: Txn, name: str, dest: str) -> None:
        """Fold one reply line into ``txn``."""
        if txn.answers and txn.answers[-1] == _CNAME and name not in txn.chain:
            txn.answers[-1] = safe_str(name)
        txn.chain.add(name)
        if dest == "NXDOMAIN":
            txn.rcode = "NXDOMAIN"
            return
        if dest.startswith("NODATA"):
            txn.rcode = txn.rcode or "NOERROR"
            return
        word = _RCODE_WORDS.get(dest)
        if word is not None:
            txn.rcode = word
            return
        if dest.isdigit():
            txn.rcode = rcode_name(int(dest))
            return
        txn.rcode = txn.rcode or "NOERROR"
        if txn.answers is None:
            txn.answers = []
        txn.answers.append(safe_str(dest))


def _infer_qtype(name: str, dest: str) -> str | None:
    """qtype of a reply seen without its query, where the reply shows it."""
    if dest == "NODATA-IPv4":
        return "A"
    if dest == "NODATA-IPv6":
        return "AAAA"
    if _is_ip(name):
        return "PTR"
    m = _QTYPE_FROM_TAG.match(dest)
    if m:
        tag = m.group(1)
        return None if tag == "CNAME" else _normalise_qtype(tag)
    try:
        return "A" if ipaddress.ip_address(dest).version == 4 else "AAAA"
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# BIND
# ---------------------------------------------------------------------------

_BIND_QUERY = re.compile(
    r"client (?:@0x[0-9a-fA-F]+ )?(?P<ip>[0-9A-Fa-f:.]+)(?:%\S+)?#(?P<port>\d+)"
    r"(?: \((?P<pname>[^)]*)\))?: (?:view (?P<view>[^:]+): )?query: "
    r"(?P<qname>\S+) (?P<qclass>\S+) (?P<qtype>\S+) (?P<flags>[-+]\S*)"
    r"(?: \((?P<dst>[0-9A-Fa-f:.]+)(?:%\S+)?\))?"
)


_BIND_DDD = re.compile(r"\\(\d{3})")


def _bind_name(s: str) -> str:
    r"""Undo BIND's ``\DDD`` escapes into the canonical ``\xNN`` form.

    >>> _bind_name(r"we\032ird.example.com")
    'we\\x20ird.example.com'
    """

    def sub(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if n > 255:
            return m.group(0)
        return chr(n) if 0x21 <= n <= 0x7E else f"\\x{n:02x}"

    return safe_str(_BIND_DDD.sub(sub, s))


class BindAdapter(_LineAdapter):
    """BIND ``querylog`` lines (see the module docs)."""

    name = "bind"

    def _setup(self, ctx: ReadContext) -> None:
        self.clock = LogClock(ctx.options)

    def _line(self, line: str, ctx: ReadContext, buf: EventBuffer, terminated: bool) -> bool:
        ts, rest = self.clock.parse(line)
        m = _BIND_QUERY.search(rest)
        if m is None:
            if "query: " in rest and "client " in rest:
                return self._reject_line(ctx, "malformed_line", line, terminated)
            return self._reject_line(ctx, "not_dns_line", line, terminated)
        flags = m.group("flags")
        letters = re.sub(r"\(\d+\)", "", flags[1:])
        if not _is_ip(m.group("ip")):
            return self._reject_line(ctx, "malformed_line", line, terminated)
        buf.add(
            Txn(
                ts=ts,
                src_ip=m.group("ip"),
                src_port=int(m.group("port")),
                dst_ip=m.group("dst"),
                proto="tcp" if "T" in letters else "udp",
                qname=_bind_name(m.group("qname")),
                qtype=_normalise_qtype(m.group("qtype")),
                rd=flags[0] == "+",
            )
        )
        return True


# ---------------------------------------------------------------------------
# Unbound
# ---------------------------------------------------------------------------

_UNBOUND_TAG = re.compile(
    r"^(?:\S+ )?unbound(?:\[\d+(?::[0-9a-fA-F]+)?\])?:? (?:\[\d+:[0-9a-fA-F]+\] )?"
    r"(?P<level>info|query|reply|notice|debug|warning|error|fatal error): "
)
_CLASSES = frozenset({"IN", "CH", "HS", "CS", "ANY", "NONE"})


def _is_class(s: str) -> bool:
    return s in _CLASSES or (s.startswith("CLASS") and s[5:].isdigit())


class UnboundAdapter(_LineAdapter):
    """Unbound ``log-queries`` / ``log-replies`` lines (see the module docs)."""

    name = "unbound"

    def _setup(self, ctx: ReadContext) -> None:
        self.clock = LogClock(ctx.options)
        self.pending = _Pending(ctx.options)

    def _finish(self) -> Iterator[Txn]:
        yield from self.pending.drain()

    def _line(self, line: str, ctx: ReadContext, buf: EventBuffer, terminated: bool) -> bool:
        ts, rest = self.clock.parse(line)
        m = _UNBOUND_TAG.match(rest)
        if m is None:
            return self._reject_line(ctx, "not_dns_line", line, terminated)
        for txn in self.pending.expire(ts):
            buf.add(txn)
        tok = rest[m.end() :].split()
        level = m.group("level")
        if level not in ("info", "query", "reply") or len(tok) not in (4, 8, 9, 10):
            return self._reject_line(ctx, "not_dns_line", line, terminated)
        client = tok[0]
        if "@" in client:
            client = client.split("@", 1)[0]
        if not _is_ip(client):
            return self._reject_line(ctx, "not_dns_line", line, terminated)
        if len(tok) == 4:
            if not (tok[1].endswith(".") and _is_class(tok[3])):
                return self._reject_line(ctx, "not_dns_line", line, terminated)
            qtype = _normalise_qtype(tok[2])
            txn = Txn(ts=ts, src_ip=client, qname=safe_str(tok[1]), qtype=qtype, seen=ts)
            txn.key = (client, tok[1].lower(), qtype)
            for old in self.pending.push(txn):
                buf.add(old)
            return True
        rcode_tok, dur_tok, cached_tok, size_tok = tok[4:8]
        if tok[1] == "-" and dur_tok == "-":  # FORMERR: "ip - - - FORMERR - - -"
            buf.add(Txn(ts=ts, src_ip=client, rcode=rcode_tok.upper()))
            return True
        if not (tok[1].endswith(".") and _is_class(tok[3]) and cached_tok in ("0", "1")):
            return self._reject_line(ctx, "not_dns_line", line, terminated)
        dur = float(dur_tok)
        size = int(size_tok)
        qtype = _normalise_qtype(tok[2])
        rcode = rcode_tok.upper()
        if rcode.startswith("RCODE") and rcode[5:].isdigit():
            rcode = rcode_name(int(rcode[5:]))
        key = (client, tok[1].lower(), qtype)
        found = self.pending.pop(key)
        if found is None:
            start = ts - round(dur * _US) if ts is not None else None
            found = Txn(ts=start, src_ip=client, qname=safe_str(tok[1]), qtype=qtype)
        txn = found
        txn.rcode = rcode
        txn.rtt = dur
        txn.response_len = size
        if len(tok) >= 9:  # newer versions may append the server address@port and transport
            srv = tok[8]
            if "@" in srv:
                ip, _, port = srv.partition("@")
                if _is_ip(ip):
                    txn.dst_ip = ip
                    txn.dst_port = int(port) if port.isdigit() else None
            if len(tok) == 10 and tok[9].isalpha():
                txn.proto = tok[9].lower()
        buf.add(txn)
        return True
