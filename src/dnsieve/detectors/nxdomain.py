"""NXDOMAIN bursts per client: the signature of DGA-infected hosts (ARCHITECTURE §5).

A DGA bot tries many generated domains until one resolves, so its resolver
answers NXDOMAIN for many *distinct registered domains* in a short time.
Benign failures look different: one mistyped or dead name retried, search-suffix
expansions (``host.corp.example``), reverse lookups without a PTR record.  Per
client and window:

* ``nxdomain``/``nx_share``: count and share of NXDOMAIN answers;
* ``failed_domains``: distinct registered domains that failed (``*.arpa``,
  ``.local`` and ``.localdomain`` names and single-label names excluded);
* ``burst``: the largest number of distinct failed domains in one minute;
* evidence: the failed names (capped) and the first/last failure.

Score::

    score = log2(1 + failed_domains) * (0.5 + nx_share) + 0.5 * log2(1 + burst)

so a host failing on 60 distinct domains scores ~9, one retrying a dead name
scores ~1.
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

__all__ = ["NxdomainDetector"]

_LOCAL = r"(^|\.)(arpa|local|localdomain|lan|home|internal|localhost)$"


@register
class NxdomainDetector(Detector):
    """Bursts of NXDOMAIN answers for many distinct domains from one client."""

    name: ClassVar[str] = "nxdomain"
    techniques: ClassVar[tuple[str, ...]] = ("T1568.002",)
    entity_type: ClassVar[EntityType] = "client"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = (
        "many distinct registered domains failing (NXDOMAIN) for one client"
    )
    #: Below this a client has failed on fewer than ~8 distinct domains.
    score_floor: ClassVar[float] = 4.0

    def __init__(self, max_names: int = 20, burst_seconds: float = 60.0) -> None:
        self.max_names = max_names
        self.burst_seconds = burst_seconds

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        ev = scored_period(data, ctx).filter(pl.col("src_ip").is_not_null())
        if ev.height == 0:
            return empty_anomalies()
        ev = ev.with_columns(window_columns(ctx)).with_columns(
            nx=pl.col("rcode").fill_null("").str.to_uppercase() == "NXDOMAIN",
            rd=pl.col("registered_domain").fill_null(""),
        )
        key = ["src_ip", "window_start", "window_end"]
        counts = ev.group_by(key).agg(queries=pl.len(), nxdomain=pl.col("nx").sum())
        fail = ev.filter(
            pl.col("nx")
            & (pl.col("rd") != "")
            & pl.col("rd").str.contains(r"\.")
            & ~pl.col("rd").str.contains(_LOCAL)
        )
        if fail.height == 0:
            return empty_anomalies()
        b_us = max(1, int(self.burst_seconds * 1_000_000))
        fail = fail.with_columns(minute=pl.col("ts").dt.epoch("us") // b_us)
        burst = (
            fail.group_by([*key, "minute"])
            .agg(n=pl.col("rd").n_unique())
            .group_by(key)
            .agg(burst=pl.col("n").max())
        )
        agg = fail.group_by(key).agg(
            failed_domains=pl.col("rd").n_unique(),
            failed_names=pl.col("qname").n_unique(),
            first_failure=pl.col("ts").min(),
            last_failure=pl.col("ts").max(),
            names=pl.col("qname").drop_nulls().unique().sort().head(self.max_names),
        )
        df = agg.join(counts, on=key, how="left").join(burst, on=key, how="left")
        df = df.with_columns(nx_share=pl.col("nxdomain") / pl.col("queries"))
        df = df.with_columns(
            score=(1.0 + pl.col("failed_domains").cast(pl.Float64)).log(2)
            * (0.5 + pl.col("nx_share"))
            + 0.5 * (1.0 + pl.col("burst").cast(pl.Float64)).log(2)
        )
        span_min = (pl.col("window_end") - pl.col("window_start")).dt.total_seconds() / 60.0
        span = (
            pl.when(span_min >= 60)
            .then((span_min / 60).round(1).cast(pl.String) + " h")
            .otherwise(span_min.round(0).cast(pl.Int64).cast(pl.String) + " min")
        )
        reason = pl.format(
            "{} got {} NXDOMAIN answers ({}% of its {} queries) for {} distinct registered "
            "domains in {}, up to {} in one minute",
            pl.col("src_ip"),
            pl.col("nxdomain"),
            (100 * pl.col("nx_share")).round(0).cast(pl.Int64),
            pl.col("queries"),
            pl.col("failed_domains"),
            span.str.replace(r"\.0 h$", " h"),
            pl.col("burst"),
        )
        evidence = df.select(
            evidence_json(
                reason.alias("reason"),
                pl.concat_list(pl.col("src_ip")).alias("clients"),
                pl.col("queries"),
                pl.col("nxdomain"),
                tidy(pl.col("nx_share")),
                pl.col("failed_domains"),
                pl.col("failed_names"),
                pl.col("burst").alias(f"max_failed_domains_per_{int(self.burst_seconds)}s"),
                pl.col("first_failure").dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ"),
                pl.col("last_failure").dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ"),
                pl.col("names").alias("failed_names_sample"),
            )
        ).to_series()
        return anomaly_frame(
            self.name,
            self.entity_type,
            df["src_ip"],
            df["window_start"],
            df["window_end"],
            df["score"].fill_nan(0.0).fill_null(0.0).round(9).replace(-0.0, 0.0),
            evidence=evidence,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Ten minutes: one host cycling through generated domains, others browsing."""
        rng = np.random.default_rng(seed)
        t0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        letters = list("abcdefghijklmnopqrstuvwxyz")
        rows: list[dict[str, Any]] = []
        for i in range(40):
            dom = "".join(rng.choice(letters, size=int(rng.integers(10, 16)))) + ".com"
            rows.append(
                {
                    "ts": t0 + timedelta(seconds=3 * i + float(rng.random())),
                    "src_ip": "10.1.0.66",
                    "qname": dom,
                    "qtype": "A",
                    "rcode": "NXDOMAIN" if i % 13 else "NOERROR",
                    "registered_domain": dom,
                    "subdomain": "",
                    "tld": "com",
                }
            )
        for i in range(40):
            dom = ["example.org", "wikipedia.org", "python.org", "typo-exmaple.org"][i % 4]
            rows.append(
                {
                    "ts": t0 + timedelta(seconds=float(rng.uniform(0, 600))),
                    "src_ip": f"10.1.0.{int(rng.integers(2, 6))}",
                    "qname": "www." + dom,
                    "qtype": "A",
                    "rcode": "NXDOMAIN" if dom.startswith("typo") else "NOERROR",
                    "registered_domain": dom,
                    "subdomain": "www",
                    "tld": "org",
                }
            )
        return example_events(rows)
