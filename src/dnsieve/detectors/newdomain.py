"""Newly observed domains that several hosts start to query within hours.

The classic phishing or Emotet-style campaign: a registered domain nobody on
this network has ever resolved appears, and within a few hours several hosts
query it (a mail campaign reached several inboxes; a dropper spread).  Most
never-seen domains are different: one user follows one link, and the domain
is never seen again or only by that host.

**New.**  A registered domain is a candidate when its first query in the
input comes after the input's first event, it resolved at least once
(``NOERROR``; never-resolving names are :mod:`dga_host`'s business) and at
least two hosts queried it (one host's new domain is for the host detectors).
Local and reverse names and single labels are ignored.  There is no fixed
warm-up: how much the history says is measured per domain.  If the domain were
an established one that the history simply had not met, its lookups would fall
anywhere in its visitors' browsing; all ``k`` of its host-hours in the first
``spread_hours`` falling after its first sighting has probability
``(since / (before + since)) ** k`` (:func:`onset_logp`), ``before`` and
``since`` being the visitors' browsing (distinct registered domains per
host-hour, :func:`visitor_activity`: telemetry keeps a workstation active all
night, but a site people visit could only have been met while they browsed)
before the first sighting and since.  Ten hosts after 18 h unseen: about 1e-13;
five hosts in the first hour of a stream: about 0.3.  The domain's p-value is
the larger of this onset p-value and the spread p-value below (both must hold:
an intersection-union test), so a stream a few hours old calls nothing new
unless the onset is overwhelming, and a run over the same lake agrees.  The
population law and the daily rate ``m`` are still fitted on the domains first
seen after ``min(max_warmup_hours, warmup_share × span)`` (the first hours are
full of long-tail domains met for the first time).

**Scored against this network.**  From the domain's first query, two counts:
``extra_hosts``, the hosts beyond the first that queried it within
``spread_hours``, and ``return_hours``, the hosts' distinct later query hours
within ``follow_hours`` (a dropper calls back; a one-off visit does not).
Over the population of new domains whose horizon for that count is observed
(``spread_hours`` for the hosts, ``follow_hours`` for the returns), each
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

__all__ = [
    "NewDomainDetector",
    "NewDomainPopulation",
    "browsing_counts",
    "fit_method",
    "host_browsing",
    "onset_logp",
    "visitor_activity",
]

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
    #: the fitted input's first event
    start: datetime | None = None
    #: every first sighting after the input's first event (the scored candidates)
    candidates: pl.DataFrame | None = None


def fit_method(fits: list[tuple[float, float, int]]) -> str:
    """How the (spread, returns) laws were fitted: each is a truncated MLE, or the
    reference law when too few new domains had their horizon observed.

    >>> fit_method([(1.0, 2.0, 3), _REFERENCE])
    'truncated-mle spread, reference returns'
    """
    fitted = [f is not _REFERENCE for f in fits]
    if all(fitted):
        return "truncated-mle"
    return "truncated-mle spread, reference returns" if fitted[0] else "reference"


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


def _us(s: pl.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the Unix epoch."""
    return s.cast(pl.Datetime("us", "UTC")).dt.epoch("us").to_numpy().astype(np.int64)


def host_browsing(counts: pl.DataFrame) -> pl.DataFrame:
    """Cumulative browsing per host: ``src_ip, h, n`` (``n``: distinct registered domains
    per hour summed up to hour ``h``) from per host-hour counts ``src_ip, h, w``.

    A mergeable statistic: the counts can be reduced anywhere (a cluster) and only
    they brought here."""
    return (
        counts.sort("src_ip", "h")
        .with_columns(n=pl.col("w").cum_sum().over("src_ip"))
        .sort("h")
        .select("src_ip", pl.col("h").cast(pl.Datetime("us", "UTC")), "n")
    )


def browsing_counts(events: pl.DataFrame) -> pl.DataFrame:
    """Distinct registered domains per host and hour (``src_ip, h, w``) of ``events``
    (``ts, src_ip, rd``)."""
    return events.group_by("src_ip", h=pl.col("ts").dt.truncate("1h")).agg(
        w=pl.col("rd").n_unique()
    )


