"""Bokeh plots of the alert detail page, served with BokehJS from the package.

* :func:`volume_plot`: the entity's volume per hour over its alert windows
  (from its own and related alerts' evidence), the detector's baseline
  expectation with its 90 % posterior band, the unusual hours the detector
  reported (``top_hours``) and the alert window shaded as the outlier window;
* :func:`who_plot`: who queried the domain in the alert window (its clients in
  the lake's events, else client × domain alerts on it), or for a client
  alert, which domains it queried;
* :func:`precision_plot`: the threat model's precision@k over time (model page).

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
from pathlib import Path
from typing import Any

import polars as pl

from dnsieve.alerts.base import Alert
from dnsieve.alerts.events import AlertEvents, EventsUnavailable, entity_events
from dnsieve.web.evidence import alert_windows

__all__ = ["bokeh_script_urls", "precision_plot", "volume_plot", "who_events", "who_plot"]

BOKEH_ROOT = "/bokeh/"


def bokeh_script_urls() -> list[str]:
    """URLs of the BokehJS files, served locally under ``/bokeh/static``.

    The Bokeh version rides in the query string, so browsers may cache the files
    for good (:func:`dnsieve.web.security.static_cache_control`) and an upgrade
    still loads the new ones.
    """
    import bokeh
    from bokeh.resources import Resources

    res = Resources(mode="server", root_url=BOKEH_ROOT)
    return [f"{u}?v={bokeh.__version__}" for u in res.js_files if u.endswith("/bokeh.min.js")]


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


def volume_plot(
    alert: Alert, related: Sequence[Alert], hourly: pl.DataFrame | None = None
) -> dict[str, Any] | None:
    """The entity's hourly volume with the baseline band and the outlier windows (None: no data).

    ``hourly`` (:func:`dnsieve.alerts.events.entity_hourly`: ``hour``,
    ``queries``, ``clients``) is the entity's real hourly volume around the
    alert, read from the lake; hours the lake holds no data for are gaps.
    Without it the plot falls back to what the alerts themselves carry: the
    per-hour rate of this detector's windows on the entity.  The alert's window
    is shaded red, the other outlier windows of the same detector and entity
    pale red, the baseline posterior (90 % band and mean) blue, and the hours
    that drove the alert are red bars.
    """
    from bokeh.embed import json_item
    from bokeh.models import BoxAnnotation, ColumnDataSource, HoverTool, Span  # type: ignore[attr-defined]
    from bokeh.plotting import figure

    same = [
        a for a in (alert, *related) if a.entity == alert.entity and a.detector == alert.detector
    ]
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
    real = hourly is not None and hourly.height > 0 and bool(hourly["queries"].sum())
    if not real and not pts and not hours:
        return None
    p = figure(
        height=260,
        sizing_mode="stretch_width",
        x_axis_type="datetime",
        tools="pan,box_zoom,wheel_zoom,reset,save",
        toolbar_location="above",
        y_axis_label="queries per hour",
    )
    # the detector's other episodes faintly, this alert's episode a little stronger and
    # each of its windows strongest
    spans = [(o.window_start, o.window_end, 0.08) for o in same if o.id != alert.id]
    spans.append((alert.window_start, alert.window_end, 0.08))
    spans += [(w.start, w.end, 0.18) for w in alert_windows(alert)]
    for left, right, alpha in spans:
        p.add_layout(
            BoxAnnotation(
                left=left,
                right=right,
                fill_alpha=alpha,
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
    if real and hourly is not None:
        mid = timedelta(minutes=30)
        q = [float("nan") if v is None else float(v) for v in hourly["queries"]]
        c = [float("nan") if v is None else float(v) for v in hourly["clients"]]
        src = ColumnDataSource(
            {
                "t": [t + mid for t in hourly["hour"]],
                "hour": [f"{t:%Y-%m-%d %H:00}" for t in hourly["hour"]],
                "q": q,
                "c": c,
            }
        )
        line = p.line(
            "t", "q", source=src, line_color="#444444", line_width=1.5, legend_label="queries"
        )
        p.line(
            "t",
            "c",
            source=src,
            line_color="#2ca02c",
            line_dash="dotted",
            legend_label="distinct clients",
        )
        p.add_tools(
            HoverTool(
                renderers=[line],
                tooltips=[("hour (UTC)", "@hour"), ("queries", "@q"), ("clients", "@c")],
                mode="vline",
            )
        )
    elif pts:
        src = ColumnDataSource({"t": [t for t, _ in pts], "v": [v for _, v in pts]})
        p.line("t", "v", source=src, line_color="#444444", legend_label="alert windows")
        p.scatter("t", "v", source=src, size=6, color="#444444")
    if hours:
        width = timedelta(minutes=50)
        hs = ColumnDataSource(
            {"t": [t + timedelta(minutes=30) for t, _, _ in hours], "obs": [o for _, o, _ in hours]}
        )
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


def who_events(lake_path: Path | None, alert: Alert, top: int = 15) -> AlertEvents | None:
    """Who queried what over the alert's whole episode (lake), for the who-queried-it chart.

    For a client × domain alert, every client of its domain (the pair's own events hold
    one client: the domain's show whether that client is alone, as a beacon or a tunnel
    is, or one of many); for an episode of several windows, the entity over all of them
    (the alert's raw events cover its worst window only).  None for a one-window alert
    of a domain or a client (its raw events serve), without a lake, or when the lake
    cannot be read.
    """
    if lake_path is None:
        return None
    start = getattr(alert, "episode_start", None) or alert.window_start
    end = getattr(alert, "episode_end", None) or alert.window_end
    if alert.entity_type == "client_domain" and alert.domain:
        etype, entity = "domain", alert.domain
    elif getattr(alert, "n_windows", 1) > 1 and alert.entity_type in ("domain", "client"):
        etype, entity = alert.entity_type, alert.entity
    else:
        return None
    try:
        return entity_events(lake_path, etype, entity, start, end, 0, top)
    except EventsUnavailable:
        return None


def who_plot(
    alert: Alert,
    related: Sequence[Alert],
    events: AlertEvents | None = None,
    episode: AlertEvents | None = None,
    top: int = 15,
) -> dict[str, Any] | None:
    """Who queried the domain (or what the client queried) in the alert's episode.

    From the lake: ``episode`` (:func:`who_events`: the whole episode, or for a client
    × domain alert every client of its domain, the alert's client in red) when it has
    them, else ``events`` (the alert window's: the clients of a domain alert, the
    registered domains of a client alert); else from client × domain alerts on the
    same domain or client.  One bar is a chart too: a domain queried by a single
    client (a tunnel, a DGA name, a beacon) is the usual case, and the chart
    keeps a readable height for it, with the count written beside each bar.
    """
    from bokeh.embed import json_item
    from bokeh.models import (  # type: ignore[attr-defined]
        BasicTicker,
        ColumnDataSource,
        FactorRange,
        LabelSet,
        Range1d,
    )
    from bokeh.plotting import figure

    counts: dict[str, float] = {}
    source = "alerts"
    span = "the alert window"
    if episode is not None and episode.who_of is not None and episode.who.height:
        counts = {str(n): float(q) for n, q in episode.who.iter_rows()}
        source = "lake"
        if getattr(alert, "n_windows", 1) > 1:
            span = "the episode"
    elif events is not None and events.who_of is not None and events.who.height:
        counts = {str(n): float(q) for n, q in events.who.iter_rows()}
        source = "lake"
    for a in (alert, *related) if source == "alerts" else ():
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
    # distinct labels even when two long names share their first 59 characters
    names: list[str] = []
    for k, _ in items:
        label = k if len(k) <= 60 else k[:59] + "…"
        while label in names:
            label += " "
        names.append(label)
    names = names[::-1]
    vals = [v for _, v in items][::-1]
    mark = alert.client if alert.entity_type == "client_domain" else None
    colors = ["#d62728" if mark is not None and k == mark else "#1f77b4" for k, _ in items][::-1]
    what = "clients of the domain" if alert.entity_type != "client" else "domains it queried"
    label = (
        f"queries in {span} ({what}, lake events)"
        if source == "lake"
        else "queries (client × domain alerts)"
    )
    hi = max(vals) if vals else 1.0
    p = figure(
        y_range=FactorRange(factors=names),
        x_range=Range1d(start=0, end=hi * 1.18 or 1.0),
        height=max(150, 70 + 24 * len(names)),
        sizing_mode="stretch_width",
        tools="save",
        toolbar_location="above",
        x_axis_label=label,
    )
    src = ColumnDataSource(
        {"name": names, "q": vals, "color": colors, "text": [f"{v:,.0f}" for v in vals]}
    )
    p.hbar(y="name", right="q", height=0.7, source=src, color="color")
    p.add_layout(
        LabelSet(
            x="q", y="name", text="text", source=src, x_offset=4, y_offset=-7,
            text_font_size="11px", text_color="#333333",
        )
    )  # fmt: skip
    p.ygrid.grid_line_color = None
    p.xaxis.ticker = BasicTicker(min_interval=1)  # counts: no 0.2 ticks
    return dict(json_item(p))


def precision_plot(daily: pl.DataFrame, ks: Sequence[int]) -> dict[str, Any] | None:
    """Daily precision@k lines (one per k) and the base rate, from
    :func:`dnsieve.threat.metrics.daily_precision` (None: no judged days)."""
    from bokeh.embed import json_item
    from bokeh.models import ColumnDataSource, DatetimeTickFormatter, HoverTool, Range1d
    from bokeh.palettes import Category10
    from bokeh.plotting import figure

    if daily.height == 0:
        return None
    days = [datetime(d.year, d.month, d.day, 12) for d in daily["day"]]
    # a day either side, so that one day (or a few) gives a readable date axis, not µs ticks
    x_range = Range1d(start=min(days) - timedelta(days=1), end=max(days) + timedelta(days=1))
    data: dict[str, list[Any]] = {
        "t": days,
        "day": [d.isoformat() for d in daily["day"]],
        "n": daily["verdicts"].to_list(),
        "threats": daily["threats"].to_list(),
        "base": daily["base_rate"].to_list(),
    }
    for k in ks:
        data[f"p{k}"] = [float("nan") if v is None else v for v in daily[f"p_at_{k}"]]
    src = ColumnDataSource(data)
    p = figure(
        height=280,
        sizing_mode="stretch_width",
        x_axis_type="datetime",
        x_range=x_range,
        y_range=Range1d(start=0, end=1.05),
        tools="pan,box_zoom,wheel_zoom,reset,save",
        toolbar_location="above",
        y_axis_label="precision",
    )
    day_fmt = "%Y-%m-%d"
    p.xaxis.formatter = DatetimeTickFormatter(
        microseconds=day_fmt,
        milliseconds=day_fmt,
        seconds=day_fmt,
        minsec=day_fmt,
        minutes=day_fmt,
        hourmin="%Y-%m-%d %H:%M",
        hours="%Y-%m-%d %H:%M",
        days=day_fmt,
        months="%Y-%m",
        years="%Y",
        context=None,
    )
    # the base rate first, wide and pale, so that a precision line on it stays visible
    p.line(
        "t",
        "base",
        source=src,
        line_color="#999999",
        line_width=7,
        line_alpha=0.35,
        legend_label="base rate (share of threats)",
    )
    colors = Category10[10]
    renderers: list[Any] = []
    for i, k in enumerate(ks):
        c = colors[i % len(colors)]
        p.line("t", f"p{k}", source=src, line_color=c, line_width=2, legend_label=f"precision@{k}")
        renderers.append(
            p.scatter("t", f"p{k}", source=src, size=7, color=c, legend_label=f"precision@{k}")
        )
    tips = [("day", "@day"), ("verdicts", "@n"), ("threats", "@threats"), ("base rate", "@base")]
    tips += [(f"precision@{k}", f"@p{k}") for k in ks]
    p.add_tools(HoverTool(renderers=renderers, tooltips=tips))
    p.legend.location = "bottom_left"
    p.legend.background_fill_alpha = 0.6
    return dict(json_item(p))
