"""``dnsieve stream`` throughput, window-close → alert latency and memory (issue 13).

Prints, in one run, each figure beside its reference measured in the same run:

1. **Throughput.**  A simulated week (zeek-kafka JSON lines, the format a
   Kafka topic carries, and the same events as a Zeek TSV log) is streamed
   with ``--stop-when-idle`` from a followed file and (JSON) from librdkafka's
   mock cluster.  Events/s while consuming (every
   micro-batch decoded, appended to the lake, folded into the hourly state and
   checkpointed) is printed as a ratio to ``dnsieve ingest`` of the same file
   into a fresh lake.  The final drain (scoring every window, as ``run``) is
   timed apart.
2. **Latency.**  The same traffic is appended to a followed file an hour of
   event time at a time, as a live sensor would write it; for each hour the
   time from the append that closes it (the watermark passes it) to its
   alerts being in the store is recorded: p50 and p95.
3. **Memory.**  Peak RSS of a stream process (child process, live scoring
   every closed hour) over the first N events and over 10 N events of the
   same traffic: bounded memory means the second is not ~10× the first.

    .venv/bin/python bench/stream.py                 # 168 h, 300 hosts
    .venv/bin/python bench/stream.py --hours 48 --clients 100   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

from dnsieve.config import Settings, load_settings
from dnsieve.ingest.kafka import MockCluster, read_events, replay, zeek_json_lines
from dnsieve.lake import Lake
from dnsieve.simulate import simulate, write_zeek
from dnsieve.stream import FollowSource, KafkaSource, StreamRunner


def _settings(batch: int) -> Settings:
    st = load_settings(env={})
    st.stream.max_batch_events = batch
    st.stream.poll_seconds = 0.05
    st.stream.status_seconds = 0.2
    return st


class _Timed:
    """Records when the last event was consumed (before the final drain scores)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done_at: float | None = None

    def __call__(self, status: object) -> None:
        if self.done_at is None and getattr(status, "events", 0) >= self.total:
            self.done_at = time.perf_counter()


def _follow(work: Path, log: Path, n: int, batch: int, tag: str) -> tuple[float, float, int]:
    """Stream ``log`` with ``--follow --stop-when-idle``: (events/s consuming, drain s, alerts)."""
    st = _settings(batch)
    timer = _Timed(n)
    runner = StreamRunner(
        FollowSource(log), Lake(work / f"lake_{tag}"), work / f"ck_{tag}", st,
        store_url=f"sqlite:///{work / f'{tag}.db'}", stop_when_idle=0.2, on_status=timer,
    )  # fmt: skip
    t0 = time.perf_counter()
    status = runner.run()
    end = time.perf_counter()
    consumed = (timer.done_at or end) - t0
    return n / consumed, end - (timer.done_at or end), status.alerts


def _ingest_rate(work: Path, log: Path, n: int, tag: str) -> float:
    t0 = time.perf_counter()
    Lake(work / f"ref_lake_{tag}").ingest_files([log])
    return n / (time.perf_counter() - t0)


def throughput(
    work: Path, events: pl.DataFrame, log: Path, tsv: Path, batch: int, kafka_events: int
) -> None:
    n = events.height
    # Each stream run is measured beside its reference (ingest of the same file,
    # run just before it), so a machine whose load changes keeps the ratio fair.
    for label, path, tag in (("zeek JSON", log, "f"), ("zeek TSV ", tsv, "t")):
        ref = _ingest_rate(work, path, n, tag)
        rate, drain, alerts = _follow(work, path, n, batch, tag)
        print(f"reference: dnsieve ingest, {label}           {ref:12,.0f} events/s")
        print(
            f"stream --follow {label}, consuming        {rate:12,.0f} events/s  "
            f"ratio {rate / ref:5.2f}  (drain scoring {drain:.1f} s, {alerts} alerts)"
        )
    ref = _ingest_rate(work, log, n, "k")
    st = _settings(batch)

    # The mock cluster keeps only a few MB per partition (older messages are
    # dropped), so the Kafka run takes the first ``kafka_events`` events.
    klog = work / "kafka.json"
    kn = min(n, kafka_events)
    klog.write_bytes(b"\n".join(zeek_json_lines(events.head(kn))) + b"\n")
    with MockCluster() as mc:
        t0 = time.perf_counter()
        rep = replay([klog], mc.bootstrap, "dns")
        prod = rep.events / (time.perf_counter() - t0)
        src = KafkaSource(mc.bootstrap, "dns", "bench", {"group.protocol": "consumer"})
        timer = _Timed(kn)
        runner = StreamRunner(
            src, Lake(work / "lake_k"), work / "ck_k", st,
            store_url=f"sqlite:///{work / 'k.db'}", stop_when_idle=0.5, on_status=timer,
        )  # fmt: skip
        t0 = time.perf_counter()
        status = runner.run()
        end = time.perf_counter()
        src.close()
    rate = status.events / ((timer.done_at or end) - t0)
    print(
        f"stream --kafka (mock cluster, 4 partitions)     {rate:12,.0f} events/s  "
        f"ratio {rate / ref:5.2f}  ({status.events:,} of {kn:,} events; replay produced "
        f"{prod:,.0f}/s)"
    )


