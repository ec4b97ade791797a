"""Format sniffing from content (``--format auto``).

The first bytes of the *decoded* stream decide; the file name is only a
tie-breaker for tabular files (``.csv``/``.parquet``).

>>> sniff(b"#separator \\\\x09\\n#fields\\tts\\tuid\\n")
'zeek'
>>> sniff(b'{"timestamp":"2021-06-06T16:26:27+0200","event_type":"dns","dns":{}}\\n')
'suricata'
>>> sniff(b"\\xd4\\xc3\\xb2\\xa1" + bytes(20))
'pcap'
>>> sniff(b"Aug  8 18:53:23 dnsmasq[1]: query[A] example.com from 10.0.0.1\\n")
'dnsmasq'
>>> sniff(b"[1700000000] unbound[7:0] info: 192.0.2.1 a.example. A IN\\n")
'unbound'
>>> sniff(b"Nov 14 22:13:29 unbound[7:1a] query: 192.0.2.1 a.example. A IN\\n")
'unbound'
>>> sniff(b"timestamp;client;domain\\n1622989587;10.0.0.1;a.example\\n", "x.txt")
'csv'
>>> sniff(b"hello, world\\nthis is, text\\n", "notes.txt") is None
True
"""

from __future__ import annotations

import json
import re

__all__ = ["FORMATS", "sniff"]

FORMATS = (
    "zeek",
    "zeek-json",
    "suricata",
    "pcap",
    "dnsmasq",
    "bind",
    "unbound",
    "csv",
    "parquet",
)

_PCAP_MAGICS = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",  # pcapng section header block
)

_DNSMASQ = re.compile(rb"dnsmasq(?:\[\d+\])?: ")
_BIND = re.compile(rb"(?:queries: )?(?:info: )?client (?:@0x[0-9a-f]+ )?[0-9a-fA-F:.]+#\d+")
_UNBOUND = re.compile(
    rb"unbound(?:\[\d+\])?: \[\d+:[0-9a-fA-F]+\] (?:info|query|reply):"
    rb"|unbound\[\d+:[0-9a-fA-F]+\] (?:info|query|reply|notice):"
)


def sniff(head: bytes, name: str = "") -> str | None:
    """Guess the format of a decoded stream from its first bytes.

    Returns one of :data:`FORMATS`, or ``None`` if nothing matches.
    """
    if head[:4] in _PCAP_MAGICS:
        return "pcap"
    if head[:4] == b"PAR1":
        return "parquet"
    text = head.lstrip(b"\xef\xbb\xbf")
    if (
        text.startswith(b"#separator")
        or b"\n#fields\t" in text[:4096]
        or text.startswith(b"#fields\t")
    ):
        return "zeek"
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    # The last line of a sample may be cut; do not judge on it.
    if len(lines) > 1:
        lines = lines[:-1]
    json_votes: dict[str, int] = {}
    for ln in lines[:20]:
        s = ln.strip()
        if not s.startswith(b"{"):
            continue
        try:
            obj = json.loads(s)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        if "event_type" in obj or ("dns" in obj and "src_ip" in obj):
            json_votes["suricata"] = json_votes.get("suricata", 0) + 1
        elif "id.orig_h" in obj or ("query" in obj and "uid" in obj) or obj.get("_path") == "dns":
            json_votes["zeek-json"] = json_votes.get("zeek-json", 0) + 1
    if json_votes:
        return max(json_votes, key=lambda k: json_votes[k])
    sample = b"\n".join(lines[:50])
    if _DNSMASQ.search(sample):
        return "dnsmasq"
    if _UNBOUND.search(sample):
        return "unbound"
    if _BIND.search(sample):
        return "bind"
    lower = name.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        return "csv"
    if lines and not text.startswith(b"#") and _looks_tabular(lines):
        return "csv"
    return None


def _looks_tabular(lines: list[bytes]) -> bool:
    """A delimited header naming a query-name column, and rows of the same width."""
    from dnsieve.ingest.tabular import ALIASES, sniff_delimiter  # here: avoids an import cycle

    sample = b"\n".join(lines[:20])
    delim = sniff_delimiter(sample).encode()
    header = [h.strip().strip(b'"').lower() for h in lines[0].split(delim)]
    if len(header) < 2 or not any(h.decode("utf-8", "replace") in ALIASES["qname"] for h in header):
        return False
    return len(lines) == 1 or any(len(ln.split(delim)) == len(header) for ln in lines[1:])
