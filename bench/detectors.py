"""Per-kind recall and false alerts of each detector on simulator output.

Usage: ``python bench/detectors.py [--hours 168] [--clients 200] [--seed 1]``

Runs every detector of this family (tunnel, nxdomain, beacon, visitors,
profile, fastflux) directly on ``dnsieve.simulate`` events (canonicalised
through the real ingest path), with hourly windows (tunnel also daily, for the
slow ``exfil`` campaigns), the first quarter of the span as baseline.  An
alert is a candidate with ``score >= score_floor``.  A labelled campaign is
recalled by a detector when an alert has the label's entity and a window that
overlaps the label's window; alerts matching no label are false alerts.
Also prints the scoring throughput in events/s against a Polars group-by
reference measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

import polars as pl

from dnsieve.detectors import DetectContext, get
from dnsieve.ingest.base import IngestStats, ReadContext, canonicalize
from dnsieve.simulate import simulate

FAMILY = ("tunnel", "nxdomain", "beacon", "visitors", "profile", "fastflux")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=int, default=168)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    sim = simulate(hours=a.hours, clients=a.clients, seed=a.seed)
    cols = [c for c in sim.events.columns if c not in ("uid", "campaign", "registered_domain")]
    ev = canonicalize(sim.events.select(cols), ReadContext(sensor="sim", stats=IngestStats()))
    labels = sim.labels.with_columns(
        pl.col("window_start").str.to_datetime(time_unit="us", time_zone="UTC"),
        pl.col("window_end").str.to_datetime(time_unit="us", time_zone="UTC"),
    )
    lo, hi = ev["ts"].min(), ev["ts"].max()
    start = lo + (hi - lo) / 4  # type: ignore[operator]
    print(f"{ev.height:,} events, {a.clients} clients, {a.hours} h; labels:")
    print(labels.group_by("kind", "detector_family").len().sort("kind"))
    t0 = time.perf_counter()
    ev.group_by("registered_domain", pl.col("ts").dt.truncate("1h")).agg(
        pl.len(), pl.col("src_ip").n_unique()
    )
    ref = ev.height / (time.perf_counter() - t0)
    rows = []
    runs = [(n, 3600.0) for n in FAMILY] + [("tunnel", 86400.0)]
    for name, window in runs:
        cls = get(name)
        ctx = DetectContext(start=start, end=hi + timedelta(seconds=1), window=window)  # type: ignore[operator]
        t0 = time.perf_counter()
        out = cls().score(ev, ctx)
        rate = ev.height / (time.perf_counter() - t0)
        alerts = out.filter(pl.col("score") >= cls.score_floor)  # type: ignore[attr-defined]
        lab = labels.filter(pl.col("entity_type") == cls.entity_type, pl.col("window_end") > start)
        hit = alerts.join(lab, on="entity", how="inner", suffix="_l").filter(
            (pl.col("window_start") < pl.col("window_end_l"))
            & (pl.col("window_end") > pl.col("window_start_l"))
        )
        matched = hit.select("entity", "window_start").unique().height
        for kind in sorted(lab["kind"].unique().to_list()):
            k = lab.filter(pl.col("kind") == kind)
            found = hit.filter(pl.col("kind") == kind).select("campaign").unique().height
            rows.append(
                {"detector": f"{name}@{int(window)}s", "kind": kind, "campaigns": k["campaign"].n_unique(),
                 "recalled": found, "recall": round(found / max(1, k["campaign"].n_unique()), 2)}
            )  # fmt: skip
        rows.append(
            {"detector": f"{name}@{int(window)}s", "kind": "(false alerts)", "campaigns": out.height,
             "recalled": alerts.select("entity", "window_start").unique().height - matched, "recall": None}
        )  # fmt: skip
        print(
            f"{name}@{int(window)}s: {rate:,.0f} events/s ({rate / ref:.2f}x the group-by reference {ref:,.0f}/s)"
        )
    with pl.Config(tbl_rows=100):
        print(pl.DataFrame(rows))


if __name__ == "__main__":
    main()
