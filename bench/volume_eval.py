"""Volume-model evaluation on simulated weeks (issue 3's must-show).

For each seed: simulate a week of enterprise DNS, ingest it into a lake, run
the volume detector through the pipeline, and match alerts to the injected
``volume``-family labels (masquerade and volume spikes; the simulator's
benign update/backup bursts carry the family too and are reported apart, as
"benign anomalies alerted", not as recall).  Prints the per-kind recall table
and false volume alerts per 10,000 active domains per day.  The project-wide
scoreboard over every detector is ``bench/quality.py``.

    python bench/volume_eval.py --seeds 1 2 3 --clients 2000 --hours 168
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl

from dnsieve.lake import Lake
from dnsieve.pipeline import detect
from dnsieve.simulate import simulate, write_zeek


def _hits(frame: pl.DataFrame, labels: pl.DataFrame) -> list[bool]:
    out = []
    for row in labels.iter_rows(named=True):
        m = frame.filter(
            (pl.col("entity") == row["entity"])
            & (pl.col("window_start") < row["window_end"])
            & (pl.col("window_end") > row["window_start"])
        )
        out.append(m.height > 0)
    return out


def evaluate(seed: int, clients: int, hours: int) -> dict[str, object]:
    """Run one seed; returns per-kind counts and the false-alert rate."""
    t0 = time.perf_counter()
    res = simulate(hours=hours, clients=clients, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_zeek(res, Path(tmp) / "logs")
        lake = Lake(Path(tmp) / "lake")
        lake.ingest_files([paths["log"]])
        out = detect(lake, detectors=["volume"], strict=True)
        active_domains = lake.scan().select(pl.col("registered_domain").n_unique()).collect().item()
        labels = pl.read_csv(paths["labels"]).with_columns(
            pl.col("window_start").str.to_datetime(time_zone="UTC"),
            pl.col("window_end").str.to_datetime(time_zone="UTC"),
        )
    vol = labels.filter(pl.col("detector_family") == "volume")
    alert_hit = _hits(out.alerts, vol)
    cand_hit = _hits(out.anomalies, vol)
    kinds: dict[str, list[int]] = {}
    for row, a, c in zip(vol.iter_rows(named=True), alert_hit, cand_hit, strict=True):
        k = kinds.setdefault(row["kind"], [0, 0, 0])
        k[0] += 1
        k[1] += int(a)
        k[2] += int(c)
    injected = set(labels.filter(pl.col("entity_type") == "domain").get_column("entity").to_list())
    false = out.alerts.filter(~pl.col("entity").is_in(list(injected)))
    cal = out.summary["calibration"]["detectors"]["volume"]
    days = max(hours / 24 - 1, 1)  # the first day is baseline only
    return {
        "seed": seed,
        "kinds": kinds,
        "false": false.height,
        "false_entities": false.get_column("entity").to_list(),
        "active_domains": active_domains,
        "false_per_10k_per_day": false.height / (active_domains / 10_000) / days,
        "population": cal.get("population"),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--hours", type=int, default=168)
    args = ap.parse_args()
    total: dict[str, list[int]] = {}
    print(f"volume evaluation: {args.hours} h x {args.clients} clients, seeds {args.seeds}")
    for seed in args.seeds:
        r = evaluate(seed, args.clients, args.hours)
        for kind, (n, a, c) in r["kinds"].items():  # type: ignore[attr-defined]
            t = total.setdefault(kind, [0, 0, 0])
            t[0] += n
            t[1] += a
            t[2] += c
            print(f"  seed {seed} {kind:14s} alerted {a}/{n}  candidates {c}/{n}")
        print(
            f"  seed {seed} false volume alerts {r['false']} {r['false_entities']} over "
            f"{r['active_domains']:,} active domains = "
            f"{r['false_per_10k_per_day']:.2f} per 10k domains per day ({r['seconds']:.0f} s)"
        )
    threats = {k: t for k, t in total.items() if not k.startswith("benign_")}
    n = sum(t[0] for t in threats.values())
    a = sum(t[1] for t in threats.values())
    print("| kind | campaigns | alerted | recall |")
    print("|---|---|---|---|")
    for kind, (kn, ka, _) in sorted(threats.items()):
        print(f"| {kind} | {kn} | {ka} | {ka / kn:.2f} |")
    print(f"| all attacks | {n} | {a} | {a / max(n, 1):.2f} |")
    for kind, (kn, ka, _) in sorted(total.items()):
        if kind.startswith("benign_"):
            print(f"| {kind} (benign anomaly, alerted) | {kn} | {ka} | - |")


if __name__ == "__main__":
    main()
