"""DNS parameter names (IANA registries) for qtype, qclass and rcode.

Unknown numeric codes keep their number: ``TYPE65399``, ``RCODE13``, as in
RFC 3597 presentation format, so nothing is lost.

>>> qtype_name(16), qtype_name(65399), rcode_name(3), rcode_name(13)
('TXT', 'TYPE65399', 'NXDOMAIN', 'RCODE13')
"""

from __future__ import annotations

__all__ = ["QTYPES", "RCODES", "qtype_name", "rcode_name"]

QTYPES: dict[int, str] = {
    1: "A",
    2: "NS",
    3: "MD",
    4: "MF",
    5: "CNAME",
    6: "SOA",
    7: "MB",
    8: "MG",
    9: "MR",
    10: "NULL",
    11: "WKS",
    12: "PTR",
    13: "HINFO",
    14: "MINFO",
    15: "MX",
    16: "TXT",
    17: "RP",
    18: "AFSDB",
    19: "X25",
    20: "ISDN",
    21: "RT",
    22: "NSAP",
    23: "NSAP-PTR",
    24: "SIG",
    25: "KEY",
    26: "PX",
    27: "GPOS",
    28: "AAAA",
    29: "LOC",
    30: "NXT",
    31: "EID",
    32: "NIMLOC",
    33: "SRV",
    34: "ATMA",
    35: "NAPTR",
    36: "KX",
    37: "CERT",
    38: "A6",
    39: "DNAME",
    40: "SINK",
    41: "OPT",
    42: "APL",
    43: "DS",
    44: "SSHFP",
    45: "IPSECKEY",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    49: "DHCID",
    50: "NSEC3",
    51: "NSEC3PARAM",
    52: "TLSA",
    53: "SMIMEA",
    55: "HIP",
    56: "NINFO",
    57: "RKEY",
    58: "TALINK",
    59: "CDS",
    60: "CDNSKEY",
    61: "OPENPGPKEY",
    62: "CSYNC",
    63: "ZONEMD",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    100: "UINFO",
    101: "UID",
    102: "GID",
    103: "UNSPEC",
    104: "NID",
    105: "L32",
    106: "L64",
    107: "LP",
    108: "EUI48",
    109: "EUI64",
    249: "TKEY",
    250: "TSIG",
    251: "IXFR",
    252: "AXFR",
    253: "MAILB",
    254: "MAILA",
    255: "ANY",
    256: "URI",
    257: "CAA",
    258: "AVC",
    259: "DOA",
    260: "AMTRELAY",
    261: "RESINFO",
    32768: "TA",
    32769: "DLV",
}

RCODES: dict[int, str] = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
    11: "DSOTYPENI",
    16: "BADVERS",
    17: "BADKEY",
    18: "BADTIME",
    19: "BADMODE",
    20: "BADNAME",
    21: "BADALG",
    22: "BADTRUNC",
    23: "BADCOOKIE",
}

_QTYPE_BY_NAME = {v: k for k, v in QTYPES.items()}


def qtype_name(code: int) -> str:
    """Mnemonic of a qtype number, ``TYPEnnn`` when unassigned."""
    return QTYPES.get(code, f"TYPE{code}")


def rcode_name(code: int) -> str:
    """Mnemonic of an rcode number, ``RCODEnn`` when unassigned."""
    return RCODES.get(code, f"RCODE{code}")


def qtype_code(name: str) -> int | None:
    """Inverse of :func:`qtype_name` (``TYPE65399`` → 65399)."""
    up = name.upper()
    if up in _QTYPE_BY_NAME:
        return _QTYPE_BY_NAME[up]
    if up.startswith("TYPE") and up[4:].isdigit():
        return int(up[4:])
    return None
