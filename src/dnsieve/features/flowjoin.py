"""The DNS ↔ flow join: for each flow, whether and when its client resolved the
destination address, and via which name (ARCHITECTURE §1, "Flows beside DNS").

Per flow (client ``src_ip`` → address ``dst_ip`` at ``ts``) the join adds:

``resolved_name`` / ``resolved_domain`` / ``resolved_ts`` / ``resolve_lag``
    the client's latest DNS answer carrying ``dst_ip`` at or before the flow,
    within ``lookback``: the query name, its registered domain, the lookup
    time and the seconds from lookup to flow.  Null when the client never
    resolved the address in the lookback.
``resolved_by_any``
    any client resolved the address within the lookback (hosts behind a
    forwarder or a proxy resolve through another address).
``dns_history``
    seconds of DNS events before the flow (from the first event given): a
    flow at the very start of the data has no lookups to be matched with, and
    the detectors that need "never resolved" do not judge it.
``domain_first_seen`` / ``domain_clients``
    when the resolved registered domain was first looked up in the events
    given (the baseline included) and by how many distinct clients: the
    "new or rare for this network" context of ``fresh_name_conn``.

It is an as-of join (Polars ``join_asof`` by (client, address), backward on
time), so its cost is a sort of the answers and the flows, whatever their
number.  Answers that are not IP addresses (CNAME targets, TXT) are dropped.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl

from dnsieve.ingest.flows_common import FLOW_POLARS_SCHEMA

__all__ = ["JOINED_SCHEMA", "JOIN_COLUMNS", "flow_input", "join_flows_dns", "resolutions"]

#: Columns the join adds to the flow schema.
JOIN_COLUMNS: dict[str, pl.DataType] = {
    "resolved_name": pl.String(),
    "resolved_domain": pl.String(),
    "resolved_ts": pl.Datetime("us", "UTC"),
    "resolve_lag": pl.Float64(),
    "resolved_by_any": pl.Boolean(),
    "domain_first_seen": pl.Datetime("us", "UTC"),
    "domain_clients": pl.Int64(),
    "dns_history": pl.Float64(),
}

#: The input of the flow detectors: canonical flows plus the join columns.
JOINED_SCHEMA: pl.Schema = pl.Schema({**dict(FLOW_POLARS_SCHEMA), **JOIN_COLUMNS})

_IP = r"^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]+)$"


def resolutions(events: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """One row per (lookup, IP answer): ``src_ip, answer, ts, qname, registered_domain``."""
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    return (
        lf.select("ts", "src_ip", "qname", "registered_domain", "answers")
        .explode("answers")
        .rename({"answers": "answer"})
        .filter(pl.col("answer").is_not_null() & pl.col("answer").str.contains(_IP))
        .with_columns(pl.col("answer").str.to_lowercase())
        .unique(["src_ip", "answer", "ts", "qname"])
    )


def join_flows_dns(
    flows: pl.DataFrame,
    events: pl.DataFrame,
    lookback: timedelta = timedelta(hours=24),
) -> pl.DataFrame:
    """``flows`` with the join columns (:data:`JOIN_COLUMNS`), in the flows' order.

    >>> from datetime import datetime, UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> ev = pl.DataFrame({"ts": [t], "src_ip": ["10.0.0.1"], "qname": ["a.example.com"],
    ...     "registered_domain": ["example.com"], "answers": [["93.184.216.34"]]})
    >>> fl = pl.DataFrame({"ts": [t + timedelta(seconds=2)], "src_ip": ["10.0.0.1"],
    ...     "dst_ip": ["93.184.216.34"]}).cast({"ts": pl.Datetime("us", "UTC")})
    >>> join_flows_dns(fl, ev.cast({"ts": pl.Datetime("us", "UTC")})).select(
    ...     "resolved_name", "resolve_lag", "resolved_by_any", "domain_clients").row(0)
    ('a.example.com', 2.0, True, 1)
    """
    flows = flows.with_row_index("__row")
    if flows.height == 0:
        out = flows.drop("__row").with_columns(
            [pl.lit(None, dtype=t).alias(c) for c, t in JOIN_COLUMNS.items()]
        )
        return out
    res = resolutions(events).collect()
    domains = (
        events.lazy()
        .filter(pl.col("registered_domain").is_not_null() & (pl.col("registered_domain") != ""))
        .group_by("registered_domain")
        .agg(
            pl.col("ts").min().alias("domain_first_seen"),
            pl.col("src_ip").n_unique().cast(pl.Int64).alias("domain_clients"),
        )
        .collect()
    )
    left = flows.select("__row", "ts", "src_ip", "dst_ip").with_columns(
        pl.col("dst_ip").str.to_lowercase().alias("__addr")
    )
    own = left.sort("ts").join_asof(
        res.rename({"answer": "__addr", "ts": "resolved_ts"}).sort("resolved_ts"),
        left_on="ts",
        right_on="resolved_ts",
        by=["src_ip", "__addr"],
        strategy="backward",
        tolerance=lookback,
    )
    anyone = left.sort("ts").join_asof(
        res.select(pl.col("answer").alias("__addr"), pl.col("ts").alias("__any_ts")).sort(
            "__any_ts"
        ),
        left_on="ts",
        right_on="__any_ts",
        by="__addr",
        strategy="backward",
        tolerance=lookback,
    )
    joined = (
        own.select(
            "__row",
            pl.col("qname").alias("resolved_name"),
            pl.col("registered_domain").alias("resolved_domain"),
            "resolved_ts",
            ((pl.col("ts") - pl.col("resolved_ts")).dt.total_microseconds() / 1e6).alias(
                "resolve_lag"
            ),
        )
        .join(
            anyone.select("__row", pl.col("__any_ts").is_not_null().alias("resolved_by_any")),
            on="__row",
        )
        .join(domains, left_on="resolved_domain", right_on="registered_domain", how="left")
    )
    first_event = events.select(pl.col("ts").min()).item() if events.height else None
    out = flows.join(joined, on="__row", how="left").sort("__row").drop("__row")
    out = out.with_columns(
        (
            (
                pl.col("ts") - pl.lit(first_event, dtype=pl.Datetime("us", "UTC"))
            ).dt.total_microseconds()
            / 1e6
        ).alias("dns_history")
    )
    return out.cast({c: t for c, t in JOIN_COLUMNS.items()})


def flow_input(
    lake: Any,
    engine: Any,
    since: Any = None,
    until: Any = None,
    lookback: timedelta = timedelta(hours=24),
) -> pl.DataFrame:
    """The flow detectors' input (``requires = "flows"``): the lake's flows in
    ``[since, until)`` joined with its DNS events from ``lookback`` before."""
    flows = lake.scan_flows(since, until).sort("ts", maintain_order=True).collect()
    if flows.height == 0:
        return pl.DataFrame(schema=JOINED_SCHEMA)
    ev_from = since - lookback if since is not None else None
    events = engine.events(lake, ev_from, until)
    return join_flows_dns(flows, events, lookback)
