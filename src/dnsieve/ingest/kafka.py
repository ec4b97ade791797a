"""Kafka: publish canonical events as zeek-kafka JSON, and librdkafka's mock cluster.

* :func:`zeek_json_lines` -- canonical events as the JSON lines the zeek-kafka
  plugin publishes (``LogAscii``-style field names, ISO-8601 ``ts``), which
  the ``zeek-json`` adapter reads back to the same events;
* :func:`replay` -- publish log files to a topic in their own time order, at
  a fixed rate or scaled from their timestamps (``dnsieve replay``);
* :class:`MockCluster` -- librdkafka's built-in mock cluster (the real Kafka
  protocol over TCP, no broker to install), for the demo and the tests.

Reading a topic is :class:`dnsieve.stream.KafkaSource`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import polars as pl

__all__ = ["MockCluster", "ReplayReport", "read_events", "replay", "zeek_json_lines"]


def zeek_json_lines(events: pl.DataFrame) -> list[bytes]:
    """Canonical events as zeek-kafka dns JSON lines (one ``bytes`` per event).

    >>> import datetime as dt
    >>> ev = pl.DataFrame({"ts": [dt.datetime(2024, 1, 1, 9, tzinfo=dt.UTC)],
    ...     "src_ip": ["10.0.0.1"], "qname": ["example.com"], "qtype": ["A"]})
    >>> zeek_json_lines(ev)[0][:60]
    b'{"_path":"dns","ts":"2024-01-01T09:00:00.000000Z","id.orig_h'
    """
    if events.height == 0:
        return []

    def col(name: str, dtype: pl.DataType) -> pl.Expr:
        if name in events.columns:
            return pl.col(name).cast(dtype)
        return pl.lit(None, dtype=dtype)

    out = events.select(
        pl.lit("dns").alias("_path"),
        pl.col("ts").dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").alias("ts"),
        col("src_ip", pl.String()).alias("id.orig_h"),
        col("src_port", pl.Int64()).alias("id.orig_p"),
        col("dst_ip", pl.String()).alias("id.resp_h"),
        col("dst_port", pl.Int64()).alias("id.resp_p"),
        col("proto", pl.String()).alias("proto"),
        col("trans_id", pl.Int64()).alias("trans_id"),
        col("rtt", pl.Float64()).alias("rtt"),
        col("qname", pl.String()).alias("query"),
        col("qtype", pl.String()).alias("qtype_name"),
        col("rcode", pl.String()).alias("rcode_name"),
        col("aa", pl.Boolean()).alias("AA"),
        col("tc", pl.Boolean()).alias("TC"),
        col("rd", pl.Boolean()).alias("RD"),
        col("ra", pl.Boolean()).alias("RA"),
        col("answers", pl.List(pl.String())).alias("answers"),
        col("ttls", pl.List(pl.Float64())).alias("TTLs"),
    )
    text = out.write_ndjson()
    return [ln.encode() for ln in text.splitlines() if ln]


def read_events(paths: Iterable[Path], fmt: str = "auto") -> tuple[pl.DataFrame, dict[str, int]]:
    """Every canonical event of ``paths`` (any format ``ingest`` reads), sorted by time.

    Returns the events and the rejected records by reason.
    """
    from dnsieve.ingest import IngestStats, ReadContext, iter_input_files, read_file

    frames: list[pl.DataFrame] = []
    rejects: dict[str, int] = {}
    for p in iter_input_files(list(paths)):
        stats = IngestStats(source=str(p))
        ctx = ReadContext(sensor=str(p), stats=stats)
        for b in read_file(p, fmt, ctx):
            frames.append(pl.from_arrow(b))  # type: ignore[arg-type]
        for k, v in stats.rejects.items():
            rejects[k] = rejects.get(k, 0) + v
    if not frames:
        return pl.DataFrame(), rejects
    return pl.concat(frames, how="vertical").sort("ts", maintain_order=True), rejects


@dataclass
class ReplayReport:
    """What :func:`replay` published."""

    events: int
    seconds: float
    rejects: dict[str, int]

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def replay(
    paths: Iterable[Path],
    bootstrap: str,
    topic: str,
    *,
    fmt: str = "auto",
    rate: float | None = None,
    speedup: float | None = None,
    config: dict[str, Any] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Publish the events of ``paths`` to ``topic`` in time order, as zeek-kafka JSON.

    Messages are keyed by client address, so one client's queries stay in one
    partition in order.  ``rate`` caps events per second; ``speedup`` plays
    the log ``speedup`` times faster than its own timestamps; neither: as fast
    as the producer goes.
    """
    from confluent_kafka import Producer

    events, rejects = read_events(paths, fmt)
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 20,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
    }
    conf.update(config or {})
    producer = Producer(conf)
    t0 = time.perf_counter()
    if events.height == 0:
        return ReplayReport(0, 0.0, rejects)
    lines = zeek_json_lines(events)
    keys = events.get_column("src_ip").fill_null("").to_list()
    ts = events.get_column("ts").dt.epoch("us").to_numpy() / 1e6
    first = float(ts[0])
    for i, (line, key) in enumerate(zip(lines, keys, strict=True)):
        if rate:
            ahead = i / rate - (time.perf_counter() - t0)
            if ahead > 0.001:
                time.sleep(ahead)
        elif speedup:
            ahead = (float(ts[i]) - first) / speedup - (time.perf_counter() - t0)
            if ahead > 0.001:
                time.sleep(ahead)
        while True:
            try:
                producer.produce(topic, line, key=key.encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
            if on_progress is not None:
                on_progress(i)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"kafka: {remaining} message(s) not delivered to {topic}")
    return ReplayReport(len(lines), time.perf_counter() - t0, rejects)


class MockCluster:
    """librdkafka's mock cluster, kept alive by a polling thread (``with MockCluster() as c``).

    ``c.bootstrap`` is the ``host:port,...`` list other clients (in any process)
    connect to.  Topics are auto-created with ``partitions`` partitions.
    """

    def __init__(self, brokers: int = 3, partitions: int = 4) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(
            {
                "test.mock.num.brokers": brokers,
                "bootstrap.servers": "",
                "log_level": 0,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keepalive, daemon=True)
        self._thread.start()
        md = self._producer.list_topics(timeout=10)
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in md.brokers.values())
        self.partitions = partitions

    def _keepalive(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def create_topic(self, topic: str) -> None:
        """Create ``topic`` by producing to it once (the mock auto-creates topics)."""
        self._producer.list_topics(topic, timeout=10)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._producer.flush(5)

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
