#!/usr/bin/env python
"""Simulated-analyst benchmark for the threat model (issue 5, ARCHITECTURE §6).

    .venv/bin/python bench/feedback.py [--seed 7] [--hours 96] [--clients 150] [--repeats 5]

Two anomaly sets, each with ground truth:

``sim``
    ``dnsieve simulate`` output (Zeek TSV + labels.csv) → lake → the full
    detection pipeline (:func:`dnsieve.pipeline.detect`, every candidate, with
    calibration).  An anomaly is a threat when its entity (or, for
    ``client|domain``, its client or domain) and window match a labels.csv row
    (:func:`dnsieve.threat.training.label_anomalies`).
``mix``
    real background (brimdata WRCCDC 2018 Zeek dns.log, 53k rows, 77 hosts)
    plus injected infected clients: three tunnels replaying Bubnov 2019 dev
    query names (dns2tcp, dnscapy, iodine) under their own domains, one
    netrack iodine session (hidemyself.org) and two DGA bots querying
    held-out DGA domains (families and labels outside the shipped DGA
    model's training split), written as a second Zeek log at plausible times
    inside the capture, ingested and run through the same pipeline.

For each set and each model (``linear`` and ``mlp``) the simulated analyst
answers verdicts from the ground truth, one at a time, each applied online at
once (:func:`dnsieve.threat.model.on_verdict`).  The alerts asked about are
chosen either by the active-learning queue (uncertainty × impact) or at
random (mean of ``--repeats`` seeds).  Reported: precision@20 of the queue
(all candidates ranked by P(threat)) with no feedback and after 10, 25 and 50
verdicts, and the active/random ratio.  Everything is seeded.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from dnsieve.lake import Lake
from dnsieve.pipeline import detect
from dnsieve.simulate import simulate, write_zeek
from dnsieve.threat.active import impact, next_to_review
from dnsieve.threat.features import TopList, anomaly_features, entity_context
from dnsieve.threat.model import ThreatModel, on_verdict
from dnsieve.threat.training import label_anomalies, read_labels

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BUDGETS = (0, 10, 25, 50)
K = 20


@dataclass
class Dataset:
    """Anomaly features, ground truth and bookkeeping for one benchmark set."""

    name: str
    X: npt.NDArray[np.float64]
    y: npt.NDArray[np.int8]
    ts: npt.NDArray[np.float64]
    detectors: list[str]
    note: str


def _features(lake: Lake, anomalies: pl.DataFrame) -> npt.NDArray[np.float64]:
    ctx = entity_context(lake.scan())
    top = DATA / "domains" / "benign" / "tranco_like_top50k_2025-02_kmikholap.csv"
    toplist = TopList.load(top) if top.exists() else None
    return anomaly_features(anomalies, context=ctx, toplist=toplist)


def _finish(
    name: str, lake: Lake, anomalies: pl.DataFrame, labels: pl.DataFrame, note: str
) -> Dataset:
    y = (label_anomalies(anomalies, labels) == 1).astype(np.int8)
    X = _features(lake, anomalies)
    ts = anomalies["window_end"].dt.epoch("us").to_numpy() / 1e6
    return Dataset(name, X, y, ts, anomalies["detector"].to_list(), note)


def _detect(lake: Lake) -> tuple[pl.DataFrame, str]:
    res = detect(lake)
    ok = [d for d, i in res.summary["detectors"].items() if i.get("status") == "ok"]
    bad = [
        f"{d}: {i.get('reason', '')[:60]}"
        for d, i in res.summary["detectors"].items()
        if i.get("status") == "error"
    ]
    note = f"detectors ok: {', '.join(ok)}" + (f"; errors: {'; '.join(bad)}" if bad else "")
    return res.anomalies, note


def sim_dataset(work: Path, seed: int, hours: int, clients: int) -> Dataset:
    """Dataset ``sim``: dnsieve simulate → lake → pipeline."""
    r = simulate(hours=hours, clients=clients, seed=seed)
    paths = write_zeek(r, work / "sim")
    lake = Lake(work / "lake-sim")
    lake.ingest_files([paths["log"]], "auto", {})
    anomalies, note = _detect(lake)
    labels, _ = read_labels(paths["labels"], default_label="threat")
    return _finish("sim", lake, anomalies, labels, note)


# --------------------------------------------------------------------- mix
_QTYPES = {"A": 1, "NULL": 10, "MX": 15, "TXT": 16, "AAAA": 28, "CNAME": 5}


def _bucket(label: str) -> int:
    """The hash bucket scripts/train_dga.py splits on (>= 80: its test split)."""
    return int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "big") % 100


def _zeek_rows(
    rng: np.random.Generator,
    client: str,
    names: list[str],
    t0: float,
    t1: float,
    qtypes: list[str],
    rcode: str,
    resolver: str,
) -> list[str]:
    ts = np.sort(rng.uniform(t0, t1, size=len(names)))
    rows = []
    for i, (t, q) in enumerate(zip(ts, names, strict=True)):
        qt = qtypes[int(rng.integers(len(qtypes)))]
        rc = 3 if rcode == "NXDOMAIN" else 0
        ans = "-" if rc == 3 else ("10.9.8.7" if qt == "A" else "c2VjcmV0")
        ttl = "-" if rc == 3 else "0.000000"
        rows.append(
            "\t".join(
                [
                    f"{t:.6f}",
                    f"Cinj{client.replace('.', '')}{i}",
                    client,
                    str(30000 + i % 30000),
                    resolver,
                    "53",
                    "udp",
                    str(int(rng.integers(65536))),
                    "0.010000",
                    q,
                    "1",
                    "C_INTERNET",
                    str(_QTYPES[qt]),
                    qt,
                    str(rc),
                    rcode,
                    "F",
                    "F",
                    "T",
                    "T",
                    "0",
                    ans,
                    ttl,
                    "F",
                ]
            )
        )
    return rows


def _clean(name: str) -> str:
    return "".join(c for c in name if 32 < ord(c) < 127 and c not in "\t\\,")


def mix_dataset(work: Path, seed: int) -> Dataset:
    """Dataset ``mix``: real brimdata background + injected tunnels and DGA bots."""
    rng = np.random.default_rng(seed)
    bg = DATA / "zeek" / "brimdata" / "dns.log.gz"
    lake = Lake(work / "lake-mix")
    lake.ingest_files([bg], "auto", {})
    rng_t = lake.time_range()
    assert rng_t is not None, "background did not ingest"
    t_lo, t_hi = rng_t[0].timestamp(), rng_t[1].timestamp()
    span = t_hi - t_lo
    resolver = "10.0.0.100"
    rows: list[str] = []
    labels: list[dict[str, str]] = []

    def iso(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"

    def add(
        client: str,
        names: list[str],
        qtypes: list[str],
        rcode: str,
        entities: list[str],
        frac: tuple[float, float],
    ) -> None:
        t0, t1 = t_lo + frac[0] * span, t_lo + frac[1] * span
        rows.extend(_zeek_rows(rng, client, names, t0, t1, qtypes, rcode, resolver))
        for e in [client, *entities, *(f"{client}|{d}" for d in entities)]:
            labels.append(
                {"entity": e, "label": "threat", "window_start": iso(t0), "window_end": iso(t1 + 1)}
            )

    bub = pl.read_csv(
        DATA / "tunnel" / "bubnov2019" / "dev.csv", schema_overrides={"input": pl.String}
    )
    tools = {
        "dns2tcp": "syncfeed.net",
        "dnscapy": "cdn-telemetry.com",
        "iodine": "mailrelay-eu.org",
    }
    for i, (tool, dom) in enumerate(tools.items()):
        toks = [_clean(s) for s in bub.filter(pl.col("class") == tool)["input"].to_list()]
        toks = [t for t in toks if t][:600]
        qts = {"dns2tcp": ["TXT"], "dnscapy": ["TXT", "CNAME"], "iodine": ["NULL", "TXT", "CNAME"]}[
            tool
        ]
        add(
            f"10.47.99.{11 + i}",
            [f"{t}.{dom}".lower() for t in toks],
            qts,
            "NOERROR",
            [dom],
            (0.25 + 0.1 * i, 0.7 + 0.1 * i),
        )
    net = pl.read_csv(DATA / "tunnel" / "netrack" / "iodine" / "names.csv")["qname"].to_list()[:400]
    add(
        "10.47.99.14",
        [n.rstrip(".").lower() for n in net],
        ["NULL"],
        "NOERROR",
        ["hidemyself.org"],
        (0.4, 0.9),
    )
    dga = pl.concat(
        [pl.read_csv(f) for f in sorted((DATA / "domains" / "dga").glob("*.csv"))]
    ).with_columns(pl.col("family").str.to_lowercase())
    dga = dga.filter(
        pl.col("domain").map_elements(
            lambda d: _bucket(d.split(".")[0]) >= 80, return_dtype=pl.Boolean
        )
    )
    fams = sorted(set(dga["family"].to_list()))
    picked = [fams[int(j)] for j in rng.choice(len(fams), size=2, replace=False)]
    for i, fam in enumerate(picked):
        doms = dga.filter(pl.col("family") == fam)["domain"].head(120).to_list()
        add(f"10.47.99.{21 + i}", doms, ["A"], "NXDOMAIN", doms, (0.3 + 0.2 * i, 0.6 + 0.2 * i))
    with gzip.open(bg, "rt") as fh:
        header = [next(fh) for _ in range(8)]
    inj = work / "injected.log"
    inj.write_text("".join(header) + "\n".join(rows) + "\n")
    lake.ingest_files([inj], "auto", {})
    anomalies, note = _detect(lake)
    lab = pl.DataFrame(labels).write_csv()
    import io

    labels_df, _ = read_labels(io.StringIO(lab))
    return _finish(
        "mix", lake, anomalies, labels_df, note + f"; DGA families injected: {', '.join(picked)}"
    )


# ------------------------------------------------------------ the analyst
def precision_at(p: npt.NDArray[np.float64], y: npt.NDArray[np.int8], k: int = K) -> float:
    """Share of threats among the ``k`` highest P(threat) (ties by index)."""
    order = np.lexsort((np.arange(p.size), -p))[:k]
    return float(y[order].mean()) if order.size else 0.0


def curve(ds: Dataset, kind: str, strategy: str, seed: int) -> list[float]:
    """precision@K after each budget in BUDGETS for one model and one strategy."""
    model = ThreatModel(kind=kind, seed=seed)  # type: ignore[arg-type]
    model.observe(ds.X)
    imp = impact(ds.X)
    rng = np.random.default_rng(seed)
    asked: list[int] = []
    out: list[float] = []
    p = model.predict_proba(ds.X)
    for b in BUDGETS:
        while len(asked) < b:
            if strategy == "active":
                i = int(next_to_review(p, imp, 1, exclude=asked)[0])
            else:
                free = np.setdiff1d(np.arange(ds.y.size), asked)
                i = int(rng.choice(free))
            asked.append(i)
            on_verdict(model, ds.X[i], int(ds.y[i]), float(ds.ts[i]))
            p = model.predict_proba(ds.X)
        out.append(precision_at(p, ds.y))
    return out


def run(
    ds: Dataset, repeats: int, seed: int, emit: Callable[[str], None]
) -> list[dict[str, object]]:
    """Every (model, strategy) curve for one dataset, printed as table rows."""
    results = []
    for kind in ("linear", "mlp"):
        act = curve(ds, kind, "active", seed)
        rnd = np.mean(
            [curve(ds, kind, "random", seed + 1000 + r) for r in range(repeats)], axis=0
        ).tolist()
        for strategy, c in (("active", act), (f"random×{repeats}", rnd)):
            emit(f"| {ds.name} | {kind} | {strategy} | " + " | ".join(f"{v:.2f}" for v in c) + " |")
        ratio = act[-1] / rnd[-1] if rnd[-1] > 0 else float("inf")
        emit(
            f"| {ds.name} | {kind} | active/random | "
            + " | ".join(f"{a / r:.2f}" if r > 0 else "inf" for a, r in zip(act, rnd, strict=True))
            + " |"
        )
        results.append(
            {"dataset": ds.name, "kind": kind, "active": act, "random": rnd, "ratio_50": ratio}
        )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--hours", type=int, default=96)
    ap.add_argument("--clients", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", choices=["sim", "mix"], default=None)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dnsieve-feedback-") as tmp:
        work = Path(tmp)
        sets = []
        t0 = time.perf_counter()
        if a.only in (None, "sim"):
            sets.append(sim_dataset(work, a.seed, a.hours, a.clients))
        if a.only in (None, "mix"):
            sets.append(mix_dataset(work, a.seed))
        prep = time.perf_counter() - t0
    for ds in sets:
        print(
            f"{ds.name}: {ds.y.size} candidates, {int(ds.y.sum())} threats "
            f"({100 * ds.y.mean():.2f} %); {ds.note}"
        )
    print(f"data preparation: {prep:.1f} s\n")
    print(f"precision@{K} of the queue after N verdicts (simulated analyst)\n")
    print("| data | model | verdicts chosen by | " + " | ".join(f"N={b}" for b in BUDGETS) + " |")
    print("|---|---|---|" + "---|" * len(BUDGETS))
    t1 = time.perf_counter()
    for ds in sets:
        run(ds, a.repeats, a.seed, print)
    print(f"\nfeedback loop: {time.perf_counter() - t1:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
