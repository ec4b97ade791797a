"""Detectors where DNS and flows meet (the :mod:`dnsieve.features.flowjoin` columns).

``conn_no_dns`` (client × address)
    One of our hosts talks to a public address that nobody resolved in the
    lookback: a hard-coded C2 address.  *Our hosts* are the DNS clients seen in
    the events (``resolved_by_any`` needs their lookups anyway), private
    addresses, and ``local_networks``.  Allowed by settings: destination ports
    ``allow_ports`` (NTP 123, DNS 53/853, DHCP, mDNS, SSDP, ...) and
    destination networks ``allow_networks``; ICMP is never judged (errors
    answer someone else's packet).  Score: the distinct hours in which the host
    talked to the address, divided by the number of our hosts that reach it
    without DNS.  Persistence is the signal: a client re-resolves a name as its
    TTL expires, so hours of connections to an address without a single lookup,
    while everything else is resolved, is an address written into the software
    (a missed lookup, a download from a redirect, explains one hour, not six).
    Windows are at least ``min_window`` (24 h, the lookback of "never
    resolved").  ``score_floor`` 6: six distinct hours from one host alert
    whatever the population.  Flows with less than ``min_dns_history`` seconds
    of DNS before them are not judged: there is nothing yet they could have
    been resolved by.

``fresh_name_conn`` (client × address)
    Connections to an address the client resolved minutes before
    (``max_lag``) from a registered domain that is new for this network (first
    looked up less than ``fresh_hours`` before, after at least ``fresh_hours``
    of history) and rare (``max_clients`` hosts or fewer ever asked for it):
    the masquerading case of the Umbrella study seen from both sides.  Score
    ``(1 + log2(1 + connections)) × freshness / domain_clients`` with
    freshness ``1 − age / fresh_hours``.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from typing import Any, ClassVar

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
from dnsieve.detectors.conn_common import (
    background_flows,
    bytes_in,
    bytes_out,
    example_flows,
    public_mask,
)
from dnsieve.detectors.frames import scored_period, window_columns

__all__ = ["ConnNoDnsDetector", "FreshNameConnDetector"]

#: Ports whose traffic goes to addresses by design (NTP, DNS, DHCP, mDNS, SSDP, NetBIOS, LLMNR).
DEFAULT_ALLOW_PORTS: tuple[int, ...] = (53, 67, 68, 123, 137, 138, 853, 1900, 5353, 5355)


def _in_networks(col: pl.Series, networks: tuple[str, ...]) -> pl.Series:
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    if not nets:
        return pl.Series([False] * len(col), dtype=pl.Boolean)
    table: dict[str, bool] = {}
    for a in col.unique().drop_nulls().to_list():
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            table[a] = False
            continue
        table[a] = any(ip.version == n.version and ip in n for n in nets)
    return col.replace_strict(table, default=False, return_dtype=pl.Boolean).fill_null(False)


@register
class ConnNoDnsDetector(Detector):
    """A host connecting to a public address nobody resolved (hard-coded C2)."""

    name: ClassVar[str] = "conn_no_dns"
    techniques: ClassVar[tuple[str, ...]] = ("T1071", "T1571")
    entity_type: ClassVar[EntityType] = "client_dest"
    requires: ClassVar[InputKind] = "flows"
    description: ClassVar[str] = "connections to a public address no host resolved"
    #: six distinct hours of connections from one host to an address nobody resolved
    score_floor: ClassVar[float] = 6.0

    def __init__(
        self,
        allow_ports: tuple[int, ...] = DEFAULT_ALLOW_PORTS,
        allow_networks: tuple[str, ...] = (),
        local_networks: tuple[str, ...] = (),
        min_connections: int = 1,
        min_dns_history: float = 3600.0,
        min_window: float = 24 * 3600.0,
    ) -> None:
        self.allow_ports = tuple(allow_ports)
        self.allow_networks = tuple(allow_networks)
        self.local_networks = tuple(local_networks)
        self.min_connections = min_connections
        self.min_dns_history = min_dns_history
        self.min_window = min_window

    def fit_population(self, data: pl.DataFrame) -> ConnNoDnsDetector:
        """Our hosts: the clients whose lookups the join saw (any flow of theirs resolved)."""
        self.dns_clients_ = sorted(
            data.filter(pl.col("resolved_name").is_not_null())["src_ip"]
            .unique()
            .drop_nulls()
            .to_list()
        )
        return self

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        fl = scored_period(data, ctx).filter(
            pl.col("src_ip").is_not_null()
            & pl.col("dst_ip").is_not_null()
            & ~pl.col("proto").fill_null("").str.starts_with("icmp")
            & (pl.col("dns_history").fill_null(0.0) >= self.min_dns_history)
        )
        if fl.height == 0:
            return empty_anomalies()
        ours = getattr(self, "dns_clients_", None)
        if ours is None:
            ours = fl.filter(pl.col("resolved_name").is_not_null())["src_ip"].unique().to_list()
        src = fl["src_ip"]
        local = (
            ~public_mask(src)
            | src.is_in(pl.Series(ours, dtype=pl.String).implode())
            | _in_networks(src, self.local_networks)
        )
        fl = fl.filter(local)
        dst = fl["dst_ip"]
        keep = (
            public_mask(dst)
            & ~_in_networks(dst, self.allow_networks)
            & ~_in_networks(dst, self.local_networks)
            & ~fl["dst_port"]
            .is_in(pl.Series(list(self.allow_ports), dtype=pl.Int32).implode())
            .fill_null(False)
            & ~fl["resolved_by_any"].fill_null(False)
            & fl["resolved_name"].is_null()
        )
        fl = fl.filter(keep)
        if fl.height == 0:
            return empty_anomalies()
        per = (
            fl.with_columns(
                *window_columns(ctx, min_window=self.min_window),
                (bytes_out() + bytes_in()).alias("_b"),
            )
            .group_by("src_ip", "dst_ip", "window_start", "window_end")
            .agg(
                pl.len().alias("connections"),
                pl.col("_b").sum().alias("bytes"),
                pl.col("dst_port").drop_nulls().unique().sort().head(5).alias("ports"),
                pl.col("application").drop_nulls().unique().sort().head(3).alias("apps"),
                pl.col("server_name").drop_nulls().unique().sort().head(3).alias("snis"),
                pl.col("conn_state").drop_nulls().unique().sort().head(3).alias("states"),
                pl.col("ts").dt.truncate("1h").n_unique().alias("active_hours"),
            )
            .filter(pl.col("connections") >= self.min_connections)
            .with_columns(pl.col("src_ip").n_unique().over("dst_ip", "window_start").alias("peers"))
            .with_columns((pl.col("active_hours").cast(pl.Float64) / pl.col("peers")).alias("_s"))
            .sort("src_ip", "dst_ip", "window_start")
        )
        evs: list[dict[str, Any]] = []
        for r in per.iter_rows(named=True):
            evs.append(
                {
                    "reason": (
                        f"{r['src_ip']} connected {r['connections']:,} time(s) to {r['dst_ip']} port"
                        f" {','.join(str(p) for p in r['ports'])} without any DNS lookup of that"
                        f" address, in {r['active_hours']} distinct hour(s) ({r['bytes']:,} bytes"
                        + (f", {', '.join(r['apps'])}" if r["apps"] else "")
                        + f"); {r['peers']} host(s) do so"
                    ),
                    "clients": [r["src_ip"]],
                    "destination": r["dst_ip"],
                    "ports": r["ports"],
                    "connections": int(r["connections"]),
                    "bytes": int(r["bytes"]),
                    "applications": r["apps"],
                    "server_names": r["snis"],
                    "states": r["states"],
                    "hosts_without_dns": int(r["peers"]),
                    "active_hours": int(r["active_hours"]),
                }
            )
        return anomaly_frame(
            self.name,
            self.entity_type,
            [f"{a}|{b}" for a, b in zip(per["src_ip"], per["dst_ip"], strict=True)],
            per["window_start"],
            per["window_end"],
            per["_s"].round(6),
            None,
            evs,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Background (every address resolved) plus one host calling a bare IP every 10 min."""
        rows = background_flows(seed)
        t0 = rows[0]["ts"].replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=25)
        for i in range(30):
            t = t0 + timedelta(minutes=10 * i)
            rows.append(
                {
                    "ts": t,
                    "ts_last": t + timedelta(seconds=2),
                    "src_ip": "10.0.0.3",
                    "dst_ip": "185.220.101.4",
                    "src_port": 51000 + i,
                    "dst_port": 8443,
                    "proto": "tcp",
                    "src2dst_payload_bytes": 900,
                    "dst2src_payload_bytes": 4000,
                    "resolved_by_any": False,
                    "dns_history": (t - rows[0]["ts"]).total_seconds() + 86400.0,
                }
            )
        return example_flows(rows)


