"""Atypical visitors, masquerading traffic and DNS profile changes (ARCHITECTURE §5).

Both detectors compare the scored windows with a *baseline*.  For
``profile`` it is the input rows before ``ctx.start``; for ``visitors`` it is
everything before the window (the rows before ``ctx.start`` and the earlier
scored windows alike), so a one-shot run over a whole lake is scored window by
window, and a window is scored once ``min_history_hours`` (12 h) of data lie
before it.  Without a baseline (a single short capture) there is nothing to
compare with and they return no candidates.

``visitors`` (entity: registered domain)
    Emotet-style campaigns make many hosts suddenly resolve a domain that
    few or none resolved before.  Per domain and window: its current visitors
    ``V_C``, its baseline visitors ``V_B``, and the *new* visitors
    ``N = V_C − V_B`` restricted to hosts active for at least
    ``min_history_hours`` before the window (a newly installed host visits
    everything for the first time).  Windows are at least ``min_window``
    (3 h) long: a campaign reaches its hosts over hours, and an hourly window
    splits it (ten of 200 hosts over two hours are five and five).  With
    ``rarity = 1 − |V_B| / |baseline clients|``::

        score = log2(1 + |N|) * (|N| / |V_C|) * rarity

    A brand-new domain gaining 12 established hosts scores ~3.7; a popular
    domain one more host visits scores ~0.  Each window counts its visitors
    over a span reaching ``lookback_hours`` (3 h, at most one window, never
    into the first ``min_history_hours``) back, so a campaign that straddles
    a window edge is counted whole in the window where it ends.

``profile`` (entity: client)
    A host whose DNS behaviour changes abruptly (new software, an implant, a
    takeover).  Per client and window: the Jensen–Shannon divergence (base 2,
    in [0, 1]) between its baseline and current distribution of registered
    domains, and of query types.  Confidence grows with the number of queries
    on both sides::

        score = (JSD_domains * share_new + JSD_qtypes) * min(1, n_current / 50) * min(1, n_base / 50)

    where ``share_new`` is the share of the current queries that go to
    domains the host never asked for in the baseline (so churn among familiar
    domains counts less than a move to unknown ones).
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
    utc,
    window_columns,
)

__all__ = ["ProfileDetector", "VisitorsDetector", "jensen_shannon"]

_LOCAL = r"(^|\.)(arpa|local|localdomain|lan|home|internal|localhost)$"


def _baseline(data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    return data.filter(pl.col("ts").is_not_null() & (pl.col("ts") < utc(ctx.start)))


def _usable(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(
        pl.col("src_ip").is_not_null()
        & pl.col("registered_domain").is_not_null()
        & pl.col("registered_domain").str.contains(".", literal=True)
        & ~pl.col("registered_domain").str.contains(_LOCAL)
    )


def jensen_shannon(counts: pl.DataFrame, key: list[str], item: str) -> pl.DataFrame:
    """Jensen–Shannon divergence (base 2) per ``key`` between two count columns.

    ``counts`` has columns ``key + [item, "nb", "nc"]`` (baseline and current
    counts, nulls allowed); returns ``key + ["jsd"]``.

    >>> df = pl.DataFrame({"k": [1, 1, 2, 2], "i": ["a", "b", "a", "b"],
    ...                    "nb": [10, 0, 5, 5], "nc": [0, 10, 5, 5]})
    >>> jensen_shannon(df, ["k"], "i").sort("k")["jsd"].round(3).to_list()
    [1.0, 0.0]
    """
    c = counts.with_columns(
        pl.col("nb").fill_null(0).cast(pl.Float64), pl.col("nc").fill_null(0).cast(pl.Float64)
    )
    c = c.with_columns(
        pb=pl.col("nb") / pl.col("nb").sum().over(key),
        pc=pl.col("nc") / pl.col("nc").sum().over(key),
    ).with_columns(m=(pl.col("pb") + pl.col("pc")) / 2)

    def kl(p: str) -> pl.Expr:
        return (
            pl.when(pl.col(p) > 0).then(pl.col(p) * (pl.col(p) / pl.col("m")).log(2)).otherwise(0.0)
        )

    return c.group_by(key).agg(jsd=(0.5 * kl("pb") + 0.5 * kl("pc")).sum().clip(0.0, 1.0))


def _example(seed: int) -> pl.DataFrame:
    """Two days: a stable office, then on day two eight hosts start resolving
    a domain nobody knew, and one host's profile changes."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)
    common = ["example.org", "wikipedia.org", "python.org", "office-suite.com", "news.example"]
    rows: list[dict[str, Any]] = []

    def add(t: float, client: str, dom: str, qtype: str = "A") -> None:
        rows.append(
            {
                "ts": t0 + timedelta(seconds=t),
                "src_ip": client,
                "qname": "www." + dom,
                "qtype": qtype,
                "rcode": "NOERROR",
                "registered_domain": dom,
                "subdomain": "www",
                "tld": dom.rsplit(".", 1)[1],
            }
        )

    for _ in range(600):
        add(
            float(rng.uniform(0, 172800)),
            f"10.3.0.{int(rng.integers(2, 14))}",
            common[int(rng.integers(0, 5))],
        )
    for i in range(8):
        for _ in range(3):
            add(86400 + float(rng.uniform(0, 86400)), f"10.3.0.{2 + i}", "invoice-docs.top")
    for _ in range(60):
        add(
            86400 + float(rng.uniform(0, 86400)),
            "10.3.0.13",
            f"cdn{int(rng.integers(0, 30))}.example",
            "TXT",
        )
    return example_events(rows)


