"""Newly observed domains that several hosts start to query within hours.

The classic phishing or Emotet-style campaign: a registered domain nobody on
this network has ever resolved appears, and within a few hours several hosts
query it (a mail campaign reached several inboxes; a dropper spread).  Most
never-seen domains are different: one user follows one link, and the domain
is never seen again or only by that host.

**New.**  A registered domain is new when its first query in the input comes
after a warm-up (``max_warmup_hours`` of history when scored in hourly windows,
as lakes and streams are, so a stream a few hours old calls nothing new; on a
short capture ``min(max_warmup_hours, warmup_share × span)``: nothing can be
called new without a look back) and it resolved at least once
(``NOERROR``; never-resolving names are :mod:`dga_host`'s business).  Local
and reverse names and single labels are ignored.

**Scored against this network.**  From the domain's first query, two counts:
``extra_hosts``, the hosts beyond the first that queried it within
``spread_hours``, and ``return_hours``, the hosts' distinct later query hours
within ``follow_hours`` (a dropper calls back; a one-off visit does not).
Over the population of new domains whose follow-up is fully observed, each
follows a negative binomial fitted by maximum likelihood on the
population's bulk, the likelihood truncated there
(:func:`dnsieve.detectors.dga_host.support_bulk`,
:func:`~dnsieve.detectors.dga_host.fit_truncated_nb`): campaigns and
adoptions lie beyond it and cannot inflate the fit.  The domain's p-value is
Fisher's combination of ``P(X ≥ extra_hosts)`` and ``P(Y ≥ return_hours)``;
with ``m`` new domains a day on this network, ``m · p`` is how many new
domains a day look like this by chance, and the score is ``−log10(m · p)``:
a score of 1 means "once in ten days here".  With fewer than
``min_new_domains`` new domains the fits fall back to a reference geometric
law (r = 1) with a mean of one.  ``censor_tail=True`` keeps the domains
beyond the bulk in the fit as "more than the bulk" (a heavier tail, fewer
alerts): on simulator seeds 1-3 it halved the false alerts but lost 5 of 13
campaigns, so it is off by default.

One row per (domain, window) in the follow-up, with the counts up to the
window's end, so the score grows as hosts arrive; the episode merges them.

**Established sites are not new.**  A domain in the popular list
(:func:`dnsieve.popular.popularity_rank`) that is first seen here after the
warm-up (nytimes.com, glassdoor.com on a short capture) is an established
site this network had not visited yet, not a freshly registered campaign
domain: it is left out of the new domains (and of the population fit) unless
``skip_popular=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
from dnsieve.detectors.dga_host import (
    fisher_combine,
    fit_truncated_nb,
    nb_window_logsf,
    support_bulk,
)
from dnsieve.detectors.frames import example_events, utc, window_columns

__all__ = ["NewDomainDetector", "NewDomainPopulation"]

_LOCAL = r"(^|\.)(arpa|local|localdomain|lan|home|internal|localhost|corp|intranet)$"
_LN10 = math.log(10.0)
#: Reference law without a population: geometric (size 1) with mean 1.
_REFERENCE = (1.0, 1.0, 0)


@dataclass(frozen=True)
class NewDomainPopulation:
    """Population state: first sightings, the NB of extra hosts, the daily rate."""

    first: pl.DataFrame  # rd, first_seen (new domains only)
    hosts: tuple[float, float, int]  # NB (mean, size, bulk end) of extra hosts
    returns: tuple[float, float, int]  # NB (mean, size, bulk end) of return hours
    new_per_day: float
    fitted_on: int
    method: str
    #: the fitted input's first event (warm-up of hourly scoring: :meth:`NewDomainDetector.new`)
    start: datetime | None = None


def _domain_events(data: pl.DataFrame) -> pl.DataFrame:
    need = {"ts", "src_ip", "registered_domain", "rcode"}
    if data.height == 0 or not need <= set(data.columns):
        return pl.DataFrame(
            schema={
                "ts": pl.Datetime("us", "UTC"),
                "src_ip": pl.String,
                "rd": pl.String,
                "ok": pl.Boolean,
            }
        )
    return data.select(
        "ts",
        "src_ip",
        rd=pl.col("registered_domain").cast(pl.String).str.to_lowercase(),
        ok=pl.col("rcode").cast(pl.String).fill_null("").str.to_uppercase() == "NOERROR",
    ).filter(
        pl.col("ts").is_not_null()
        & pl.col("src_ip").is_not_null()
        & (pl.col("src_ip") != "")
        & pl.col("rd").is_not_null()
        & pl.col("rd").str.contains(r"^[^.]+(\.[^.]+)+$")
        & ~pl.col("rd").str.contains(_LOCAL)
    )


@register
class NewDomainDetector(Detector):
    """Never-seen domains that several hosts begin to query within hours."""

    name: ClassVar[str] = "newdomain"
    techniques: ClassVar[tuple[str, ...]] = ("T1583.001", "T1566")
    entity_type: ClassVar[EntityType] = "domain"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = (
        "a domain never seen on this network that several hosts start to query within "
        "hours, scored against how often new domains appear here and how many hosts they reach"
    )
    #: Fewer than one such new domain in ten days on this network.
    score_floor: ClassVar[float] = 1.0

    def __init__(
        self,
        spread_hours: float = 3.0,
        follow_hours: float = 24.0,
        max_warmup_hours: float = 24.0,
        warmup_share: float = 0.25,
        tail_share: float = 0.01,
        min_new_domains: int = 30,
        max_clients: int = 5,
        censor_tail: bool = False,
        skip_popular: bool = True,
    ) -> None:
        self.spread_hours = spread_hours
        self.follow_hours = follow_hours
        self.max_warmup_hours = max_warmup_hours
        self.warmup_share = warmup_share
        self.tail_share = tail_share
        self.min_new_domains = min_new_domains
        self.max_clients = max_clients
        self.censor_tail = censor_tail
        self.skip_popular = skip_popular

    def skip_reason(self, span_seconds: float) -> str | None:
        """New domains need history: at least twice the spread."""
        if span_seconds < 2 * self.spread_hours * 3600:
            return f"needs at least {2 * self.spread_hours:g} h of data to call a domain new"
        return None

    def fit_population(self, data: pl.DataFrame) -> NewDomainDetector:
        """Fit first sightings and the population law on the whole input."""
        self.population_: NewDomainPopulation = self._fit(data)
        return self

    def _fit(self, data: pl.DataFrame) -> NewDomainPopulation:
        ev = _domain_events(data)
        if ev.height == 0:
            return NewDomainPopulation(
                ev.select("rd", first_seen="ts"), _REFERENCE, _REFERENCE, 0.0, 0, "reference"
            )
        lo, hi = ev["ts"].min(), ev["ts"].max()
        assert isinstance(lo, datetime) and isinstance(hi, datetime)
        span_h = (hi - lo).total_seconds() / 3600.0
        warm = min(self.max_warmup_hours, self.warmup_share * span_h)
        since = lo + timedelta(hours=warm)
        first = (
            ev.group_by("rd")
            .agg(first_seen=pl.col("ts").min(), ok=pl.col("ok").any())
            .filter(pl.col("ok") & (pl.col("first_seen") > since))
            .select("rd", "first_seen")
            .sort("rd")
        )
        if self.skip_popular and first.height:
            # An established site (in the popular list) first seen here is an adoption,
            # not a campaign: campaign domains are new on the Internet, not just here.
            from dnsieve.popular import popularity_rank

            first = first.filter(popularity_rank(first["rd"]).is_null())
        days = max((span_h - warm) / 24.0, 1.0 / 24.0)
        new_per_day = first.height / days
        # Domains whose whole follow-up horizon is observed give the population law.
        done = first.filter(pl.col("first_seen") + timedelta(hours=self.follow_hours) <= hi)
        stats_ = self._counts(ev.join(done, on="rd", how="inner"), None)
        n = stats_.height
        if n < self.min_new_domains:
            return NewDomainPopulation(
                first, _REFERENCE, _REFERENCE, new_per_day, n, "reference", lo
            )
        fits = []
        for col in ("extra_hosts", "return_hours"):
            tally = stats_[col].value_counts().sort(col)
            v, c = tally[col].to_numpy(), tally["count"].to_numpy()
            bulk = support_bulk(v, c, self.tail_share)
            mean, size = fit_truncated_nb(v, c, bulk, 0.5 / n, censor=self.censor_tail)
            fits.append((mean, size, bulk))
        return NewDomainPopulation(first, fits[0], fits[1], new_per_day, n, "truncated-mle", lo)

    def _counts(self, ev: pl.DataFrame, upto: str | None) -> pl.DataFrame:
        """Per domain (and window, when ``upto`` names the window-end column):
        ``extra_hosts`` (hosts beyond the first that arrived within
        ``spread_hours``) and ``return_hours`` (each host's distinct query hours
        after its first, within ``follow_hours``), counted before ``upto``."""
        spread = timedelta(hours=self.spread_hours)
        follow = timedelta(hours=self.follow_hours)
        ev = ev.filter(pl.col("ts") < pl.col("first_seen") + follow)
        keys = ["rd"] if upto is None else ["rd", "window_start", upto]
        if upto is not None:
            ev = ev.filter(pl.col("ts") < pl.col(upto))
        per_host = ev.group_by([*keys, "src_ip"]).agg(
            t=pl.col("ts").min(),
            hours=pl.col("ts").dt.truncate("1h").n_unique(),
            q=pl.len(),
            first_seen=pl.col("first_seen").first(),
        )
        return per_host.group_by(keys).agg(
            extra_hosts=(
                pl.col("src_ip").filter(pl.col("t") < pl.col("first_seen") + spread).n_unique() - 1
            ).clip(0),
            return_hours=(pl.col("hours").sum() - pl.len()).clip(0),
            hosts=pl.col("src_ip").n_unique(),
            last_new=pl.col("t").max(),
            first_seen=pl.col("first_seen").first(),
            clients=pl.struct("q", "src_ip")
            .sort_by(["q", "src_ip"], descending=[True, False])
            .struct.field("src_ip")
            .head(self.max_clients),
        )

    def new(self, pop: NewDomainPopulation, ctx: DetectContext) -> pl.DataFrame:
        """The new domains (``rd``, ``first_seen``) this period may call new.

        Scored in hourly windows (a lake, a stream), nothing is new before the
        full ``max_warmup_hours`` of history: a stream a few hours old must not
        call every domain it has not met yet new, and a run over the same lake
        then agrees with it.  A short capture, scored in shorter windows, keeps
        the warm-up of ``warmup_share`` of its span.
        """
        if ctx.window < 3600 or pop.start is None:
            return pop.first
        since = utc(pop.start) + timedelta(hours=self.max_warmup_hours)
        return pop.first.filter(pl.col("first_seen") > since)

    def population(self, data: pl.DataFrame, ctx: DetectContext) -> int:
        """New domains first seen in the scored period (calibration's population)."""
        pop = getattr(self, "population_", None) or self._fit(data)
        f = self.new(pop, ctx).filter(
            (pl.col("first_seen") >= utc(ctx.start)) & (pl.col("first_seen") < utc(ctx.end))
        )
        return f.height

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        pop = getattr(self, "population_", None) or self._fit(data)
        first = self.new(pop, ctx)
        if first.height == 0:
            return empty_anomalies()
        follow = timedelta(hours=self.follow_hours)
        ev = _domain_events(data).join(first, on="rd", how="inner")
        ev = ev.filter(pl.col("ts") < pl.col("first_seen") + follow)
        # The windows of the scored period in which the domain was queried.
        inside = ev.filter((pl.col("ts") >= utc(ctx.start)) & (pl.col("ts") < utc(ctx.end)))
        if inside.height == 0:
            return empty_anomalies()
        wins = (
            inside.with_columns(window_columns(ctx))
            .select("rd", "window_start", "window_end")
            .unique()
        )
        # Everything since the first sighting counts, up to each window's end.
        rows = self._counts(ev.join(wins, on="rd", how="inner"), "window_end")
        qs = (
            inside.with_columns(window_columns(ctx))
            .group_by("rd", "window_start")
            .agg(queries=pl.len())
        )
        rows = rows.join(qs, on=["rd", "window_start"], how="left").sort("rd", "window_start")
        x = rows["extra_hosts"].to_numpy().astype(np.float64)
        y = rows["return_hours"].to_numpy().astype(np.float64)
        one = np.ones_like(x)
        lp_hosts = nb_window_logsf(x, pop.hosts[0], pop.hosts[1], one)
        lp_return = nb_window_logsf(y, pop.returns[0], pop.returns[1], one)
        lp = fisher_combine(lp_hosts, lp_return)
        lp = np.maximum(np.nan_to_num(lp, nan=0.0, neginf=-700.0), -700.0)
        rate = max(pop.new_per_day, 1e-9)
        score = np.round(-(lp + math.log(rate)) / _LN10, 6) + 0.0
        from dnsieve.popular import popularity_rank

        ranks = popularity_rank(rows["rd"]).to_list()
        evidence = [
            _evidence(r, rank, pop, float(a), float(b), self.spread_hours, self.follow_hours)
            for r, rank, a, b in zip(
                rows.iter_rows(named=True), ranks, lp_hosts, lp_return, strict=True
            )
        ]
        return anomaly_frame(
            self.name,
            self.entity_type,
            rows["rd"],
            rows["window_start"],
            rows["window_end"],
            pl.Series(score),
            p_value=pl.Series(np.exp(lp)),
            evidence=evidence,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Two days of browsing; on day two, five hosts start querying one new domain."""
        rng = np.random.default_rng(seed)
        t0 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)
        rows: list[dict[str, Any]] = []
        sites = ["example.org", "wikipedia.org", "python.org", "github.com", "debian.org"]
        for _ in range(300):
            rows.append(
                _row(
                    t0 + timedelta(seconds=float(rng.uniform(0, 48 * 3600))),
                    f"10.1.0.{int(rng.integers(2, 40))}",
                    sites[int(rng.integers(0, len(sites)))],
                )
            )
        # one-off long-tail visits: a never-seen domain, one host each
        for i in range(40):
            rows.append(
                _row(
                    t0 + timedelta(hours=20 + float(rng.uniform(0, 24))),
                    f"10.1.0.{int(rng.integers(2, 40))}",
                    f"longtail{i}-{int(rng.integers(0, 1000))}.net",
                )
            )
        start = t0 + timedelta(hours=30)
        for h in range(5):
            for _ in range(3):
                rows.append(
                    _row(
                        start + timedelta(minutes=20 * h + float(rng.uniform(0, 10))),
                        f"10.1.0.{50 + h}",
                        "invoice-portal-login.com",
                    )
                )
        return example_events(rows)


def _row(ts: datetime, client: str, reg: str) -> dict[str, Any]:
    return {
        "ts": ts,
        "src_ip": client,
        "qname": "www." + reg,
        "qtype": "A",
        "rcode": "NOERROR",
        "answers": ["192.0.2.10"],
        "ttls": [300.0],
        "registered_domain": reg,
        "subdomain": "www",
        "tld": reg.rsplit(".", 1)[-1],
    }


def _evidence(
    r: dict[str, Any],
    rank: int | None,
    pop: NewDomainPopulation,
    lp_hosts: float,
    lp_return: float,
    spread_hours: float,
    follow_hours: float,
) -> dict[str, Any]:
    hosts = int(r["hosts"])
    early = int(r["extra_hosts"]) + 1
    first: datetime = r["first_seen"]
    last: datetime = r["last_new"]
    within = max((last - first).total_seconds() / 3600.0, 0.0)
    reason = (
        f"never-seen domain {r['rd']} was queried by {hosts} host(s) within {within:.1f} h "
        f"of its first query ({first:%Y-%m-%d %H:%M} UTC), {early} of them in the first "
        f"{spread_hours:g} h, and they came back in {int(r['return_hours'])} later hour(s); "
        f"here a new domain reaches {1.0 + pop.hosts[0]:.2f} host(s) in {spread_hours:g} h "
        f"on average and {pop.new_per_day:.0f} new domains appear a day"
    )
    return {
        "reason": reason,
        "clients": list(r["clients"] or []),
        "distinct_clients": hosts,
        "clients_first_hours": early,
        "return_hours": int(r["return_hours"]),
        "queries_in_window": int(r["queries"] or 0),
        "first_seen": first.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "hours_to_last_new_client": round(within, 3),
        "p_hosts": float(f"{math.exp(lp_hosts):.3g}"),
        "p_return": float(f"{math.exp(lp_return):.3g}"),
        "population_mean_extra_hosts": round(pop.hosts[0], 4),
        "population_mean_return_hours": round(pop.returns[0], 4),
        "population_fit": pop.method,
        "new_domains_per_day": round(pop.new_per_day, 2),
        "follow_hours": follow_hours,
        "popularity_rank": rank,
    }
