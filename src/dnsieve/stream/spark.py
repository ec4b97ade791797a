"""``dnsieve stream --engine spark``: the stream as a Spark Structured Streaming query.

The query reads raw records, and each micro-batch goes through the embedded
runner's own steps (:class:`~dnsieve.stream.runner.StreamRunner`) in
``foreachBatch``: decoded with the ``ingest`` adapters
(:func:`~dnsieve.stream.runner.decode_chunk`), appended to the lake with the
batch's offsets in the same commit, folded into the hourly state, hours the
watermark passed closed, state checkpointed, closed windows scored by
:func:`dnsieve.jobs.score_period` and the alerts stored.  Only when
``foreachBatch`` returns does Spark commit the batch to its checkpoint.

Sources:

* **Kafka** through Spark 4's Python Data Source API (:class:`KafkaDataSource`,
  format ``dnsieve_kafka``), read with confluent-kafka: one Spark partition per
  Kafka partition and offset range, the offsets of every micro-batch in Spark's
  checkpoint, no JARs.  On a cluster the native connector
  (``spark-sql-kafka-0-10``) can be used instead; see docs/streaming.md.
* **Log files** appearing in a directory, through Spark's own file source
  (each file read once, whole, when it appears: a directory of rotated logs).

Exactly once: Spark replays a micro-batch it had not committed when it
stopped.  The stream's own checkpoint (``CHECKPOINT/ckpt-*``) records the
positions already in the hourly state, so a replayed batch is cut at them
before it reaches the state; the lake skips what it holds
(:meth:`~dnsieve.lake.Lake.stream_positions`) and the store merges a re-stored
alert.  Spark's checkpoint lives in ``CHECKPOINT/spark``; a fresh one starts
from the stream checkpoint's positions.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition

from dnsieve.engines.spark import SparkEngine
from dnsieve.lake import Lake
from dnsieve.stream.checkpoint import AggregateStore, Checkpoint
from dnsieve.stream.runner import StreamRunner, StreamStatus
from dnsieve.stream.sources import Chunk

__all__ = [
    "CONNECTORS",
    "RAW_SCHEMA",
    "KafkaDataSource",
    "KafkaRange",
    "KafkaStreamReader",
    "SparkFileView",
    "SparkKafkaView",
    "SparkStreamEngine",
    "SparkStreamRunner",
    "chunks_from_arrow",
    "file_chunks",
]

#: the raw records every source hands to ``foreachBatch``
RAW_SCHEMA = "partition string, offset long, value binary"
_ARROW_SCHEMA = pa.schema(
    [("partition", pa.string()), ("offset", pa.int64()), ("value", pa.binary())]
)
#: how Spark reads Kafka: the Python Data Source here, or Spark's own connector (JARs)
CONNECTORS = ("python", "native")
#: records per Arrow batch a Kafka read task yields
_READ_BATCH = 10_000


def _kafka_conf(options: Any) -> dict[str, Any]:
    """librdkafka settings from the data source options (``bootstrap`` and ``kafka.*``)."""
    conf: dict[str, Any] = {"bootstrap.servers": options["bootstrap"]}
    for key, value in dict(options).items():
        if key.lower().startswith("kafka."):
            conf[key[len("kafka.") :]] = value
    return conf


def _key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def _watermarks(consumer: Any, topic: str) -> dict[str, tuple[int, int]]:
    """``{"<topic>/<p>": (low, high)}`` for every partition of ``topic``."""
    from confluent_kafka import TopicPartition

    md = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None:
        raise RuntimeError(f"kafka: topic {topic!r} not available")
    out: dict[str, tuple[int, int]] = {}
    for p in sorted(md.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        out[_key(topic, p)] = (int(low), int(high))
    return out


@dataclass(frozen=True)
class KafkaRange(InputPartition):
    """One Spark task: offsets ``[start, end)`` of one Kafka partition."""

    topic: str
    partition: int
    start: int
    end: int
    conf: tuple[tuple[str, str], ...]


class KafkaStreamReader(DataSourceStreamReader):
    """Offsets per partition (``{"<topic>/<p>": next offset}``), read with confluent-kafka.

    Options: ``bootstrap`` (HOST:PORT,...), ``topic``, ``maxOffsetsPerTrigger``
    (records per micro-batch, spread over the partitions; Spark 4.2+),
    ``startingOffsets`` (JSON offsets for a fresh Spark checkpoint; default:
    the earliest the broker holds) and ``kafka.<setting>`` for librdkafka.
    """

    def __init__(self, options: Any) -> None:
        if not options.get("topic") or not options.get("bootstrap"):
            raise ValueError("the dnsieve_kafka source needs the bootstrap and topic options")
        self.topic = str(options["topic"])
        self.conf = _kafka_conf(options)
        self.max_records = int(options.get("maxOffsetsPerTrigger") or 0)
        self.starting: dict[str, int] = {
            str(k): int(v) for k, v in json.loads(options.get("startingOffsets") or "{}").items()
        }
        self._consumer: Any = None

    def _client(self) -> Any:
        if self._consumer is None:
            from confluent_kafka import Consumer

            self._consumer = Consumer(
                {**self.conf, "group.id": "dnsieve-spark-planner", "enable.auto.commit": False}
            )
        return self._consumer

    def initialOffset(self) -> dict[str, int]:
        ends = _watermarks(self._client(), self.topic)
        return {k: max(low, self.starting.get(k, low)) for k, (low, _) in ends.items()}

    def getDefaultReadLimit(self) -> Any:
        from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

        return ReadMaxRows(self.max_records) if self.max_records > 0 else ReadAllAvailable()

    def latestOffset(
        self, start: dict[str, int] | None = None, limit: Any = None
    ) -> dict[str, int]:
        """Every partition's end, at most ``limit`` records past ``start`` in all.

        Spark before 4.2 calls it without arguments: then the end is the
        broker's newest offset (no admission control).
        """
        ends = _watermarks(self._client(), self.topic)
        budget = getattr(limit, "max_rows", None)
        out: dict[str, int] = {}
        begin = {k: max(low, (start or {}).get(k, low)) for k, (low, _) in ends.items()}
        pending = {k: max(0, ends[k][1] - begin[k]) for k in ends}
        if budget is None or start is None:
            return {k: begin[k] + pending[k] for k in ends}
        left = int(budget)
        # spread the budget evenly; a partition with less pending hands its share on
        for k in sorted(ends, key=lambda k: pending[k]):
            share = -(-left // max(1, sum(1 for j in ends if j not in out)))
            take = min(pending[k], share)
            out[k] = begin[k] + take
            left -= take
        return out

    def partitions(self, start: dict[str, int], end: dict[str, int]) -> Sequence[KafkaRange]:
        conf = tuple(sorted((str(k), str(v)) for k, v in self.conf.items()))
        out = []
        for k, e in sorted(end.items()):
            s = int(start.get(k, 0)) if start else 0
            if e > s:
                out.append(KafkaRange(self.topic, int(k.rsplit("/", 1)[1]), s, int(e), conf))
        return out

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, KafkaRange)
        return read_range(partition)

    def commit(self, end: dict[str, int]) -> None:
        """Spark's checkpoint holds the offsets; the runner commits the group after storing."""

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def read_range(r: KafkaRange, timeout: float = 60.0) -> Iterator[pa.RecordBatch]:
    """The records of ``[r.start, r.end)`` of one partition, as Arrow batches.

    Offsets missing from the range (compacted, transaction markers, or past
    retention) are skipped; the runner counts a range that starts late.
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    conf = dict(r.conf)
    consumer = Consumer(
        {
            **conf,
            "group.id": conf.get("group.id", "dnsieve-spark-reader"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    key = _key(r.topic, r.partition)
    try:
        consumer.assign([TopicPartition(r.topic, r.partition, r.start)])
        offs: list[int] = []
        vals: list[bytes] = []
        nxt = r.start
        deadline = time.monotonic() + timeout
        while nxt < r.end:
            msgs = consumer.consume(min(_READ_BATCH, r.end - nxt), timeout=1.0)
            if not msgs and time.monotonic() > deadline:
                raise TimeoutError(f"kafka {key}: offsets {nxt}..{r.end} not readable")
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        # at the partition's end: what is left of the range are gaps
                        if int(m.offset() or 0) >= r.end:
                            nxt = r.end
                        continue
                    raise RuntimeError(f"kafka {key}: {err}")
                off = int(m.offset() or 0)
                if off >= r.end:
                    nxt = r.end
                    break
                offs.append(off)
                vals.append(m.value() or b"")
                nxt = off + 1
                deadline = time.monotonic() + timeout
            if len(offs) >= _READ_BATCH:
                yield _batch(key, offs, vals)
                offs, vals = [], []
        if offs:
            yield _batch(key, offs, vals)
    finally:
        consumer.close()


def _batch(key: str, offs: list[int], vals: list[bytes]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([key] * len(offs), pa.string()), pa.array(offs, pa.int64()), pa.array(vals)],
        schema=_ARROW_SCHEMA,
    )


class KafkaDataSource(DataSource):
    """A Kafka topic as a Spark streaming source (``format("dnsieve_kafka")``).

    Register it once per session (``spark.dataSource.register(KafkaDataSource)``).
    Rows: ``partition`` (``"<topic>/<p>"``), ``offset``, ``value`` (the message).
    """

    @classmethod
    def name(cls) -> str:
        return "dnsieve_kafka"

    def schema(self) -> str:
        return RAW_SCHEMA

    def streamReader(self, schema: Any) -> KafkaStreamReader:
        return KafkaStreamReader(self.options)


def chunks_from_arrow(table: pa.Table, done: dict[str, int]) -> list[Chunk]:
    """A micro-batch's raw records as the runner's chunks, cut at the positions in ``done``.

    ``done`` is the stream checkpoint's "next to read" per partition: records
    before it are in the hourly state already (a batch Spark replays).
    """
    out: list[Chunk] = []
    if table.num_rows == 0:
        return out
    table = table.sort_by([("partition", "ascending"), ("offset", "ascending")])
    parts = table.column("partition")
    for part in pc.unique(parts).to_pylist():
        sub = table.filter(pc.equal(parts, part))
        offs = sub.column("offset").to_pylist()
        vals = sub.column("value").to_pylist()
        start = done.get(part, -1)
        recs = [(o, v or b"") for o, v in zip(offs, vals, strict=True) if o >= start]
        if recs:
            out.append(Chunk(part, recs, end=recs[-1][0] + 1))
    return out


class SparkKafkaView:
    """The runner's view of a topic Spark reads: partitions, ends, lag, group commits.

    Implements :class:`~dnsieve.stream.sources.Source` except :meth:`poll`
    (Spark reads the records).  Positions are the stream checkpoint's.
    ``commit`` writes them to the consumer group after the alerts are stored,
    for lag monitoring; Spark's checkpoint is what a restart reads.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str = "dnsieve",
        config: dict[str, Any] | None = None,
        connector: str = "python",
    ) -> None:
        from confluent_kafka import Consumer

        if connector not in CONNECTORS:
            raise ValueError(f"unknown Kafka connector {connector!r}; choose python or native")
        #: ``python`` (:class:`KafkaDataSource`) or ``native`` (``spark-sql-kafka-0-10``)
        self.connector = connector
        self.name = f"kafka:{topic}"
        self.topic = topic
        self.bootstrap = bootstrap
        self.config = dict(config or {})
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                **self.config,
                "group.id": group,
                "enable.auto.commit": False,
            }
        )
        self._pos: dict[str, int] = {}
        self._ends: dict[str, tuple[int, int]] = {}
        self.refresh()

    def refresh(self, positions: dict[str, int] | None = None) -> None:
        """Read the partitions' ends again (and take the checkpoint's positions)."""
        if positions is not None:
            self._pos = dict(positions)
        self._ends = _watermarks(self._consumer, self.topic)

    def options(self, max_records: int, positions: dict[str, int]) -> dict[str, str]:
        """The ``dnsieve_kafka`` options reading this topic."""
        opts = {
            "bootstrap": self.bootstrap,
            "topic": self.topic,
            "maxOffsetsPerTrigger": str(max_records),
            "startingOffsets": json.dumps(
                {k: v for k, v in positions.items() if k.startswith(self.topic + "/")}
            ),
        }
        opts.update({f"kafka.{k}": str(v) for k, v in self.config.items()})
        return opts

    def native_options(self, max_records: int, positions: dict[str, int]) -> dict[str, str]:
        """The options of Spark's own Kafka source (``spark-sql-kafka-0-10``) reading this topic.

        Lost offsets are not fatal (``failOnDataLoss=false``): the runner counts
        them as ``offsets_lost`` rejects, as the embedded stream does.

        >>> v = SparkKafkaView.__new__(SparkKafkaView)
        >>> v.bootstrap, v.topic, v.config = "k:9092", "dns", {"security.protocol": "SSL"}
        >>> o = v.native_options(5000, {"dns/0": 7, "other/1": 3})
        >>> o["subscribe"], o["startingOffsets"], o["kafka.security.protocol"]
        ('dns', '{"dns": {"0": 7}}', 'SSL')
        """
        own = {
            k.rsplit("/", 1)[1]: int(v)
            for k, v in positions.items()
            if k.startswith(self.topic + "/")
        }
        opts = {
            "kafka.bootstrap.servers": self.bootstrap,
            "subscribe": self.topic,
            "maxOffsetsPerTrigger": str(max_records),
            "startingOffsets": json.dumps({self.topic: own}) if own else "earliest",
            "failOnDataLoss": "false",
        }
        opts.update({f"kafka.{k}": str(v) for k, v in self.config.items()})
        return opts

    def poll(self, max_records: int, timeout: float) -> list[Chunk]:
        raise NotImplementedError("Spark reads the records of a SparkKafkaView")

    def seek(self, positions: dict[str, int]) -> None:
        self._pos = dict(positions)

    def positions(self) -> dict[str, int]:
        return dict(self._pos)

    def lag(self) -> dict[str, int]:
        return {k: max(0, high - self._pos.get(k, low)) for k, (low, high) in self._ends.items()}

    def caught_up(self) -> bool:
        return all(self.at_end(k) for k in self._ends)

    def partitions(self) -> list[str]:
        return sorted(self._ends)

    def at_end(self, partition: str) -> bool:
        low, high = self._ends.get(partition, (0, 0))
        return self._pos.get(partition, low) >= high

    def commit(self, positions: dict[str, int]) -> None:
        from dnsieve.stream.sources import commit_offsets

        commit_offsets(self._consumer, self.topic, positions)

    def close(self) -> None:
        self._consumer.close()


