"""Beaconing per client × registered domain (ARCHITECTURE §5).

Implants call home on a timer, so the gaps between one client's lookups of its
C2 domain are regular.  Per (client, registered domain) and window, after
collapsing lookups closer than ``min_gap`` seconds (A+AAAA pairs, retries)
into one *connection*:

* ``skew_score = 1 - |Bowley skew|`` of the inter-arrival times (quartile skew:
  symmetric gaps score 1), as in RITA;
* ``mad_score = 1 - min(1, MAD / median)``: the median absolute deviation
  relative to the period (scale-free jitter);
* ``count_score = min(1, connections * period / span)``: the lookups fill
  their span at the estimated period (no long silences between bursts);
* ``coverage = min(1, span / (0.5 * window))``: a beacon lasts.

Windows are at least ``min_window`` (6 h by default) long whatever the run's
window, so a beacon every 15 minutes still has 24 connections to judge; on a
short capture the window is the capture.

Score::

    score = (skew_score + mad_score) / 2 * count_score * coverage
            * ttl_factor * prevalence_factor

``ttl_factor`` is 0.5 when the period is within 10% of 1, 2 or 3 times the
answers' median TTL (a cache expiring, not an implant) and
``prevalence_factor = 1 - clients_of_domain / clients`` when the window holds
at least 10 clients (a domain every host polls is shared software).  Scores
lie in [0, 1].  Evidence: period estimate (median gap), jitter (MAD),
connection count, first/last.  Single-label names, ``*.arpa`` and
``.local``-style names are skipped: they never leave the site.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl

from dnsieve.detectors import register
from dnsieve.detectors.base import (
    DetectContext,
    Detector,
    EntityType,
    InputKind,
    anomaly_frame,
    empty_anomalies,
)
from dnsieve.detectors.frames import (
    evidence_json,
    example_events,
    scored_period,
    tidy,
    window_columns,
)

__all__ = ["BeaconDetector"]

# Names that never leave the site: no implant calls home through them.
_LOCAL = r"(^|\.)(arpa|local|localdomain|lan|home|internal|localhost)$"


@register
class BeaconDetector(Detector):
    """Regular call-home lookups from one client to one registered domain."""

    name: ClassVar[str] = "beacon"
    entity_type: ClassVar[EntityType] = "client_domain"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = "regular inter-arrival times of one client's lookups of one domain"
    score_floor: ClassVar[float] = 0.9

    def __init__(
        self,
        min_gap: float = 2.0,
        min_connections: int = 6,
        min_prevalence_clients: int = 10,
        min_window: float = 6 * 3600.0,
    ) -> None:
        self.min_window = min_window
        self.min_gap = min_gap
        self.min_connections = min_connections
        self.min_prevalence_clients = min_prevalence_clients

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        ev = scored_period(data, ctx).filter(
            pl.col("src_ip").is_not_null()
            & pl.col("registered_domain").is_not_null()
            & pl.col("registered_domain").str.contains(".", literal=True)
            & ~pl.col("registered_domain").str.contains(_LOCAL)
        )
        if ev.height == 0:
            return empty_anomalies()
        ev = ev.with_columns(window_columns(ctx, min_window=self.min_window))
        wkey = ["window_start", "window_end"]
        key = ["src_ip", "registered_domain", *wkey]
        total_clients = ev.group_by(wkey).agg(all_clients=pl.col("src_ip").n_unique())
        dom_clients = ev.group_by(["registered_domain", *wkey]).agg(
            dom_clients=pl.col("src_ip").n_unique(),
            ttl=pl.col("ttls").explode().drop_nans().median(),
        )
        t = (
            ev.select([*key, pl.col("ts").dt.epoch("us").alias("t")])
            .unique()
            .sort([*key, "t"])
            .with_columns(gap=pl.col("t").diff().over(key) / 1e6)
        )
        # A connection starts where the gap to the previous lookup is >= min_gap.
        conn = t.filter(pl.col("gap").is_null() | (pl.col("gap") >= self.min_gap))
        conn = conn.with_columns(gap=pl.col("t").diff().over(key) / 1e6)
        per = conn.group_by(key).agg(
            connections=pl.len(),
            first=pl.col("t").min(),
            last=pl.col("t").max(),
            q1=pl.col("gap").drop_nulls().quantile(0.25, "linear"),
            q2=pl.col("gap").drop_nulls().median(),
            q3=pl.col("gap").drop_nulls().quantile(0.75, "linear"),
            gaps=pl.col("gap").drop_nulls(),
        )
        per = per.filter(pl.col("connections") >= self.min_connections)
        if per.height == 0:
            return empty_anomalies()
        per = per.with_columns(
            mad=pl.col("gaps")
            .list.eval((pl.element() - pl.element().median()).abs().median())
            .list.first()
        ).drop("gaps")
        iqr = pl.col("q3") - pl.col("q1")
        bowley = (
            pl.when(iqr > 0)
            .then((pl.col("q3") + pl.col("q1") - 2 * pl.col("q2")) / iqr)
            .otherwise(0.0)
        )
        window_s = (pl.col("window_end") - pl.col("window_start")).dt.total_microseconds() / 1e6
        span = (pl.col("last") - pl.col("first")) / 1e6
        per = per.join(dom_clients, on=["registered_domain", *wkey], how="left").join(
            total_clients, on=wkey, how="left"
        )
        ratio = pl.col("q2") / pl.col("ttl")
        ttl_match = (
            (pl.col("ttl") > 0)
            & (ratio >= 0.9)
            & (ratio <= 3.3)
            & ((ratio - ratio.round(0)).abs() <= 0.1 * ratio.round(0))
        )
        per = per.with_columns(
            skew_score=1.0 - bowley.abs().clip(0.0, 1.0),
            mad_score=1.0 - (pl.col("mad") / pl.col("q2")).fill_nan(1.0).clip(0.0, 1.0),
            count_score=(pl.col("connections") * pl.col("q2") / span.clip(lower_bound=1.0)).clip(
                0.0, 1.0
            ),
            coverage=(span / (0.5 * window_s)).clip(0.0, 1.0),
            ttl_factor=pl.when(ttl_match.fill_null(False)).then(0.5).otherwise(1.0),
            prevalence_factor=pl.when(pl.col("all_clients") >= self.min_prevalence_clients)
            .then(1.0 - pl.col("dom_clients") / pl.col("all_clients"))
            .otherwise(1.0),
        )
        per = per.with_columns(
            score=(pl.col("skew_score") + pl.col("mad_score"))
            / 2.0
            * pl.col("count_score")
            * pl.col("coverage")
            * pl.col("ttl_factor")
            * pl.col("prevalence_factor")
        )
        iso = "%Y-%m-%dT%H:%M:%S%.3fZ"
        r3 = lambda c: tidy(pl.col(c).cast(pl.Float64)).alias(c)  # noqa: E731
        evidence = per.select(
            evidence_json(
                pl.col("connections"),
                r3("q2").alias("period_s"),
                r3("mad").alias("jitter_mad_s"),
                r3("skew_score"),
                r3("mad_score"),
                r3("coverage"),
                r3("ttl").alias("median_ttl_s"),
                (pl.col("ttl_factor") < 1.0).alias("period_matches_ttl"),
                pl.col("dom_clients").alias("clients_of_domain"),
                pl.from_epoch("first", time_unit="us").dt.to_string(iso).alias("first"),
                pl.from_epoch("last", time_unit="us").dt.to_string(iso).alias("last"),
            )
        ).to_series()
        entity = per.select(
            pl.concat_str(["src_ip", "registered_domain"], separator="|")
        ).to_series()
        return anomaly_frame(
            self.name,
            self.entity_type,
            entity,
            per["window_start"],
            per["window_end"],
            per["score"].fill_nan(0.0).fill_null(0.0).round(9).replace(-0.0, 0.0),
            evidence=evidence,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """An hour: one host beaconing every 60 s ± 3 s, others browsing at random."""
        rng = np.random.default_rng(seed)
        t0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
        rows: list[dict[str, Any]] = []
        t = 5.0
        while t < 3600:
            rows.append(
                {
                    "ts": t0 + timedelta(seconds=t),
                    "src_ip": "10.2.0.9",
                    "qname": "api.update-check.net",
                    "qtype": "A",
                    "rcode": "NOERROR",
                    "answers": ["203.0.113.7"],
                    "ttls": [5.0],
                    "registered_domain": "update-check.net",
                    "subdomain": "api",
                    "tld": "net",
                }
            )
            t += 60.0 + float(rng.normal(0, 3))
        for _ in range(60):
            dom = ["example.org", "wikipedia.org"][int(rng.integers(0, 2))]
            rows.append(
                {
                    "ts": t0 + timedelta(seconds=float(rng.uniform(0, 3600))),
                    "src_ip": f"10.2.0.{int(rng.integers(2, 5))}",
                    "qname": "www." + dom,
                    "qtype": "A",
                    "rcode": "NOERROR",
                    "answers": ["198.51.100.1"],
                    "ttls": [300.0],
                    "registered_domain": dom,
                    "subdomain": "www",
                    "tld": "org",
                }
            )
        return example_events(rows)