def latency(work: Path, events: pl.DataFrame) -> None:
    log = work / "live.json"
    log.write_bytes(b"")
    st = _settings(100_000)
    runner = StreamRunner(
        FollowSource(log), Lake(work / "lake_l"), work / "ck_l", st,
        store_url=f"sqlite:///{work / 'l.db'}",
    )  # fmt: skip
    th = threading.Thread(target=runner.run)
    th.start()
    waits: list[float] = []
    n = 0
    hours = events.with_columns(pl.col("ts").dt.truncate("1h").alias("_h"))
    try:
        for (hour,), part in hours.group_by("_h", maintain_order=True):
            with open(log, "ab") as fh:
                fh.write(b"\n".join(zeek_json_lines(part.drop("_h"))) + b"\n")
            t_append = time.perf_counter()
            n += part.height
            # this append moves the watermark past the previous hour: that hour closes
            target = hour.isoformat()  # type: ignore[union-attr]
            while (runner.status.scored_until or "") < target:
                if time.perf_counter() - t_append > 60:
                    break
                time.sleep(0.01)
            else:
                if n > part.height:  # the first hour closes nothing
                    waits.append(time.perf_counter() - t_append)
    finally:
        runner.stop()
        th.join()
    p50, p95 = np.percentile(waits, [50, 95])
    print(
        f"window close -> alerts stored (live, {len(waits)} hours)  p50 {p50:5.2f} s  "
        f"p95 {p95:5.2f} s  (status interval {st.stream.status_seconds} s included)"
    )


_CHILD = """
import json, sys
from pathlib import Path
from dnsieve.config import load_settings
from dnsieve.lake import Lake
from dnsieve.stream import FollowSource, StreamRunner
log, work = Path(sys.argv[1]), Path(sys.argv[2])
st = load_settings(env={})
st.stream.score_every_hours = 1
st.stream.poll_seconds = 0.05
r = StreamRunner(FollowSource(log), Lake(work / "lake"), work / "ck", st,
                 store_url=f"sqlite:///{work / 'a.db'}", stop_when_idle=0.2)
s = r.run()
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
print(json.dumps({"events": s.events, "rss_kib": int(hwm.split()[1])}))
"""


def memory(work: Path, events: pl.DataFrame, first: int) -> None:
    out = []
    for k in (1, 10):
        part = events.head(first * k)
        log = work / f"mem_{k}.json"
        log.write_bytes(b"\n".join(zeek_json_lines(part)) + b"\n")
        d = work / f"mem_{k}"
        d.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(log), str(d)],
            capture_output=True, text=True, env=os.environ, timeout=3600, check=True,
        )  # fmt: skip
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append(got)
        print(
            f"peak RSS after {got['events']:>10,} events ({k:2d}x)          "
            f"{got['rss_kib'] / 1024:8.0f} MiB"
        )
    print(f"RSS growth for 10x the events: {out[1]['rss_kib'] / out[0]['rss_kib']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=int, default=168)
    ap.add_argument("--clients", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=100_000, help="[stream] max_batch_events")
    ap.add_argument("--kafka-events", type=int, default=40_000, help="events sent to the mock")
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "latency", "memory"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dnsieve-bench-stream-") as tmp:
        work = Path(tmp)
        sim = simulate(hours=args.hours, clients=args.clients, seed=args.seed)
        zeek = write_zeek(sim, work / "logs")["log"]
        events, _ = read_events([zeek])
        log = work / "week.json"
        log.write_bytes(b"\n".join(zeek_json_lines(events)) + b"\n")
        print(
            f"{events.height:,} events, {args.hours} h, {args.clients} hosts, "
            f"{log.stat().st_size / 1e6:.0f} MB of zeek JSON; cpus {os.cpu_count()}"
        )
        if "throughput" not in args.skip:
            throughput(work, events, log, zeek, args.batch, args.kafka_events)
        if "latency" not in args.skip:
            latency(work, events)
        if "memory" not in args.skip:
            # "the first minute": what the stream consumes in about a minute at its rate
            memory(work, events, first=max(1, events.height // 10))
    print(
        f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
