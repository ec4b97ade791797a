"""Flow anomalies of one host: ``long_connection``, ``conn_exfil``, ``new_application``.

``long_connection`` (client × address)
    A connection open for hours is a remote shell, a tunnel or a C2 channel
    (RITA's "long connections").  Flows of one 5-tuple that follow each other
    within ``max_gap`` seconds are one connection (flow meters cut long
    connections at their active timeout: nfstream after 30 min, Zeek never
    until it closes).  Score: the connection's duration in hours; candidates
    from ``min_hours``; ``score_floor`` 12 h (half a day open always alerts).
    Evidence: duration, bytes each way, port, state.

``conn_exfil`` (client)
    Bytes sent by a client per window against (a) its own baseline windows
    (robust z of log bytes: median and MAD of the client's earlier windows,
    the population's spread when it has fewer than ``min_baseline`` windows)
    and (b) the upload ratio of the applications it used: for an application
    whose population median out/in ratio is below 1 (it downloads), bytes out
    far above bytes in.  Score: the larger of the two z-like measures; only
    windows sending at least ``min_bytes`` are candidates.  ``score_floor`` 10:
    ~150× the host's usual bytes out, or 1,024× the application's usual
    out/in ratio, alerts whatever the population.

``new_application`` (client)
    An nDPI application label (or Zeek service) the client had never used in
    its baseline, scored by how rare the application is in the population:
    ``−log10`` of its posterior share of baseline clients under a Beta prior
    fitted from every application's share (empirical Bayes, as the volume
    model does for domains).  Only clients with a baseline are judged.
"""

from __future__ import annotations

import math
from datetime import timedelta
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
from dnsieve.detectors.conn_common import background_flows, bytes_in, bytes_out, example_flows
from dnsieve.detectors.frames import scored_period, utc, window_columns

__all__ = ["ConnExfilDetector", "LongConnectionDetector", "NewApplicationDetector"]


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


