"""Bokeh plots of the alert detail page, served with BokehJS from the package.

* :func:`volume_plot`: the entity's volume per hour over its alert windows
  (from its own and related alerts' evidence), the detector's baseline
  expectation with its 90 % posterior band, the unusual hours the detector
  reported (``top_hours``) and the alert window shaded as the outlier window;
* :func:`who_plot`: who queried the domain (client × domain alerts on it), or
  for a client alert, which domains it queried.

Plots are returned as :func:`bokeh.embed.json_item` documents.  The page puts
the JSON in a non-executed ``<script type="application/json">`` block (Jinja's
``tojson`` escapes ``<``, ``>`` and ``&``) and ``static/app.js`` calls
``Bokeh.embed.embed_item`` on it, so no inline script is needed and the CSP
keeps ``script-src 'self'``.  Names are drawn on a canvas by BokehJS, never
parsed as HTML, and no CustomJS is used (it would need ``unsafe-eval``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from dnsieve.alerts.base import Alert

__all__ = ["bokeh_script_urls", "volume_plot", "who_plot"]

BOKEH_ROOT = "/bokeh/"


def bokeh_script_urls() -> list[str]:
    """URLs of the BokehJS files, served locally under ``/bokeh/static``."""
    from bokeh.resources import Resources

    res = Resources(mode="server", root_url=BOKEH_ROOT)
    return [u for u in res.js_files if u.endswith("/bokeh.min.js")]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _per_hour(a: Alert) -> float | None:
    ev = a.evidence
    c = ev.get("current")
    cur: Mapping[str, Any] = c if isinstance(c, Mapping) else {}
    q = _num(ev.get("queries"))
    q = q if q is not None else _num(cur.get("queries"))
    if q is None:
        return None
    hours = (a.window_end - a.window_start).total_seconds() / 3600.0
    return q / hours if hours > 0 else q


def _parse_hour(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _band(ev: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """(low, mean, high) of the baseline expected queries per hour, from the posteriors."""
    base = ev.get("baseline")
    if not isinstance(base, Mapping):
        return None
    mean = _num(base.get("expected_queries_per_hour"))
    occ, lam = base.get("p_occurrence"), base.get("lambda_extra_per_active_hour")
    if mean is None or not isinstance(occ, Mapping) or not isinstance(lam, Mapping):
        return None
    oc, lc = occ.get("ci90"), lam.get("ci90")
    if not (isinstance(oc, list) and isinstance(lc, list) and len(oc) == 2 and len(lc) == 2):
        return None
    vals = [_num(x) for x in (*oc, *lc)]
    if any(v is None for v in vals):
        return None
    o_lo, o_hi, l_lo, l_hi = (float(v) for v in vals)  # type: ignore[arg-type]
    return o_lo * (1 + l_lo), mean, o_hi * (1 + l_hi)


def volume_plot(alert: Alert, related: Sequence[Alert]) -> dict[str, Any] | None:
    """The entity's hourly volume with baseline band and outlier windows (None: no data)."""
    from bokeh.embed import json_item
    from bokeh.models import BoxAnnotation, ColumnDataSource, Span  # type: ignore[attr-defined]
    from bokeh.plotting import figure

    same = [a for a in (alert, *related) if a.entity == alert.entity]
    pts = sorted(
        ((a.window_start, v) for a in same if (v := _per_hour(a)) is not None),
        key=lambda t: t[0],
    )
    top = alert.evidence.get("top_hours")
    hours = []
    if isinstance(top, list):
        for h in top:
            if isinstance(h, Mapping):
                t, obs = _parse_hour(h.get("hour")), _num(h.get("observed"))
                if t is not None and obs is not None:
                    hours.append((t, obs, _num(h.get("expected"))))
    band = _band(alert.evidence)
    if not pts and not hours:
        return None
    p = figure(
        height=260,
        sizing_mode="stretch_width",
        x_axis_type="datetime",
        tools="pan,box_zoom,wheel_zoom,reset,save",
        toolbar_location="above",
        y_axis_label="queries per hour",
    )
    p.add_layout(
        BoxAnnotation(
            left=alert.window_start,
            right=alert.window_end,
            fill_alpha=0.18,
            fill_color="#d62728",
            line_alpha=0,
        )
    )
    if band is not None:
        lo, mean, hi = band
        p.add_layout(BoxAnnotation(bottom=lo, top=hi, fill_alpha=0.15, fill_color="#1f77b4"))
        p.add_layout(
            Span(location=mean, dimension="width", line_color="#1f77b4", line_dash="dashed")
        )
    if pts:
        src = ColumnDataSource({"t": [t for t, _ in pts], "v": [v for _, v in pts]})
        p.line("t", "v", source=src, line_color="#444444", legend_label="alert windows")
        p.scatter("t", "v", source=src, size=6, color="#444444")
    if hours:
        width = timedelta(minutes=50)
        hs = ColumnDataSource({"t": [t for t, _, _ in hours], "obs": [o for _, o, _ in hours]})
        p.vbar(
            x="t",
            top="obs",
            width=width,
            source=hs,
            color="#d62728",
            alpha=0.7,
            legend_label="unusual hours",
        )
    p.legend.location = "top_left"
    p.legend.background_fill_alpha = 0.6
    return dict(json_item(p))


def who_plot(alert: Alert, related: Sequence[Alert], top: int = 15) -> dict[str, Any] | None:
    """Who queried the domain (or what the client queried), from client × domain alerts."""
    from bokeh.embed import json_item
    from bokeh.models import ColumnDataSource, FactorRange
    from bokeh.plotting import figure

    counts: dict[str, float] = {}
    for a in (alert, *related):
        if a.entity_type != "client_domain" or "|" not in a.entity:
            continue
        client, _, domain = a.entity.partition("|")
        if alert.entity_type == "client":
            if client != alert.entity:
                continue
            key = domain
        else:
            if alert.domain is None or domain != alert.domain:
                continue
            key = client
        q = _num(a.evidence.get("queries")) or 1.0
        counts[key] = counts.get(key, 0.0) + q
    if not counts:
        return None
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    names = [k if len(k) <= 60 else k[:59] + "…" for k, _ in items][::-1]
    vals = [v for _, v in items][::-1]
    p = figure(
        y_range=FactorRange(factors=list(dict.fromkeys(names))),
        height=40 + 22 * len(names),
        sizing_mode="stretch_width",
        tools="save",
        toolbar_location="above",
        x_axis_label="queries",
    )
    p.hbar(
        y="name",
        right="q",
        height=0.7,
        source=ColumnDataSource({"name": names, "q": vals}),
        color="#1f77b4",
    )
    return dict(json_item(p))
