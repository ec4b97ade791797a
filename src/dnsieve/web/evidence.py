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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from dnsieve.alerts.base import Alert
from dnsieve.alerts.events import AlertEvents, EventsUnavailable, entity_hourly, events_for_alert

__all__ = [
    "CONTEXT_AFTER",
    "CONTEXT_BEFORE",
    "EventsView",
    "alert_events",
    "alert_hourly",
    "evidence_rows",
    "evidence_sentences",
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


def evidence_sentences(detector: str, entity_type: str, ev: Mapping[str, Any]) -> list[str]:
    """Short plain-text sentences describing the evidence (most telling first)."""
    out: list[str] = []
    c, b = ev.get("current"), ev.get("baseline")
    cur: Mapping[str, Any] = c if isinstance(c, Mapping) else {}
    base: Mapping[str, Any] = b if isinstance(b, Mapping) else {}
    q = _num(ev.get("queries")) if _num(ev.get("queries")) is not None else _num(cur.get("queries"))
    hours = _num(cur.get("hours")) or _num(ev.get("hours"))
    clients = _num(ev.get("clients"))
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
    if not out:
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
    """The entity's hourly volume from 3 days before to 1 day after the alert (None: no lake).

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
            alert.window_start - CONTEXT_BEFORE,
            alert.window_end + CONTEXT_AFTER,
        )
    except EventsUnavailable:
        return None
