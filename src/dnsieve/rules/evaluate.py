"""Evaluate threat definitions over the lake: hits, alerts-to-be, and retro-hunts.

One entry point per use:

* :func:`check_definition` validates a body for its kind (the errors an editor shows);
* :func:`hunt` runs one definition over a period of the lake and returns its hits, the
  distinct entities, and the anomalies it would add (what ``dnsieve rules hunt`` and the
  Definitions page preview *before* a definition is enabled), flagging a definition that
  would flood the queue (more alerts a day than the daily budget);
* :func:`evaluate` runs every active Sigma and watchlist definition for ``run``/``detect``;
* :func:`apply_anomaly_rules` applies anomaly rules to scored candidates.

Hits become rows of the :data:`dnsieve.schema.ANOMALY` shape with ``detector =
"rule:<name>"``: per registered domain (or, for a correlation grouped by client, per
client) and window, with evidence that names the definition, its version, the matched
names and clients, and a reason sentence.  Their score is the definition's confidence: the
analyst's own statement, not a statistical tail, so calibration does not threshold them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from dnsieve.detectors.base import anomaly_frame, empty_anomalies
from dnsieve.rules.expr import ExprError, compile_expr
from dnsieve.rules.feeds import match_events, parse_plain
from dnsieve.rules.sigma import RuleRefused, compile_rule, run_rule

__all__ = [
    "ANOMALY_RULE_NAMES",
    "HuntResult",
    "apply_anomaly_rules",
    "check_definition",
    "definition_alerts",
    "evaluate",
    "hits_to_anomalies",
    "hunt",
]

#: Names an anomaly rule may use besides ``ev_<field>`` (numeric evidence fields) and
#: ``ctx_<feature>`` (threat-model context features, when present).
ANOMALY_RULE_NAMES: tuple[str, ...] = (
    "detector", "entity_type", "entity", "score", "p_value", "threat_probability",
    "client", "domain",
)  # fmt: skip

_SAMPLES = 10


@dataclass
class HuntResult:
    """What one definition finds in a period of the lake."""

    name: str
    kind: str
    events: int  # matched events (event rules) or matching groups (correlations)
    entities: int
    anomalies: pl.DataFrame  # the alerts it would add, ANOMALY shape
    sample: pl.DataFrame  # up to 50 matched events or groups
    per_day: float = 0.0  # alerts per day of the period
    floods: bool = False  # more alerts a day than the daily budget
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "events": self.events,
            "entities": self.entities,
            "alerts": self.anomalies.height,
            "alerts_per_day": round(self.per_day, 2),
            "floods_queue": self.floods,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
        }


def check_definition(kind: str, body: str, names: Iterable[str] = ()) -> list[str]:
    """Errors of ``body`` as a ``kind`` definition (empty: valid).

    ``names`` are the anomaly columns an anomaly rule may use beyond the fixed ones.
    """
    if kind == "sigma":
        try:
            compile_rule(body)
        except RuleRefused as exc:
            return [str(exc)]
        return []
    if kind == "watchlist":
        feed = parse_plain(body)
        errors = []
        if not feed.entries:
            errors.append("the watchlist has no valid domain, suffix or address")
        if feed.rejected:
            errors.append(
                f"{sum(feed.rejected.values())} line(s) are neither a domain name nor an address"
            )
        return errors
    if kind == "anomaly":
        try:
            compile_expr(body, [*ANOMALY_RULE_NAMES, *names])
        except ExprError as exc:
            return [str(exc)]
        return []
    return [f"unknown definition kind {kind!r}"]


def _floor(col: str, seconds: float) -> pl.Expr:
    every = f"{int(seconds)}s"
    return pl.col(col).dt.truncate(every)


def hits_to_anomalies(
    hits: pl.DataFrame,
    name: str,
    version: int,
    title: str,
    window: float = 3600.0,
    confidence: float = 0.9,
    techniques: Sequence[str] = (),
    what: str = "matches",
) -> pl.DataFrame:
    """Group matched events by registered domain and window into ANOMALY rows."""
    if hits.height == 0:
        return empty_anomalies()
    w = timedelta(seconds=window)
    entity = pl.coalesce(pl.col("registered_domain"), pl.col("qname"), pl.lit("(none)"))
    watch = "watch_value" in hits.columns
    grouped = (
        hits.with_columns(entity.alias("_entity"), _floor("ts", window).alias("_ws"))
        .group_by("_entity", "_ws")
        .agg(
            pl.len().alias("events"),
            pl.col("src_ip").drop_nulls().value_counts(sort=True).alias("_clients"),
            pl.col("src_ip").n_unique().alias("n_clients"),
            pl.col("qname").drop_nulls().unique().sort().head(_SAMPLES).alias("names"),
            pl.col("qname").n_unique().alias("n_names"),
            *(
                [
                    pl.col("watch_value").unique().sort().head(_SAMPLES).alias("matched"),
                    pl.col("watch_family").drop_nulls().unique().sort().head(3).alias("families"),
                ]
                if watch
                else []
            ),
        )
        .sort("_entity", "_ws")
    )
    evidence = []
    for row in grouped.iter_rows(named=True):
        clients = [str(c["src_ip"]) for c in row["_clients"][:5]]
        first = clients[0] if clients else "an unknown client"
        others = int(row["n_clients"]) - 1
        who = first + (
            f" and {others} other client{'s' if others != 1 else ''}" if others > 0 else ""
        )
        fam = f" ({', '.join(row['families'])})" if watch and row.get("families") else ""
        reason = (
            f"{who} made {row['events']:,} lookup{'s' if row['events'] != 1 else ''} of "
            f"{row['n_names']:,} name{'s' if row['n_names'] != 1 else ''} under {row['_entity']} "
            f"that {what} definition '{name}'{fam}"
        )
        evidence.append(
            {
                "reason": reason,
                "clients": clients,
                "definition": name,
                "definition_version": version,
                "definition_title": title,
                "techniques": list(techniques),
                "queries": int(row["events"]),
                "distinct_clients": int(row["n_clients"]),
                "distinct_names": int(row["n_names"]),
                "names": list(row["names"]),
                **(
                    {"matched": list(row["matched"]), "families": list(row["families"])}
                    if watch
                    else {}
                ),
            }
        )
    return anomaly_frame(
        f"rule:{name}",
        "domain",
        grouped["_entity"],
        grouped["_ws"],
        grouped["_ws"] + w,
        [float(confidence)] * grouped.height,
        None,
        evidence,
    )


def _correlation_anomalies(
    groups: pl.DataFrame,
    name: str,
    version: int,
    title: str,
    kind: str,
    window: float,
    confidence: float,
    techniques: Sequence[str],
) -> pl.DataFrame:
    if groups.height == 0:
        return empty_anomalies()
    keys = [c for c in groups.columns if c not in {"first_ts", "last_ts", kind}]
    if keys == ["src_ip"]:
        entity_type, entity = "client", pl.col("src_ip").cast(pl.String)
    elif "registered_domain" in keys:
        entity_type, entity = "domain", pl.col("registered_domain").cast(pl.String)
    else:
        entity_type = "domain"
        entity = pl.concat_str(
            [pl.col(k).cast(pl.String) for k in keys] or [pl.lit("all")], separator="|"
        )
    frame = groups.with_columns(
        entity.fill_null("(none)").alias("_entity"), _floor("first_ts", window).alias("_ws")
    ).sort("_entity", "_ws")
    evidence = []
    for row in frame.iter_rows(named=True):
        n = int(row[kind])
        what = "events" if kind == "event_count" else "distinct values"
        client = str(row.get("src_ip")) if "src_ip" in keys else None
        evidence.append(
            {
                "reason": (
                    f"{row['_entity']} reached {n:,} {what} within the window of "
                    f"correlation '{name}' (first at {row['first_ts']:%Y-%m-%d %H:%M:%S} UTC)"
                ),
                "clients": [client] if client else [],
                "definition": name,
                "definition_version": version,
                "definition_title": title,
                "techniques": list(techniques),
                kind: n,
                "first": row["first_ts"].isoformat(),
                "last": row["last_ts"].isoformat(),
            }
        )
    w = timedelta(seconds=window)
    ends = [max(ws + w, lt) for ws, lt in zip(frame["_ws"], frame["last_ts"], strict=True)]
    return anomaly_frame(
        f"rule:{name}", entity_type, frame["_entity"], frame["_ws"], ends,
        [float(confidence)] * frame.height, None, evidence,
    )  # fmt: skip


def _defn_fields(defn: Any) -> tuple[str, str, int, float, tuple[str, ...]]:
    return (
        str(defn.name),
        str(defn.kind),
        int(getattr(defn, "version", 1)),
        float(getattr(defn, "confidence", 0.9)),
        tuple(getattr(defn, "techniques", ()) or ()),
    )


def hunt(
    defn: Any,
    lake: Any,
    since: datetime | None = None,
    until: datetime | None = None,
    window: float = 3600.0,
    budget_per_day: float | None = None,
) -> HuntResult:
    """Run one Sigma or watchlist definition over ``lake`` (files committed) in [since, until)."""
    import time

    t0 = time.perf_counter()
    name, kind, version, confidence, techniques = _defn_fields(defn)
    files = [str(f) for f in lake.files()]
    span = lake.time_range()
    lo = since or (span[0] if span else None)
    hi = until or (span[1] + timedelta(seconds=1) if span else None)
    notes: list[str] = []
    if kind == "sigma":
        rule = compile_rule(str(defn.body))
        techniques = tuple(sorted({*techniques, *rule.techniques}))
        out = run_rule(rule, files, since, until) if files else pl.DataFrame()
        if rule.kind == "event":
            anomalies = hits_to_anomalies(
                out, name, version, rule.title, window, confidence, techniques
            )
        else:
            anomalies = _correlation_anomalies(
                out, name, version, rule.title, rule.kind, window, confidence, techniques
            )
        n_events = out.height
    elif kind == "watchlist":
        feed = parse_plain(str(defn.body))
        cols = ["ts", "src_ip", "qname", "registered_domain"]
        events = lake.scan(since, until).select(cols) if files else pl.DataFrame()
        out = match_events(events, feed.entries) if files else pl.DataFrame()
        anomalies = hits_to_anomalies(
            out, name, version, name, window, confidence, techniques, what="watchlist"
        )
        n_events = out.height
        if feed.rejected:
            notes.append(f"{sum(feed.rejected.values())} watchlist line(s) skipped as invalid")
    else:
        raise ValueError(f"{kind} definitions are applied to anomalies, not hunted over events")
    days = max(((hi - lo).total_seconds() / 86400) if lo and hi else 1.0, 1 / 24)
    per_day = anomalies.height / days
    floods = budget_per_day is not None and per_day > budget_per_day
    if floods:
        notes.append(
            f"would raise {per_day:.1f} alerts a day, more than the daily budget of "
            f"{budget_per_day:g}: narrow it before enabling"
        )
    return HuntResult(
        name=name,
        kind=kind,
        events=n_events,
        entities=anomalies["entity"].n_unique() if anomalies.height else 0,
        anomalies=anomalies,
        sample=out.head(50) if out.height else out,
        per_day=per_day,
        floods=floods,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


def evaluate(
    defs: Iterable[Any],
    lake: Any,
    since: datetime | None = None,
    until: datetime | None = None,
    window: float = 3600.0,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Every active Sigma and watchlist definition over the period: (anomalies, summary).

    A definition that fails (it was valid when saved, but e.g. a column changed) is
    reported in the summary and the others go on.
    """
    frames: list[pl.DataFrame] = []
    summary: dict[str, Any] = {}
    for d in defs:
        if d.kind == "anomaly":
            continue
        try:
            res = hunt(d, lake, since, until, window)
        except (RuleRefused, ValueError, ImportError, pl.exceptions.PolarsError) as exc:
            summary[d.name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
            continue
        summary[d.name] = {"status": "ok", **res.to_dict()}
        frames.append(res.anomalies)
    anomalies = pl.concat(frames) if frames else empty_anomalies()
    return anomalies, summary


def _flatten(anomalies: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Numeric evidence fields as ``ev_<field>`` columns, for anomaly rules."""
    if anomalies.height == 0 or "evidence" not in anomalies.columns:
        return anomalies, []
    decoded = anomalies["evidence"].str.json_decode(infer_schema_length=None)
    if not isinstance(decoded.dtype, pl.Struct):
        return anomalies, []
    cols = []
    for f in decoded.dtype.fields:
        if f.dtype.is_numeric() or f.dtype == pl.Boolean:
            cols.append(decoded.struct.field(f.name).alias(f"ev_{f.name}"))
    extra = pl.DataFrame(cols) if cols else pl.DataFrame()
    names = [c.name for c in cols]
    return (pl.concat([anomalies, extra], how="horizontal") if cols else anomalies), names


def apply_anomaly_rules(defs: Iterable[Any], anomalies: pl.DataFrame) -> pl.DataFrame:
    """Mark the candidates each active anomaly rule matches.

    Adds ``rule_hits`` (list of definition names) and ``promoted`` (a rule matched:
    calibration keeps it whatever the budget), ``rule_severity`` (the highest severity
    of the matching rules) and ``rule_confidence`` (their highest confidence, 0 without a
    match; the threat model's ``def_confidence``).  Rules that do not compile against these
    columns are skipped.
    """
    rules = [d for d in defs if d.kind == "anomaly"]
    base = anomalies.with_columns(
        pl.lit([], dtype=pl.List(pl.String)).alias("rule_hits"),
        pl.lit(False).alias("promoted"),
        pl.lit(None, dtype=pl.String).alias("rule_severity"),
        pl.lit(0.0).alias("rule_confidence"),
    )
    if not rules or anomalies.height == 0:
        return base
    flat, ev_names = _flatten(anomalies)
    extra = [c for c in flat.columns if c.startswith(("ctx_", "ev_"))]
    with_domain = flat.with_columns(
        pl.when(pl.col("entity_type") == "client_domain")
        .then(pl.col("entity").str.split("|").list.last())
        .when(pl.col("entity_type") == "domain")
        .then(pl.col("entity"))
        .alias("domain"),
        pl.when(pl.col("entity_type") == "client")
        .then(pl.col("entity"))
        .when(pl.col("entity_type") == "client_domain")
        .then(pl.col("entity").str.split("|").list.first())
        .alias("client"),
        *(
            []
            if "threat_probability" in flat.columns
            else [pl.lit(None, dtype=pl.Float64).alias("threat_probability")]
        ),
    )
    order = {"low": 0, "medium": 1, "high": 2, "critical": 3}
    hits: list[list[str]] = [[] for _ in range(anomalies.height)]
    sev: list[str | None] = [None] * anomalies.height
    conf = [0.0] * anomalies.height
    for d in rules:
        try:
            rule = compile_expr(str(d.body), [*ANOMALY_RULE_NAMES, *ev_names, *extra])
            mask = with_domain.select(rule.expr.fill_null(False)).to_series().to_list()
        except (ExprError, pl.exceptions.PolarsError):
            continue
        for i, m in enumerate(mask):
            if m:
                hits[i].append(str(d.name))
                conf[i] = max(conf[i], float(getattr(d, "confidence", 0.9) or 0.0))
                s = str(getattr(d, "severity", "high"))
                if sev[i] is None or order.get(s, 0) > order.get(sev[i] or "low", 0):
                    sev[i] = s
    return anomalies.with_columns(
        pl.Series("rule_hits", hits, dtype=pl.List(pl.String)),
        pl.Series("promoted", [bool(h) for h in hits], dtype=pl.Boolean),
        pl.Series("rule_severity", sev, dtype=pl.String),
        pl.Series("rule_confidence", conf, dtype=pl.Float64),
    )


def definition_alerts(
    defs: Sequence[Any], lake: Any, result: Any, alerts: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The job's alerts plus what the active definitions add, for the scored period.

    ``result`` is the :class:`dnsieve.pipeline.DetectResult` (its summary gives the period
    and window, its ``anomalies`` the scored candidates).  Sigma and watchlist hits become
    alerts of their own; candidates an anomaly rule matches are kept whatever the budget
    (``promoted``) unless calibration already kept them.
    """
    summary = getattr(result, "summary", {}) or {}
    since = _parse(summary.get("start"))
    until = _parse(summary.get("end"))
    window = float(summary.get("window_seconds") or 3600.0)
    rule_alerts, info = evaluate(defs, lake, since, until, window)
    frames = [alerts]
    if rule_alerts.height:
        frames.append(rule_alerts)
    candidates = getattr(result, "anomalies", None)
    if candidates is not None and candidates.height and any(d.kind == "anomaly" for d in defs):
        marked = apply_anomaly_rules(defs, candidates).filter(pl.col("promoted"))
        keys = ["detector", "entity", "window_start"]
        if alerts.height:
            marked = marked.join(alerts.select(keys), on=keys, how="anti")
        if marked.height:
            frames.append(marked.drop("rule_hits", "promoted", "rule_severity"))
            # (``rule_confidence`` stays: the threat model's ``def_confidence``)
        for d in defs:
            if d.kind == "anomaly":
                info[d.name] = {"status": "ok", "promoted": marked.height}
    out = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else alerts
    return out, info


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
