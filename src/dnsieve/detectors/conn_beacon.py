"""Connection beacons per client × destination address (``conn_beacon``).

An implant connects home on a timer, with requests of a steady size.  Per
(client, destination address) and window (at least ``min_window``, 6 h), the
flows' start times are collapsed (starts closer than ``min_gap`` are one
*connection*: parallel sockets of one check-in) and judged two ways:

**RITA's beacon score** (the reference; activecm/rita, ``pkg/beacon``): a
timestamp score, the mean of

* ``1 − |Bowley skew|`` of the gaps (a symmetric gap distribution),
* ``1 − MAD/median`` of the gaps (little dispersion around the period, floored at 0),
* a connection-count score ``min(1, n / (span / median gap))`` (the timer
  fills the span it covers);

and a data-size score, the mean of ``1 − |Bowley skew|``, ``1 − MAD/median``
of the bytes per connection and a smallness score ``1 − mode/65535``.  RITA's
beacon score is the mean of the two.  It is in the evidence (``rita_score``),
and it is what this detector is compared with in ``docs/flows.md``.

**The score** is the evidence the timing carries, as in the DNS ``beacon``
detector: a gap is *on the beat* when ``|gap/P − 1| ≤ δ`` for the median gap
``P``; with ``k`` of ``m`` gaps on the beat, ``−log10 P(K ≥ k)`` for K ~
Binomial(m, p0), at δ = 5 %, 10 % and 30 % (the best, at the cost of
``log10 3``).  ``p0`` is fitted from the population (the median on-beat share
of every judged series in the input, never below the share under Poisson
timing; Poisson alone below ``min_population`` judged series) with
:meth:`ConnBeaconDetector.fit_population`, so both engines score alike.  Unlike RITA's score, this grows with the number of beats (six regular
connections are weak evidence, sixty overwhelming) and does not reward a
jitter-free but short series; and a jittered timer (RITA's test beacon is
uniform in 200–350 s, ±27 %) still has every gap on the beat at δ = 30 %.
A low-and-slow beacon gathers its beats over ``lookback`` (24 h): the counts
of the trailing windows of the same pair whose period agrees are added
(mergeable sufficient statistics, as in the DNS ``beacon`` detector).
Flows to ``allow_ports`` (services that poll on a timer by design: NTP,
DHCP, NetBIOS, SSDP, mDNS, LLMNR) are not judged.
The size regularity then weighs it: ``score = log10p × (0.5 + 0.5 × ds_score)``
(a steady-size series keeps its evidence, erratic sizes halve it).
``periodic_clients``: the clients beaconing to the same address with the same
period (within δ) share the evidence (``score / periodic_clients``): a
software update server polled by every host is not one host's C2.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl
from numpy.typing import NDArray

from dnsieve.detectors import register
from dnsieve.detectors.base import (
    DetectContext,
    Detector,
    EntityType,
    InputKind,
    anomaly_frame,
    empty_anomalies,
)
from dnsieve.detectors.beacon import poisson_on_beat_share, regularity_log10p
from dnsieve.detectors.conn_common import background_flows, bytes_in, bytes_out, example_flows
from dnsieve.detectors.frames import scored_period, window_columns

__all__ = ["TIMER_PORTS", "ConnBeaconDetector", "bowley_score", "mad_score", "rita_scores"]

#: Services whose clients poll on a timer by design (DHCP, NTP, NetBIOS, SSDP, mDNS, LLMNR):
#: not judged (``allow_ports``).
TIMER_PORTS: tuple[int, ...] = (67, 68, 123, 137, 138, 1900, 5353, 5355)


def bowley_score(x: NDArray[np.float64]) -> float:
    """``1 − |Bowley skew|`` of ``x`` (1: symmetric quartiles; 0 when the IQR is 0
    and the median is off-centre, 1 when all quartiles coincide).

    >>> bowley_score(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    1.0
    """
    q1, q2, q3 = np.percentile(x, [25, 50, 75])
    den = q3 - q1
    if den == 0:
        return 1.0 if q1 == q2 == q3 else 0.0
    return float(1.0 - abs((q1 + q3 - 2 * q2) / den))


def mad_score(x: NDArray[np.float64]) -> float:
    """``max(0, 1 − MAD/median)``: 1 for a constant series.

    >>> mad_score(np.array([10.0, 10.0, 10.0])), round(mad_score(np.array([1.0, 10.0, 30.0])), 9)
    (1.0, 0.1)
    """
    med = float(np.median(x))
    if med <= 0:
        return 0.0
    return float(max(0.0, 1.0 - float(np.median(np.abs(x - med))) / med))


def rita_scores(ts: NDArray[np.float64], sizes: NDArray[np.float64]) -> dict[str, float]:
    """RITA's timestamp, data-size and beacon scores for one series (seconds, bytes)."""
    gaps = np.diff(ts)
    med = float(np.median(gaps)) if gaps.size else 0.0
    span = float(ts[-1] - ts[0]) if ts.size > 1 else 0.0
    count = min(1.0, ts.size / (span / med)) if med > 0 and span > 0 else 0.0
    ts_score = (bowley_score(gaps) + mad_score(gaps) + count) / 3 if gaps.size else 0.0
    vals, counts = np.unique(sizes, return_counts=True)
    mode = float(vals[np.argmax(counts)]) if vals.size else 0.0
    small = max(0.0, 1.0 - mode / 65535.0)
    ds_score = (bowley_score(sizes) + mad_score(sizes) + small) / 3 if sizes.size else 0.0
    return {
        "ts_score": ts_score,
        "ds_score": ds_score,
        "rita_score": (ts_score + ds_score) / 2,
    }


def _fmt_period(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


@register
class ConnBeaconDetector(Detector):
    """Regular connections from one client to one destination address."""

    name: ClassVar[str] = "conn_beacon"
    techniques: ClassVar[tuple[str, ...]] = ("T1071", "T1571")
    entity_type: ClassVar[EntityType] = "client_dest"
    requires: ClassVar[InputKind] = "flows"
    description: ClassVar[str] = "regular connection times and sizes from one client to one address"
    #: the same bar as the DNS beacon: a beat pattern with a chance below 1e-10.
    score_floor: ClassVar[float] = 10.0

    def __init__(
        self,
        min_connections: int = 6,
        min_gap: float = 1.0,
        min_period: float = 10.0,
        jitter_tolerance: float = 0.3,
        min_window: float = 6 * 3600.0,
        min_population: int = 20,
        lookback: float = 24 * 3600.0,
        allow_ports: tuple[int, ...] = TIMER_PORTS,
    ) -> None:
        if not 0.0 < jitter_tolerance < 1.0:
            raise ValueError("jitter_tolerance must be in (0, 1)")
        self.min_connections = min_connections
        self.min_gap = min_gap
        self.min_period = min_period
        self.jitter_tolerance = jitter_tolerance
        self.min_window = min_window
        self.min_population = min_population
        self.lookback = lookback
        self.allow_ports = tuple(allow_ports)

    @property
    def _tolerances(self) -> tuple[float, float, float]:
        d = self.jitter_tolerance
        return (d / 6, d / 3, d)

    def _series(self, data: pl.DataFrame, ctx: DetectContext) -> list[dict[str, Any]]:
        """One dict per judged (client, address, window) series."""
        fl = scored_period(data, ctx).filter(
            pl.col("src_ip").is_not_null()
            & pl.col("dst_ip").is_not_null()
            & ~pl.col("dst_port").is_in(list(self.allow_ports)).fill_null(False)
        )
        if fl.height == 0:
            return []
        grouped = (
            fl.with_columns(
                *window_columns(ctx, min_window=self.min_window),
                (pl.col("ts").dt.epoch("us") / 1e6).alias("_t"),
                (bytes_out() + bytes_in()).cast(pl.Float64).alias("_b"),
            )
            .sort("_t", "dst_port", "src_port", nulls_last=True)
            .group_by("src_ip", "dst_ip", "window_start", "window_end")
            .agg(
                "_t",
                "_b",
                pl.col("dst_port").drop_nulls().unique().sort().head(5).alias("ports"),
                pl.col("resolved_name").drop_nulls().unique().sort().head(3).alias("names"),
                pl.col("server_name").drop_nulls().unique().sort().head(3).alias("snis"),
                pl.col("application").drop_nulls().unique().sort().head(3).alias("apps"),
            )
            .filter(pl.col("_t").list.len() >= self.min_connections)
            .sort("src_ip", "dst_ip", "window_start")
        )
        out: list[dict[str, Any]] = []
        for r in grouped.iter_rows(named=True):
            t = np.asarray(r["_t"], dtype=np.float64)
            b = np.asarray(r["_b"], dtype=np.float64)
            keep = np.concatenate([[True], np.diff(t) >= self.min_gap])
            # a check-in's bytes: the sum over the flows collapsed into it
            starts = np.flatnonzero(keep)
            sizes = np.add.reduceat(b, starts) if b.size else b
            t = t[keep]
            if t.size < self.min_connections:
                continue
            gaps = np.diff(t)
            period = float(np.median(gaps))
            if period < self.min_period:
                continue
            dev = np.abs(gaps / period - 1.0)
            r.update(
                connections=int(t.size),
                gaps=int(gaps.size),
                period=period,
                jitter=float(np.median(np.abs(gaps - period))),
                on=[int((dev <= d).sum()) for d in self._tolerances],
                bytes_median=float(np.median(sizes)),
                **rita_scores(t, sizes),
            )
            out.append(r)
        return out

    def fit_population(
        self, data: pl.DataFrame, ctx: DetectContext | None = None
    ) -> ConnBeaconDetector:
        """Fit the null on-beat shares ``p0_`` from every judged series of ``data``."""
        if ctx is None:
            lo, hi = data["ts"].min(), data["ts"].max()
            if lo is None or hi is None:
                self.p0_ = [poisson_on_beat_share(d) for d in self._tolerances]
                return self

            ctx = DetectContext(start=lo, end=hi + timedelta(seconds=1), window=self.min_window)  # type: ignore[arg-type,operator]
        self.p0_ = self._p0(self._series(data, ctx))
        return self

    def _p0(self, series: list[dict[str, Any]]) -> list[float]:
        p0 = []
        for i, d in enumerate(self._tolerances):
            shares = [s["on"][i] / s["gaps"] for s in series if s["gaps"]]
            # too few series to tell what is typical here: Poisson timing is the null
            med = float(np.median(shares)) if len(shares) >= self.min_population else 0.0
            p0.append(min(0.95, max(poisson_on_beat_share(d), med)))
        return p0

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        series = self._series(data, ctx)
        if not series:
            return empty_anomalies()
        p0 = getattr(self, "p0_", None) or self._p0(series)
        # a low-and-slow beacon gathers its beats over the lookback: the trailing windows of
        # the same pair whose period agrees (within the tolerance) add their counts
        lb = timedelta(seconds=self.lookback)
        by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for s in series:
            by_pair.setdefault((s["src_ip"], s["dst_ip"]), []).append(s)
        for s in series:
            agree = [
                o
                for o in by_pair[(s["src_ip"], s["dst_ip"])]
                if s["window_start"] - lb < o["window_start"] <= s["window_start"]
                and abs(o["period"] / s["period"] - 1.0) <= self.jitter_tolerance
            ]
            s["beats_gaps"] = sum(o["gaps"] for o in agree)
            s["beats_on"] = [sum(o["on"][i] for o in agree) for i in range(len(self._tolerances))]
            s["beats_windows"] = len(agree)
        m = np.array([s["beats_gaps"] for s in series], dtype=np.int64)
        best = np.zeros(len(series))
        for i in range(len(self._tolerances)):
            k = np.array([s["beats_on"][i] for s in series], dtype=np.int64)
            best = np.maximum(best, regularity_log10p(k, m, p0[i]))
        log10p = np.clip(best - math.log10(3.0), 0.0, None)
        # clients beaconing to the same address with the same period share the evidence
        tol = self.jitter_tolerance
        periodic: dict[tuple[str, Any], list[float]] = {}
        for s, lp in zip(series, log10p, strict=True):
            if s["on"][-1] >= 0.5 * s["gaps"] and lp > 0:
                periodic.setdefault((s["dst_ip"], s["window_start"]), []).append(s["period"])
        scores, evidence = [], []
        for s, lp in zip(series, log10p, strict=True):
            peers = periodic.get((s["dst_ip"], s["window_start"]), [])
            n_peers = max(1, sum(abs(p / s["period"] - 1.0) <= tol for p in peers))
            sc = float(lp) * (0.5 + 0.5 * s["ds_score"]) / n_peers
            scores.append(round(sc, 6) + 0.0)
            where = s["names"][0] if s["names"] else (s["snis"][0] if s["snis"] else None)
            ports = ",".join(str(p) for p in s["ports"])
            reason = (
                f"{s['src_ip']} connected to {s['dst_ip']}"
                + (f" ({where})" if where else "")
                + f" port {ports} {s['connections']:,} times, every {_fmt_period(s['period'])}"
                f" (± {s['jitter']:.0f} s), {s['on'][-1]} of {s['gaps']} gaps on the beat"
                + (
                    f" ({s['beats_on'][-1]} of {s['beats_gaps']} over {s['beats_windows']} windows);"
                    if s["beats_windows"] > 1
                    else ";"
                )
                + f" RITA score {s['rita_score']:.2f}"
            )
            evidence.append(
                {
                    "reason": reason,
                    "clients": [s["src_ip"]],
                    "destination": s["dst_ip"],
                    "ports": s["ports"],
                    "connections": s["connections"],
                    "period_s": round(s["period"], 3),
                    "jitter_mad_s": round(s["jitter"], 3),
                    "on_beat": s["on"][-1],
                    "gaps": s["gaps"],
                    "lookback_on_beat": s["beats_on"][-1],
                    "lookback_gaps": s["beats_gaps"],
                    "lookback_windows": s["beats_windows"],
                    "log10p": round(float(lp), 3),
                    "bytes_median": round(s["bytes_median"], 1),
                    "ts_score": round(s["ts_score"], 4),
                    "ds_score": round(s["ds_score"], 4),
                    "rita_score": round(s["rita_score"], 4),
                    "periodic_clients": n_peers,
                    "resolved_names": s["names"],
                    "server_names": s["snis"],
                    "applications": s["apps"],
                }
            )
        return anomaly_frame(
            self.name,
            self.entity_type,
            [f"{s['src_ip']}|{s['dst_ip']}" for s in series],
            [s["window_start"] for s in series],
            [s["window_end"] for s in series],
            scores,
            None,
            evidence,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Browsing background plus one host checking in every ~5 min (±20 %) over 24 h."""

        rng = np.random.default_rng(seed)
        rows = background_flows(seed)
        t0 = rows[0]["ts"].replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=24)
        t = t0
        while t < t0 + timedelta(hours=24):
            rows.append(
                {
                    "ts": t,
                    "ts_last": t + timedelta(seconds=0.4),
                    "duration": 0.4,
                    "src_ip": "10.0.0.66",
                    "dst_ip": "203.0.113.80",
                    "src_port": int(rng.integers(30000, 60000)),
                    "dst_port": 80,
                    "proto": "tcp",
                    "src2dst_payload_bytes": 310 + int(rng.integers(0, 4)),
                    "dst2src_payload_bytes": 120,
                    "application": "HTTP",
                    "category": "Web",
                }
            )
            t += timedelta(seconds=float(300 * rng.uniform(0.8, 1.2)))
        return example_flows(rows)