@register
class LongConnectionDetector(Detector):
    """Connections open for hours."""

    name: ClassVar[str] = "long_connection"
    techniques: ClassVar[tuple[str, ...]] = ("T1071", "T1572")
    entity_type: ClassVar[EntityType] = "client_dest"
    requires: ClassVar[InputKind] = "flows"
    description: ClassVar[str] = "a connection open for hours (flows of one 5-tuple chained)"
    score_floor: ClassVar[float] = 12.0

    def __init__(self, min_hours: float = 1.0, max_gap: float = 60.0) -> None:
        self.min_hours = min_hours
        self.max_gap = max_gap

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        fl = data.filter(
            pl.col("ts").is_not_null()
            & pl.col("src_ip").is_not_null()
            & pl.col("dst_ip").is_not_null()
        ).with_columns(
            pl.coalesce(pl.col("ts_last"), pl.col("ts")).alias("_end"),
            bytes_out().alias("_out"),
            bytes_in().alias("_in"),
        )
        if fl.height == 0:
            return empty_anomalies()
        key = ["src_ip", "dst_ip", "src_port", "dst_port", "proto"]
        gap_us = int(self.max_gap * 1e6)
        chained = (
            fl.sort([*key, "ts"], nulls_last=True)
            .with_columns(
                (
                    (
                        pl.col("ts").dt.epoch("us")
                        - pl.col("_end").shift(1).over(key).dt.epoch("us")
                    ).fill_null(gap_us + 1)
                    > gap_us
                )
                .cum_sum()
                .over(key)
                .alias("_chain")
            )
            .group_by([*key, "_chain"])
            .agg(
                pl.col("ts").min().alias("start"),
                pl.col("_end").max().alias("end"),
                pl.len().alias("flows"),
                pl.col("_out").sum(),
                pl.col("_in").sum(),
                pl.col("conn_state").drop_nulls().last().alias("state"),
                pl.col("application").drop_nulls().first().alias("app"),
                pl.col("resolved_name").drop_nulls().first().alias("name"),
            )
            .with_columns(
                ((pl.col("end") - pl.col("start")).dt.total_microseconds() / 3.6e9).alias("hours")
            )
            .filter(
                (pl.col("hours") >= self.min_hours)
                & (pl.col("end") > utc(ctx.start))
                & (pl.col("start") < utc(ctx.end))
            )
            .sort("src_ip", "dst_ip", "start", "dst_port", "src_port", nulls_last=True)
        )
        if chained.height == 0:
            return empty_anomalies()
        best = (
            chained.group_by("src_ip", "dst_ip")
            .agg(pl.all().sort_by("hours").last())
            .sort("src_ip", "dst_ip")
        )
        ev: list[dict[str, Any]] = []
        for r in best.iter_rows(named=True):
            reason = (
                f"{r['src_ip']} held a {r['proto']} connection to {r['dst_ip']} port {r['dst_port']}"
                + (f" ({r['name']})" if r["name"] else "")
                + f" open for {r['hours']:.1f} h ({_fmt_bytes(r['_out'])} out,"
                f" {_fmt_bytes(r['_in'])} in, {r['flows']} flow record(s))"
            )
            ev.append(
                {
                    "reason": reason,
                    "clients": [r["src_ip"]],
                    "destination": r["dst_ip"],
                    "port": r["dst_port"],
                    "proto": r["proto"],
                    "hours": round(r["hours"], 3),
                    "bytes_out": int(r["_out"]),
                    "bytes_in": int(r["_in"]),
                    "flow_records": int(r["flows"]),
                    "state": r["state"],
                    "application": r["app"],
                }
            )
        return anomaly_frame(
            self.name,
            self.entity_type,
            [f"{a}|{b}" for a, b in zip(best["src_ip"], best["dst_ip"], strict=True)],
            [max(s, utc(ctx.start)) for s in best["start"]],
            [min(e, utc(ctx.end)) for e in best["end"]],
            [round(h, 6) for h in best["hours"]],
            None,
            ev,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Background plus one SSH session open 30 h, cut every 30 min by the flow meter."""
        rows = background_flows(seed)
        t0 = rows[0]["ts"].replace(hour=6, minute=0, second=0, microsecond=0)
        for i in range(60):
            t = t0 + timedelta(minutes=30 * i)
            rows.append(
                {
                    "ts": t,
                    "ts_last": t + timedelta(minutes=30),
                    "duration": 1800.0,
                    "src_ip": "10.0.0.9",
                    "dst_ip": "198.51.100.22",
                    "src_port": 50022,
                    "dst_port": 22,
                    "proto": "tcp",
                    "src2dst_payload_bytes": 40_000,
                    "dst2src_payload_bytes": 90_000,
                    "application": "SSH",
                    "end_reason": "active",
                }
            )
        return example_flows(rows)


@register
class ConnExfilDetector(Detector):
    """Bytes out far above the host's baseline, or an upload on a download application."""

    name: ClassVar[str] = "conn_exfil"
    techniques: ClassVar[tuple[str, ...]] = ("T1041", "T1048")
    entity_type: ClassVar[EntityType] = "client"
    requires: ClassVar[InputKind] = "flows"
    description: ClassVar[str] = (
        "bytes sent far above the host's baseline or its applications' norm"
    )
    #: 10 robust deviations of log bytes (e^5 ≈ 150× the host's typical window at the
    #: narrowest spread) or 2^10 = 1,024× the application's usual upload ratio.
    score_floor: ClassVar[float] = 10.0

    def __init__(
        self, min_bytes: float = 1e6, min_baseline: int = 3, min_window: float = 3600.0
    ) -> None:
        self.min_bytes = min_bytes
        self.min_baseline = min_baseline
        self.min_window = min_window

    def fit_population(self, data: pl.DataFrame) -> ConnExfilDetector:
        """The applications' median upload ratio (out / in) over every client."""
        self.app_ratio_ = self._app_ratio(data)
        return self

    @staticmethod
    def _app_ratio(data: pl.DataFrame) -> dict[str, float]:
        per = (
            data.filter(pl.col("application").is_not_null() & pl.col("src_ip").is_not_null())
            .group_by("application", "src_ip")
            .agg(bytes_out().sum().alias("o"), bytes_in().sum().alias("i"))
            .with_columns(((pl.col("o") + 1) / (pl.col("i") + 1)).alias("r"))
            .group_by("application")
            .agg(pl.col("r").median(), pl.len().alias("n"))
            .filter(pl.col("n") >= 3)
        )
        return dict(zip(per["application"].to_list(), per["r"].to_list(), strict=True))

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        fl = data.filter(pl.col("ts").is_not_null() & pl.col("src_ip").is_not_null())
        if fl.height == 0:
            return empty_anomalies()
        ratio = getattr(self, "app_ratio_", None)
        if ratio is None:
            ratio = self._app_ratio(fl)
        w = max(ctx.window, self.min_window)
        # windows before ctx.start are the baseline (aligned on the same grid)
        start_us = int(utc(ctx.start).timestamp() * 1e6)
        w_us = int(w * 1e6)
        per = (
            fl.with_columns(
                ((pl.col("ts").dt.epoch("us") - start_us) // w_us).alias("_w"),
                bytes_out().alias("_out"),
                bytes_in().alias("_in"),
            )
            .group_by("src_ip", "_w")
            .agg(
                pl.col("_out").sum(),
                pl.col("_in").sum(),
                pl.col("dst_ip").n_unique().alias("dests"),
            )
            .with_columns(pl.col("_out").cast(pl.Float64).log1p().alias("_lo"))
        )
        base = per.filter(pl.col("_w") < 0)
        stats = base.group_by("src_ip").agg(
            pl.col("_lo").median().alias("_med"),
            (pl.col("_lo") - pl.col("_lo").median()).abs().median().alias("_mad"),
            pl.col("_out").median().alias("base_median"),
            pl.len().alias("base_windows"),
        )
        cur = (
            per.filter((pl.col("_w") >= 0) & (pl.col("_out") >= self.min_bytes))
            .join(stats, on="src_ip", how="left")
            .with_columns(pl.col("base_windows").fill_null(0))
        )
        cur = cur.filter(pl.col("_w").is_not_null())
        if cur.height == 0:
            return empty_anomalies()
        # upload on download applications, per client and window
        apps = (
            fl.filter(pl.col("application").is_not_null())
            .with_columns(
                ((pl.col("ts").dt.epoch("us") - start_us) // w_us).alias("_w"),
                bytes_out().alias("_o"),
                bytes_in().alias("_i"),
            )
            .filter(pl.col("_w") >= 0)
            .group_by("src_ip", "_w", "application")
            .agg(pl.col("_o").sum(), pl.col("_i").sum())
        )
        app_z: dict[tuple[str, int], tuple[float, str]] = {}
        for r in apps.iter_rows(named=True):
            norm = ratio.get(r["application"])
            if norm is None or norm >= 1.0 or r["_o"] < self.min_bytes:
                continue
            z = math.log2((r["_o"] + 1) / (r["_i"] + 1) / norm)
            k = (r["src_ip"], r["_w"])
            if z > app_z.get(k, (0.0, ""))[0]:
                app_z[k] = (z, r["application"])
        ents, ws, we, scores, evs = [], [], [], [], []
        for r in cur.sort("src_ip", "_w").iter_rows(named=True):
            if r["base_windows"] >= self.min_baseline:
                spread = max(1.4826 * (r["_mad"] or 0.0), 0.5)
                z_base = (r["_lo"] - r["_med"]) / spread
            else:
                z_base = 0.0  # no baseline of its own: only the application test speaks
            z_app, app = app_z.get((r["src_ip"], r["_w"]), (0.0, ""))
            sc = max(z_base, z_app)
            if sc <= 0:
                continue
            ws_t = utc(ctx.start) + timedelta(seconds=r["_w"] * w)
            ents.append(r["src_ip"])
            ws.append(ws_t)
            we.append(min(ws_t + timedelta(seconds=w), utc(ctx.end)))
            scores.append(round(sc, 6))
            reason = f"{r['src_ip']} sent {_fmt_bytes(r['_out'])} in {w / 3600:.0f} h to {r['dests']} address(es)"
            if r["base_windows"] >= self.min_baseline:
                reason += f", {_fmt_bytes(r['base_median'])} in a typical window before"
            if app:
                reason += f"; its {app} traffic uploaded {2**z_app:.0f}× the usual out/in ratio"
            evs.append(
                {
                    "reason": reason,
                    "clients": [r["src_ip"]],
                    "bytes_out": int(r["_out"]),
                    "bytes_in": int(r["_in"]),
                    "destinations": int(r["dests"]),
                    "baseline_median_out": None
                    if r["base_median"] is None
                    else float(r["base_median"]),
                    "baseline_windows": int(r["base_windows"]),
                    "z_baseline": round(z_base, 3),
                    "z_application": round(z_app, 3),
                    "application": app or None,
                }
            )
        if not ents:
            return empty_anomalies()
        return anomaly_frame(self.name, self.entity_type, ents, ws, we, scores, None, evs)

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Background plus one host uploading 400 MB over HTTPS on its second day."""
        rows = background_flows(seed)
        t0 = rows[0]["ts"].replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=30)
        for i in range(40):
            t = t0 + timedelta(seconds=30 * i)
            rows.append(
                {
                    "ts": t,
                    "ts_last": t + timedelta(seconds=25),
                    "duration": 25.0,
                    "src_ip": "10.0.0.5",
                    "dst_ip": "192.0.2.200",
                    "src_port": 40000 + i,
                    "dst_port": 443,
                    "proto": "tcp",
                    "src2dst_payload_bytes": 10_000_000,
                    "dst2src_payload_bytes": 20_000,
                    "application": "TLS.Google",
                    "category": "Web",
                }
            )
        return example_flows(rows)


@register
class NewApplicationDetector(Detector):
    """An application (nDPI label) the host never used before, rare in the population."""

    name: ClassVar[str] = "new_application"
    techniques: ClassVar[tuple[str, ...]] = ("T1071", "T1219")
    entity_type: ClassVar[EntityType] = "client"
    requires: ClassVar[InputKind] = "flows"
    description: ClassVar[str] = "an application label new for the host and rare in the population"

    def __init__(self, min_baseline_hours: float = 12.0) -> None:
        self.min_baseline_hours = min_baseline_hours

    def fit_population(self, data: pl.DataFrame) -> NewApplicationDetector:
        """When each client first used each application, over every client (the
        population the shares are counted in, whatever part of it is scored)."""
        self.first_use_ = self._first_use(data)
        return self

    @staticmethod
    def _first_use(data: pl.DataFrame) -> pl.DataFrame:
        return (
            data.filter(
                pl.col("ts").is_not_null()
                & pl.col("src_ip").is_not_null()
                & pl.col("application").is_not_null()
            )
            .group_by("src_ip", "application")
            .agg(pl.col("ts").min().alias("first"))
        )

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        fl = data.filter(
            pl.col("ts").is_not_null()
            & pl.col("src_ip").is_not_null()
            & pl.col("application").is_not_null()
        )
        start = utc(ctx.start)
        cur = scored_period(fl, ctx)
        first_use = getattr(self, "first_use_", None)
        if first_use is None:
            first_use = self._first_use(fl)
        base = first_use.filter(pl.col("first") < start)
        if cur.height == 0 or base.height == 0:
            return empty_anomalies()
        # clients with a baseline long enough to know their applications
        span = base.group_by("src_ip").agg(pl.col("first").min())
        known = span.filter(pl.col("first") <= start - timedelta(hours=self.min_baseline_hours))[
            "src_ip"
        ]
        n_clients = base["src_ip"].n_unique()
        share = base.group_by("application").agg(pl.col("src_ip").n_unique().alias("k"))
        shares = (share["k"].cast(pl.Float64) / n_clients).to_numpy()
        a0, b0 = _beta_prior(shares)
        used = base.select("src_ip", "application").unique()
        new = (
            cur.filter(pl.col("src_ip").is_in(known.implode()))
            .join(used, on=["src_ip", "application"], how="anti")
            .with_columns(window_columns(ctx))
            .group_by("src_ip", "window_start", "window_end", "application")
            .agg(
                pl.len().alias("flows"),
                pl.col("dst_ip").drop_nulls().unique().sort().head(3).alias("dests"),
                pl.col("ts").min().alias("first"),
            )
            .join(share, on="application", how="left")
            .with_columns(pl.col("k").fill_null(0))
        )
        if new.height == 0:
            return empty_anomalies()
        new = new.with_columns(
            (-((pl.col("k") + a0) / (n_clients + a0 + b0)).log10()).alias("_s")
        ).sort(
            "src_ip", "window_start", "_s", "application", descending=[False, False, True, False]
        )
        top = new.group_by("src_ip", "window_start", "window_end", maintain_order=True).agg(
            pl.all().first(), pl.col("application").alias("all_apps")
        )
        evs = []
        for r in top.iter_rows(named=True):
            evs.append(
                {
                    "reason": (
                        f"{r['src_ip']} used {r['application']} for the first time"
                        f" ({r['flows']} flow(s), to {', '.join(r['dests'])}); {r['k']} of"
                        f" {n_clients} hosts used it before"
                    ),
                    "clients": [r["src_ip"]],
                    "application": r["application"],
                    "new_applications": r["all_apps"][:5],
                    "flows": int(r["flows"]),
                    "population_clients": int(r["k"]),
                    "baseline_clients": int(n_clients),
                    "destinations": r["dests"],
                }
            )
        return anomaly_frame(
            self.name,
            self.entity_type,
            top["src_ip"],
            top["window_start"],
            top["window_end"],
            top["_s"].round(6),
            None,
            evs,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Background plus one host starting AnyDesk on its second day."""
        rows = background_flows(seed)
        t0 = rows[0]["ts"].replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=36)
        for i in range(5):
            t = t0 + timedelta(minutes=7 * i)
            rows.append(
                {
                    "ts": t,
                    "ts_last": t + timedelta(minutes=5),
                    "src_ip": "10.0.0.7",
                    "dst_ip": "195.181.174.10",
                    "src_port": 45000 + i,
                    "dst_port": 7070,
                    "proto": "tcp",
                    "src2dst_payload_bytes": 50_000,
                    "dst2src_payload_bytes": 900_000,
                    "application": "AnyDesk",
                    "category": "RemoteAccess",
                }
            )
        return example_flows(rows)


def _beta_prior(shares: np.ndarray[Any, Any]) -> tuple[float, float]:
    """Method-of-moments Beta(a0, b0) for the applications' client shares (a weak
    Beta(0.5, 0.5) when there are too few applications to fit)."""
    s = shares[np.isfinite(shares)]
    if s.size < 3:
        return 0.5, 0.5
    m, v = float(s.mean()), float(s.var())
    if v <= 0 or m <= 0 or m >= 1:
        return 0.5, 0.5
    c = m * (1 - m) / v - 1
    if c <= 0:
        return 0.5, 0.5
    return max(m * c, 1e-3), max((1 - m) * c, 1e-3)
