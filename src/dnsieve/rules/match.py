"""The one matcher for allow-lists and watchlists: pure logic, no I/O (ARCHITECTURE §3, §6).

It lives in ``rules/``, below ``alerts/`` (which suppresses with it) and
``threat/``, so neither of those imports the other for it.  Its two polarities:
an allow-list entry suppresses the alerts it matches; a watchlist entry
(:mod:`dnsieve.rules.feeds`) raises an alert on the events it matches, using the
same value normalisation (:func:`normalize_domain`, :func:`normalize_client`)
and label-boundary suffixes (:func:`domain_suffixes`).

An allow-list entry ("rule") suppresses alerts.  It has a *kind*:

``domain``
    the alert's domain is exactly the value (``evil.com`` matches ``evil.com``
    only, not ``a.evil.com``).
``suffix``
    the alert's domain is the value or ends with ``.`` + value, on a label
    boundary: ``evil.com`` matches ``evil.com`` and ``a.b.evil.com`` but
    **not** ``notevil.com``.
``wildcard``
    ``*.evil.com``: the same set as the suffix ``evil.com``.  A wildcard also
    matches the bare domain, a pitfall of other tools, where users who allow
    ``*.example.com`` are surprised to keep seeing ``example.com``.
``client``
    the alert's client is the IP address, or lies in the CIDR network
    (``10.0.0.0/8``, ``2001:db8::/32``).  IPv4-mapped IPv6 clients
    (``::ffff:10.1.2.3``) match IPv4 rules.
``detector_entity``
    one detector's alerts on one entity (``--detector tunnel --entity x.com``).

Any rule may also carry a ``detector``: it then only applies to that
detector's alerts.  Values are compared case-insensitively with trailing dots
removed; Unicode domain names are converted to their IDNA (``xn--``) form, the
form in which they appear on the wire and in the store.

The domain of an alert is its entity for ``domain`` entities and the part
after the first ``|`` for ``client_domain`` entities (``10.0.0.5|evil.com``);
the client is the entity for ``client`` entities and the part before the
``|``.

When several rules match one alert, :meth:`AllowMatcher.match` returns the one
that expires last (no expiry counts as never), so that "the alert is suppressed
now" is exactly "the chosen rule is still active now", whatever expires in
between: this is what lets the store record the suppressing rule on write and
still have expiry take effect with no background job (docs/alerts.md).

>>> rules = [Rule(1, "suffix", "evil.com"), Rule(2, "wildcard", "*.cdn.net")]
>>> m = AllowMatcher(rules)
>>> [m.match("dga", "domain", d).id if m.match("dga", "domain", d) else None
...  for d in ["a.evil.com", "evil.com", "notevil.com", "cdn.net", "x.cdn.net"]]
[1, 1, None, 2, 2]
>>> parse_value("domain", "WWW.Example.COM.")
('domain', 'www.example.com')
>>> parse_value("domain", "*.example.com")
('wildcard', '*.example.com')
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

__all__ = [
    "AllowKind",
    "AllowListConflict",
    "AllowListError",
    "AllowMatcher",
    "Rule",
    "alert_subjects",
    "domain_suffixes",
    "normalize_client",
    "normalize_domain",
    "normalize_entity",
    "parse_expiry",
    "parse_value",
    "rule_matches",
]

AllowKind = Literal["domain", "suffix", "wildcard", "client", "detector_entity"]
ALLOW_KINDS: tuple[str, ...] = get_args(AllowKind)

IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

_FOREVER = datetime.max.replace(tzinfo=UTC)


class AllowListError(ValueError):
    """An allow-list value, kind or expiry is invalid; the message says why."""


class AllowListConflict(AllowListError):
    """The entry's state forbids the change: it was removed, or has expired (409 in the API)."""


@dataclass(frozen=True)
class Rule:
    """One active allow-list entry, as the matcher sees it.

    ``value`` is the normalised value (:func:`parse_value`); ``expires_at`` is
    None for an entry that never expires.
    """

    id: int
    kind: str
    value: str
    detector: str | None = None
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        """True while the rule has not expired."""
        return self.expires_at is None or self.expires_at > now


# --------------------------------------------------------------------------- normalisation


def normalize_domain(value: str) -> str:
    """Lower-case, strip blanks and trailing dots; IDNA-encode non-ASCII labels.

    Names already in the store are ASCII (non-printables escaped as ``\\xNN``)
    and are only lower-cased and stripped.

    >>> normalize_domain(" Bücher.DE. ")
    'xn--bcher-kva.de'
    """
    v = value.strip().lower().rstrip(".")
    if v.isascii():
        return v
    labels = []
    for label in v.split("."):
        try:
            labels.append(label.encode("idna").decode("ascii") if not label.isascii() else label)
        except UnicodeError:
            labels.append(label)
    return ".".join(labels)


