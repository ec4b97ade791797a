"""Watchlist imports from threat-intelligence files, and the vectorised event matcher.

A watchlist is a set of :class:`WatchEntry` values: a ``domain`` (that name exactly), a
``suffix`` (the name and every name below it, on a label boundary), or a ``client``
(an address or CIDR network).  They come from files, never from the network at run time:

``threatfox``
    abuse.ch ThreatFox CSV exports (``ioc_value``, ``ioc_type``, ``malware_printable`` ...,
    with or without the leading ``#`` comment lines), and the two-column
    ``input,class[,label]`` form of labelled domain lists (rows labelled ``legit`` or
    ``benign`` are skipped, not watched).
``plain``
    one value per line; ``#`` comments (a comment after a value names its family); hosts-file lines (``0.0.0.0 evil.example``);
    ``*.evil.example`` is a suffix; addresses and CIDRs are clients.
``stix``
    STIX 2.1 bundles: every ``indicator`` whose pattern compares ``domain-name:value``,
    ``ipv4-addr:value``/``ipv6-addr:value`` or ``url:value`` with ``=``; the URL's host
    is watched.  Other observables are counted as ``unsupported_pattern``.
``misp``
    MISP event JSON exports (one event, ``{"Event": ...}``, or ``{"response": [...]}``):
    attributes of type ``domain``, ``hostname``, ``domain|ip``, ``ip-dst``, ``ip-src``,
    ``url``, including those inside objects.

Every value is normalised as the allow-lists do (:mod:`dnsieve.rules.match`: case,
trailing dot, IDNA).  A value that is not a valid name or address is counted under a reason
and skipped, never fatal.

:func:`match_events` finds the events a watchlist marks, vectorised: each distinct query
name is expanded to its label-boundary suffixes once and joined against the entries.

>>> feed = parse_plain("evil.example\\n*.bad.example\\n10.9.0.0/16\\n# note\\nnot a name!\\n")
>>> [(e.kind, e.value) for e in feed.entries], dict(feed.rejected)
([('domain', 'evil.example'), ('suffix', 'bad.example'), ('client', '10.9.0.0/16')], {'bad_value': 1})
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import polars as pl

from dnsieve.rules.match import (
    AllowListError,
    domain_suffixes,
    normalize_client,
    normalize_domain,
)

__all__ = [
    "FEED_FORMATS",
    "FeedImport",
    "WatchEntry",
    "WatchKind",
    "fetch_feed",
    "import_feed",
    "match_events",
    "parse_feed",
    "parse_misp",
    "parse_plain",
    "parse_stix",
    "parse_threatfox",
    "sniff_feed",
    "to_plain",
]

WatchKind = Literal["domain", "suffix", "client"]
FEED_FORMATS: tuple[str, ...] = ("threatfox", "plain", "stix", "misp")
#: Largest feed file read (bytes): feeds are lists, not captures.
MAX_FEED_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class WatchEntry:
    """One watched value, with where it came from."""

    kind: WatchKind
    value: str
    family: str | None = None  # malware family or threat name, when the feed says
    reference: str | None = None  # feed id (ThreatFox ioc_id, STIX id, MISP uuid)


@dataclass
class FeedImport:
    """What a feed file gave: entries (deduplicated, in file order) and counted rejects."""

    format: str
    entries: list[WatchEntry] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, raw: str, family: str | None = None, reference: str | None = None) -> None:
        """Classify and normalise ``raw``; count it under ``bad_value`` if it is neither."""
        entry = _entry(raw, family, reference)
        if entry is None:
            self.rejected["bad_value"] += 1
        else:
            self.entries.append(entry)

    def dedupe(self) -> FeedImport:
        seen: set[tuple[str, str]] = set()
        out: list[WatchEntry] = []
        for e in self.entries:
            if (e.kind, e.value) not in seen:
                seen.add((e.kind, e.value))
                out.append(e)
        self.entries = out
        return self


def _entry(raw: str, family: str | None, reference: str | None) -> WatchEntry | None:
    value = raw.strip().strip("'\"")
    if not value:
        return None
    if "://" in value:
        value = urlsplit(value).hostname or ""
    elif ":" in value and value.count(":") == 1 and not value.startswith("["):
        value = value.split(":", 1)[0]  # host:port as ThreatFox writes ip:port
    try:
        if "/" in value or _is_ip(value):
            return WatchEntry("client", normalize_client(value), family, reference)
        if value.startswith("*."):
            return WatchEntry("suffix", normalize_domain(value[2:]), family, reference)
        name = normalize_domain(value)
    except AllowListError:
        return None
    if "." not in name or any(not label for label in name.split(".")):
        return None
    if not all(c.isalnum() or c in "-_." for c in name):
        return None
    return WatchEntry("domain", name, family, reference)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def parse_plain(text: str) -> FeedImport:
    """One value per line; comments, blank lines and hosts-file addresses are handled."""
    feed = FeedImport("plain")
    for raw in text.splitlines():
        line, _, note = raw.partition("#")
        line = line.strip()
        if not line:
            continue
        family = note.strip() or None
        parts = line.split()
        if len(parts) >= 2 and _is_ip(parts[0]) and parts[0] in {"0.0.0.0", "127.0.0.1", "::"}:
            for host in parts[1:]:
                feed.add(host, family)
            continue
        feed.add(parts[0], family)
    return feed.dedupe()


def to_plain(entries: Iterable[WatchEntry]) -> str:
    r"""Entries as a plain list (the watchlist body): ``value  # family`` per line.

    >>> to_plain([WatchEntry("suffix", "bad.example", "QakBot"), WatchEntry("client", "10.0.0.0/8")])
    '*.bad.example  # QakBot\n10.0.0.0/8\n'
    """
    lines = []
    for e in entries:
        value = f"*.{e.value}" if e.kind == "suffix" else e.value
        family = (e.family or "").replace("\n", " ").replace("#", " ").strip()
        lines.append(f"{value}  # {family}" if family else value)
    return "".join(f"{ln}\n" for ln in lines)


def parse_threatfox(text: str) -> FeedImport:
    """ThreatFox CSV (full export) or the ``input,class[,label]`` labelled-domain form."""
    feed = FeedImport("threatfox")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#") or "ioc" in ln]
    if lines and lines[0].lstrip().startswith("#"):
        lines[0] = lines[0].lstrip()[1:].strip()
    reader = csv.DictReader(io.StringIO("\n".join(lines)), skipinitialspace=True)
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    value_col = fields.get("ioc_value") or fields.get("ioc") or fields.get("input")
    if value_col is None:
        raise ValueError(
            "not a ThreatFox CSV: no ioc_value (export) or input (labelled list) column"
        )
    family_col = fields.get("malware_printable") or fields.get("fk_malware") or fields.get("class")
    label_col = fields.get("label")
    type_col = fields.get("ioc_type")
    ref_col = fields.get("ioc_id")
    for row in reader:
        label = (row.get(label_col) or "").strip().lower() if label_col else ""
        if label in {"legit", "benign", "0"}:
            feed.skipped["benign_row"] += 1
            continue
        ioc_type = (row.get(type_col) or "").strip().lower() if type_col else ""
        if ioc_type and ioc_type not in {"domain", "ip:port", "url", "ip"}:
            feed.skipped[f"ioc_type_{ioc_type}"] += 1
            continue
        family = (row.get(family_col) or "").strip() if family_col else ""
        ref = (row.get(ref_col) or "").strip() if ref_col else ""
        feed.add(row.get(value_col) or "", family or None, ref or None)
    return feed.dedupe()


def parse_stix(text: str) -> FeedImport:
    """STIX 2.1 bundle (or a single indicator): equality patterns on names, addresses, URLs."""
    from stix2patterns.v21.pattern import Pattern

    feed = FeedImport("stix")
    doc = json.loads(text)
    objects = doc.get("objects", [doc]) if isinstance(doc, dict) else []
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("type") != "indicator":
            continue
        if obj.get("pattern_type", "stix") != "stix":
            feed.skipped[f"pattern_type_{obj.get('pattern_type')}"] += 1
            continue
        name = obj.get("name") or None
        try:
            data = Pattern(str(obj.get("pattern", ""))).inspect()
        except Exception:
            feed.rejected["bad_pattern"] += 1
            continue
        for otype, comps in data.comparisons.items():
            for path, op, value in comps:
                if otype not in {"domain-name", "ipv4-addr", "ipv6-addr", "url"} or path != [
                    "value"
                ]:
                    feed.skipped["unsupported_pattern"] += 1
                    continue
                if op != "=":
                    feed.skipped["unsupported_operator"] += 1
                    continue
                feed.add(str(value).strip("'"), name, obj.get("id"))
    return feed.dedupe()


def _misp_attributes(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from event.get("Attribute", []) or []
    for obj in event.get("Object", []) or []:
        yield from obj.get("Attribute", []) or []


_MISP_TYPES = {"domain", "hostname", "domain|ip", "ip-dst", "ip-src", "url", "ip-dst|port"}


def parse_misp(text: str) -> FeedImport:
    """MISP event JSON: domain/hostname/ip/url attributes, also inside objects."""
    feed = FeedImport("misp")
    doc = json.loads(text)
    events: list[dict[str, Any]] = []
    if isinstance(doc, dict) and "response" in doc:
        events = [e.get("Event", e) for e in doc["response"] if isinstance(e, dict)]
    elif isinstance(doc, dict):
        events = [doc.get("Event", doc)]
    elif isinstance(doc, list):
        events = [e.get("Event", e) for e in doc if isinstance(e, dict)]
    for event in events:
        info = event.get("info") or None
        for attr in _misp_attributes(event):
            atype = str(attr.get("type", ""))
            if atype not in _MISP_TYPES:
                feed.skipped[f"type_{atype}"] += 1
                continue
            for value in str(attr.get("value", "")).split("|"):
                if value.strip().isdigit():
                    continue  # the port of ip-dst|port
                feed.add(value, info, attr.get("uuid"))
    return feed.dedupe()


def sniff_feed(text: str) -> str:
    """Guess a feed's format from its content."""
    head = text.lstrip()[:4096]
    if head.startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except ValueError:
            return "plain"
        if isinstance(doc, dict) and (doc.get("type") in {"bundle", "indicator"}):
            return "stix"
        return "misp"
    first = head.splitlines()[0].lower() if head else ""
    if "ioc_value" in head.lower() or first.replace(" ", "").startswith("input,class"):
        return "threatfox"
    return "plain"


