"""Beaconing per client × registered domain (ARCHITECTURE §5).

Implants call home on a timer, so the gaps between one client's lookups of its
C2 domain are regular.  Per (client, registered domain) and window, the series
judged is the window's *span*: the window and the ``lookback`` before it (24 h
by default; over 6 h tiles, the tile and the three before it).  Lookups closer
than ``min_gap`` seconds (A+AAAA pairs, retries) are first collapsed into one
*connection*; the gaps between consecutive connections of the span, across
window boundaries, are then tested for regularity.  A window is judged for the
pairs that looked the domain up in it.

**Regularity test.**  ``P`` is the median gap of the span (the period: robust
to missed beats and to a few stray lookups).  A gap is *on the beat* when
``|gap/P − 1| ≤ jitter_tolerance`` (30 % by default: a timer with up to 30 %
jitter keeps every gap on the beat).  Under the null hypothesis of irregular
lookups a gap is on the beat with probability ``p0``; the number ``k`` of
on-beat gaps among ``m`` is then Binomial(m, p0) and the evidence is the
binomial tail::

    p = P(K ≥ k | m, p0)            score = −log10(p) · ttl_factor · prevalence_factor

so the evidence grows with the number of beats, not only with their
regularity: six regular lookups are weak evidence, sixty are overwhelming.
The test is run at three tolerances (a sixth, a third and all of
``jitter_tolerance``: 5 %, 10 % and 30 %), each with its own fitted null, and
the most significant is kept at the cost of ``log10(3)`` (Bonferroni): a
steady timer is judged on how steady it is, a jittery one still within 30 %.
A missed beat costs one off-beat gap (the others stay on the beat); a
low-and-slow beacon (a period of up to an hour) gathers its beats over the
span.

*Why one span and not per-tile counts added up* (issue 11: the simulator's
``beacon-00`` at 200 hosts, seed 1, a 34-minute timer with 30 % jitter for
13 h, was missed): a 6 h tile holds about ten of its gaps.  Judged against
each tile's own median (itself noisy over ten gaps), the gaps at the jitter's
edge fell off the beat (8 of 9), the gap across each tile boundary was lost,
and adding the tiles' counts kept those losses: 17 of 20 on the beat, a score
of 5.6 against the floor of 10.  Over the span every gap is judged against one
period estimated from all of them: 22 of 22, 11.0.

**The null ``p0`` is fitted from the population**: the median on-beat share of
the (client, domain) spans with at least ``min_connections`` connections,
never below the share under Poisson timing with the same median
(``2^−(1−δ) − 2^−(1+δ)``, 0.209 for δ = 0.3).  Human browsing is burstier
than Poisson in a short series, so the population share is what a typical
series shows here.  With epoch tiles each tile has its own null, over every
span that ends with the tile (all known when the tile closes: causal); a
short capture takes it over the series it scores.

**Software, not C2.**  ``ttl_factor`` is 0.5 when the period is within 10 %
of 1, 2 or 3 times the answers' median TTL (a cache expiring, not an implant).
``prevalence_factor = 1 / periodic_clients``: ``periodic_clients`` counts the
clients (this one included) whose own lookups of the same domain over the
span are on the beat at least half the time *with the same period* (within
the tolerance).  The pattern then belongs to the domain's software, not to
one host, and its evidence is shared among the hosts that show it: a domain
twelve hosts poll every 15 minutes (update checks, NTP-like time sync,
telemetry) scores a twelfth, a domain every host polls about 0, while one
host's beacon keeps its full score.
Popular domains are handled by calibration's popularity prior.  The
binomial tail measures regularity, not threat (software is regular too), so
it is the score and not a ``p_value``: calibration ranks it in the population.

A period under ``min_period`` (10 s) is a retry loop or a stream, not a
call-home timer (implants sleep for tens of seconds to hours: Cobalt Strike's
default is 60 s): such series are not judged (a Windows host retrying an
unanswered name every 4 s for 15 minutes in the brimdata capture).

Windows are at least ``min_window`` (6 h) long whatever the run's window.
With hourly or longer windows (a lake, a stream) they are tiles aligned on the
Unix epoch, each scored in the period in which it closes, from the input's
events, with its span rebuilt from the input's earlier events: a lake scored
at once and hour by hour give the same candidates.  A short capture scored in
shorter windows is one window (aligned on its start, clipped).  Evidence: the
period, jitter (MAD), on-beat gaps in the window and over the span, the
binomial tail, ``reason`` (one sentence) and ``clients``.  Single-label names,
``*.arpa`` and ``.local``-style names are skipped: they never leave the site.

>>> round(poisson_on_beat_share(0.3), 4)
0.2094
>>> round(float(regularity_log10p(np.array([19]), np.array([19]), 0.2094)[0]), 1)
12.9
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl
from numpy.typing import NDArray
from scipy import stats

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
    closing_tiles,
    evidence_json,
    example_events,
    scored_period,
    tidy,
    tile_columns,
    window_columns,
)

__all__ = ["BeaconDetector", "poisson_on_beat_share", "regularity_log10p"]

# Names that never leave the site: no implant calls home through them.
_LOCAL = r"(^|\.)(arpa|local|localdomain|lan|home|internal|localhost)$"


def poisson_on_beat_share(tolerance: float) -> float:
    """P(|gap/median − 1| ≤ tolerance) for exponential gaps (Poisson lookups).

    With the median ``M`` of an exponential, ``P(gap > x·M) = 2^−x``.
    """
    return float(2.0 ** -(1.0 - tolerance) - 2.0 ** -(1.0 + tolerance))


def regularity_log10p(
    on_beat: NDArray[np.int64], gaps: NDArray[np.int64], p0: float | NDArray[np.float64]
) -> NDArray[np.float64]:
    """``−log10 P(K ≥ on_beat | gaps, p0)``, K ~ Binomial(gaps, p0), per series
    (``p0``: one null, or one per series).

    >>> regularity_log10p(np.array([0, 5]), np.array([5, 5]), 0.5).round(3).tolist()
    [0.0, 1.505]
    """
    k = np.asarray(on_beat, dtype=np.float64)
    m = np.asarray(gaps, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logsf = stats.binom.logsf(k - 1.0, m, p0)
    out = -np.asarray(logsf, dtype=np.float64) / math.log(10.0)
    out = np.clip(np.nan_to_num(out, nan=0.0, posinf=300.0), 0.0, 300.0)
    return np.where(m > 0, out, 0.0) + 0.0  # + 0.0: never -0.0


def _fmt_period(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


def _gap_within(series: str) -> pl.Expr:
    """Seconds since the previous row of the same series (rows sorted by series, time)."""
    same = pl.col(series) == pl.col(series).shift(1)
    return pl.when(same).then(pl.col("t").diff() / 1e6)


@register
class BeaconDetector(Detector):
    """Regular call-home lookups from one client to one registered domain."""

    name: ClassVar[str] = "beacon"
    techniques: ClassVar[tuple[str, ...]] = ("T1071.004",)
    entity_type: ClassVar[EntityType] = "client_domain"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = "regular inter-arrival times of one client's lookups of one domain"
    #: −log10 of the binomial tail: a beat pattern with a chance below 1e-10
    #: under irregular timing (e.g. 19 of 19 gaps on the beat).  Benign maxima
    #: in docs/detectors.md.
    score_floor: ClassVar[float] = 10.0

    def __init__(
        self,
        min_gap: float = 2.0,
        min_connections: int = 6,
        min_prevalence_clients: int = 10,  # kept for settings files; unused
        min_window: float = 6 * 3600.0,
        jitter_tolerance: float = 0.3,
        lookback: float = 24 * 3600.0,
        min_period: float = 10.0,
    ) -> None:
        if not 0.0 < jitter_tolerance < 1.0:
            raise ValueError("jitter_tolerance must be in (0, 1)")
        self.min_window = min_window
        self.min_gap = min_gap
        self.min_connections = min_connections
        self.min_prevalence_clients = min_prevalence_clients
        self.jitter_tolerance = jitter_tolerance
        #: tolerances scanned: a sixth, a third and all of the jitter tolerance
        self.tolerances = (jitter_tolerance / 6, jitter_tolerance / 3, jitter_tolerance)
        self.lookback = lookback
        self.min_period = min_period

    def tiled(self, ctx: DetectContext) -> bool:
        """Whether ``ctx`` is scored in epoch tiles: hourly or longer windows (a
        lake, a stream); a short capture scored in shorter windows is one window."""
        return ctx.window >= 3600.0

    def _length(self, ctx: DetectContext) -> float:
        return max(ctx.window, self.min_window)

    @staticmethod
    def _usable(data: pl.DataFrame) -> pl.DataFrame:
        return data.filter(
            pl.col("ts").is_not_null()
            & pl.col("src_ip").is_not_null()
            & pl.col("registered_domain").is_not_null()
            & pl.col("registered_domain").str.contains(".", literal=True)
            & ~pl.col("registered_domain").str.contains(_LOCAL)
        )

    def _events(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        """The events of the windows scored in ``ctx`` and of their lookback, with
        ``window_start``/``window_end``; ``_scored``: the window is scored here.

        Tiled (:meth:`tiled`): the epoch tiles that close in the period
        (:func:`closing_tiles`) and the ``lookback`` before them, from the input
        (which holds the history before the period).  Otherwise the scored
        period's windows (aligned on its start, the last one clipped).
        """
        if not self.tiled(ctx):
            ev = self._usable(scored_period(data, ctx))
            return ev.with_columns(
                window_columns(ctx, min_window=self.min_window), _scored=pl.lit(True)
            )
        length = self._length(ctx)
        lo, hi = closing_tiles(ctx, length)
        if lo >= hi:
            return self._usable(data.clear()).with_columns(
                tile_columns(length), _scored=pl.lit(True)
            )
        since = lo - timedelta(seconds=max(self.lookback - length, 0.0))
        ev = self._usable(data).filter((pl.col("ts") >= since) & (pl.col("ts") < hi))
        return ev.with_columns(tile_columns(length)).with_columns(
            _scored=pl.col("window_start") >= lo
        )

    def population(self, data: pl.DataFrame, ctx: DetectContext) -> int:
        """Client × domain × window series with at least two connections' worth of lookups."""
        ev = self._events(data, ctx).filter(pl.col("_scored"))
        # Integer codes for the string keys: the same groups, counted faster.
        ids = ev.select(
            pl.col("src_ip").cast(pl.Categorical).to_physical(),
            pl.col("registered_domain").cast(pl.Categorical).to_physical(),
            "window_start",
        )
        return int(ids.group_by(ids.columns).len().filter(pl.col("len") >= 2).height)

    def _judged(self, per: pl.DataFrame) -> pl.DataFrame:
        """The series long and slow enough to be judged."""
        return per.filter(
            (pl.col("connections") >= self.min_connections) & (pl.col("period") >= self.min_period)
        )

    def tile_nulls(self, shares: pl.DataFrame) -> pl.DataFrame:
        """Per ``window_start``: the median of :meth:`shares`' shares (``_n0``,
        ``_n1``, ...; clipped to the Poisson floor in :meth:`score`)."""
        return shares.group_by("window_start").agg(
            pl.col(f"s{i}").median().alias(f"_n{i}") for i in range(len(self.tolerances))
        )

    def nulls(self, medians: list[float | None]) -> tuple[float, ...]:
        """The null on-beat share per tolerance from the population's median shares,
        never below the share under Poisson timing (nor above 0.95)."""
        return tuple(
            min(0.95, max(poisson_on_beat_share(d), float(m or 0.0)))
            for d, m in zip(self.tolerances, medians, strict=True)
        )

    def shares(self, judged: pl.DataFrame) -> pl.DataFrame:
        """``window_start`` and the on-beat shares (``s0``, ``s1``, ...) of judged series."""
        return judged.select(
            "window_start",
            *[
                (pl.col(f"_on{i}") / pl.col("gaps")).alias(f"s{i}")
                for i in range(len(self.tolerances))
            ],
        )

    def span_windows(self, length: float) -> int:
        """How many windows of ``length`` seconds a span covers: the window and the
        ones before it within ``lookback`` (24 h over 6 h tiles: 4)."""
        return max(1, math.ceil(self.lookback / length - 1e-9))

    def _series(self, ev: pl.DataFrame, length: float) -> pl.DataFrame:
        """Per (client, domain, scored window): the series of the window's *span*.

        The span of a window is the window and the ``span_windows - 1``
        windows before it (the ``lookback``).  Its connections are the lookups
        in the span that follow the previous lookup of the pair by ``min_gap``
        or more (or whose previous lookup lies before the span); its gaps run
        between consecutive connections, across window boundaries; its period
        ``P`` is the median gap of the whole span, and every gap is judged
        against that one period.  ``tile_*`` count the connections and the
        gaps (on the beat) that end in the window itself.

        Each lookup enters the spans of up to ``span_windows`` windows; only
        the lookups that open a connection (or may open one at a span's
        start) are repeated.  The (client, domain) key is replaced by one
        integer id for the sorts, differences and medians (grouping on
        strings dominated the cost), and the key columns are joined back at
        the end.
        """
        k = self.span_windows(length)
        w_us = max(1, int(length * 1_000_000))
        gap_us = int(self.min_gap * 1_000_000)
        wins = (
            ev.filter(pl.col("_scored"))
            .select("window_start", "window_end")
            .unique("window_start")
            .sort("window_start")
            .with_columns(
                _target=pl.col("window_start").dt.epoch("us"),
                _wi=pl.int_range(pl.len(), dtype=pl.Int64),
            )
        )
        ip = pl.col("src_ip").cast(pl.Categorical).to_physical().cast(pl.Int64)
        dom = pl.col("registered_domain").cast(pl.Categorical).to_physical().cast(pl.Int64)
        ids = ev.select(
            "src_ip",
            "registered_domain",
            _ip=ip,
            _dom=dom,
            t=pl.col("ts").dt.epoch("us"),
            _w=pl.col("window_start").dt.epoch("us"),
        )
        n_dom = int(ids.select(pl.col("_dom").max().fill_null(0)).item()) + 1
        ids = ids.with_columns(_p=pl.col("_ip") * n_dom + pl.col("_dom"))
        keys = ids.select("src_ip", "registered_domain", "_p").unique("_p")
        look = (
            ids.select("_p", "t", "_w")
            .unique(["_p", "t"])
            .sort(["_p", "t"])
            .with_columns(
                _prev=pl.when(pl.col("_p") == pl.col("_p").shift(1)).then(pl.col("t").shift(1)),
                _prev_w=pl.when(pl.col("_p") == pl.col("_p").shift(1)).then(pl.col("_w").shift(1)),
            )
            .with_columns(
                _start=pl.col("_prev").is_null() | (pl.col("t") - pl.col("_prev") >= gap_us)
            )
            # a lookup close behind its predecessor opens a connection only in a
            # span that starts between the two: one of another window
            .filter(pl.col("_start") | (pl.col("_prev_w") != pl.col("_w")))
        )
        conn = (
            look.with_columns(_i=pl.lit(list(range(k)), dtype=pl.List(pl.Int64)))
            .explode("_i")
            .with_columns(_target=pl.col("_w") + pl.col("_i") * w_us)
            .join(wins.select("_target", "_wi"), on="_target", how="inner")
            .filter(pl.col("_start") | (pl.col("_prev") < pl.col("_target") - (k - 1) * w_us))
            .select(
                (pl.col("_p") * wins.height + pl.col("_wi")).alias("_s"),
                "t",
                _own=pl.col("t") >= pl.col("_target"),
            )
            .sort(["_s", "t"])
        )
        conn = conn.with_columns(gap=_gap_within("_s"))
        conn = conn.with_columns(period=pl.col("gap").median().over("_s"))
        dev = (pl.col("gap") / pl.col("period") - 1.0).abs()
        own = pl.col("_own") & pl.col("gap").is_not_null()
        per = conn.group_by("_s").agg(
            *[(dev <= d).sum().alias(f"_on{i}") for i, d in enumerate(self.tolerances)],
            connections=pl.len(),
            first=pl.col("t").min(),
            last=pl.col("t").max(),
            gaps=pl.col("gap").count(),
            on_beat=(dev <= self.jitter_tolerance).sum(),
            period=pl.col("period").first(),
            mad=(pl.col("gap") - pl.col("period")).abs().median(),
            tile_connections=pl.col("_own").sum(),
            tile_gaps=own.sum(),
            tile_on_beat=(own & (dev <= self.jitter_tolerance)).sum(),
        )
        return (
            per.with_columns(_p=pl.col("_s") // wins.height, _wi=pl.col("_s") % wins.height)
            .join(keys, on="_p", how="inner")
            .join(wins.select("_wi", "window_start", "window_end"), on="_wi", how="inner")
            .drop("_s", "_p", "_wi")
        )

    def null_shares(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        """The on-beat shares the nulls of ``ctx``'s windows are medians of
        (``window_start``, ``s0``, ``s1``, ...): the judged span series
        (:meth:`_series`) of every window scored in ``ctx``, the ones with no
        lookup in the window itself included.  A distributed engine takes the
        medians over every partition's shares."""
        ev = self._events(data, ctx)
        return self.shares(self._judged(self._series(ev, self._length(ctx))))

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        ev = self._events(data, ctx)
        if ev.height == 0 or ev.filter(pl.col("_scored")).height == 0:
            return empty_anomalies()
        wkey = ["window_start", "window_end"]
        pair = ["src_ip", "registered_domain"]
        spans = self._judged(self._series(ev, self._length(ctx)))
        # a window is judged for the pairs that looked the domain up in it
        judged = spans.filter(pl.col("tile_connections") > 0)
        if judged.height == 0:
            return empty_anomalies()
        # The population null at each tolerance: the typical on-beat share of a
        # judged span series, never below the share under Poisson timing.  Tiled:
        # per tile, over the spans ending with the tile (causal: known when it
        # closes); a short capture: over the series it scores.  A distributed
        # engine brings it from the whole population (``tile_nulls_``, ``p0s_``).
        nk = [f"_n{i}" for i in range(len(self.tolerances))]
        tile_nulls = getattr(self, "tile_nulls_", None)
        p0s_ = getattr(self, "p0s_", None)
        if self.tiled(ctx) and tile_nulls is None and not p0s_:
            tile_nulls = self.tile_nulls(self.shares(spans))
        if tile_nulls is not None:
            judged = judged.join(tile_nulls, on="window_start", how="left")
        else:
            if not p0s_:
                p0s_ = self.nulls(
                    [
                        (spans[f"_on{i}"] / spans["gaps"]).median()  # type: ignore[misc]
                        for i in range(len(self.tolerances))
                    ]
                )
            judged = judged.with_columns(
                pl.lit(p, dtype=pl.Float64).alias(n) for n, p in zip(nk, p0s_, strict=True)
            )
        floors = [poisson_on_beat_share(d) for d in self.tolerances]
        judged = judged.with_columns(
            pl.col(n).fill_null(f).clip(f, 0.95) for n, f in zip(nk, floors, strict=True)
        )
        ks = [f"_on{i}" for i in range(len(self.tolerances))]
        tol = self.jitter_tolerance
        # Population context: clients of the window, clients of the domain, and
        # how many of them are on the beat with it themselves.
        dom_clients = ev.group_by(["registered_domain", *wkey]).agg(
            dom_clients=pl.col("src_ip").n_unique(),
            ttl=pl.col("ttls").explode().drop_nans().median(),
        )
        # clients on the beat with the same domain at the same period (within the tolerance)
        periodic = spans.filter(pl.col("on_beat") >= 0.5 * pl.col("gaps")).select(
            "registered_domain", *wkey, pl.col("period").alias("_pp")
        )
        same = (
            judged.select(*pair, *wkey, "period")
            .join(periodic, on=["registered_domain", *wkey], how="inner")
            .filter((pl.col("_pp") / pl.col("period") - 1.0).abs() <= tol)
            .group_by([*pair, *wkey])
            .agg(periodic_clients=pl.len())
        )
        judged = (
            judged.join(dom_clients, on=["registered_domain", *wkey], how="left")
            .join(same, on=[*pair, *wkey], how="left")
            .with_columns(pl.col("periodic_clients").fill_null(0))
        )
        ratio = pl.col("period") / pl.col("ttl")
        ttl_match = (
            (pl.col("ttl") > 0)
            & (ratio >= 0.9)
            & (ratio <= 3.3)
            & ((ratio - ratio.round(0)).abs() <= 0.1 * ratio.round(0))
        )
        judged = judged.with_columns(
            ttl_factor=pl.when(ttl_match.fill_null(False)).then(0.5).otherwise(1.0),
            prevalence_factor=1.0 / pl.col("periodic_clients").clip(lower_bound=1),
        )
        # the tightest tolerance the timer keeps gives the most evidence; the
        # scan over tolerances costs log10(number of tolerances) (Bonferroni)
        m = judged["gaps"].to_numpy()
        per_tol = np.vstack(
            [
                regularity_log10p(judged[k].to_numpy(), m, judged[n].to_numpy())
                for k, n in zip(ks, nk, strict=True)
            ]
        )
        best = per_tol.argmax(axis=0)
        log10p = np.clip(per_tol.max(axis=0) - math.log10(len(ks)), 0.0, None) + 0.0
        tol_arr = np.asarray(self.tolerances, dtype=np.float64)
        idx = np.arange(per_tol.shape[1])
        judged = judged.with_columns(
            regularity=pl.Series(log10p),
            best_tolerance=pl.Series(tol_arr[best]),
            best_on_beat=pl.Series(
                np.vstack([judged[k].to_numpy() for k in ks])[best, idx].astype(np.int64)
            ),
            best_null=pl.Series(np.vstack([judged[n].to_numpy() for n in nk])[best, idx]),
        ).with_columns(
            score=pl.col("regularity") * pl.col("ttl_factor") * pl.col("prevalence_factor")
        )
        judged = judged.sort([*pair, "window_start"])
        evidence = judged.select(self._evidence(nk[-1])).to_series()
        entity = judged.select(pl.concat_str(pair, separator="|")).to_series()
        return anomaly_frame(
            self.name,
            self.entity_type,
            entity,
            judged["window_start"],
            judged["window_end"],
            judged["score"].fill_nan(0.0).fill_null(0.0).round(9).replace(-0.0, 0.0),
            evidence=evidence,
        )

    def _evidence(self, null: str) -> pl.Expr:
        iso = "%Y-%m-%dT%H:%M:%S%.3fZ"
        r3 = lambda c: tidy(pl.col(c).cast(pl.Float64)).alias(c)  # noqa: E731
        hours = ((pl.col("last") - pl.col("first")) / 3.6e9).round(1)
        period = pl.col("period")
        period_txt = (
            pl.when(period >= 120)
            .then(pl.format("{} min", (period / 60).round(1)))
            .otherwise(pl.format("{} s", period.round(0).cast(pl.Int64)))
        )
        reason = pl.format(
            "{} looked up {} {} times at a steady {} period (median jitter {} s; "
            "{} of {} gaps within {} % of it{}) over {} h: p = 1e-{} under irregular timing",
            pl.col("src_ip"),
            pl.col("registered_domain"),
            pl.col("connections"),
            period_txt,
            pl.col("mad").round(1),
            pl.col("best_on_beat"),
            pl.col("gaps"),
            (100 * pl.col("best_tolerance")).round(0).cast(pl.Int64),
            pl.when(pl.col("gaps") > pl.col("tile_gaps"))
            .then(pl.format(" over the last {} h", pl.lit(round(self.lookback / 3600))))
            .otherwise(pl.lit("")),
            hours,
            pl.col("regularity").floor().cast(pl.Int64),
        )
        return evidence_json(
            reason.alias("reason"),
            pl.concat_list(pl.col("src_ip")).alias("clients"),
            pl.col("connections"),
            r3("period").alias("period_s"),
            r3("mad").alias("jitter_mad_s"),
            pl.col("tile_gaps").alias("gaps"),
            pl.col("tile_on_beat").alias("on_beat_gaps"),
            pl.col("gaps").alias("lookback_gaps"),
            pl.col("on_beat").alias("lookback_on_beat_gaps"),
            pl.col(null).round(4).alias("null_on_beat_share"),
            r3("best_tolerance"),
            pl.col("best_on_beat").alias("best_tolerance_on_beat_gaps"),
            r3("best_null").alias("best_tolerance_null_share"),
            r3("regularity").alias("regularity_log10p"),
            r3("ttl").alias("median_ttl_s"),
            (pl.col("ttl_factor") < 1.0).alias("period_matches_ttl"),
            pl.col("dom_clients").alias("clients_of_domain"),
            pl.col("periodic_clients").alias("periodic_clients_of_domain"),
            r3("prevalence_factor"),
            pl.from_epoch("first", time_unit="us").dt.to_string(iso).alias("first"),
            pl.from_epoch("last", time_unit="us").dt.to_string(iso).alias("last"),
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """One 6 h tile (06:00-12:00 UTC): one host beaconing every 60 s ± 3 s,
        others browsing at random.  A whole tile, so an hourly context that ends
        at its close scores it (tiles are scored where they close)."""
        rng = np.random.default_rng(seed)
        span = 6 * 3600.0
        t0 = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)
        rows: list[dict[str, Any]] = []
        t = 5.0
        while t < span:
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
        for _ in range(360):
            dom = ["example.org", "wikipedia.org"][int(rng.integers(0, 2))]
            rows.append(
                {
                    "ts": t0 + timedelta(seconds=float(rng.uniform(0, span))),
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