def _parse_ip(value: str) -> IpAddr | None:
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def normalize_client(value: str) -> str:
    """Canonical text of an IP address or CIDR network; raises :class:`AllowListError`.

    A host address is kept without a prefix length; host bits given with a
    prefix are cleared (``10.1.2.3/8`` → ``10.0.0.0/8``).

    >>> normalize_client("2001:DB8:0::1"), normalize_client("10.1.2.3/8")
    ('2001:db8::1', '10.0.0.0/8')
    >>> normalize_client("::ffff:192.0.2.7")
    '192.0.2.7'
    """
    v = value.strip()
    ip = _parse_ip(v)
    if ip is not None:
        return str(ip)
    try:
        net = ipaddress.ip_network(v, strict=False)
    except ValueError:
        raise AllowListError(f"not an IP address or CIDR network: {value!r}") from None
    if isinstance(net, ipaddress.IPv6Network):
        mapped = net.network_address.ipv4_mapped
        if mapped is not None and net.prefixlen >= 96:
            net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}")
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def normalize_entity(entity: str) -> str:
    """Normalise an alert entity: ``domain``, ``client`` or ``client|domain``."""
    if "|" in entity:
        client, domain = entity.split("|", 1)
        ip = _parse_ip(client)
        return f"{ip if ip is not None else client.strip()}|{normalize_domain(domain)}"
    ip = _parse_ip(entity)
    if ip is not None:
        return str(ip)
    return normalize_domain(entity)


def alert_subjects(entity_type: str, entity: str) -> tuple[str | None, str | None]:
    """``(domain, client)`` of an alert entity, normalised; None where it has none.

    >>> alert_subjects("client_domain", "10.0.0.5|Evil.com.")
    ('evil.com', '10.0.0.5')
    >>> alert_subjects("client", "10.0.0.5")
    (None, '10.0.0.5')
    """
    if entity_type == "domain":
        return normalize_domain(entity), None
    if entity_type == "client":
        ip = _parse_ip(entity)
        return None, str(ip) if ip is not None else entity.strip()
    if "|" in entity:
        client, domain = entity.split("|", 1)
        ip = _parse_ip(client)
        return normalize_domain(domain), str(ip) if ip is not None else client.strip()
    ip = _parse_ip(entity)
    if ip is not None:
        return None, str(ip)
    return normalize_domain(entity), None


_BAD_DOMAIN = re.compile(r"[\s/:@*]")


def _check_domain(v: str, original: str) -> str:
    if not v:
        raise AllowListError(f"empty domain: {original!r}")
    if "://" in v or "/" in v:
        raise AllowListError(f"give a domain name, not a URL: {original!r}")
    if _BAD_DOMAIN.search(v):
        raise AllowListError(
            f"invalid domain {original!r}: only a leading '*.' wildcard is supported, "
            "and names may not contain blanks, '/', ':' or '@'"
        )
    if ".." in v or v.startswith("."):
        raise AllowListError(f"invalid domain {original!r}: empty label")
    return v


def parse_value(kind: str, value: str) -> tuple[str, str]:
    """Validate and normalise an allow-list value; returns ``(kind, value)``.

    The kind may change: a ``domain`` given as ``*.x.com`` is a ``wildcard``,
    one given as ``.x.com`` is a ``suffix`` (the "domain and everything below
    it" convention of many resolvers).  Raises :class:`AllowListError`.

    >>> parse_value("suffix", ".Evil.com")
    ('suffix', 'evil.com')
    >>> parse_value("client", "10.0.0.0/8")
    ('client', '10.0.0.0/8')
    """
    if kind not in ALLOW_KINDS:
        raise AllowListError(
            f"unknown allow-list kind {kind!r}; choose one of {', '.join(ALLOW_KINDS)}"
        )
    raw = value
    if kind == "client":
        return kind, normalize_client(value)
    if kind == "detector_entity":
        v = value.strip()
        if not v:
            raise AllowListError("empty entity")
        return kind, normalize_entity(v)
    v = value.strip().lower()
    if kind in ("domain", "wildcard") and v.startswith("*."):
        return "wildcard", "*." + _check_domain(normalize_domain(v[2:]), raw)
    if kind == "wildcard":
        raise AllowListError(f"a wildcard must look like '*.example.com', got {raw!r}")
    if v.startswith("*"):
        raise AllowListError(f"only a leading '*.' wildcard is supported, got {raw!r}")
    if v.startswith(".") and not v.startswith(".."):
        return "suffix", _check_domain(normalize_domain(v[1:]), raw)
    return kind, _check_domain(normalize_domain(v), raw)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expiry(value: str | None, now: datetime) -> datetime | None:
    """``7d``/``12h``/``30m``/``2w``/``90s`` from ``now``, or an ISO 8601 time (UTC if naive).

    Raises :class:`AllowListError` for an unreadable value or a time not after ``now``.

    >>> now = datetime(2024, 1, 1, tzinfo=UTC)
    >>> parse_expiry("7d", now).isoformat()
    '2024-01-08T00:00:00+00:00'
    >>> parse_expiry("2024-02-01", now).isoformat()
    '2024-02-01T00:00:00+00:00'
    """
    if value is None or not value.strip():
        return None
    m = _DURATION.match(value)
    if m:
        at = now + timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2).lower()])
    else:
        try:
            at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise AllowListError(
                f"unreadable expiry {value!r}: use a duration (30m, 12h, 7d, 2w) or an ISO time"
            ) from None
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    if at <= now:
        raise AllowListError(f"expiry {value!r} is not in the future")
    return at


