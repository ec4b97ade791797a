"""Why an alert was raised, in one sentence, and which clients to look at.

Every detector writes two keys into its evidence (the evidence contract of
``docs/detectors.md``): ``reason``, one plain-text sentence with the numbers an
analyst needs ("10.0.3.7 sent 6,028 queries with 41-char random subdomains
under dredror.xyz in 1 h (TXT 92 %)"), and ``clients``, the client addresses to
look at, most involved first (at most five).  :func:`explain` returns them, and
for evidence written before the contract (older stores, third-party anomalies
loaded with ``dnsieve alerts load``) it builds a generic sentence from the
numbers the evidence does carry, so the queue, the alert page, the CLI tables
and the exports always have a reason to show.

The result is plain text: whoever shows it escapes it (the web templates
autoescape, the CLI goes through ``rich.markup.escape``).

:func:`one_in` turns a calibrated tail probability (the alert's ``p_value``:
the chance that a window of this detector's population looks at least this
unusual) into the figure the queue shows, "1 in 4.2 M".

>>> explain("tunnel", "evil.example", {"reason": "10.0.3.7 sent 6,028 queries",
...         "clients": ["10.0.3.7"]})
Explanation(reason='10.0.3.7 sent 6,028 queries', clients=['10.0.3.7'])
>>> explain("beacon", "10.1.1.5|c2.example", {"connections": 48, "period_s": 300.2,
...         "jitter_mad_s": 4.1}).reason
'10.1.1.5 contacted c2.example 48 times, every 5 min (± 4 s)'
>>> one_in(2.4e-7), one_in(0.004), one_in(2.8e-17), one_in(None)
('1 in 4.2 M', '1 in 250', '1 in 4e16', '')
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_CLIENTS", "MAX_REASON", "Explanation", "explain", "fmt_count", "one_in"]

#: Clients named per alert (most involved first).
MAX_CLIENTS = 5
#: A reason longer than this is cut (with "…"): it is one sentence, not a report.
MAX_REASON = 400

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(" {2,}")


@dataclass(frozen=True)
class Explanation:
    """One alert's reason sentence and the clients to look at (plain text, unescaped)."""

    reason: str
    clients: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- number formats


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def fmt_count(v: float) -> str:
    """A count or measure for a sentence: ``6,028``, ``0.947``, ``112.7``.

    >>> fmt_count(6028), fmt_count(112.67), fmt_count(0.9469), fmt_count(3.0)
    ('6,028', '113', '0.947', '3')
    """
    if float(v).is_integer():
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _pct(share: float) -> str:
    return f"{100 * share:.0f}\u00a0%"  # a no-break space: "92 %" never splits