_PARSERS = {
    "threatfox": parse_threatfox,
    "plain": parse_plain,
    "stix": parse_stix,
    "misp": parse_misp,
}


def parse_feed(text: str, fmt: str = "auto", source: str = "feed") -> FeedImport:
    """Parse a feed's text (``fmt``: auto or one of :data:`FEED_FORMATS`); ``source`` names
    it in errors.  Raises :class:`ValueError` for an unknown format or a malformed document."""
    kind = sniff_feed(text) if fmt == "auto" else fmt
    if kind not in _PARSERS:
        raise ValueError(f"unknown feed format {fmt!r}; choose auto or {', '.join(FEED_FORMATS)}")
    try:
        return _PARSERS[kind](text)
    except (json.JSONDecodeError, csv.Error) as exc:
        raise ValueError(f"{source}: not a valid {kind} feed: {exc}") from None


def import_feed(path: str | Path, fmt: str = "auto") -> FeedImport:
    """Read a feed file (``fmt``: auto or one of :data:`FEED_FORMATS`).

    Raises :class:`ValueError` with a clear message for an unreadable, oversized or
    malformed file (the caller reports it); rows inside it that are bad are counted.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: not a regular file")
    if p.stat().st_size > MAX_FEED_BYTES:
        raise ValueError(f"{p}: larger than {MAX_FEED_BYTES // (1024 * 1024)} MiB")
    try:
        text = p.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"{p}: {exc.strerror or exc}") from None
    return parse_feed(text, fmt, str(p))


def fetch_feed(
    url: str,
    fmt: str = "auto",
    timeout: float = 30.0,
    max_bytes: int = MAX_FEED_BYTES,
    allow_http: bool = False,
) -> FeedImport:
    """Download a feed (for ``dnsieve rules refresh``: the one place dnsieve goes online,
    and only when asked) and parse it as :func:`parse_feed` does.

    Only ``https://`` URLs unless ``allow_http`` (a feed read in clear can be altered on
    the way); at most ``max_bytes`` are read, and a larger body is refused rather than
    cut.  Network and HTTP errors become :class:`ValueError` with the reason.
    """
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("https", "http") or (scheme == "http" and not allow_http):
        raise ValueError(f"{url}: only https:// feeds are fetched (http:// with allow_http)")
    req = urllib.request.Request(url, headers={"User-Agent": "dnsieve-feed-refresh"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ValueError(f"{url}: {reason}") from None
    if len(body) > max_bytes:
        raise ValueError(f"{url}: larger than {max_bytes // (1024 * 1024)} MiB")
    return parse_feed(body.decode("utf-8", errors="replace"), fmt, url)


def match_events(
    events: pl.DataFrame | pl.LazyFrame, entries: Iterable[WatchEntry]
) -> pl.DataFrame:
    """The events a watchlist marks, with the matching entry (``watch_kind``, ``watch_value``).

    A domain entry matches the query name exactly, and every name under it when it is the
    name's registered domain (``evil.example`` covers ``a.evil.example``; ``drop.evil.example``
    covers only itself); a suffix entry matches on a label boundary; a client entry by address
    or CIDR.  An event matched by several entries appears once per entry.
    """
    ents = list(entries)
    frame = events.collect() if isinstance(events, pl.LazyFrame) else events
    out_cols = [*frame.columns, "watch_kind", "watch_value", "watch_family"]
    parts: list[pl.DataFrame] = []
    names = [e for e in ents if e.kind in ("domain", "suffix")]
    if names and frame.height:
        table = pl.DataFrame(
            {
                "watch_kind": [e.kind for e in names],
                "watch_value": [e.value for e in names],
                "watch_family": [e.family for e in names],
            },
            schema={"watch_kind": pl.String, "watch_value": pl.String, "watch_family": pl.String},
        )
        has_rd = "registered_domain" in frame.columns
        uniq = (
            frame.select(
                pl.col("qname"),
                (pl.col("registered_domain") if has_rd else pl.lit(None, pl.String)).alias("_rd"),
            )
            .filter(pl.col("qname").is_not_null())
            .unique()
        )
        norm = pl.col("qname").str.to_lowercase().str.strip_chars_end(".")
        expanded = uniq.with_columns(
            norm.map_elements(domain_suffixes, return_dtype=pl.List(pl.String)).alias("watch_value")
        ).explode("watch_value")
        domains = table.filter(pl.col("watch_kind") == "domain")
        hits = (
            pl.concat(
                [
                    uniq.with_columns(norm.alias("watch_value")).join(domains, on="watch_value"),
                    # A watched registered domain covers every name under it (its owner
                    # controls them all); a watched host name matches exactly.
                    uniq.with_columns(pl.col("_rd").str.to_lowercase().alias("watch_value")).join(
                        domains, on="watch_value"
                    ),
                    expanded.join(table.filter(pl.col("watch_kind") == "suffix"), on="watch_value"),
                ]
            )
            .unique(["qname", "watch_kind", "watch_value"])
            .drop("_rd")
        )
        if hits.height:
            parts.append(frame.join(hits, on="qname", how="inner").select(out_cols))
    nets = [e for e in ents if e.kind == "client"]
    if nets and frame.height:
        parsed = [(e, ipaddress.ip_network(e.value, strict=False)) for e in nets]
        clients = frame.select(pl.col("src_ip").drop_nulls().unique())["src_ip"].to_list()
        rows: list[tuple[str, str, str, str | None]] = []
        for c in clients:
            try:
                addr = ipaddress.ip_address(normalize_client(c))
            except (ValueError, AllowListError):
                continue
            for e, net in parsed:
                if addr.version == net.version and addr in net:
                    rows.append((c, e.kind, e.value, e.family))
        if rows:
            table = pl.DataFrame(
                rows,
                schema={
                    "src_ip": pl.String,
                    "watch_kind": pl.String,
                    "watch_value": pl.String,
                    "watch_family": pl.String,
                },
                orient="row",
            )
            parts.append(frame.join(table, on="src_ip", how="inner").select(out_cols))
    if not parts:
        return frame.head(0).with_columns(
            pl.lit(None, pl.String).alias("watch_kind"),
            pl.lit(None, pl.String).alias("watch_value"),
            pl.lit(None, pl.String).alias("watch_family"),
        )
    return pl.concat(parts)