def visitor_activity(
    events: pl.DataFrame | None,
    visits: pl.DataFrame,
    rows: pl.DataFrame,
    horizon: timedelta,
    browsing: pl.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The onset evidence per row of ``rows`` (``rd, window_end, first_seen``).

    Within ``[first_seen, cut)``, ``cut = min(window_end, first_seen + horizon)``:
    the domain's lookups in distinct host-hours (``visits``: ``rd, ts, src_ip``),
    and its visitors' *browsing*, the distinct registered domains they queried
    per hour (from ``events``: ``ts, src_ip, rd``), summed before the first
    sighting's hour and from it to the last whole hour before ``cut`` (at least
    the first sighting's hour: causal for hour-aligned windows).  Browsing, not bare activity: a
    workstation's telemetry keeps it active all night, but a domain people
    visit could only have been met in the hours they browsed.
    ``browsing`` (:func:`host_browsing`), when given, replaces the browsing of
    ``events`` (a distributed engine reduces it over all hosts on the cluster).
    Returns (host_hours, before, since).
    """
    if browsing is not None:
        active = browsing
    else:
        assert events is not None
        active = host_browsing(browsing_counts(events))
    cut = rows.with_columns(
        cut=pl.min_horizontal(pl.col("window_end"), pl.col("first_seen") + horizon)
    )
    seen = (
        visits.select("rd", "ts", "src_ip")
        .join(cut, on="rd", how="inner")
        .filter(pl.col("ts") < pl.col("cut"))
    )
    hh = seen.group_by("rd", "window_end").agg(
        k=pl.struct("src_ip", pl.col("ts").dt.truncate("1h")).n_unique()
    )
    who = (
        seen.select("rd", "window_end", "src_ip", "first_seen", "cut")
        .unique(["rd", "window_end", "src_ip"])
        .with_columns(
            a=pl.col("first_seen").dt.truncate("1h") - timedelta(microseconds=1),
            # whole hours only (a later part of the cut's hour is after the window):
            # from the first sighting's hour to the last hour boundary before the cut
            b=pl.max_horizontal(
                pl.col("cut").dt.truncate("1h"),
                pl.col("first_seen").dt.truncate("1h") + timedelta(hours=1),
            )
            - timedelta(microseconds=1),
        )
    )

    def upto(col: str) -> pl.DataFrame:
        w = who.with_columns(pl.col(col).cast(pl.Datetime("us", "UTC")).alias("h")).sort("h")
        return w.join_asof(
            active, on="h", by="src_ip", strategy="backward", check_sortedness=False
        ).select("rd", "window_end", "src_ip", pl.col("n").fill_null(0).alias(col))

    both = upto("a").join(upto("b"), on=["rd", "window_end", "src_ip"])
    per_row = both.group_by("rd", "window_end").agg(
        before=pl.col("a").sum(), since=(pl.col("b") - pl.col("a")).sum()
    )
    out = rows.join(per_row, on=["rd", "window_end"], how="left", maintain_order="left").join(
        hh, on=["rd", "window_end"], how="left", maintain_order="left"
    )
    return (
        out["k"].fill_null(0).to_numpy().astype(np.float64),
        out["before"].fill_null(0).to_numpy().astype(np.float64),
        out["since"].fill_null(0).to_numpy().astype(np.float64),
    )


def onset_logp(host_hours: np.ndarray, before: np.ndarray, since: np.ndarray) -> np.ndarray:
    """log P(a domain this active would have gone unseen in the history).

    If the domain were an established one, queried at a steady share of the
    network's activity, its ``host_hours`` (distinct host × hour lookups)
    would fall anywhere in the history and the time since; all of them after
    its first sighting has probability ``(since / (before + since)) ** host_hours``
    (the order statistics of a Poisson process, whatever its rate).  Ten hosts
    after 18 h unseen: about 1e-13; one host after two hours: about 0.3.

    >>> np.round(np.exp(onset_logp(np.array([1.0, 3.0]), np.array([6.0, 18.0]),
    ...                            np.array([3.0, 3.0]))), 4).tolist()
    [0.3333, 0.0029]
    """
    b = np.maximum(np.asarray(before, dtype=np.float64), 0.0)
    a = np.maximum(np.asarray(since, dtype=np.float64), 1e-12)
    return np.asarray(host_hours, dtype=np.float64) * np.log(a / (a + b))


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
        every = (
            ev.group_by("rd")
            .agg(first_seen=pl.col("ts").min(), ok=pl.col("ok").any())
            .filter(pl.col("ok") & (pl.col("first_seen") > lo))
            .select("rd", "first_seen")
            .sort("rd")
        )
        if self.skip_popular and every.height:
            # An established site (in the popular list) first seen here is an adoption,
            # not a campaign: campaign domains are new on the Internet, not just here.
            from dnsieve.popular import popularity_rank

            every = every.filter(popularity_rank(every["rd"]).is_null())
        # The population law and rate: first sightings after the warm-up only (the
        # first hours are full of long-tail domains met for the first time).
        first = every.filter(pl.col("first_seen") > since)
        days = max((span_h - warm) / 24.0, 1.0 / 24.0)
        new_per_day = first.height / days
        # Each law is fitted on the domains whose own horizon is observed: the spread
        # (extra hosts) after ``spread_hours``, the returns after ``follow_hours``; a
        # day-old capture has a spread law long before it has a return law.
        fits: list[tuple[float, float, int]] = []
        counts: list[int] = []
        for col, hours in (("extra_hosts", self.spread_hours), ("return_hours", self.follow_hours)):
            done = first.filter(pl.col("first_seen") + timedelta(hours=hours) <= hi)
            stats_ = self._counts(ev.join(done, on="rd", how="inner"), None)
            n = stats_.height
            counts.append(n)
            if n < self.min_new_domains:
                fits.append(_REFERENCE)
                continue
            tally = stats_[col].value_counts().sort(col)
            v, c = tally[col].to_numpy(), tally["count"].to_numpy()
            bulk = support_bulk(v, c, self.tail_share)
            mean, size = fit_truncated_nb(v, c, bulk, 0.5 / n, censor=self.censor_tail)
            fits.append((mean, size, bulk))
        return NewDomainPopulation(
            first, fits[0], fits[1], new_per_day, counts[0], fit_method(fits), lo, every
        )

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
        """The first sightings (``rd``, ``first_seen``) this period may score.

        Every domain first seen after the input's first event is a candidate,
        however short the history: how much the history says is the domain's
        own onset p-value (:func:`onset_logp`), not a fixed warm-up, so a
        stream a few hours old and a run over the same lake score a window alike.
        """
        return pop.candidates if pop.candidates is not None else pop.first

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
        # A campaign reaches several hosts: one host's new domain is for the host
        # detectors (beacon, dga_host, tunnel), however often it calls.
        rows = rows.filter(pl.col("hosts") >= 2)
        if rows.height == 0:
            return empty_anomalies()
        x = rows["extra_hosts"].to_numpy().astype(np.float64)
        y = rows["return_hours"].to_numpy().astype(np.float64)
        one = np.ones_like(x)
        lp_hosts = nb_window_logsf(x, pop.hosts[0], pop.hosts[1], one)
        lp_return = nb_window_logsf(y, pop.returns[0], pop.returns[1], one)
        lp_spread = fisher_combine(lp_hosts, lp_return)
        # Is the onset real?  The domain's host-hours so far against its visitors'
        # active hours before and since its first sighting.
        first_us = _us(rows["first_seen"])
        t0 = _us(pl.Series([pop.start or rows["first_seen"].min()], dtype=rows["first_seen"].dtype))
        browsing = getattr(self, "browsing_", None)  # reduced on a cluster, or None
        dom_ev = None if browsing is not None else _domain_events(data)
        host_hours, before, since = visitor_activity(
            None
            if dom_ev is None
            else dom_ev.filter(pl.col("ts") >= pl.lit(pop.start or rows["first_seen"].min())),
            ev,
            rows.select("rd", "window_end", "first_seen"),
            timedelta(hours=self.spread_hours),
            browsing,
        )
        lp_onset = onset_logp(host_hours, before, since)
        # Both must hold: a new domain (onset) that spread unusually (spread).
        lp = np.maximum(lp_spread, lp_onset)
        lp = np.maximum(np.nan_to_num(lp, nan=0.0, neginf=-700.0), -700.0)
        rate = max(pop.new_per_day, 1e-9)
        score = np.round(-(lp + math.log(rate)) / _LN10, 6) + 0.0
        from dnsieve.popular import popularity_rank

        ranks = popularity_rank(rows["rd"]).to_list()
        hist_h = (first_us - t0) / 3.6e9
        evidence = [
            _evidence(
                r,
                rank,
                pop,
                (float(a), float(b), float(o)),
                float(h),
                self.spread_hours,
                self.follow_hours,
            )
            for r, rank, a, b, o, h in zip(
                rows.iter_rows(named=True),
                ranks,
                lp_hosts,
                lp_return,
                lp_onset,
                hist_h,
                strict=True,
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
        """Two days of browsing; on day two, five of the browsing hosts start querying one new domain."""
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
                        f"10.1.0.{5 + 3 * h}",
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
    lps: tuple[float, float, float],
    history_hours: float,
    spread_hours: float,
    follow_hours: float,
) -> dict[str, Any]:
    lp_hosts, lp_return, lp_onset = lps
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
        f"on average and {pop.new_per_day:.0f} new domains appear a day; unseen in the "
        f"{history_hours:.1f} h of history before, where a domain this active would have "
        f"gone unseen with probability {math.exp(lp_onset):.2g}"
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
        "p_unseen_if_established": float(f"{math.exp(lp_onset):.3g}"),
        "history_hours": round(history_hours, 3),
        "population_mean_extra_hosts": round(pop.hosts[0], 4),
        "population_mean_return_hours": round(pop.returns[0], 4),
        "population_fit": pop.method,
        "new_domains_per_day": round(pop.new_per_day, 2),
        "follow_hours": follow_hours,
        "popularity_rank": rank,
    }
