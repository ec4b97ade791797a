"""An alert's evidence in plain words, for the detail page's evidence card.

Detectors write evidence as JSON (see ``docs/detectors.md``); this turns the
common keys into short sentences an analyst can read at a glance, e.g.
"queried 412 times in 3 h by 37 clients; baseline ≈ 0.2/h".  Every value is
returned as plain text: the templates escape it.

>>> from datetime import datetime, UTC
>>> ev = {"queries": 412, "clients": 37, "current": {"hours": 3, "queries": 412},
...       "baseline": {"expected_queries_per_hour": 0.2}}
>>> evidence_sentences("volume", "domain", ev)[0]
'queried 412 times in 3 h by 37 clients; baseline ≈ 0.2/h'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from dnsieve.alerts.base import Alert, AlertSummary
from dnsieve.alerts.events import AlertEvents, EventsUnavailable, entity_hourly, events_for_alert
from dnsieve.explain import Explanation, explain, fmt_count, one_in

__all__ = [
    "CONTEXT_AFTER",
    "CONTEXT_BEFORE",
    "EVIDENCE_LABELS",
    "EventsView",
    "WindowRow",
    "alert_events",
    "alert_explanation",
    "alert_hourly",
    "alert_windows",
    "evidence_json",
    "evidence_rows",
    "evidence_sentences",
    "feature_rows",
    "labelled_evidence",
]

NO_LAKE = (
    "No lake is configured for this Alert Manager, so the raw events cannot be shown "
    "(start it with 'dnsieve serve --lake PATH', or set [lake] path)."
)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:.3g}"


def _sample(v: Any, n: int = 3) -> str | None:
    if isinstance(v, list) and v:
        names = [str(x) for x in v[:n]]
        more = f" and {len(v) - n} more" if len(v) > n else ""
        return ", ".join(names) + more
    return None


def _client_count(ev: Mapping[str, Any]) -> float | None:
    """The number of clients: ``distinct_clients`` (the evidence contract), else a numeric
    ``clients`` (evidence written before the contract made ``clients`` the list of addresses)."""
    for key in ("distinct_clients", "client_count", "clients"):
        v = _num(ev.get(key))
        if v is not None:
            return v
    return None


def evidence_sentences(
    detector: str, entity_type: str, ev: Mapping[str, Any], fallback: bool = True
) -> list[str]:
    """Short plain-text sentences describing the evidence (most telling first).

    With nothing to say, "<detector> flagged this <entity type>" unless ``fallback``
    is false (the alert page, which leads with the reason sentence, then shows none).
    """
    out: list[str] = []
    c, b = ev.get("current"), ev.get("baseline")
    cur: Mapping[str, Any] = c if isinstance(c, Mapping) else {}
    base: Mapping[str, Any] = b if isinstance(b, Mapping) else {}
    q = _num(ev.get("queries")) if _num(ev.get("queries")) is not None else _num(cur.get("queries"))
    hours = _num(cur.get("hours")) or _num(ev.get("hours"))
    clients = _client_count(ev)
    if q is not None:
        s = f"queried {_fmt(q)} time{'s' if q != 1 else ''}"
        if hours:
            s += f" in {_fmt(hours)} h"
        if clients is not None:
            s += f" by {_fmt(clients)} client{'s' if clients != 1 else ''}"
        new_vis = _num(ev.get("new_visitors"))
        if new_vis is not None:
            s += f", {_fmt(new_vis)} of them never seen before"
        rate = _num(base.get("expected_queries_per_hour"))
        if rate is not None:
            s += f"; baseline ≈ {_fmt(rate)}/h"
        out.append(s)
    eff = ev.get("effect")
    if isinstance(eff, Mapping) and _num(eff.get("demand_ratio")) is not None:
        ci = eff.get("ci90")
        s = f"demand {_fmt(_num(eff['demand_ratio']) or 0)}× its baseline"
        if isinstance(ci, list) and len(ci) == 2 and all(_num(x) is not None for x in ci):
            s += f" (90 % interval {_fmt(ci[0])}–{_fmt(ci[1])})"
        out.append(s)
    ips = _num(ev.get("distinct_ips"))
    if ips is not None:
        s = f"answered with {_fmt(ips)} distinct address{'es' if ips != 1 else ''}"
        s16, s24 = _num(ev.get("distinct_slash16")), _num(ev.get("distinct_slash24"))
        if s16 is not None and s24 is not None:
            s += f" in {_fmt(s24)} /24 and {_fmt(s16)} /16 networks"
        ttl = _num(ev.get("median_ttl"))
        if ttl is not None:
            s += f", median TTL {_fmt(ttl)} s"
            low = _num(ev.get("min_ttl"))
            if low is not None and low != ttl:
                s += f" (lowest {_fmt(low)} s)"
        if clients is not None and q is None:
            s += f"; asked by {_fmt(clients)} client{'s' if clients != 1 else ''}"
        out.append(s)
    for key, what in (
        ("nxdomain", "failed lookups (NXDOMAIN)"),
        ("unique_subdomains", "distinct subdomains"),
        ("answers", "distinct answers"),
    ):
        v = _num(ev.get(key))
        if v is not None:
            out.append(f"{_fmt(v)} {what}")
    for key, what in (
        ("sample_names", "sample names"),
        ("names", "names"),
        ("failed_names_sample", "failed names"),
        ("answer_sample", "answers"),
        ("new_visitor_sample", "new visitors"),
    ):
        sample = _sample(ev.get(key))
        if sample:
            out.append(f"{what}: {sample}")
    top = ev.get("top_hours")
    if isinstance(top, list) and top and isinstance(top[0], Mapping):
        h = top[0]
        if _num(h.get("observed")) is not None and _num(h.get("expected")) is not None:
            out.append(
                f"busiest unusual hour {h.get('hour', '?')}: {_fmt(h['observed'])} queries "
                f"where ≈ {_fmt(h['expected'])} were expected"
            )
    if not out and fallback:
        out.append(f"{detector} flagged this {entity_type.replace('_', ' × ')}")
    return out


def evidence_rows(ev: Mapping[str, Any], max_len: int = 400) -> list[tuple[str, str]]:
    """Flat ``(key, value)`` rows of the evidence for a table (values as compact JSON text)."""
    rows: list[tuple[str, str]] = []
    for k in sorted(ev, key=str):
        v = ev[k]
        text: str = v if isinstance(v, str) else json.dumps(v, sort_keys=True, ensure_ascii=False)
        if len(text) > max_len:
            text = text[: max_len - 1] + "…"
        rows.append((str(k), text))
    return rows


def evidence_json(ev: Mapping[str, Any]) -> str:
    """The whole evidence as indented JSON text (the page's "raw evidence" toggle)."""
    return json.dumps(ev, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def alert_explanation(
    alert: Alert | AlertSummary, evidence: Mapping[str, Any] | None
) -> Explanation:
    """:func:`dnsieve.explain.explain` for a stored alert (its window length included)."""
    hours = (alert.window_end - alert.window_start).total_seconds() / 3600.0
    return explain(alert.detector, alert.entity, evidence, alert.entity_type, hours or None)


#: Evidence keys (dotted paths into nested objects) → (label, format), in display order.
#: Formats: count, num, share (0-1 → %), seconds, bytes, prob, pvalue, bool, time, text, names
#: (a list of names), qtypes (the tunnel's ``top_qtypes``), range (a two-number list).
EVIDENCE_LABELS: dict[str, tuple[str, str]] = {
    "queries": ("queries", "count"),
    "techniques": ("MITRE ATT&CK techniques", "names"),
    "definition": ("threat definition", "text"),
    "definition_version": ("definition version", "count"),
    "matched": ("watchlist entries matched", "names"),
    "families": ("families named by the feed", "names"),
    "distinct_names": ("distinct names", "count"),
    "current.queries": ("queries in the alert window", "count"),
    "current.hours": ("hours in the alert window", "count"),
    "baseline.expected_queries_per_hour": ("expected queries per hour (baseline)", "num"),
    "effect.demand_ratio": ("demand against its baseline", "ratio"),
    "effect.ci90": ("demand ratio, 90 % interval", "range"),
    "prob_increase.demand": ("probability that demand rose", "prob"),
    "baseline_mode": ("baseline compared with", "text"),
    "connections": ("connections", "count"),
    "period_s": ("interval between connections", "seconds"),
    "jitter_mad_s": ("jitter (median absolute deviation)", "seconds"),
    "coverage": ("share of the window with connections", "share"),
    "median_ttl_s": ("median answer TTL", "seconds"),
    "period_matches_ttl": ("interval matches the TTL", "bool"),
    "clients_of_domain": ("clients of the domain", "count"),
    "first": ("first connection", "time"),
    "last": ("last connection", "time"),
    "nxdomain": ("NXDOMAIN answers", "count"),
    "client_dga_nxdomains": ("NXDOMAIN answers for DGA-like names (client)", "count"),
    "nx_share": ("NXDOMAIN share of queries", "share"),
    "failed_domains": ("distinct domains that failed", "count"),
    "failed_names": ("distinct names that failed", "count"),
    "first_failure": ("first failure", "time"),
    "last_failure": ("last failure", "time"),
    "dga_probability": ("DGA probability of the name", "prob"),
    "scored_label": ("label scored", "text"),
    "distinct_clients": ("clients", "count"),
    "client_count": ("clients", "count"),
    "queries_per_client": ("queries per client", "num"),
    "unique_subdomains": ("distinct subdomains", "count"),
    "mean_subdomain_len": ("mean subdomain length (characters)", "num"),
    "p90_subdomain_len": ("90th percentile subdomain length", "count"),
    "max_label_len": ("longest label (characters)", "count"),
    "mean_entropy": ("mean entropy (bits per character)", "num"),
    "mean_encodedness": ("encoded-looking (0 = words, 1 = random)", "num"),
    "encoded_bits": ("information in the names (bits)", "count"),
    "top_client_bits": ("information sent by the busiest client (bits)", "count"),
    "hex_share": ("hex-encoded names", "share"),
    "b32_share": ("base32-encoded names", "share"),
    "b64_share": ("base64-like names", "share"),
    "txt_null_cname_mx_share": ("TXT/NULL/CNAME/MX queries", "share"),
    "distinct_odd_qtypes": ("distinct unusual query types", "count"),
    "top_qtypes": ("query types", "qtypes"),
    "query_bytes_per_query": ("bytes per query", "bytes"),
    "response_bytes_per_query": ("bytes per response", "bytes"),
    "bytes_measured": ("byte counts measured (not estimated)", "bool"),
    "distinct_ips": ("distinct answer addresses", "count"),
    "distinct_slash24": ("distinct /24 networks", "count"),
    "distinct_slash16": ("distinct /16 networks", "count"),
    "spread": ("address spread", "num"),
    "median_ttl": ("median answer TTL", "seconds"),
    "min_ttl": ("lowest answer TTL", "seconds"),
    "visitors": ("clients", "count"),
    "new_visitors": ("clients never seen on it before", "count"),
    "new_share": ("share of new clients", "share"),
    "baseline_visitors": ("usual clients (baseline)", "count"),
    "baseline_clients": ("clients active in the baseline", "count"),
    "new_domain": ("never seen before", "bool"),
    "baseline_queries": ("queries in the baseline", "count"),
    "new_domains": ("domains never queried before", "count"),
    "share_to_new_domains": ("share of queries to new domains", "share"),
    "jsd_domains": ("change in the domains it queries (JS divergence)", "num"),
    "jsd_qtypes": ("change in its query types (JS divergence)", "num"),
    "brand": ("imitated brand", "text"),
    "method": ("how it imitates", "text"),
    "distance": ("edit distance", "count"),
    "hosts": ("hosts", "count"),
    # host-level DGA (dga_host)
    "nxdomain_answers": ("NXDOMAIN answers", "count"),
    "failed_queries": ("failed queries (NXDOMAIN, SERVFAIL or no answer)", "count"),
    "servfail_answers": ("SERVFAIL answers", "count"),
    "unanswered_queries": ("queries without an answer", "count"),
    "rare_failed_domains": ("failed domains no other host asked for", "count"),
    "dga_like_domains": ("of them DGA-like", "count"),
    "mean_dga_probability": ("mean DGA probability of the names", "prob"),
    "expected_rare_failures": ("such failures expected per host and hour", "num"),
    "max_failed_domains_per_minute": ("most failed domains in one minute", "count"),
    "max_other_hosts": ("most other hosts asking for one of them", "count"),
    "p_count": ("p-value of the count", "pvalue"),
    "p_lexical": ("p-value of the names' DGA-likeness", "pvalue"),
    # new domains (newdomain)
    "clients_first_hours": ("hosts in its first hours", "count"),
    "hours_to_last_new_client": ("hours until the last new host", "num"),
    "return_hours": ("later hours with return visits", "count"),
    "follow_hours": ("hours followed", "num"),
    "queries_in_window": ("queries in the window", "count"),
    "new_domains_per_day": ("new domains seen here a day", "num"),
    "popularity_rank": ("popularity rank", "count"),
    "p_hosts": ("p-value of the host count", "pvalue"),
    "p_return": ("p-value of the return visits", "pvalue"),
    # beacons: the regularity behind the reason
    "gaps": ("intervals between lookups", "count"),
    "on_beat_gaps": ("intervals on the beat", "count"),
    "lookback_gaps": ("intervals over the last 24 h", "count"),
    "lookback_on_beat_gaps": ("intervals on the beat over the last 24 h", "count"),
    "null_on_beat_share": ("share on the beat by chance", "share"),
    "periodic_clients_of_domain": ("clients of the domain on a beat", "count"),
    "regularity_log10p": ("regularity (−log10 p under irregular timing)", "num"),
    "first_seen": ("first seen", "time"),
    "sample_names": ("sample names", "names"),
    "query_names": ("names queried", "names"),
    "names": ("names", "names"),
    "failed_names_sample": ("failed names", "names"),
    "answer_sample": ("sample answers", "names"),
    "new_visitor_sample": ("new clients", "names"),
    "new_domain_sample": ("new domains", "names"),
}

#: Keys never shown in the labelled table (only in the raw JSON): the reason and clients
#: are shown on their own, the rest are model internals.
_HIDDEN = frozenset(
    {
        "reason",
        "clients",
        "context_clients",
        "features",
        "priors",
        "model",
        "windows",
        "entity_type",
    }
)

#: ... and key families that describe the population model, not this alert
_HIDDEN_PREFIXES = ("population_", "prior")


def _get(ev: Mapping[str, Any], path: str) -> Any:
    cur: Any = ev
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _when(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(v: Any, how: str) -> str | None:
    """One evidence value as text for the table (None: nothing sensible to show)."""
    x = _num(v)
    if how in ("count", "num", "bytes") and x is not None:
        return fmt_count(x) + (" B" if how == "bytes" else "")
    if how == "ratio" and x is not None:
        return f"{fmt_count(x)}×"
    if how == "share" and x is not None:
        return f"{100 * x:.0f} %" if x >= 0.01 or x == 0 else f"{100 * x:.2g} %"
    if how == "prob" and x is not None:
        return f"{x:.2f}"
    if how == "pvalue" and x is not None:
        return f"{x:.2g}" if x > 0 else "< 1e-300"
    if how == "seconds" and x is not None:
        return _duration_text(x)
    if how == "bool" and isinstance(v, bool):
        return "yes" if v else "no"
    if how == "time":
        return _when(v) or (str(v) if isinstance(v, str) else None)
    if how == "range" and isinstance(v, list) and len(v) == 2:
        lo, hi = _num(v[0]), _num(v[1])
        if lo is not None and hi is not None:
            return f"{fmt_count(lo)} – {fmt_count(hi)}"
    if how == "names" and isinstance(v, list):
        return _sample(v, 5)
    if how == "qtypes" and isinstance(v, list):
        parts = [
            f"{q.get('qtype')} {fmt_count(n)}"
            for q in v
            if isinstance(q, Mapping) and (n := _num(q.get("n"))) is not None
        ]
        return " · ".join(parts) or None
    if how == "text" and isinstance(v, str | int | float) and not isinstance(v, bool):
        return str(v)
    if x is not None:  # a labelled key with an unexpected number
        return fmt_count(x)
    return None


def _duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min ({seconds:,.0f} s)"
    return f"{seconds / 3600:.3g} h"


def labelled_evidence(ev: Mapping[str, Any], max_len: int = 300) -> list[tuple[str, str]]:
    """``(label, value)`` rows of the evidence in plain words, for the alert page.

    Known keys (:data:`EVIDENCE_LABELS`) come first, in that order, with their
    units; other top-level numbers, flags and short texts follow under their key
    with ``_`` read as spaces.  Nested model internals (priors, posteriors, ML
    features) are left to the raw JSON.  Values are plain text (the page escapes them).

    >>> labelled_evidence({"nxdomain": 198, "nx_share": 0.83, "first_failure": "2024-03-05T10:00:00Z",
    ...                    "reason": "x", "odd_thing": 2.5})
    [('NXDOMAIN answers', '198'), ('NXDOMAIN share of queries', '83 %'), ('first failure', '2024-03-05 10:00:00 UTC'), ('odd thing', '2.5')]
    """
    rows: list[tuple[str, str]] = []
    seen_labels: set[str] = set()
    for path, (label, how) in EVIDENCE_LABELS.items():
        v = _get(ev, path)
        if v is None or label in seen_labels:
            continue
        text = _value(v, how)
        if text is None:
            continue
        seen_labels.add(label)
        rows.append((label, text if len(text) <= max_len else text[: max_len - 1] + "…"))
    known_top = {p.split(".", 1)[0] for p in EVIDENCE_LABELS}
    for k in sorted(ev, key=str):
        if k in _HIDDEN or k in known_top or str(k).startswith(_HIDDEN_PREFIXES):
            continue
        v = ev[k]
        if isinstance(v, bool):
            text = "yes" if v else "no"
        elif _num(v) is not None:
            text = fmt_count(_num(v) or 0.0)
        elif isinstance(v, str) and v:
            text = _when(v) or v
        elif isinstance(v, list) and v and all(isinstance(x, str | int | float) for x in v):
            text = _sample(v, 5) or ""
        else:
            continue
        label = str(k).replace("_", " ")
        rows.append((label, text if len(text) <= max_len else text[: max_len - 1] + "…"))
    return rows


#: The threat model's feature groups in words (see dnsieve.threat.features).
_FEATURES: dict[str, tuple[str, str]] = {
    "neg_log_p": ("rarity in the population", "neglog10"),
    "ev_clients": ("clients", "expm1"),
    "ev_queries": ("queries", "expm1"),
    "ev_nx_share": ("NXDOMAIN share", "share"),
    "ev_odd_qtype_share": ("TXT/NULL/CNAME/MX share", "share"),
    "ev_subdomains": ("distinct subdomains or failed names", "expm1"),
    "ev_entropy": ("name entropy (bits per character)", "num"),
    "ev_encodedness": ("encoded-looking names (0-1)", "num"),
    "ev_new_visitors": ("new clients", "expm1"),
    "ev_dga_probability": ("DGA probability (detector)", "num"),
    "ev_subdomain_len": ("mean subdomain length", "expm1"),
    "ev_label_len": ("longest label", "expm1"),
    "ev_bytes_per_query": ("bytes per query", "expm1"),
    "ev_encoded_bits": ("information sent (bits)", "expm1"),
    "ev_queries_per_client": ("queries per client", "expm1"),
    "ctx_age_log_h": ("hours since the domain was first seen", "expm1"),
    "ctx_new_domain": ("domain new in the last day", "bool"),
    "ctx_dom_clients": ("clients of the domain", "expm1"),
    "ctx_dom_nx_share": ("NXDOMAIN share of the domain", "share"),
    "ctx_dom_odd_qtype": ("TXT/NULL/CNAME/MX share of the domain", "share"),
    "ctx_dom_subdomains": ("distinct subdomains of the domain", "expm1"),
    "ctx_dom_sub_len": ("mean subdomain length of the domain", "expm1"),
    "ctx_client_domains": ("distinct domains the client queried", "expm1"),
    "ctx_client_nx_share": ("NXDOMAIN share of the client", "share"),
    "lex_dga": ("the name looks machine-generated (0-1)", "num"),
    "lex_entropy": ("name entropy (bits per character)", "num"),
    "pop_listed": ("on a popular-domain list", "bool"),
    "pop_score": ("popularity rank", "rank"),
}


def feature_rows(
    features: Sequence[tuple[str, float, float | None]],
) -> list[tuple[str, str, float | None]]:
    """The threat model's inputs in words: ``(label, value, percentile)`` rows.

    ``features`` are :func:`dnsieve.web.queue.feature_percentiles` rows.  Log-scaled
    inputs are shown back on their own scale (counts, hours), shares as percentages,
    the calibrated p-value as "1 in N"; the detector's one-hot columns and zero
    values are left out (the detector is named on the page already).

    >>> feature_rows([("det_tunnel", 1.0, 50.0), ("ev_queries", 6.0, 90.0),
    ...               ("lscore_tunnel", 3.0, 70.0), ("neg_log_p", 7.0, None)])
    [('queries', '402', 90.0), ('detector score', '19.1', 70.0), ('rarity in the population', '1 in 10 M', None)]
    """
    out: list[tuple[str, str, float | None]] = []
    for name, value, pct in features:
        if value == 0 or name.startswith("det_") or name == "has_p":
            continue
        if name.startswith("lscore_"):
            raw = math.copysign(math.expm1(abs(value)), value)
            out.append(("detector score", fmt_count(round(raw, 3)), pct))
            continue
        label, how = _FEATURES.get(name, (name.replace("_", " "), "num"))
        if how == "expm1":
            text = fmt_count(round(math.expm1(value), 3))
        elif how == "share":
            text = f"{100 * value:.0f} %"
        elif how == "bool":
            text = "yes" if value >= 0.5 else "no"
        elif how == "neglog10":
            text = one_in(10.0 ** (-value))
        elif how == "rank":
            text = f"≈ {fmt_count(float(f'{10 ** (6 * (1 - value)):.2g}'))}"
        else:
            text = fmt_count(round(value, 3))
        out.append((label, text, pct))
    return out


@dataclass(frozen=True)
class WindowRow:
    """One window of an alert's episode, as the page's windows table shows it."""

    start: datetime
    end: datetime
    score: float | None
    rarity: str


def alert_windows(alert: Alert) -> list[WindowRow]:
    """The windows of the alert's episode (oldest first), from its ``windows`` evidence.

    An alert stored before episodes (or from a store that keeps none) is its one window.
    """
    raw = getattr(alert, "windows", None)
    rows: list[WindowRow] = []
    for w in raw if isinstance(raw, list) else []:
        if not isinstance(w, Mapping):
            continue
        a, b = _parse(w.get("start")), _parse(w.get("end"))
        if a is None or b is None:
            continue
        p = _num(w.get("p_value"))
        rows.append(WindowRow(a, b, _num(w.get("score")), one_in(p)))
    if not rows:
        rows.append(
            WindowRow(alert.window_start, alert.window_end, alert.score, one_in(alert.p_value))
        )
    return sorted(rows, key=lambda r: (r.start, r.end))


def _parse(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v.astimezone(UTC)
    if not isinstance(v, str):
        return None
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class EventsView:
    """The raw events of an alert as the page and the API show them.

    ``result`` is None when the lake is not configured or cannot be read;
    ``message`` then says why (and also when the window holds no events).
    """

    configured: bool
    result: AlertEvents | None
    message: str | None

    @property
    def available(self) -> bool:
        """The lake was read (even if it had nothing for this window)."""
        return self.result is not None

    def rows(self, max_answers: int = 6) -> list[dict[str, str]]:
        """Display rows: time with milliseconds (UTC), client, qname, qtype, rcode, answers."""
        if self.result is None:
            return []
        out = []
        for r in self.result.events.iter_rows(named=True):
            ans = [str(a) for a in (r["answers"] or [])]
            more = f" (+{len(ans) - max_answers})" if len(ans) > max_answers else ""
            out.append(
                {
                    "time": r["ts"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                    "client": r["src_ip"] or "",
                    "qname": r["qname"] or "",
                    "qtype": r["qtype"] or "",
                    "rcode": r["rcode"] or "",
                    "answers": ", ".join(ans[:max_answers]) + more,
                }
            )
        return out


def alert_events(lake_path: Path | None, alert: Alert, limit: int = 200) -> EventsView:
    """Read the events behind ``alert`` from the lake at ``lake_path`` (None: no lake)."""
    if lake_path is None:
        return EventsView(False, None, NO_LAKE)
    try:
        res = events_for_alert(lake_path, alert, limit)
    except EventsUnavailable as exc:
        return EventsView(True, None, f"The lake is not reachable: {exc}.")
    if res.total == 0:
        subject = {"domain": "domain", "client": "client"}.get(alert.entity_type, "pair")
        msg = (
            f"The lake has no events of this {subject} between "
            f"{res.since:%Y-%m-%d %H:%M} and {res.until:%Y-%m-%d %H:%M} UTC: they may have "
            "been pruned, or the alert came from data ingested into another lake."
        )
        return EventsView(True, res, msg)
    return EventsView(True, res, None)


#: how much of the entity's history the volume plot shows around the alert window
CONTEXT_BEFORE = timedelta(days=3)
CONTEXT_AFTER = timedelta(days=1)


def alert_hourly(lake_path: Path | None, alert: Alert) -> pl.DataFrame | None:
    """The entity's hourly volume from 3 days before to 1 day after the alert's episode
    (None: no lake).

    An unreadable lake gives None too: the plot then falls back to the alerts'
    own figures, and the raw-events card says why the lake could not be read.
    """
    if lake_path is None:
        return None
    try:
        return entity_hourly(
            lake_path,
            alert.entity_type,
            alert.entity,
            (alert.episode_start or alert.window_start) - CONTEXT_BEFORE,
            (alert.episode_end or alert.window_end) + CONTEXT_AFTER,
        )
    except EventsUnavailable:
        return None


@dataclass(frozen=True)
class FlowsView:
    """The flows of an alert (docs/flows.md): for a flow alert the flows behind it, for a DNS
    alert the client's flows to the addresses the domain resolved to.  Plain text: the
    template escapes every value."""

    flows: pl.DataFrame | None
    total: int
    addresses: list[str]
    message: str | None

    def rows(self) -> list[dict[str, str]]:
        """Display rows: time, client, destination, protocol, application, server name, bytes."""
        if self.flows is None:
            return []
        out = []
        for r in self.flows.iter_rows(named=True):
            out.append(
                {
                    "time": r["ts"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                    "client": f"{r['src_ip']}:{r['src_port'] if r['src_port'] is not None else ''}",
                    "dest": f"{r['dst_ip']}:{r['dst_port'] if r['dst_port'] is not None else ''}",
                    "proto": r["proto"] or "",
                    "app": " / ".join(x for x in (r["application"], r["category"]) if x),
                    "server": r["server_name"] or "",
                    "bytes": f"{r['src2dst_bytes'] or 0:,} / {r['dst2src_bytes'] or 0:,}",
                    "duration": f"{r['duration']:.1f} s" if r["duration"] is not None else "",
                    "state": r["conn_state"] or r["end_reason"] or "",
                }
            )
        return out


def alert_flows(lake_path: Path | None, alert: Alert, limit: int = 200) -> FlowsView:
    """The flows to show on ``alert``'s page (None when the lake has no flows at all)."""
    if lake_path is None:
        return FlowsView(None, 0, [], None)
    from dnsieve.ingest.flows_lake import flow_rows, flows_for_alert
    from dnsieve.lake import Lake

    lake = Lake(lake_path)
    try:
        if flow_rows(lake) == 0:
            return FlowsView(None, 0, [], None)
        start = alert.episode_start or alert.window_start
        end = alert.episode_end or alert.window_end
        flows, total, addresses = flows_for_alert(
            lake, alert.entity_type, alert.entity, start, end, limit
        )
    except Exception as exc:  # a damaged lake must not break the page
        return FlowsView(None, 0, [], f"The flows are not readable: {type(exc).__name__}.")
    msg = (
        None
        if total
        else "The lake has no flows of this alert's hosts and addresses in its window."
    )
    return FlowsView(flows, total, addresses, msg)