def _duration(seconds: float) -> str:
    """``5 min``, ``1 h``, ``36 h``, ``3.5 d``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.2g} d"


def one_in(p: float | None) -> str:
    """A calibrated tail probability as "1 in N" (N rounded to 2 significant digits).

    ``""`` when there is none; p ≥ 1 is "1 in 1".  Large N get k/M/G suffixes,
    and beyond 10¹² a power of ten ("1 in 4e16").
    """
    if p is None or not math.isfinite(p) or p < 0:
        return ""
    if p <= 0:
        return "1 in > 1e15"
    n = 1.0 / p
    if n < 1:
        n = 1.0
    if n >= 1e12:
        mantissa, exp = f"{n:.0e}".split("e")
        return f"1 in {mantissa}e{int(exp)}"
    for cut, unit, suffix in ((1e9, 1e9, " G"), (1e6, 1e6, " M"), (1e4, 1e3, " k")):
        if n >= cut:
            v = n / unit
            return f"1 in {v:.2g}{suffix}" if v < 10 else f"1 in {v:,.0f}{suffix}"
    return f"1 in {float(f'{n:.2g}'):,.0f}"


# --------------------------------------------------------------------------- clients


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _entity_parts(entity: str, entity_type: str | None) -> tuple[str | None, str | None]:
    """(client, domain) of an entity."""
    if entity_type == "client_domain" or (entity_type is None and "|" in entity):
        client, _, domain = entity.partition("|")
        return client or None, domain or None
    if entity_type == "client" or (entity_type is None and _is_ip(entity)):
        return entity, None
    return None, entity


def _str_list(v: Any) -> list[str]:
    if isinstance(v, list):
        return [_clean(str(x), 80) for x in v if isinstance(x, str | int) and str(x)]
    return []


def _clients(evidence: Mapping[str, Any], client: str | None) -> list[str]:
    out: list[str] = []
    if client:
        out.append(client)
    for key in ("clients", "top_clients", "context_clients", "client_sample"):
        out += _str_list(evidence.get(key))
    return list(dict.fromkeys(out))[:MAX_CLIENTS]


def _clean(text: str, limit: int = MAX_REASON) -> str:
    """One line of plain text: control characters out, whitespace collapsed, capped."""
    t = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip(" ")  # keeps no-break spaces
    return t if len(t) <= limit else t[: limit - 1] + "…"


# --------------------------------------------------------------------------- fallbacks


def _who(client: str | None, n_clients: float | None) -> str:
    if client:
        return client
    if n_clients is not None:
        return f"{fmt_count(n_clients)} client{'s' if n_clients != 1 else ''}"
    return "clients"


def _count_clients(ev: Mapping[str, Any]) -> float | None:
    for key in ("client_count", "distinct_clients", "clients", "clients_of_domain", "visitors"):
        v = _num(ev.get(key))
        if v is not None:
            return v
    return None


def _hours(ev: Mapping[str, Any], window_hours: float | None) -> str:
    cur = ev.get("current")
    h = _num(cur.get("hours")) if isinstance(cur, Mapping) else None
    h = h if h is not None else window_hours
    return f" in {_duration(h * 3600)}" if h else ""


def _tunnel(ev: Mapping[str, Any], client: str | None, domain: str, span: str) -> str | None:
    q, uniq = _num(ev.get("queries")), _num(ev.get("unique_subdomains"))
    if q is None or uniq is None:
        return None
    s = f"{_who(client, _count_clients(ev))} sent {fmt_count(q)} queries with "
    s += f"{fmt_count(uniq)} distinct"
    length = _num(ev.get("mean_subdomain_len"))
    enc = _num(ev.get("mean_encodedness"))
    s += " encoded-looking" if enc is not None and enc >= 0.5 else ""
    s += f" {fmt_count(length)}-char" if length is not None else ""
    s += f" subdomains under {domain}{span}"
    odd = _num(ev.get("txt_null_cname_mx_share"))
    if odd is not None and odd > 0:
        s += f" (TXT/NULL/CNAME/MX {_pct(odd)})"
    return s


def _dga(ev: Mapping[str, Any], client: str | None, domain: str, span: str) -> str | None:
    p = _num(ev.get("dga_probability"))
    if p is None:
        return None
    s = f"{domain} looks machine-generated (DGA probability {p:.2f})"
    nx = _num(ev.get("client_dga_nxdomains"))
    if client and nx:
        s += f"; {client} got {fmt_count(nx)} NXDOMAIN answers for DGA-like names{span}"
    else:
        q = _num(ev.get("queries"))
        if q is not None:
            s += f", queried {fmt_count(q)} time{'s' if q != 1 else ''}{span}"
    return s


def _nxdomain(ev: Mapping[str, Any], client: str | None, span: str) -> str | None:
    nx = _num(ev.get("nxdomain"))
    failed = _num(ev.get("failed_domains"))
    if nx is None:
        return None
    s = f"{client or 'the client'} got {fmt_count(nx)} NXDOMAIN answers"
    if failed is not None:
        s += f" for {fmt_count(failed)} distinct domains"
    s += span
    share = _num(ev.get("nx_share"))
    if share is not None:
        s += f" ({_pct(share)} of its queries)"
    return s


def _beacon(ev: Mapping[str, Any], client: str | None, domain: str) -> str | None:
    n, period = _num(ev.get("connections")), _num(ev.get("period_s"))
    if n is None or period is None:
        return None
    s = f"{client or 'a client'} contacted {domain} {fmt_count(n)} times, every {_duration(period)}"
    jitter = _num(ev.get("jitter_mad_s"))
    if jitter is not None:
        s += f" (± {_duration(jitter)})"
    return s


def _fastflux(ev: Mapping[str, Any], domain: str, span: str) -> str | None:
    ips = _num(ev.get("distinct_ips"))
    if ips is None:
        return None
    s = f"{domain} answered with {fmt_count(ips)} distinct addresses"
    s24, s16 = _num(ev.get("distinct_slash24")), _num(ev.get("distinct_slash16"))
    if s24 is not None and s16 is not None:
        s += f" in {fmt_count(s24)} /24 and {fmt_count(s16)} /16 networks"
    ttl = _num(ev.get("median_ttl"))
    if ttl is not None:
        s += f", median TTL {fmt_count(ttl)} s"
    return s + span


def _volume(ev: Mapping[str, Any], entity: str, client: str | None, span: str) -> str | None:
    cur = ev.get("current")
    cur = cur if isinstance(cur, Mapping) else {}
    q = _num(ev.get("queries"))
    q = q if q is not None else _num(cur.get("queries"))
    if q is None:
        return None
    n_clients = _count_clients(ev)
    s = f"{entity} was queried {fmt_count(q)} time{'s' if q != 1 else ''}{span}"
    if client is None and n_clients is not None:
        s += f" by {fmt_count(n_clients)} client{'s' if n_clients != 1 else ''}"
    base = ev.get("baseline")
    rate = _num(base.get("expected_queries_per_hour")) if isinstance(base, Mapping) else None
    eff = ev.get("effect")
    ratio = _num(eff.get("demand_ratio")) if isinstance(eff, Mapping) else None
    if ratio is not None:
        s += f", {fmt_count(ratio)}× its baseline"
        if rate is not None:
            s += f" of {fmt_count(rate)}/h"
    elif rate is not None:
        s += f" where about {fmt_count(rate)}/h were expected"
    return s


def _visitors(ev: Mapping[str, Any], domain: str, span: str) -> str | None:
    new = _num(ev.get("new_visitors"))
    if new is None:
        return None
    s = f"{fmt_count(new)} client{'s' if new != 1 else ''} never seen on {domain} queried it{span}"
    base = _num(ev.get("baseline_visitors"))
    if base is not None:
        s += f" (usual visitors: {fmt_count(base)})"
    return s


def _profile(ev: Mapping[str, Any], client: str | None, span: str) -> str | None:
    new = _num(ev.get("new_domains"))
    share = _num(ev.get("share_to_new_domains"))
    if new is None:
        return None
    s = f"{client or 'the client'} queried {fmt_count(new)} domains it never queried before{span}"
    if share is not None:
        s += f" ({_pct(share)} of its queries)"
    return s


def _lookalike(ev: Mapping[str, Any], domain: str, span: str) -> str | None:
    brand = ev.get("brand")
    if not isinstance(brand, str) or not brand:
        return None
    method = ev.get("method")
    s = f"{domain} imitates {_clean(brand, 80)}"
    if isinstance(method, str) and method:
        s += f" ({_clean(method, 40)})"
    q = _num(ev.get("queries"))
    if q is not None:
        n = _count_clients(ev)
        s += f"; queried {fmt_count(q)} time{'s' if q != 1 else ''}{span}"
        if n is not None:
            s += f" by {fmt_count(n)} client{'s' if n != 1 else ''}"
    return s


_LABELS: tuple[tuple[str, str], ...] = (
    ("queries", "queries"),
    ("connections", "connections"),
    ("nxdomain", "NXDOMAIN answers"),
    ("unique_subdomains", "distinct subdomains"),
    ("failed_domains", "failed domains"),
    ("new_visitors", "new visitors"),
    ("distinct_ips", "distinct addresses"),
)


def _generic(detector: str, entity: str, ev: Mapping[str, Any], span: str) -> str:
    parts = []
    for key, label in _LABELS:
        v = _num(ev.get(key))
        if v is not None:
            parts.append(f"{fmt_count(v)} {label}")
    n = _count_clients(ev)
    if n is not None:
        parts.append(f"{fmt_count(n)} client{'s' if n != 1 else ''}")
    if not parts:  # any numbers it has, by their own names
        for k, v in ev.items():
            x = _num(v)
            if x is not None and k not in ("score", "reason"):
                parts.append(f"{str(k).replace('_', ' ')} {fmt_count(x)}")
            if len(parts) == 3:
                break
    head = f"{detector} flagged {entity}{span}"
    return head + (": " + ", ".join(parts) if parts else "")


# --------------------------------------------------------------------------- the entry point


def explain(
    detector: str,
    entity: str,
    evidence: Mapping[str, Any] | None,
    entity_type: str | None = None,
    window_hours: float | None = None,
) -> Explanation:
    """The reason sentence and the clients of one alert.

    The detector's own ``reason``/``clients`` when its evidence has them, else a
    sentence built from the numbers the evidence carries (per detector family,
    then generic).  ``entity_type`` (domain, client, client_domain) is guessed
    from the entity when not given; ``window_hours`` is the alert window's
    length, said in the sentence when the evidence does not carry its own.
    A client × domain or client entity always names its client first.
    """
    ev: Mapping[str, Any] = evidence if isinstance(evidence, Mapping) else {}
    entity = _clean(str(entity), 300)
    client, domain = _entity_parts(entity, entity_type)
    clients = _clients(ev, client)
    own = ev.get("reason")
    if isinstance(own, str) and own.strip():
        return Explanation(_clean(own), clients)
    span = _hours(ev, window_hours)
    dom = domain or entity
    family = detector.split(":", 1)[0]
    reason: str | None = None
    if family in ("tunnel", "exfil"):
        reason = _tunnel(ev, clients[0] if len(clients) == 1 else None, dom, span)
    elif family in ("dga", "dga_host"):
        reason = _dga(ev, clients[0] if clients else None, dom, span)
        if reason is None:
            reason = _nxdomain(ev, client or (clients[0] if clients else None), span)
    elif family == "nxdomain":
        reason = _nxdomain(ev, client, span)
    elif family == "beacon":
        reason = _beacon(ev, client, dom)
    elif family == "fastflux":
        reason = _fastflux(ev, dom, span)
    elif family in ("volume", "client_volume", "croston"):
        reason = _volume(ev, entity if client is None else client, client, span)
    elif family in ("visitors", "newdomain"):
        reason = _visitors(ev, dom, span)
    elif family == "profile":
        reason = _profile(ev, client, span)
    elif family == "lookalike":
        reason = _lookalike(ev, dom, span)
    if reason is None:
        reason = _generic(detector, entity, ev, span)
    return Explanation(_clean(reason), clients)
