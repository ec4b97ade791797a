"""Polars versus Spark aggregation throughput at 1x, 4x and 16x data (issue 3's bench).

Generates canonical DNS events (Zipf-popular domains and clients, a qtype and
rcode mix, random tunnel-like subdomains for a few domains) over 24 hours,
writes them as an hour-partitioned Parquet lake (the layout of
:class:`dnsieve.lake.Lake`), and times each engine's ``domain_hourly``
aggregation (by default; ``--kinds`` for others) at each scale.  The domain and
client universe and the time span stay fixed while the traffic grows, the way
a resolver's load grows.  Spark is warmed up on the 1x lake before timing.

Prints rows/s per engine and scale, the cost growth ratios t(4x)/t(1x) and
t(16x)/t(1x) (4 and 16 would be linear), and the spark/polars time ratio.
Every figure is measured in the same run; nothing is compared with a
constant.

    .venv/bin/python bench/volume_engines.py                   # 1M, 4M, 16M rows
    .venv/bin/python bench/volume_engines.py --base-rows 200000 --no-spark
    .venv/bin/python bench/volume_engines.py --detect --base-rows 250000   # every detector

``--detect`` times every registered detector instead (issue 14): the inputs,
the population fit, the scoring and the candidates back on the driver, on a
48-hour lake (the first day is the volume model's baseline) at 1x, 4x and 16x.
On Spark nothing but statistics and candidates reaches the driver
(:mod:`dnsieve.engines.spark_detect`).  The ``ALL`` rows sum the detectors.

``bench/volume.py`` calls :func:`run` and :func:`report`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dnsieve.engines import get_engine
from dnsieve.schema import DNS_EVENT

__all__ = ["detect_once", "generate_hour", "report", "run", "run_detect", "universe", "write_lake"]

START = datetime(2024, 4, 1, tzinfo=UTC)
QTYPES = np.array(["A", "AAAA", "HTTPS", "PTR", "TXT", "CNAME", "MX", "SRV", "NULL", "ANY"])
QTYPE_P = np.array([0.56, 0.22, 0.08, 0.05, 0.04, 0.02, 0.015, 0.01, 0.0025, 0.0025])
RCODES = np.array(["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"])
RCODE_P = np.array([0.90, 0.08, 0.015, 0.005])
SUBS = np.array(["", "www", "api", "mail", "cdn", "img", "static", "login", "m", "ws"])


def _zipf_index(rng: np.random.Generator, n: int, size: int, s: float = 1.1) -> np.ndarray:
    """Indices in [0, n) with Zipf-like popularity (inverse-CDF sampling)."""
    w = 1.0 / np.arange(1, n + 1) ** s
    cdf = np.cumsum(w / w.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(size)), n - 1)


def universe(n_domains: int, n_clients: int) -> tuple[pa.Array, pa.Array]:
    """The registered domains and client addresses events are drawn from."""
    domains = pa.array([f"d{i}-example{i % 97}.com" for i in range(n_domains)])
    clients = pa.array([f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n_clients)])
    return domains, clients


def generate_hour(
    rng: np.random.Generator, hour: datetime, rows: int, domains: pa.Array, clients: pa.Array
) -> pa.Table:
    """``rows`` canonical events within one hour, as an Arrow table of the DNS_EVENT schema."""
    start_us = int(hour.timestamp() * 1_000_000)
    ts = np.sort(start_us + rng.integers(0, 3_600_000_000, rows))
    dom = _zipf_index(rng, len(domains), rows)
    cli = _zipf_index(rng, len(clients), rows, s=0.8)
    sub_idx = rng.integers(0, len(SUBS), rows)
    subs = SUBS[sub_idx].astype(object)
    tunnel = dom % 1000 == 999  # a few domains with many random subdomains
    subs[tunnel] = [f"{x:012x}" for x in rng.integers(0, 2**48, int(tunnel.sum()))]
    rd = domains.take(pa.array(dom))
    sub_arr = pa.array(subs.tolist(), pa.string())
    qname = pc.if_else(pc.equal(sub_arr, ""), rd, pc.binary_join_element_wise(sub_arr, rd, "."))
    n = rows
    null_s = pa.nulls(n, pa.string())
    null_i = pa.nulls(n, pa.int32())
    cols: dict[str, pa.Array] = {
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "src_ip": clients.take(pa.array(cli)),
        "dst_ip": pa.array(["10.0.0.53"] * n),
        "src_port": pa.array(rng.integers(1024, 65535, n), pa.int32()),
        "dst_port": pa.array(np.full(n, 53), pa.int32()),
        "proto": pa.array(["udp"] * n),
        "trans_id": pa.array(rng.integers(0, 65535, n), pa.int32()),
        "qname": qname,
        "qtype": pa.array(QTYPES[rng.choice(len(QTYPES), n, p=QTYPE_P)]),
        "rcode": pa.array(RCODES[rng.choice(len(RCODES), n, p=RCODE_P)]),
        "answers": pa.nulls(n, pa.list_(pa.string())),
        "ttls": pa.nulls(n, pa.list_(pa.float64())),
        "rtt": pa.array(rng.exponential(0.02, n)),
        "aa": pa.nulls(n, pa.bool_()),
        "tc": pa.nulls(n, pa.bool_()),
        "rd": pa.array(np.ones(n, dtype=bool)),
        "ra": pa.array(np.ones(n, dtype=bool)),
        "query_len": pa.array(rng.integers(28, 120, n), pa.int32()),
        "response_len": null_i,
        "sensor": null_s,
        "registered_domain": rd,
        "subdomain": sub_arr,
        "tld": pa.array(["com"] * n),
    }
    return pa.table([cols[f.name] for f in DNS_EVENT], schema=DNS_EVENT)


def write_lake(
    root: Path,
    rows: int,
    *,
    hours: int = 24,
    n_domains: int = 200_000,
    n_clients: int = 20_000,
    seed: int = 0,
) -> int:
    """Write ``rows`` generated events over ``hours`` hours as an hour-partitioned lake."""
    rng = np.random.default_rng(seed)
    domains, clients = universe(n_domains, n_clients)
    per_hour = np.full(hours, rows // hours)
    per_hour[: rows % hours] += 1
    for h, n in enumerate(per_hour):
        hour = START + timedelta(hours=h)
        d = root / "events" / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        d.mkdir(parents=True, exist_ok=True)
        table = generate_hour(rng, hour, int(n), domains, clients)
        pq.write_table(table, d / "part-bench-00001.parquet", compression="zstd")
    return rows


def _time(fn: Any, repeat: int) -> tuple[float, int]:
    best, height = float("inf"), 0
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
        height = out.height
    return best, height


def run(
    base_rows: int = 1_000_000,
    scales: Sequence[int] = (1, 4, 16),
    engines: Sequence[str] = ("polars", "spark"),
    kinds: Sequence[str] = ("domain_hourly",),
    repeat: int = 2,
    workdir: Path | None = None,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Time each engine and aggregate at each scale; returns one dict per measurement."""
    tmp = Path(tempfile.mkdtemp(prefix="dnsieve-bench-", dir=workdir))
    results: list[dict[str, Any]] = []
    try:
        lakes: dict[int, Path] = {}
        for s in scales:
            t = time.perf_counter()
            lakes[s] = tmp / f"lake-{s}x"
            write_lake(lakes[s], base_rows * s, seed=s)
            log(f"wrote {base_rows * s:,} events ({s}x) in {time.perf_counter() - t:.1f} s")
        for name in engines:
            eng = get_engine(name)
            if name == "spark":  # warm the JVM and the Python workers first
                t = time.perf_counter()
                for kind in kinds:
                    eng.aggregate(kind, lakes[scales[0]])
                log(f"spark warm-up {time.perf_counter() - t:.1f} s")
            for kind in kinds:
                for s in scales:
                    secs, out_rows = _time(
                        lambda e=eng, k=kind, s=s: e.aggregate(k, lakes[s]), repeat
                    )
                    rows = base_rows * s
                    results.append(
                        {"engine": name, "kind": kind, "scale": s, "rows": rows,
                         "out_rows": out_rows, "seconds": secs, "rows_per_s": rows / secs}
                    )  # fmt: skip
                    log(
                        f"{name:6s} {kind} {s:>2}x {rows:>11,} rows {secs:7.2f} s {rows / secs:>12,.0f} rows/s"
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def detect_once(
    eng: Any, source: Path, names: Sequence[str], hours: int
) -> dict[str, tuple[float, int]]:
    """Score ``source`` with each detector as :func:`dnsieve.pipeline.detect` does.

    Returns, per detector, (seconds, candidates).  Inputs are built once per
    kind and shared by the detectors that need them (their cost is charged to
    the first detector that asks).  The scored period is the span after the
    first day (the volume model's baseline).  On Spark the inputs stay Spark
    frames and :meth:`~dnsieve.engines.spark.SparkEngine.score_detector`
    fits, scores and counts on the cluster; on Polars the detector is fitted
    and scored in process.
    """
    from dnsieve import detectors
    from dnsieve.detectors.base import DetectContext

    start, end = START + timedelta(hours=24), START + timedelta(hours=hours)
    ctx = DetectContext(start=start, end=end, window=3600.0)
    inputs: dict[str, Any] = {}
    out: dict[str, tuple[float, int]] = {}
    for name in names:
        det = detectors.get(name)()
        t = time.perf_counter()
        kind = det.requires
        if kind not in inputs:
            if hasattr(eng, "input_frame"):
                inputs[kind] = eng.input_frame(kind, source)
            elif kind == "events":
                inputs[kind] = eng.events(source)
            else:
                inputs[kind] = eng.aggregate(kind, source)
        if hasattr(eng, "score_detector"):
            found, _ = eng.score_detector(det, inputs[kind], ctx)
        else:
            found = eng.map_detector(det, inputs[kind], ctx)
        out[name] = (time.perf_counter() - t, found.height)
    return out


def run_detect(
    base_rows: int = 250_000,
    scales: Sequence[int] = (1, 4, 16),
    engines: Sequence[str] = ("polars", "spark"),
    names: Sequence[str] | None = None,
    hours: int = 48,
    workdir: Path | None = None,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Time every detector on each engine at each scale (one dict per engine, scale, detector)."""
    from dnsieve import detectors

    # the generated lakes hold DNS events only: flow detectors have nothing to read
    names = list(
        names or [n for n in detectors.available() if detectors.get(n).requires != "flows"]
    )
    tmp = Path(tempfile.mkdtemp(prefix="dnsieve-bench-detect-", dir=workdir))
    results: list[dict[str, Any]] = []
    try:
        lakes: dict[int, Path] = {}
        for s in scales:
            lakes[s] = tmp / f"lake-{s}x"
            write_lake(
                lakes[s], base_rows * s, hours=hours, n_domains=20_000, n_clients=2_000, seed=s
            )
        for name in engines:
            eng = get_engine(name)
            if name == "spark":  # warm the JVM and the Python workers first
                t = time.perf_counter()
                detect_once(eng, lakes[scales[0]], names, hours)
                log(f"spark warm-up {time.perf_counter() - t:.1f} s")
            for s in scales:
                rows = base_rows * s
                got = detect_once(eng, lakes[s], names, hours)
                for det, (secs, cands) in got.items():
                    results.append(
                        {"engine": name, "kind": det, "scale": s, "rows": rows,
                         "out_rows": cands, "seconds": secs, "rows_per_s": rows / secs}
                    )  # fmt: skip
                total = sum(v[0] for v in got.values())
                results.append(
                    {"engine": name, "kind": "ALL", "scale": s, "rows": rows,
                     "out_rows": sum(v[1] for v in got.values()), "seconds": total,
                     "rows_per_s": rows / total}
                )  # fmt: skip
                log(f"{name:6s} all detectors {s:>2}x {rows:>11,} rows {total:7.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def report(results: list[dict[str, Any]]) -> str:
    """A text table: throughput, cost growth against 1x, and spark/polars time ratio."""
    lines = [
        f"{'engine':7s} {'aggregate':21s} {'scale':>5s} {'rows':>11s} {'seconds':>8s} "
        f"{'rows/s':>12s} {'t/t(1x)':>8s} {'spark/polars':>12s}"
    ]
    by = {(r["engine"], r["kind"], r["scale"]): r for r in results}
    for r in results:
        base = by.get((r["engine"], r["kind"], min(s for (e, k, s) in by if e == r["engine"])))
        growth = r["seconds"] / base["seconds"] if base else float("nan")
        pol = by.get(("polars", r["kind"], r["scale"]))
        ratio = r["seconds"] / pol["seconds"] if (pol and r["engine"] == "spark") else None
        lines.append(
            f"{r['engine']:7s} {r['kind']:21s} {r['scale']:>4d}x {r['rows']:>11,} "
            f"{r['seconds']:>8.2f} {r['rows_per_s']:>12,.0f} {growth:>8.2f} "
            f"{'' if ratio is None else f'{ratio:.2f}':>12s}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-rows", type=int, default=1_000_000)
    ap.add_argument("--scales", default="1,4,16")
    ap.add_argument("--kinds", default="domain_hourly")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-spark", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument(
        "--detect",
        action="store_true",
        help="time every detector (fit, score, candidates back) instead of the aggregates",
    )
    ap.add_argument("--detectors", default="", help="with --detect: these detectors (default all)")
    ap.add_argument("--hours", type=int, default=48, help="with --detect: hours of data")
    a = ap.parse_args()
    engines = ("polars",) if a.no_spark else ("polars", "spark")
    if a.detect:
        names = [x for x in a.detectors.split(",") if x] or None
        res = run_detect(
            a.base_rows, [int(x) for x in a.scales.split(",")], engines, names, a.hours
        )
        print(json.dumps(res, indent=1) if a.json else report(res))
        return
    res = run(
        a.base_rows,
        [int(x) for x in a.scales.split(",")],
        engines,
        a.kinds.split(","),
        a.repeat,
    )
    print(json.dumps(res, indent=1) if a.json else report(res))


if __name__ == "__main__":
    main()