# --------------------------------------------------------------------------- matching


def domain_suffixes(domain: str) -> list[str]:
    """The domain and each parent on a label boundary: ``a.b.c`` → ``[a.b.c, b.c, c]``."""
    out = [domain]
    i = domain.find(".")
    while i != -1:
        out.append(domain[i + 1 :])
        i = domain.find(".", i + 1)
    return out


def _suffix_key(rule: Rule) -> str:
    return rule.value[2:] if rule.kind == "wildcard" else rule.value


def rule_matches(
    rule: Rule, detector: str, entity_type: str, entity: str, now: datetime | None = None
) -> bool:
    """Does one rule match one alert (and, when ``now`` is given, is it active)?"""
    if now is not None and not rule.active(now):
        return False
    if rule.detector is not None and rule.detector != detector:
        return False
    domain, client = alert_subjects(entity_type, entity)
    if rule.kind == "domain":
        return domain == rule.value
    if rule.kind in ("suffix", "wildcard"):
        key = _suffix_key(rule)
        return domain is not None and (domain == key or domain.endswith("." + key))
    if rule.kind == "client":
        ip = _parse_ip(client) if client is not None else None
        if ip is None:
            return client == rule.value
        try:
            return ip in ipaddress.ip_network(rule.value)
        except ValueError:
            return False
    if rule.kind == "detector_entity":
        return normalize_entity(entity) == rule.value
    return False


def _better(a: Rule, b: Rule | None) -> bool:
    """Is ``a`` a better suppressor than ``b``: later expiry, then lower id."""
    if b is None:
        return True
    ea, eb = a.expires_at or _FOREVER, b.expires_at or _FOREVER
    return ea > eb or (ea == eb and a.id < b.id)


class AllowMatcher:
    """Indexes rules for fast matching: dictionary look-ups, no scan over rules.

    Domain rules are looked up once per label suffix of the alert's domain,
    client rules once per distinct prefix length among the CIDR rules.
    Expired rules are dropped when ``now`` is given.
    """

    def __init__(self, rules: Iterable[Rule], now: datetime | None = None) -> None:
        self._exact: dict[str, list[Rule]] = {}
        self._suffix: dict[str, list[Rule]] = {}
        self._client: dict[str, list[Rule]] = {}
        self._nets: dict[tuple[int, int], dict[IpNet, list[Rule]]] = {}
        self._entity: dict[str, list[Rule]] = {}
        self.rules: list[Rule] = []
        for r in rules:
            if now is not None and not r.active(now):
                continue
            self.rules.append(r)
            if r.kind == "domain":
                self._exact.setdefault(r.value, []).append(r)
            elif r.kind in ("suffix", "wildcard"):
                self._suffix.setdefault(_suffix_key(r), []).append(r)
            elif r.kind == "client":
                if "/" in r.value:
                    net = ipaddress.ip_network(r.value)
                    key = (net.version, net.prefixlen)
                    self._nets.setdefault(key, {}).setdefault(net, []).append(r)
                else:
                    self._client.setdefault(r.value, []).append(r)
            elif r.kind == "detector_entity":
                self._entity.setdefault(r.value, []).append(r)

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, entity_type: str, entity: str) -> list[Rule]:
        """Every rule whose value matches the alert, ignoring the detector restriction."""
        domain, client = alert_subjects(entity_type, entity)
        out: list[Rule] = []
        if domain is not None:
            out += self._exact.get(domain, ())
            if self._suffix:
                for s in domain_suffixes(domain):
                    out += self._suffix.get(s, ())
        if client is not None:
            out += self._client.get(client, ())
            if self._nets:
                ip = _parse_ip(client)
                if ip is not None:
                    for (version, plen), nets in self._nets.items():
                        if version == ip.version:
                            net = ipaddress.ip_network(f"{ip}/{plen}", strict=False)
                            out += nets.get(net, ())
        if self._entity:
            out += self._entity.get(normalize_entity(entity), ())
        return out

    def matches(self, detector: str, entity_type: str, entity: str) -> list[Rule]:
        """Every rule that suppresses this alert."""
        return [
            r
            for r in self.candidates(entity_type, entity)
            if r.detector is None or r.detector == detector
        ]

    def match(self, detector: str, entity_type: str, entity: str) -> Rule | None:
        """The rule that suppresses this alert longest (see the module doc), or None."""
        best: Rule | None = None
        for r in self.matches(detector, entity_type, entity):
            if _better(r, best):
                best = r
        return best


def rule_from_mapping(row: Mapping[str, Any]) -> Rule:
    """Build a :class:`Rule` from a stored row (``id, kind, value, detector, expires_at``)."""
    exp = row.get("expires_at")
    return Rule(
        id=int(row["id"]),
        kind=str(row["kind"]),
        value=str(row["value"]),
        detector=str(row["detector"]) if row.get("detector") is not None else None,
        expires_at=exp if isinstance(exp, datetime) else None,
    )