class SparkFileView:
    """The runner's view of a directory Spark's file source reads (each file once, whole).

    Partitions are ``file:<path>``; a file's position is its size once read.
    """

    def __init__(self, root: Path, pattern: str = "*", files_per_batch: int = 100) -> None:
        self.root = root
        self.pattern = pattern
        self.files_per_batch = files_per_batch
        self.name = f"follow:{root}"
        self._pos: dict[str, int] = {}
        colons = [p.name for p in self._files() if ":" in p.name]
        if colons:
            # Hadoop paths cannot hold a colon (Zeek's archive names: dns.12:00:00-13:00:00.log.gz)
            raise ValueError(
                f"Spark's file source cannot read file names with ':' ({colons[0]!r} and "
                f"{len(colons) - 1} more): rename them, or stream them with --engine polars"
            )

    def refresh(self, positions: dict[str, int] | None = None) -> None:
        if positions is not None:
            self._pos = dict(positions)

    def poll(self, max_records: int, timeout: float) -> list[Chunk]:
        raise NotImplementedError("Spark reads the records of a SparkFileView")

    def seek(self, positions: dict[str, int]) -> None:
        self._pos = dict(positions)

    def positions(self) -> dict[str, int]:
        return dict(self._pos)

    def _files(self) -> list[Path]:
        if self.root.is_dir():
            return sorted(p for p in self.root.glob(self.pattern) if p.is_file())
        return [self.root] if self.root.exists() else []

    def lag(self) -> dict[str, int]:
        return {
            f"file:{p.resolve()}": 0 if f"file:{p.resolve()}" in self._pos else p.stat().st_size
            for p in self._files()
        }

    def caught_up(self) -> bool:
        return not any(self.lag().values())

    def partitions(self) -> list[str]:
        return sorted(self.lag())

    def at_end(self, partition: str) -> bool:
        return partition in self._pos

    def commit(self, positions: dict[str, int]) -> None:
        """Files have no broker to acknowledge to: the checkpoint is the commit."""

    def close(self) -> None:
        """Nothing held open."""