@register
class FreshNameConnDetector(Detector):
    """Connections right after a lookup of a domain new and rare for the network."""

    name: ClassVar[str] = "fresh_name_conn"
    techniques: ClassVar[tuple[str, ...]] = ("T1071.001", "T1568")
    entity_type: ClassVar[EntityType] = "client_dest"
    requires: ClassVar[InputKind] = "flows"
    description: ClassVar[str] = "connections minutes after resolving a new, rare domain"

    def __init__(
        self, fresh_hours: float = 24.0, max_clients: int = 2, max_lag: float = 600.0
    ) -> None:
        self.fresh_hours = fresh_hours
        self.max_clients = max_clients
        self.max_lag = max_lag

    def fit_population(self, data: pl.DataFrame) -> FreshNameConnDetector:
        """The start of the history the domains' ages are measured against."""
        self.history_start_ = data["ts"].min()
        return self

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        hist = getattr(self, "history_start_", None) or data["ts"].min()
        fl = scored_period(data, ctx)
        if fl.height == 0 or not isinstance(hist, datetime):
            return empty_anomalies()
        fresh = timedelta(hours=self.fresh_hours)
        fl = fl.filter(
            pl.col("resolved_domain").is_not_null()
            & (pl.col("resolved_domain") != "")
            & (pl.col("resolve_lag") <= self.max_lag)
            & (pl.col("domain_clients") <= self.max_clients)
            & (pl.col("domain_first_seen") >= hist + fresh)
            & ((pl.col("ts") - pl.col("domain_first_seen")) < fresh)
        )
        if fl.height == 0:
            return empty_anomalies()
        per = (
            fl.with_columns(
                *window_columns(ctx),
                (
                    (pl.col("ts") - pl.col("domain_first_seen")).dt.total_microseconds() / 3.6e9
                ).alias("_age"),
                (bytes_out() + bytes_in()).alias("_b"),
            )
            .group_by("src_ip", "dst_ip", "window_start", "window_end")
            .agg(
                pl.len().alias("connections"),
                pl.col("_b").sum().alias("bytes"),
                pl.col("_age").min().alias("age_h"),
                pl.col("resolve_lag").min().alias("lag"),
                pl.col("resolved_domain").min().alias("domain"),
                pl.col("resolved_name").drop_nulls().unique().sort().head(3).alias("names"),
                pl.col("domain_clients").max().alias("dclients"),
                pl.col("dst_port").drop_nulls().unique().sort().head(5).alias("ports"),
            )
            .with_columns(
                (
                    (1 + (1 + pl.col("connections")).log(2))
                    * (1 - pl.col("age_h") / self.fresh_hours).clip(0.0, 1.0)
                    / pl.col("dclients").cast(pl.Float64).clip(1.0, None)
                ).alias("_s")
            )
            .sort("src_ip", "dst_ip", "window_start")
        )
        evs = [
            {
                "reason": (
                    f"{r['src_ip']} connected {r['connections']:,} time(s) to {r['dst_ip']} port"
                    f" {','.join(str(p) for p in r['ports'])} {r['lag']:.0f} s after resolving"
                    f" {r['names'][0] if r['names'] else r['domain']}, a domain first seen"
                    f" {r['age_h']:.1f} h before by {r['dclients']} host(s)"
                ),
                "clients": [r["src_ip"]],
                "destination": r["dst_ip"],
                "domain": r["domain"],
                "names": r["names"],
                "connections": int(r["connections"]),
                "bytes": int(r["bytes"]),
                "resolve_lag_s": round(float(r["lag"]), 3),
                "domain_age_h": round(float(r["age_h"]), 3),
                "domain_clients": int(r["dclients"]),
            }
            for r in per.iter_rows(named=True)
        ]
        return anomaly_frame(
            self.name,
            self.entity_type,
            [f"{a}|{b}" for a, b in zip(per["src_ip"], per["dst_ip"], strict=True)],
            per["window_start"],
            per["window_end"],
            per["_s"].round(6),
            None,
            evs,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Background plus one host connecting 3 s after resolving a day-one domain."""
        rows = background_flows(seed)
        t0 = rows[0]["ts"].replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=30)
        for i in range(8):
            t = t0 + timedelta(minutes=4 * i)
            rows.append(
                {
                    "ts": t,
                    "ts_last": t + timedelta(seconds=3),
                    "src_ip": "10.0.0.4",
                    "dst_ip": "203.0.113.9",
                    "src_port": 52000 + i,
                    "dst_port": 443,
                    "proto": "tcp",
                    "src2dst_payload_bytes": 2000,
                    "dst2src_payload_bytes": 30_000,
                    "resolved_name": "cdn.upd4te-check.top",
                    "resolved_domain": "upd4te-check.top",
                    "resolved_ts": t - timedelta(seconds=3),
                    "resolve_lag": 3.0,
                    "resolved_by_any": True,
                    "domain_first_seen": t0 - timedelta(minutes=1),
                    "domain_clients": 1,
                }
            )
        return example_flows(rows)
