"""Building blocks of the flow detectors (``conn_*``, ``long_connection``,
``new_application``): example frames, address classes and byte columns.

Flow detectors take ``requires = "flows"``: canonical flows with the DNS join
columns (:data:`dnsieve.features.flowjoin.JOINED_SCHEMA`).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from dnsieve.features.flowjoin import JOINED_SCHEMA

__all__ = ["bytes_in", "bytes_out", "example_flows", "is_public", "public_mask"]


def example_flows(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A joined flow frame (every :data:`JOINED_SCHEMA` column) from row dicts; missing
    columns are null."""
    cols = {name: [r.get(name) for r in rows] for name in JOINED_SCHEMA}
    return pl.DataFrame(cols, schema=JOINED_SCHEMA)


def is_public(addr: str | None) -> bool:
    """True for a globally routable unicast address (not private, loopback,
    link-local, multicast, reserved or unparseable).

    >>> is_public("8.8.8.8"), is_public("10.1.2.3"), is_public("ff02::fb"), is_public("junk")
    (True, False, False, False)
    """
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return bool(ip.is_global and not ip.is_multicast)


def public_mask(col: pl.Series) -> pl.Series:
    """:func:`is_public` over a column, computed once per distinct address."""
    uniq = col.unique().drop_nulls()
    table = {a: is_public(a) for a in uniq.to_list()}
    return col.replace_strict(table, default=False, return_dtype=pl.Boolean).fill_null(False)


def bytes_out() -> pl.Expr:
    """Bytes the client sent: payload bytes where known (Zeek), else IP bytes."""
    return pl.coalesce(pl.col("src2dst_payload_bytes"), pl.col("src2dst_bytes")).fill_null(0)


def bytes_in() -> pl.Expr:
    """Bytes the client received (payload where known, else IP bytes)."""
    return pl.coalesce(pl.col("dst2src_payload_bytes"), pl.col("dst2src_bytes")).fill_null(0)


def background_flows(seed: int, hours: int = 48, clients: int = 12) -> list[dict[str, Any]]:
    """Benign-looking flows for examples: browsing bursts to resolved addresses."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 4, 1, tzinfo=UTC)
    apps = [("TLS.Google", "Web"), ("TLS.Microsoft", "Cloud"), ("HTTP", "Web"), ("DNS", "Network")]
    rows: list[dict[str, Any]] = []
    for c in range(clients):
        for _ in range(int(hours * 3)):
            t = t0 + timedelta(seconds=float(rng.uniform(0, hours * 3600)))
            app, cat = apps[int(rng.integers(0, len(apps)))]
            dst = f"142.250.{int(rng.integers(1, 9))}.{int(rng.integers(1, 250))}"
            out_b = int(rng.lognormal(7, 1))
            in_b = int(rng.lognormal(10, 1.2))
            rows.append(
                {
                    "ts": t,
                    "ts_last": t + timedelta(seconds=float(rng.exponential(20))),
                    "duration": None,
                    "src_ip": f"10.0.0.{c + 2}",
                    "dst_ip": dst,
                    "src_port": int(rng.integers(30000, 60000)),
                    "dst_port": 443 if app.startswith("TLS") else 80,
                    "proto": "tcp",
                    "src2dst_packets": 10,
                    "dst2src_packets": 12,
                    "src2dst_bytes": out_b + 400,
                    "dst2src_bytes": in_b + 480,
                    "src2dst_payload_bytes": out_b,
                    "dst2src_payload_bytes": in_b,
                    "application": app,
                    "category": cat,
                    "resolved_name": "www.google.com",
                    "resolved_domain": "google.com",
                    "resolved_ts": t - timedelta(seconds=1),
                    "resolve_lag": 1.0,
                    "resolved_by_any": True,
                    "domain_first_seen": t0,
                    "domain_clients": clients,
                    "dns_history": (t - t0).total_seconds(),
                }
            )
    for r in rows:
        r["duration"] = (r["ts_last"] - r["ts"]).total_seconds()
    return rows
