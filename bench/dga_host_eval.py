"""Host-level DGA (``dga_host``) and ``newdomain`` evaluation on simulated traffic.

For each seed and host count: simulate enterprise DNS (``dnsieve.simulate``),
inject DGA bots whose names are drawn from the *real* family lists in
``../shared/data/domains/dga`` (read in place), plus harsh benign NXDOMAIN
noise (typo bursts, a misconfigured host failing on dozens of dead internal
names under one domain, search-suffix junk, single-label probes), score with
``dga_host`` and calibrate (population tail, score floor, no budget), and
report:

* recall per family and burst size (a bot counts as caught when any of its
  windows is an alert), also with the lexical model switched off
  (``use_lexical=False``: a model that knows no family, the worst case for a
  family left out of training);
* false alerts: alerts on hosts that are neither injected bots nor the
  simulator's own DGA bots, and whether any benign-noise host fired;
* for ``newdomain``: recall of the simulator's newdomain campaigns and alerts
  on its benign adoptions/CDNs and on anything else.

    python bench/dga_host_eval.py --seeds 1 2 3 --clients 500 --hours 48

Tune on seeds 1-3; report 4-5 apart (``--seeds 4 5``).
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dnsieve.calibrate import calibrate
from dnsieve.detectors import get
from dnsieve.detectors.base import DetectContext
from dnsieve.domains import DomainSplitter
from dnsieve.simulate import read_dga_lists, simulate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "domains" / "dga"
_SPLIT = DomainSplitter()


def _events(rows: list[dict[str, Any]], like: pl.DataFrame) -> pl.DataFrame:
    df = pl.DataFrame(rows)
    rd = _SPLIT.split_series(df["qname"])["registered_domain"]
    df = df.with_columns(registered_domain=rd)
    cols = [c for c in like.columns if c in df.columns]
    out = df.select(cols)
    for c in like.columns:
        if c not in out.columns:
            out = out.with_columns(pl.lit(None).cast(like.schema[c]).alias(c))
    return out.select(like.columns).cast(dict(like.schema))  # type: ignore[arg-type]


def inject_bots(
    ev: pl.DataFrame,
    rng: np.random.Generator,
    bots: list[tuple[str, str, list[str]]],
    burst: int,
) -> pl.DataFrame:
    """Add DGA bots: (host, family, names).  Each bot walks its day's list from
    the start in bursts of ``burst`` names (one every 0.2-1.5 s), every 1-3 h
    from 6 h in; the last name of the list resolves."""
    t_lo, t_hi = ev["ts"].min(), ev["ts"].max()
    assert t_lo is not None and t_hi is not None
    rows: list[dict[str, Any]] = []
    for host, _fam, names in bots:
        t = t_lo + timedelta(hours=6, seconds=float(rng.uniform(0, 3600)))  # type: ignore[operator]
        day_list = list(rng.permutation(names)[: max(burst * 3, 50)])
        while t < t_hi:  # type: ignore[operator]
            s = t
            for i, name in enumerate(day_list[:burst]):
                s = s + timedelta(seconds=float(rng.uniform(0.2, 1.5)))
                live = i == burst - 1 and rng.random() < 0.3
                rows.append(
                    {
                        "ts": s,
                        "src_ip": host,
                        "qname": name,
                        "qtype": "A",
                        "rcode": "NOERROR" if live else "NXDOMAIN",
                        "campaign": "bot",
                    }
                )
            t = t + timedelta(hours=float(rng.uniform(1, 3)))
    return pl.concat([ev, _events(rows, ev)])


def inject_noise(ev: pl.DataFrame, rng: np.random.Generator, hosts: list[str]) -> pl.DataFrame:
    """Benign NXDOMAIN noise that must not fire, one kind per host."""
    t_lo, t_hi = ev["ts"].min(), ev["ts"].max()
    assert isinstance(t_lo, datetime) and isinstance(t_hi, datetime)
    span = (t_hi - t_lo).total_seconds()
    rows: list[dict[str, Any]] = []
    typo_host, dead_host, suffix_host, probe_host = hosts[:4]
    bases = ["google", "microsoft", "github", "outlook", "linkedin", "zoom", "slack", "amazon"]
    for _ in range(int(span // 3600)):
        t = t_lo + timedelta(seconds=float(rng.uniform(0, span)))
        # a typing user: 3-6 typos of popular names within a few minutes
        for _j in range(int(rng.integers(3, 7))):
            b = bases[int(rng.integers(0, len(bases)))]
            i = int(rng.integers(1, len(b) - 1))
            typo = b[:i] + b[i + 1 :] + ".com"
            rows.append(
                {
                    "ts": t + timedelta(seconds=float(rng.uniform(0, 300))),
                    "src_ip": typo_host,
                    "qname": "www." + typo,
                    "qtype": "A",
                    "rcode": "NXDOMAIN",
                }
            )
        # a misconfigured host: 40 dead host names under one company domain
        for j in range(40):
            rows.append(
                {
                    "ts": t + timedelta(seconds=j * 2.0),
                    "src_ip": dead_host,
                    "qname": f"srv{int(rng.integers(0, 999))}.oldcorp-example.com",
                    "qtype": "A",
                    "rcode": "NXDOMAIN",
                }
            )
        # search-suffix junk under the organisation's own (resolving) domain
        for j in range(20):
            lab = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 10))
            rows.append(
                {
                    "ts": t + timedelta(seconds=j * 1.0),
                    "src_ip": suffix_host,
                    "qname": f"{lab}.ad.corp-example.net",
                    "qtype": "A",
                    "rcode": "NXDOMAIN",
                }
            )
        rows.append(
            {
                "ts": t,
                "src_ip": suffix_host,
                "qname": "corp-example.net",
                "qtype": "A",
                "rcode": "NOERROR",
            }
        )
        # browser intranet-redirect probes (single random labels) and wpad
        for j in range(3):
            lab = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(7, 16))))
            rows.append(
                {
                    "ts": t + timedelta(seconds=j * 0.1),
                    "src_ip": probe_host,
                    "qname": lab,
                    "qtype": "A",
                    "rcode": "NXDOMAIN",
                }
            )
        rows.append(
            {"ts": t, "src_ip": probe_host, "qname": "wpad", "qtype": "A", "rcode": "NXDOMAIN"}
        )
    return pl.concat([ev, _events(rows, ev)])


def alerts_for(name: str, ev: pl.DataFrame, **params: Any) -> pl.DataFrame:
    """Score ``ev`` with detector ``name`` in hourly windows and calibrate it alone."""
    lo, hi = ev["ts"].min(), ev["ts"].max()
    ctx = DetectContext(start=lo, end=hi + timedelta(seconds=1), window=3600.0)  # type: ignore[arg-type,operator]
    det = get(name)(**params)
    if hasattr(det, "fit_population"):
        det.fit_population(ev)
    out = det.score(ev, ctx)
    pop = det.population(ev, ctx) if hasattr(det, "population") else out.height
    floor = type(det).score_floor
    cal = calibrate(
        out,
        budget_per_day=1_000_000,
        population={name: max(pop, out.height)},
        floors={name: floor} if floor is not None else None,
    )
    return cal.alerts


def run(seed: int, clients: int, hours: int, burst: int, per_run: int) -> list[dict[str, Any]]:
    lists = read_dga_lists(SHARED)
    fams = sorted(f for f, names in lists.items() if len(names) >= 30)
    rng = np.random.default_rng(seed * 1000 + burst)
    res = simulate(hours=hours, clients=clients, seed=seed)
    base = res.events
    labels = res.labels
    sim_bots = set(labels.filter(pl.col("detector_family") == "dga_host")["entity"].to_list())
    busy = set(labels.filter(pl.col("entity_type") == "client")["entity"].to_list())
    hosts = [h for h in base["src_ip"].unique().sort().to_list() if h not in busy]
    out: list[dict[str, Any]] = []
    for start in range(0, len(fams), per_run):
        group = fams[start : start + per_run]
        pick = rng.permutation(len(hosts))[: len(group) + 4].tolist()
        bots = [(hosts[pick[i]], f, lists[f]) for i, f in enumerate(group)]
        noise_hosts = [hosts[j] for j in pick[len(group) :]]
        ev = inject_noise(inject_bots(base, rng, bots, burst), rng, noise_hosts)
        for lexical in (True, False):
            al = alerts_for("dga_host", ev, use_lexical=lexical)
            flagged = set(al["entity"].to_list())
            bot_ips = {b[0] for b in bots}
            false = flagged - bot_ips - sim_bots
            for host, fam, _ in bots:
                out.append(
                    {
                        "seed": seed,
                        "clients": clients,
                        "burst": burst,
                        "lexical": lexical,
                        "family": fam,
                        "caught": host in flagged,
                        "false_alerts": len(false),
                        "noise_fired": len(false & set(noise_hosts)),
                        "sim_bots_caught": len(flagged & sim_bots),
                        "sim_bots": len(sim_bots),
                    }
                )
    return out


def newdomain_run(seed: int, clients: int, hours: int) -> dict[str, Any]:
    res = simulate(hours=hours, clients=clients, seed=seed)
    al = alerts_for("newdomain", res.events)
    lab = res.labels.filter(pl.col("detector_family") == "newdomain")
    threats = set(lab.filter(pl.col("threat") == 1)["entity"].to_list())
    benign = set(lab.filter(pl.col("threat") == 0)["entity"].to_list())
    flagged = set(al["entity"].to_list())
    # Every injected entity, with the domain of client|domain (beacon) labels.
    injected = {e.split("|")[-1] for e in res.labels["entity"].to_list()}
    return {
        "seed": seed,
        "clients": clients,
        "campaigns": len(threats),
        "caught": len(threats & flagged),
        "benign_labelled": len(benign),
        "benign_flagged": len(benign & flagged),
        "other_injected_flagged": len((flagged & injected) - threats - benign),
        "false_alerts": len(flagged - injected),
        "missed": sorted(threats - flagged),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--clients", type=int, nargs="+", default=[500])
    ap.add_argument("--hours", type=int, default=72)
    ap.add_argument("--bursts", type=int, nargs="+", default=[10, 40])
    ap.add_argument("--per-run", type=int, default=6, help="bots injected per simulated run")
    ap.add_argument("--skip-newdomain", action="store_true")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    nd: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        for n in args.clients:
            for b in args.bursts:
                rows += run(seed, n, args.hours, b, args.per_run)
            if not args.skip_newdomain:
                nd.append(newdomain_run(seed, n, args.hours))
    df = pl.DataFrame(rows)
    pl.Config.set_tbl_rows(200)
    pl.Config.set_tbl_cols(-1)
    pl.Config.set_tbl_width_chars(200)
    print("dga_host recall by burst size and lexical evidence (bots caught / injected):")
    print(
        df.group_by("clients", "burst", "lexical")
        .agg(bots=pl.len(), recall=pl.col("caught").mean())
        .sort("clients", "burst", "lexical")
    )
    print("families missed at least once:")
    print(
        df.filter(~pl.col("caught"))
        .group_by("family", "burst", "lexical")
        .agg(missed=pl.len())
        .sort("family", "burst")
    )
    runs = df.unique(["seed", "clients", "burst", "lexical", "false_alerts", "noise_fired"])
    print(
        "false dga_host alerts per run (max):",
        runs["false_alerts"].max(),
        "| benign-noise hosts fired (total):",
        runs["noise_fired"].sum(),
        "| simulator's own bots caught:",
        f"{df['sim_bots_caught'].max()!s}/{df['sim_bots'].max()!s}",
    )
    if nd:
        print("newdomain:")
        print(pl.DataFrame(nd))
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
