"""Fast-flux per registered domain (ARCHITECTURE §5).

A fast-flux domain resolves to a rapidly changing set of compromised hosts:
many distinct A/AAAA answers, low TTLs, and addresses scattered over many
*networks run by different organisations*.  CDNs also rotate addresses with
low TTLs, but their answers belong to one or a few autonomous systems (the
CDN's own, or an ISP hosting its caches).  Per registered domain and window:

* ``distinct_ips``, ``distinct_24`` (IPv4 /24 or IPv6 /48),
  ``distinct_16`` (IPv4 /16 or IPv6 /32) and ``distinct_networks``: distinct
  origin ASNs from the shipped offline table (:mod:`dnsieve.ipasn`), with
  addresses the table does not know (IPv6, unannounced) counted by their /16
  (/32) instead;
* ``median_ttl`` of the address answers;
* ``ttl_factor = min(1, 300 / median_ttl)`` (TTLs above 5 min count less).

Score::

    score = ttl_factor * (log2(1 + networks) + 0.5 * log2(1 + distinct_16)) * spread

with ``spread = networks / distinct_ips`` (1 when every address is in a
different AS).  Twenty addresses in twenty ASes with TTL 60 score ~6.6; a
CDN's twenty addresses in one AS ~0.2, however many /16s they span.

**Popular services** (a popularity rank from :mod:`dnsieve.popular`: the
shipped service list or the user's top list) are not scored with
``skip_popular``: flux networks serve throwaway domains, and a top-ranked
domain whose answers look scattered is a CDN seen through anycast or
geo-DNS.  Names under a listed CDN or cloud *platform* (``x.cloudfront.net``,
``x.azureedge.net``: category ``cdn``/``cloud``) are skipped too: the
platform, not the name's owner, chooses their answers.  A CDN not on the list
is scored, and its ASN count tells it apart from flux.
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

__all__ = ["FastFluxDetector"]

_IPV4 = r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$"
_PRIVATE = r"^(10\.|127\.|0\.|192\.168\.|169\.254\.|172\.(1[6-9]|2\d|3[01])\.)"


@register
class FastFluxDetector(Detector):
    """Many distinct, widely spread, short-lived address answers for one domain."""

    name: ClassVar[str] = "fastflux"
    techniques: ClassVar[tuple[str, ...]] = ("T1568.001",)
    entity_type: ClassVar[EntityType] = "domain"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = "many A/AAAA answers over many networks with low TTLs"
    #: Benign maximum on real traffic with the ASN count: 2.6 (trueos.org in
    #: brimdata); pool.ntp.org (7.1, volunteers in many ASes) is a popular service.
    score_floor: ClassVar[float] = 5.0

    def __init__(self, min_ips: int = 4, samples: int = 10, skip_popular: bool = True) -> None:
        self.min_ips = min_ips
        self.samples = samples
        self.skip_popular = skip_popular

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        ev = scored_period(data, ctx).filter(
            pl.col("registered_domain").is_not_null() & (pl.col("registered_domain") != "")
        )
        if ev.height == 0:
            return empty_anomalies()
        if self.skip_popular:
            from dnsieve.popular import load_popular

            doms = ev["registered_domain"].unique()
            look = load_popular().lookup(doms)
            platform = look["category"].is_in(["cdn", "cloud"])
            ranked = doms.filter(look["rank"].is_not_null() | platform.fill_null(False))
            ev = ev.filter(~pl.col("registered_domain").is_in(ranked.implode()))
            if ev.height == 0:
                return empty_anomalies()
        ev = ev.with_columns(window_columns(ctx))
        key = ["registered_domain", "window_start", "window_end"]
        ans = (
            ev.select([*key, "src_ip", "answers", "ttls"])
            .with_columns(
                pl.col("ttls").fill_null(pl.lit([], dtype=pl.List(pl.Float64))),
                pl.col("answers").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            )
            .filter(pl.col("answers").list.len() > 0)
        )
        if ans.height == 0:
            return empty_anomalies()
        # Pair answers with TTLs where the lengths agree; otherwise the TTL is unknown.
        same = pl.col("answers").list.len() == pl.col("ttls").list.len()
        ans = ans.with_columns(
            ttls=pl.when(same)
            .then(pl.col("ttls"))
            .otherwise(pl.col("answers").list.eval(pl.lit(None, dtype=pl.Float64)))
        ).explode(["answers", "ttls"])
        a = pl.col("answers").fill_null("")
        v4 = a.str.contains(_IPV4)
        v6 = a.str.contains(":") & a.str.contains(r"^[0-9a-f:.]+$")
        ans = ans.filter((v4 | v6) & ~a.str.contains(_PRIVATE)).with_columns(
            net24=pl.when(v4)
            .then(a.str.replace(r"\.\d{1,3}$", ""))
            .otherwise(a.str.split(":").list.head(3).list.join(":")),
            net16=pl.when(v4)
            .then(a.str.replace(r"\.\d{1,3}\.\d{1,3}$", ""))
            .otherwise(a.str.split(":").list.head(2).list.join(":")),
        )
        if ans.height == 0:
            return empty_anomalies()
        from dnsieve.ipasn import asn_of

        uniq = ans.select("answers").unique()
        uniq = uniq.with_columns(asn=asn_of(uniq["answers"]))
        ans = ans.join(uniq, on="answers", how="left").with_columns(
            network=pl.when(pl.col("asn").is_not_null())
            .then(pl.lit("AS") + pl.col("asn").cast(pl.String))
            .otherwise(pl.col("net16"))
        )
        df = (
            ans.group_by(key)
            .agg(
                distinct_ips=pl.col("answers").n_unique(),
                distinct_24=pl.col("net24").n_unique(),
                distinct_16=pl.col("net16").n_unique(),
                distinct_networks=pl.col("network").n_unique(),
                asns=pl.col("asn").drop_nulls().unique().sort().head(self.samples),
                median_ttl=pl.col("ttls").drop_nans().median(),
                min_ttl=pl.col("ttls").drop_nans().min(),
                clients=pl.col("src_ip").n_unique(),
                top_clients=pl.col("src_ip").drop_nulls().unique().sort().head(5),
                sample=pl.col("answers").unique().sort().head(self.samples),
            )
            .filter(pl.col("distinct_ips") >= self.min_ips)
        )
        if df.height == 0:
            return empty_anomalies()
        ttl_factor = (
            (300.0 / pl.col("median_ttl").clip(lower_bound=1.0)).clip(0.0, 1.0).fill_null(0.5)
        )
        spread = pl.col("distinct_networks") / pl.col("distinct_ips")
        df = df.with_columns(
            score=ttl_factor
            * (
                (1.0 + pl.col("distinct_networks").cast(pl.Float64)).log(2)
                + 0.5 * (1.0 + pl.col("distinct_16").cast(pl.Float64)).log(2)
            )
            * spread,
            spread=spread,
        )
        ttl_txt = (
            pl.when(pl.col("median_ttl").is_not_null())
            .then(pl.format(", median TTL {} s", pl.col("median_ttl").round(0).cast(pl.Int64)))
            .otherwise(pl.lit(""))
        )
        reason = pl.format(
            "{} resolved to {} addresses in {} networks (ASes) and {} /16s for {} host(s){}",
            pl.col("registered_domain"),
            pl.col("distinct_ips"),
            pl.col("distinct_networks"),
            pl.col("distinct_16"),
            pl.col("clients"),
            ttl_txt,
        )
        evidence = df.select(
            evidence_json(
                reason.alias("reason"),
                pl.col("top_clients").alias("clients"),
                pl.col("distinct_ips"),
                pl.col("distinct_networks"),
                pl.col("asns").alias("asn_sample"),
                pl.col("distinct_24").alias("distinct_slash24"),
                pl.col("distinct_16").alias("distinct_slash16"),
                tidy(pl.col("spread")),
                pl.col("median_ttl"),
                pl.col("min_ttl"),
                pl.col("clients").alias("distinct_clients"),
                pl.col("sample").alias("answer_sample"),
            )
        ).to_series()
        return anomaly_frame(
            self.name,
            self.entity_type,
            df["registered_domain"],
            df["window_start"],
            df["window_end"],
            df["score"].fill_nan(0.0).fill_null(0.0).round(9).replace(-0.0, 0.0),
            evidence=evidence,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """An hour: a flux domain answering from scattered hosts, a CDN from two /16s."""
        rng = np.random.default_rng(seed)
        t0 = datetime(2024, 3, 1, 14, 0, tzinfo=UTC)
        rows: list[dict[str, Any]] = []
        for _ in range(30):
            ips = [
                f"{int(rng.integers(11, 220))}.{int(rng.integers(0, 255))}.{int(rng.integers(0, 255))}.{int(rng.integers(1, 254))}"
                for _ in range(3)
            ]
            rows.append(
                {
                    "ts": t0 + timedelta(seconds=float(rng.uniform(0, 3600))),
                    "src_ip": f"10.4.0.{int(rng.integers(2, 20))}",
                    "qname": "login.flux-pharma.ru",
                    "qtype": "A",
                    "rcode": "NOERROR",
                    "answers": ips,
                    "ttls": [60.0, 60.0, 60.0],
                    "registered_domain": "flux-pharma.ru",
                    "subdomain": "login",
                    "tld": "ru",
                }
            )
        for _ in range(30):
            ips = [
                f"{[23, 104][int(rng.integers(0, 2))]}.64.{int(rng.integers(0, 4))}.{int(rng.integers(1, 254))}"
                for _ in range(2)
            ]
            rows.append(
                {
                    "ts": t0 + timedelta(seconds=float(rng.uniform(0, 3600))),
                    "src_ip": f"10.4.0.{int(rng.integers(2, 20))}",
                    "qname": "www.cdn-example.com",
                    "qtype": "A",
                    "rcode": "NOERROR",
                    "answers": ["www.cdn-example.com.edgekey.net", *ips],
                    "ttls": [300.0, 20.0, 20.0],
                    "registered_domain": "cdn-example.com",
                    "subdomain": "www",
                    "tld": "com",
                }
            )
        return example_events(rows)
