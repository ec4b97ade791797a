#!/usr/bin/env python
"""End to end: ``dnsieve run`` (ingest → alerts) against a bare Polars read + hourly group-by.

    .venv/bin/python bench/e2e.py                      # 0.5M and 2M events
    .venv/bin/python bench/e2e.py --sizes 0.5M,2M,8M   # and 8M (about 8,500 hosts)
    .venv/bin/python bench/e2e.py --sizes 0.5M --profile prof.out   # cProfile of the job

For each size a simulated week (:func:`dnsieve.simulate.simulate`, seed 0,
as many hosts as give about that many events) is written as a Zeek TSV log
(cached in ``--workdir``).  Two fresh processes run on the same file, one
after the other (never in parallel: the machine is shared):

* **reference**: ``polars.read_csv`` of the log plus an hourly group-by
  (queries per hour and query name), the least any tool must do to model it;
* **run**: the library function behind ``dnsieve run``
  (:func:`dnsieve.commands.run.run_job`, temporary lake, no alert store), with
  the time of each stage recorded: ingest, each detector (including the
  engine's read or aggregation of its input), calibration and enrichment.

Each process is started with ``posix_spawn`` and reaped with ``wait4``, so its
CPU time and peak RSS (``ru_maxrss``) are its own.  Every figure is printed as
a ratio to the reference measured in the same run: events/s (wall and per
CPU-second), each stage's wall and CPU time in reference-times (CPU time of
all threads: on a shared machine wall time mostly measures the neighbours),
and peak RSS.  Across sizes
the table prints the cost growth (time ratio over event ratio; 1.0 = linear)
and the RSS growth.  Nothing is asserted: this is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Events of a simulated week: a fixed part (injected campaigns, shared
#: services) plus a part per host, both measured on seeds 0-3.
_FIXED_EVENTS, _PER_HOST = 67_000, 930


def _size(text: str) -> int:
    t = text.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000}.get(t[-1:], 1)
    return int(float(t.rstrip("KM")) * mult)


def hosts_for(events: int) -> int:
    """Simulated hosts that give about ``events`` events in a week."""
    return max(10, round((events - _FIXED_EVENTS) / _PER_HOST))


def make_log(events: int, workdir: Path) -> Path:
    """The cached Zeek TSV log of a simulated week of about ``events`` events."""
    from dnsieve.simulate import simulate, write_zeek

    hosts = hosts_for(events)
    out = workdir / f"week-{hosts}h-seed0"
    log = out / "dns.log"
    if not log.exists():
        write_zeek(simulate(hours=168, clients=hosts, seed=0), out)
    return log


# --------------------------------------------------------------------------- children
def child_reference(log: Path) -> dict[str, Any]:
    """Bare read of the Zeek TSV plus an hourly group-by of query names."""
    import polars as pl

    from dnsieve.simulate import ZEEK_FIELDS

    t0 = time.perf_counter()
    df = pl.read_csv(
        log,
        separator="\t",
        comment_prefix="#",
        has_header=False,
        new_columns=list(ZEEK_FIELDS),
        quote_char=None,
        infer_schema_length=10_000,
    )
    t_read = time.perf_counter() - t0
    hourly = (
        df.lazy()
        .group_by((pl.col("ts").cast(pl.Float64) // 3600).alias("hour"), "query")
        .agg(pl.len())
        .collect()
    )
    return {
        "events": df.height,
        "groups": hourly.height,
        "read_seconds": t_read,
        "seconds": time.perf_counter() - t0,
    }


def child_run(log: Path, profile: Path | None = None) -> dict[str, Any]:
    """The ``dnsieve run`` job over ``log``, with each stage's wall time."""
    import dnsieve.lake
    import dnsieve.pipeline
    from dnsieve.config import load_settings
    from dnsieve.jobs import run_job

    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(owner: Any, name: str, stage: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t, c = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - t
                cpu[stage] = cpu.get(stage, 0.0) + time.process_time() - c

        setattr(owner, name, wrapper)

    # The detection loop looks each detector up once (``get(name)``) as it starts
    # it, and once more per detector after the loop: the CPU time between two
    # look-ups of the loop is one detector's (all threads: its engine read too).
    marks: list[float] = []
    lookup = dnsieve.pipeline.get

    def get(name: str) -> Any:
        marks.append(time.process_time())
        return lookup(name)

    dnsieve.pipeline.get = get  # type: ignore[attr-defined]

    timed(dnsieve.lake.Lake, "ingest_files", "ingest")
    timed(dnsieve.pipeline, "calibrate", "calibrate")
    timed(dnsieve.pipeline, "add_top_clients", "top clients")
    settings = load_settings(env={})
    prof = None
    if profile is not None:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0, cpu0 = time.perf_counter(), time.process_time()
    reports, res, alerts = run_job([log], settings=settings, store_url=False)
    wall = time.perf_counter() - t0
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    total_cpu = time.process_time() - cpu0
    for i, (name, info) in enumerate(res.summary.get("detectors", {}).items()):
        stages[f"detector {name}"] = float(info.get("seconds") or 0.0)
        if i + 1 < len(marks):
            cpu[f"detector {name}"] = marks[i + 1] - marks[i]
    stages["other"] = max(wall - sum(stages.values()), 0.0)
    cpu["other"] = max(total_cpu - sum(cpu.values()), 0.0)
    return {
        "cpu_stages": cpu,
        "job_cpu_seconds": total_cpu,
        "events": sum(r.rows_written for r in reports),
        "alerts": alerts.height,
        "candidates": res.anomalies.height,
        "seconds": wall,
        "stages": stages,
    }


def spawn(mode: str, log: Path, extra: list[str] | None = None) -> dict[str, Any]:
    """Run this file as a child in ``mode``; its JSON result plus its own rusage."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out_path = Path(fh.name)
    argv = [sys.executable, __file__, "--child", mode, str(log), *(extra or [])]
    t0 = time.perf_counter()
    # posix_spawn (vfork), not fork: a forked child's ru_maxrss starts at its
    # parent's resident size, which would hide the figure being measured.
    pid = os.posix_spawn(
        sys.executable,
        argv,
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 1, str(out_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        ],
    )
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    text = out_path.read_text()
    out_path.unlink(missing_ok=True)
    if status != 0:
        raise RuntimeError(f"child {mode} failed with status {status}: {text[-2000:]}")
    res: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    res.update(
        process_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,
    )
    return res


# --------------------------------------------------------------------------- report
def report(rows: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> str:
    """The printed tables: per size, the run's figures as ratios to the reference."""
    lines = []
    for target, ref, run in rows:
        n = run["events"]
        ref_rate, run_rate = n / ref["seconds"], n / run["seconds"]
        run_cpu_rate = n / run["cpu_seconds"]
        ref_cpu_rate = n / ref["cpu_seconds"]
        lines.append(
            f"\n== {n:,} events (target {target:,}); {run['candidates']:,} candidates, "
            f"{run['alerts']:,} alerts"
        )
        lines.append(
            f"reference (read_csv + hourly group-by): {ref['seconds']:.2f} s "
            f"({ref_rate:,.0f} events/s, read alone {ref['read_seconds']:.2f} s), "
            f"peak RSS {ref['peak_rss_mib']:,.0f} MiB"
        )
        lines.append(
            f"run: {run['seconds']:.2f} s = {run_rate:,.0f} events/s wall "
            f"({run_rate / ref_rate:.3f}x reference), {run_cpu_rate:,.0f} events per CPU-s "
            f"({run_cpu_rate / ref_cpu_rate:.3f}x reference's); process with imports "
            f"{run['process_seconds']:.2f} s"
        )
        lines.append(
            f"peak RSS: {run['peak_rss_mib']:,.0f} MiB "
            f"({run['peak_rss_mib'] / ref['peak_rss_mib']:.2f}x reference, "
            f"{run['peak_rss_mib'] * 1024 / n * 1024:,.0f} bytes per event)"
        )
        cpu = run.get("cpu_stages", {})
        job_cpu = run.get("job_cpu_seconds") or run["cpu_seconds"]
        lines.append(
            f"{'stage':<26}{'wall s':>8}{'x ref':>7}{'CPU s':>8}{'CPU share':>10}{'x ref CPU':>10}"
        )
        for stage, secs in sorted(run["stages"].items(), key=lambda kv: -cpu.get(kv[0], kv[1])):
            c = cpu.get(stage, float("nan"))
            lines.append(
                f"{stage:<26}{secs:>8.2f}{secs / ref['seconds']:>7.1f}{c:>8.2f}"
                f"{c / job_cpu:>10.0%}{c / ref['cpu_seconds']:>10.1f}"
            )
    return "\n".join(lines)


def growth(rows: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> str:
    """Cost and RSS growth against the smallest size (time ratios over the event ratio)."""
    lines = ["== growth against the smallest size (time per event; 1.00 = linear)"]
    _, ref0, run0 = rows[0]
    for _, ref, run in rows[1:]:
        k = run["events"] / run0["events"]
        lines.append(
            f"{run['events']:,} events ({k:.1f}x): run {run['seconds'] / run0['seconds'] / k:.2f}, "
            f"reference {ref['seconds'] / ref0['seconds'] / k:.2f}, "
            f"run peak RSS x{run['peak_rss_mib'] / run0['peak_rss_mib']:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="0.5M,2M", help="comma-separated event counts (0.5M,2M,8M)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to cache the logs")
    ap.add_argument("--profile", type=Path, default=None, help="cProfile the smallest run here")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        mode, log = args.child[0], Path(args.child[1])
        if mode == "reference":
            res = child_reference(log)
        else:
            prof = Path(args.child[2]) if len(args.child) > 2 else None
            res = child_run(log, prof)
        print(json.dumps(res))
        return 0
    work = args.workdir or Path(tempfile.gettempdir()) / "dnsieve-bench"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, target in enumerate(_size(s) for s in args.sizes.split(",")):
        log = make_log(target, work)
        print(f"{log} ({log.stat().st_size / 1e6:,.0f} MB)", flush=True)
        ref = spawn("reference", log)
        extra = [str(args.profile)] if (args.profile and i == 0) else []
        run = spawn("run", log, extra)
        rows.append((target, ref, run))
        print(report(rows[-1:]), flush=True)
    if len(rows) > 1:
        print("\n" + growth(rows))
    if args.json:
        args.json.write_text(
            json.dumps([{"target": t, "reference": r, "run": u} for t, r, u in rows])
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