@register
class VisitorsDetector(Detector):
    """A domain suddenly visited by hosts outside its usual visitor set."""

    name: ClassVar[str] = "visitors"
    techniques: ClassVar[tuple[str, ...]] = ("T1566", "T1105")
    entity_type: ClassVar[EntityType] = "domain"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = "new or rare domains suddenly visited by many established hosts"
    score_floor: ClassVar[float] = 3.0

    def __init__(
        self,
        min_new_visitors: int = 3,
        samples: int = 10,
        min_history_hours: float = 12.0,
        min_window: float = 3 * 3600.0,
        lookback_hours: float = 3.0,
    ) -> None:
        self.min_new_visitors = min_new_visitors
        self.samples = samples
        self.min_history_hours = min_history_hours
        self.min_window = min_window
        self.lookback_hours = lookback_hours

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        every = _usable(data.filter(pl.col("ts").is_not_null()))
        cur = _usable(scored_period(data, ctx))
        if every.height == 0 or cur.height == 0:
            return empty_anomalies()
        hist = timedelta(hours=self.min_history_hours)
        t_first = every.get_column("ts").min()
        cur = cur.with_columns(window_columns(ctx, min_window=self.min_window))
        # a window's baseline is everything before it: it needs enough history
        cur = cur.filter(pl.col("window_start") >= pl.lit(t_first) + hist)
        if cur.height == 0:
            return empty_anomalies()
        key = ["registered_domain", "window_start", "window_end"]
        first_visit = every.group_by("registered_domain", "src_ip").agg(first=pl.col("ts").min())
        first_active = every.group_by("src_ip").agg(active_since=pl.col("ts").min())
        pairs = self._span_pairs(every, cur, ctx)
        # new: an established host (active for the history span) whose first
        # lookup of the domain ever is in this window's span
        new = (
            pairs.join(first_visit, on=["registered_domain", "src_ip"], how="left")
            .join(first_active, on="src_ip", how="left")
            .filter(
                (pl.col("first") >= pl.col("span_start"))
                & (pl.col("active_since") <= pl.col("window_start") - hist)
            )
        )
        tot = pairs.group_by(key).agg(visitors=pl.len(), span_start=pl.col("span_start").first())
        # most involved first (most lookups; ties by address)
        new = new.sort(["n", "src_ip"], descending=[True, False])
        agg = new.group_by(key).agg(
            new_visitors=pl.len(),
            sample=pl.col("src_ip").sort().head(self.samples),
            clients=pl.col("src_ip").head(5),
        )
        cand = agg.filter(pl.col("new_visitors") >= self.min_new_visitors)
        if cand.height == 0:
            return empty_anomalies()
        starts = cand.select("window_start").unique()
        known = (
            starts.join(first_active, how="cross")
            .filter(pl.col("active_since") <= pl.col("window_start") - hist)
            .group_by("window_start")
            .agg(baseline_clients=pl.len())
        )
        base_vis = (
            cand.select(key)
            .join(tot.select(*key, "span_start"), on=key, how="left")
            .join(first_visit, on="registered_domain", how="inner")
            .filter(pl.col("first") < pl.col("span_start"))
            .group_by(key)
            .agg(baseline_visitors=pl.len())
        )
        df = (
            cand.join(tot, on=key, how="left")
            .join(base_vis, on=key, how="left")
            .join(known, on="window_start", how="left")
            .with_columns(
                pl.col("baseline_visitors").fill_null(0), pl.col("baseline_clients").fill_null(0)
            )
            .filter(pl.col("baseline_clients") > 0)
        )
        if df.height == 0:
            return empty_anomalies()
        df = df.with_columns(
            new_share=pl.col("new_visitors") / pl.col("visitors"),
            rarity=1.0 - pl.col("baseline_visitors") / pl.col("baseline_clients"),
        ).with_columns(
            score=(1.0 + pl.col("new_visitors").cast(pl.Float64)).log(2)
            * pl.col("new_share")
            * pl.col("rarity").clip(0.0, 1.0)
        )
        hours = ((pl.col("window_end") - pl.col("span_start")).dt.total_seconds() / 3600).round(1)
        reason = pl.format(
            "{} was looked up by {} hosts that had never queried it in the baseline "
            "({} visitors in {} h; {} of {} baseline hosts knew it{})",
            pl.col("registered_domain"),
            pl.col("new_visitors"),
            pl.col("visitors"),
            hours,
            pl.col("baseline_visitors"),
            pl.col("baseline_clients"),
            pl.when(pl.col("baseline_visitors") == 0)
            .then(pl.lit(": a domain never seen here"))
            .otherwise(pl.lit("")),
        )
        evidence = df.select(
            evidence_json(
                reason.alias("reason"),
                pl.col("clients"),
                pl.col("visitors"),
                pl.col("new_visitors"),
                tidy(pl.col("new_share")),
                pl.col("baseline_visitors"),
                pl.col("baseline_clients"),
                (pl.col("baseline_visitors") == 0).alias("new_domain"),
                pl.col("sample").alias("new_visitor_sample"),
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

    def _span_pairs(
        self, every: pl.DataFrame, cur: pl.DataFrame, ctx: DetectContext
    ) -> pl.DataFrame:
        """(domain, window, host) visits over each scored window's *span*: the window
        and the ``lookback_hours`` before it (at most one window back, and not into
        the first ``min_history_hours``).

        A campaign of a few hours that straddles a window edge is then counted
        whole in the window where it ends, not split in two halves that each look
        small.  Only rows before the window's end are used (causal).
        """
        key = ["registered_domain", "window_start", "window_end"]
        wins = cur.select(key).unique()
        width_us = int(max(ctx.window, self.min_window) * 1_000_000)
        back_us = min(int(self.lookback_hours * 3.6e9), width_us)
        t_first = every.get_column("ts").min()
        floor = pl.lit(t_first) + timedelta(hours=self.min_history_hours)
        dom = every.join(
            wins.select("registered_domain").unique(), on="registered_domain"
        ).with_columns(window_columns(ctx, min_window=self.min_window))
        own = dom.select("registered_domain", "window_start", "src_ip", "ts")
        # the rows in the last lookback of a window also belong to the next one's span
        nxt = own.filter(
            pl.col("ts") >= pl.col("window_start") + pl.duration(microseconds=width_us - back_us)
        ).with_columns(pl.col("window_start") + pl.duration(microseconds=width_us))
        return (
            pl.concat([own, nxt])
            .join(wins, on=["registered_domain", "window_start"], how="inner")
            .with_columns(
                span_start=pl.max_horizontal(
                    pl.col("window_start") - pl.duration(microseconds=back_us), floor
                )
            )
            .filter(pl.col("ts") >= pl.col("span_start"))
            .group_by([*key, "src_ip"])
            .agg(n=pl.len(), span_start=pl.col("span_start").first())
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        return _example(seed)


@register
class ProfileDetector(Detector):
    """A host whose DNS profile (domains, query types) changes abruptly."""

    name: ClassVar[str] = "profile"
    techniques: ClassVar[tuple[str, ...]] = ("T1071.004",)
    entity_type: ClassVar[EntityType] = "client"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = (
        "Jensen-Shannon divergence of a host's domain and qtype mix vs its baseline"
    )
    score_floor: ClassVar[float] = 0.9

    def __init__(self, min_queries: int = 50, samples: int = 10) -> None:
        self.min_queries = min_queries
        self.samples = samples

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        base = _usable(_baseline(data, ctx))
        cur = _usable(scored_period(data, ctx))
        if base.height == 0 or cur.height == 0:
            return empty_anomalies()
        cur = cur.with_columns(window_columns(ctx))
        wins = cur.select("window_start", "window_end").unique()
        key = ["src_ip", "window_start", "window_end"]
        out = []
        for item in ("registered_domain", "qtype"):
            b = (
                base.group_by("src_ip", item)
                .agg(nb=pl.len())
                .join(wins, how="cross")
                .join(cur.select("src_ip").unique(), on="src_ip", how="semi")
            )
            c = cur.group_by([*key, item]).agg(nc=pl.len())
            both = c.join(b, on=[*key, item], how="full", coalesce=True)
            both = both.join(c.select(key).unique(), on=key, how="semi")
            out.append(jensen_shannon(both, key, item).rename({"jsd": f"jsd_{item}"}))
        nb = base.group_by("src_ip").agg(n_base=pl.len())
        seen = base.select("src_ip", "registered_domain").unique()
        novel = cur.join(seen, on=["src_ip", "registered_domain"], how="anti")
        nov = novel.group_by(key).agg(
            novel_queries=pl.len(),
            novel_domains=pl.col("registered_domain").n_unique(),
            sample=pl.col("registered_domain").unique().sort().head(self.samples),
        )
        df = (
            cur.group_by(key)
            .agg(n_current=pl.len())
            .join(nb, on="src_ip", how="inner")
            .join(out[0], on=key, how="left")
            .join(out[1], on=key, how="left")
            .join(nov, on=key, how="left")
            .with_columns(
                pl.col("novel_queries").fill_null(0), pl.col("novel_domains").fill_null(0)
            )
        )
        if df.height == 0:
            return empty_anomalies()
        m = float(self.min_queries)
        df = df.with_columns(share_new=pl.col("novel_queries") / pl.col("n_current")).with_columns(
            score=(
                pl.col("jsd_registered_domain").fill_null(0.0) * pl.col("share_new")
                + pl.col("jsd_qtype").fill_null(0.0)
            )
            * (pl.col("n_current") / m).clip(0.0, 1.0)
            * (pl.col("n_base") / m).clip(0.0, 1.0)
        )
        reason = pl.format(
            "{} sent {} queries in {} h, {} % of them to {} domains it had never queried "
            "(change of its domain mix {}, of its query types {}, Jensen-Shannon 0-1)",
            pl.col("src_ip"),
            pl.col("n_current"),
            ((pl.col("window_end") - pl.col("window_start")).dt.total_seconds() / 3600).round(1),
            (100 * pl.col("share_new")).round(0).cast(pl.Int64),
            pl.col("novel_domains"),
            pl.col("jsd_registered_domain").fill_null(0.0).round(2),
            pl.col("jsd_qtype").fill_null(0.0).round(2),
        )
        evidence = df.select(
            evidence_json(
                reason.alias("reason"),
                pl.concat_list(pl.col("src_ip")).alias("clients"),
                pl.col("n_current").alias("queries"),
                pl.col("n_base").alias("baseline_queries"),
                tidy(pl.col("jsd_registered_domain")).alias("jsd_domains"),
                tidy(pl.col("jsd_qtype")).alias("jsd_qtypes"),
                tidy(pl.col("share_new")).alias("share_to_new_domains"),
                pl.col("novel_domains").alias("new_domains"),
                pl.col("sample").alias("new_domain_sample"),
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
        return _example(seed)