class SparkStreamEngine(SparkEngine):
    """The Spark engine reading closed hours' aggregates from the stream's store.

    The counterpart of :class:`~dnsieve.stream.runner.StreamEngine` for
    ``[detect] engine = "spark"``: hours from the stream's first closed hour on
    are read from ``CHECKPOINT/agg`` with ``spark.read.parquet`` (the driver
    and every executor must reach it: a shared file system on a cluster);
    earlier hours (history the lake held before the stream) are aggregated
    from the lake.  Nothing is collected: the frames stay on the cluster.
    """

    def __init__(
        self, store: AggregateStore, agg_from: datetime | None, session: Any = None
    ) -> None:
        super().__init__(session)
        self.store = store
        self.agg_from = agg_from

    def aggregate_frame(
        self,
        kind: str,
        source: Any,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        if self.agg_from is None:
            return super().aggregate_frame(kind, source, since, until)
        parts = []
        if since is None or since < self.agg_from:
            parts.append(super().aggregate_frame(kind, source, since, self.agg_from))
        lo = self.agg_from if since is None or since < self.agg_from else since
        parts.append(self._stored(kind, lo, until))
        out = parts[0]
        for p in parts[1:]:
            out = out.unionByName(p)
        return out

    def _stored(self, kind: str, since: datetime, until: datetime | None) -> Any:
        """The store's hours of ``kind`` in ``[since, until)``, typed as the engine's aggregate."""
        from pyspark.sql import functions as F

        like = super().aggregate_frame(kind, [], None, None).schema
        start = since.replace(minute=0, second=0, microsecond=0)
        files = [
            str(f)
            for f in sorted((self.store.root / kind).glob("*.parquet"))
            if _hour_of(f) >= start and (until is None or _hour_of(f) < until)
        ]
        if not files:
            return self.spark.createDataFrame([], like)
        sdf = self.spark.read.parquet(*files)
        return sdf.select(*(F.col(c.name).cast(c.dataType).alias(c.name) for c in like.fields))


def _hour_of(f: Path) -> datetime:
    return datetime.strptime(f.stem, "%Y%m%d%H").replace(tzinfo=UTC)


class SparkStreamRunner(StreamRunner):
    """:class:`StreamRunner` whose micro-batches come from a Spark Structured Streaming query.

    ``source`` is a :class:`SparkKafkaView` or a :class:`SparkFileView`.
    Everything after the read is the embedded runner's: the same checkpoint,
    watermark, close, scoring, store and commit.
    """

    def __init__(
        self,
        source: SparkKafkaView | SparkFileView,
        lake: Lake,
        checkpoint: Path,
        settings: Any,
        *,
        spark: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(source, lake, checkpoint, settings, **kwargs)
        self.view = source
        self.spark_checkpoint = Path(checkpoint) / "spark"
        self._spark = spark
        self._ck: Checkpoint | None = None
        self._last_data = time.monotonic()
        self._t_status = 0.0
        self._rate = (0, time.monotonic())
        self.batches = 0
        #: (Spark batch id, records read, records new to the state) of the latest batches
        self.batch_log: deque[tuple[int, int, int]] = deque(maxlen=1000)
        self.query: Any = None

    # ------------------------------------------------------------------ the query
    def _session(self) -> Any:
        if self._spark is None:
            from dnsieve.engines.spark import configure, get_session

            configure(getattr(self.settings, "spark", None))
            self._spark = get_session()
        return self._spark

    def _reader(self, ck: Checkpoint) -> Any:
        spark = self._session()
        from pyspark.sql import functions as F

        if isinstance(self.view, SparkKafkaView):
            if self.view.connector == "native":
                opts = self.view.native_options(self.cfg.max_batch_events, ck.positions)
                return (
                    spark.readStream.format("kafka")
                    .options(**opts)
                    .load()
                    .select(
                        F.concat(F.col("topic"), F.lit("/"), F.col("partition")).alias("partition"),
                        F.col("offset"),
                        F.col("value"),
                    )
                )
            spark.dataSource.register(KafkaDataSource)
            opts = self.view.options(self.cfg.max_batch_events, ck.positions)
            return spark.readStream.format("dnsieve_kafka").options(**opts).load()

        root = self.view.root
        reader = spark.readStream.format("text").option("wholetext", "true")
        reader = reader.option("maxFilesPerTrigger", str(max(1, self.view.files_per_batch)))
        if root.is_dir():
            df = reader.option("pathGlobFilter", self.view.pattern).load(str(root))
        else:
            df = reader.load(str(root))
        # Chunk payloads are text lines: a file is one record, its position its size
        return df.select(
            F.concat(
                F.lit("file:"),
                F.url_decode(F.regexp_replace(F.col("_metadata.file_path"), "^file:(//)?", "")),
            ).alias("partition"),
            F.lit(0).cast("long").alias("offset"),
            F.encode(F.col("value"), "UTF-8").alias("value"),
        )

    def _engine(self, ck: Checkpoint) -> Any:
        """``[detect] engine = "spark"`` scores on the cluster; else the embedded engine."""
        if getattr(getattr(self.settings, "detect", None), "engine", "polars") == "spark":
            return SparkStreamEngine(self.ckpts.aggregates, ck.agg_from, self._session())
        return super()._engine(ck)

    def process_batch(self, df: Any, batch_id: int) -> None:
        """``foreachBatch``: the runner's ingest, close, checkpoint and (live) scoring."""
        ck = self._ck
        assert ck is not None
        table = df.toArrow() if hasattr(df, "toArrow") else pa.Table.from_pandas(df.toPandas())
        if isinstance(self.view, SparkFileView):
            chunks = file_chunks(table, ck.positions)
        else:
            chunks = chunks_from_arrow(table, ck.positions)
        self.batch_log.append((int(batch_id), table.num_rows, sum(len(c.records) for c in chunks)))
        if chunks:
            self._ingest(ck, chunks)
        if chunks:
            self._last_data = time.monotonic()
        self.view.refresh(ck.positions)
        self._close(ck)
        self._hook("consumed")
        if chunks:
            ck.counters["spark_batch"] = int(batch_id)
            self.ckpts.save(ck)
            self._hook("checkpointed")
        if self.stop_when_idle is None and (self.view.caught_up() or self._backlog_due(ck)):
            self._score(ck, final=False)
        self.batches += 1
        now = time.monotonic()
        if now - self._t_status >= self.cfg.status_seconds:
            n0, t0 = self._rate
            self.status.events_per_s = (self.status.events - n0) / max(now - t0, 1e-9)
            self._rate = (self.status.events, now)
            self._report(ck)
            self._t_status = now

    def run(self) -> StreamStatus:
        """Run the query until stopped (or idle for ``stop_when_idle`` seconds)."""
        ck = self.ckpts.load()
        self._ck = ck
        self.view.seek(ck.positions)
        # the counters continue from the checkpoint (as StreamRunner.run)
        self.status.events = int(ck.counters.get("events", 0))
        self.status.late = ck.state.late_rows
        self.status.rejected = int(ck.counters.get("rejected", 0))
        self.status.alerts = int(ck.counters.get("alerts", 0))
        self.status.last_alert = ck.counters.get("last_alert")
        self._rate = (self.status.events, time.monotonic())
        self._t_status = time.monotonic()
        self.spark_checkpoint.mkdir(parents=True, exist_ok=True)
        try:
            df = self._reader(ck)
        except Exception as exc:  # pyspark's AnalysisException: no such data source
            if getattr(self.view, "connector", None) == "native" and "kafka" in str(exc).lower():
                raise RuntimeError(
                    "Spark's Kafka connector is not on the classpath: start Spark with "
                    "--packages org.apache.spark:spark-sql-kafka-0-10_2.13:<Spark version>, "
                    "or read with --spark-kafka python"
                ) from exc
            raise
        writer = (
            df.writeStream.foreachBatch(self.process_batch)
            .option("checkpointLocation", str(self.spark_checkpoint))
            .trigger(processingTime=f"{max(self.cfg.poll_seconds, 0.05)} seconds")
        )
        old_handlers = self._install_signals()
        try:
            self.query = writer.start()
            self._last_data = time.monotonic()
            self._loop()
            self._report(ck)
        finally:
            if self.query is not None and self.query.isActive:
                self.query.stop()
            self._restore_signals(old_handlers)
        return self.status

    def _loop(self) -> None:
        from pyspark.errors import StreamingQueryException

        try:
            self._drive()
        except StreamingQueryException as exc:
            raise RuntimeError(f"the Spark stream failed: {exc}") from exc

    def _drive(self) -> None:
        q = self.query
        ck = self._ck
        assert ck is not None
        while not self._stop:
            if self.stop_when_idle is None:
                if q.awaitTermination(self.cfg.poll_seconds):
                    break
                continue
            q.processAllAvailable()
            self.view.refresh()
            if self.view.caught_up() and time.monotonic() - self._last_data >= self.stop_when_idle:
                q.stop()
                q.awaitTermination()
                self._raise_failure()
                self._score(ck, final=True)
                self.status.state = "finished"
                return
            time.sleep(self.cfg.poll_seconds)
        q.stop()
        self._raise_failure()
        self.status.state = "stopped"

    def _raise_failure(self) -> None:
        exc = self.query.exception() if self.query is not None else None
        if exc is not None:
            raise RuntimeError(f"the Spark stream failed: {exc}")


def file_chunks(table: pa.Table, done: dict[str, int]) -> list[Chunk]:
    """Whole files (one record each) as chunks, but for those the checkpoint holds already.

    A file's position is its size: its record starts at 0 and ends there.
    """
    out: list[Chunk] = []
    for part, data in zip(
        table.column("partition").to_pylist(), table.column("value").to_pylist(), strict=True
    ):
        if part in done or data is None:
            continue
        out.append(Chunk(part, [(0, data)], end=max(1, len(data))))
    return out
