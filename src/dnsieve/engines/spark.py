"""The Spark engine: the same aggregates and detectors on PySpark (``pip install 'dnsieve[spark]'``).

The lake's Parquet part files (or a Delta table's file list) are read with
``spark.read.parquet``; the hourly aggregates are computed with Spark SQL
functions (exact distinct counts, hour buckets with the session time zone
forced to UTC).  For detection the inputs stay Spark frames
(:meth:`SparkEngine.input_frame`) and :meth:`SparkEngine.score_detector` runs
:mod:`dnsieve.engines.spark_detect`: population state fitted from statistics
reduced on the cluster, the detector's pure ``score`` per entity partition
with ``mapInArrow``, and only the candidates and population counts back on the
driver.  :meth:`SparkEngine.aggregate` and :meth:`SparkEngine.events` still
return Polars frames for callers that want them (they collect, by design).

One :class:`~pyspark.sql.SparkSession` is shared per process
(:func:`get_session`): JVM memory settings only take effect when the JVM
starts.  The master is the ``[spark] master`` setting (:func:`configure`),
else ``DNSIEVE_SPARK_MASTER`` (``spark://host:7077``, ``yarn``,
``k8s://...``), else ``local[2]``; a session already active (``spark-submit``,
Databricks) is used as it is when no master is set.  ``[spark] conf`` is
applied when the session starts.
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from dnsieve.engines.base import (
    EVENT_POLARS_SCHEMA,
    EngineUnavailableError,
    check_kind,
    resolve_files,
    to_utc,
)
from dnsieve.features import KEYS, QTYPE_COLUMNS, RCODE_COLUMNS, SCHEMAS
from dnsieve.schema import DNS_EVENT, EVENT_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import DataFrame as SparkDataFrame

    from dnsieve.detectors.base import DetectContext, Detector

__all__ = [
    "DEFAULT_CONF",
    "INSTALL_HINT",
    "EngineUnavailableError",
    "SparkEngine",
    "configure",
    "get_session",
    "require_pyspark",
    "stop_session",
]

INSTALL_HINT = "the spark engine needs: pip install 'dnsieve[spark]'"

#: settings applied when this module starts the session (see /work/shared/RECIPES.md).
DEFAULT_CONF: dict[str, str] = {
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
}

_ANOMALY_SORT = ["entity", "window_start", "detector", "entity_type"]
_lock = threading.Lock()
_session: SparkSession | None = None


def require_pyspark() -> None:
    """Raise :class:`EngineUnavailableError` with the install hint when pyspark is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailableError(INSTALL_HINT) from exc
    try:
        import pandas  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailableError(INSTALL_HINT) from exc


#: the ``[spark]`` settings given to :func:`configure` (master, conf, scratch).
_configured: dict[str, Any] = {"master": None, "conf": {}, "scratch": None}


def configure(settings: Any) -> None:
    """Use the ``[spark]`` settings (:class:`dnsieve.config.SparkSettings`) from now on.

    ``master`` and ``conf`` apply when the session starts (a session already
    running keeps its JVM settings); ``scratch`` is where the executors write
    candidates for the driver to read.

    >>> from dnsieve.config import SparkSettings
    >>> configure(SparkSettings(master="local[1]", conf={"spark.sql.shuffle.partitions": "4"}))
    >>> _configured["master"], _configured["conf"]
    ('local[1]', {'spark.sql.shuffle.partitions': '4'})
    >>> configure(SparkSettings())
    """
    _configured.update(
        master=getattr(settings, "master", None),
        conf=dict(getattr(settings, "conf", None) or {}),
        scratch=getattr(settings, "scratch", None),
    )


def get_session(master: str | None = None, conf: dict[str, str] | None = None) -> SparkSession:
    """The process-wide SparkSession, started on first use.

    Sets ``PYSPARK_PYTHON``/``PYSPARK_DRIVER_PYTHON`` to this interpreter and
    ``SPARK_LOCAL_IP=127.0.0.1`` (unless already set) before the JVM starts.
    The session time zone is UTC whatever session is used.
    """
    global _session
    require_pyspark()
    from pyspark.sql import SparkSession

    master = master or _configured["master"]
    conf = {**_configured["conf"], **(conf or {})}

    with _lock:
        if _session is not None and _session.sparkContext._jsc is not None:
            return _session
        active = SparkSession.getActiveSession()
        if active is not None and master is None:
            _session = active
        else:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            builder = SparkSession.builder.appName("dnsieve").master(
                master or os.environ.get("DNSIEVE_SPARK_MASTER", "local[2]")
            )
            for key, value in {**DEFAULT_CONF, **(conf or {})}.items():
                builder = builder.config(key, value)
            _session = builder.getOrCreate()
            _session.sparkContext.setLogLevel("ERROR")
        _session.conf.set("spark.sql.session.timeZone", "UTC")
        _session.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
        return _session


def stop_session() -> None:
    """Stop the shared session (the next :func:`get_session` starts a new JVM context)."""
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None


def _spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    nullable = pa.schema([f.with_nullable(True) for f in schema])
    return from_arrow_schema(nullable, prefer_timestamp_ntz=False)


def _to_polars(sdf: SparkDataFrame, schema: pl.Schema) -> pl.DataFrame:
    table = sdf.toArrow()
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df.select(list(schema)).cast(schema)


def _count_if(cond: Column) -> Column:
    from pyspark.sql import functions as F

    return F.sum(F.when(cond, F.lit(1)).otherwise(F.lit(0))).cast("long")


def _qtype_aggs() -> list[Column]:
    from pyspark.sql import functions as F

    q = F.col("qtype")
    named = list(QTYPE_COLUMNS.values())
    return [
        *(_count_if(q == name).alias(col) for col, name in QTYPE_COLUMNS.items()),
        _count_if(~q.isin(named) | q.isNull()).alias("qtype_other"),
    ]


def _spark_aggregate(kind: str, events: SparkDataFrame) -> SparkDataFrame:
    """The aggregate ``kind`` of a Spark frame of canonical events, as a Spark frame."""
    from pyspark.sql import functions as F

    ev = events.withColumn("hour", F.date_trunc("hour", F.col("ts")))
    rd, src, sub, rcode = (F.col(c) for c in ("registered_domain", "src_ip", "subdomain", "rcode"))
    n = F.count(F.lit(1)).cast("long").alias("queries")
    nx = _count_if(rcode == "NXDOMAIN").alias("nxdomain")
    if kind == "domain_hourly":
        out = (
            ev.where(rd.isNotNull())
            .groupBy("hour", "registered_domain")
            .agg(
                n,
                F.countDistinct(src).cast("long").alias("clients"),
                F.countDistinct(F.when(sub != "", sub)).cast("long").alias("subdomains"),
                *(_count_if(rcode == v).alias(c) for c, v in RCODE_COLUMNS.items()),
                *_qtype_aggs(),
                F.sum(F.coalesce(F.col("query_len").cast("long"), F.lit(0)))
                .cast("long")
                .alias("query_bytes"),
                F.sum(F.coalesce(F.col("response_len").cast("long"), F.lit(0)))
                .cast("long")
                .alias("response_bytes"),
            )
        )
    elif kind == "client_hourly":
        out = (
            ev.where(src.isNotNull())
            .groupBy("hour", "src_ip")
            .agg(n, F.countDistinct(rd).cast("long").alias("domains"), nx, *_qtype_aggs())
        )
    else:
        out = (
            ev.where(src.isNotNull() & rd.isNotNull())
            .groupBy("hour", "src_ip", "registered_domain")
            .agg(n, nx, F.min("ts").alias("first_ts"), F.max("ts").alias("last_ts"))
        )
    return out.select(*SCHEMAS[kind])


class SparkEngine:
    """PySpark engine (local mode in tests, any cluster in production)."""

    name = "spark"

    def __init__(self, session: SparkSession | None = None, scratch: str | None = None) -> None:
        require_pyspark()
        self._spark = session
        #: where executors write candidates for the driver (``[spark] scratch``)
        self.scratch = scratch or _configured["scratch"]

    @property
    def spark(self) -> SparkSession:
        """The SparkSession in use (the shared one unless one was given)."""
        if self._spark is None:
            self._spark = get_session()
        return self._spark

    # ------------------------------------------------------------------ reading
    def events_frame(
        self, source: Any, since: datetime | None = None, until: datetime | None = None
    ) -> SparkDataFrame:
        """A Spark frame of the source's canonical events in ``[since, until)``."""
        from pyspark.sql import functions as F

        schema = _spark_schema(DNS_EVENT)
        files = resolve_files(source, since, until)
        if not files:
            return self.spark.createDataFrame([], schema)
        sdf = self.spark.read.schema(schema).parquet(*(str(f) for f in files))
        sdf = sdf.select(*EVENT_COLUMNS)
        lo, hi = to_utc(since), to_utc(until)
        if lo is not None:
            sdf = sdf.where(F.col("ts") >= F.lit(lo))
        if hi is not None:
            sdf = sdf.where(F.col("ts") < F.lit(hi))
        return sdf

    def aggregate_frame(
        self,
        kind: str,
        source: Any,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> SparkDataFrame:
        """The aggregate as a Spark frame, for chaining on the cluster (unsorted)."""
        return _spark_aggregate(check_kind(kind), self.events_frame(source, since, until))

    # ------------------------------------------------------------------ Engine protocol
    def aggregate(
        self,
        kind: str,
        source: Any,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pl.DataFrame:
        """The hourly aggregate ``kind`` as a Polars frame, sorted by key."""
        sdf = self.aggregate_frame(kind, source, since, until)
        return _to_polars(sdf, SCHEMAS[kind]).sort(list(KEYS[kind]))

    def events(
        self, source: Any, since: datetime | None = None, until: datetime | None = None
    ) -> pl.DataFrame:
        """The canonical events in ``[since, until)``, sorted by time."""
        sdf = self.events_frame(source, since, until)
        return _to_polars(sdf, EVENT_POLARS_SCHEMA).sort("ts", maintain_order=True)

    def to_spark(self, data: pl.DataFrame) -> SparkDataFrame:
        """A Polars frame as a Spark frame (through Arrow)."""
        table = data.to_arrow(compat_level=pl.CompatLevel.oldest())
        return self.spark.createDataFrame(table, schema=_spark_schema(table.schema))

    def input_frame(
        self,
        kind: str,
        source: Any,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> SparkDataFrame:
        """A detector's input (``events`` or an aggregate kind) as a Spark frame: nothing is collected."""
        if kind == "events":
            return self.events_frame(source, since, until)
        return self.aggregate_frame(kind, source, since, until)

    def score_detector(
        self,
        detector: Detector,
        data: Any,
        ctx: DetectContext,
        partitions: int | None = None,
    ) -> tuple[pl.DataFrame, int | None]:
        """The detector's anomalies and its calibration population, scored on the cluster.

        ``data`` is a Spark frame (from :meth:`input_frame`) or a Polars frame
        (sent to the cluster first).  Population state is fitted from
        statistics reduced on the cluster and the detector runs per entity
        partition; only the candidates and a population count per partition
        reach the driver (:func:`dnsieve.engines.spark_detect.score_on_cluster`).
        The population is None for a detector without ``population``.
        """
        from pyspark.sql import DataFrame as SparkDataFrame

        from dnsieve.engines.spark_detect import score_on_cluster

        if isinstance(data, pl.LazyFrame):
            data = data.collect()
        if isinstance(data, pl.DataFrame):
            if data.height == 0:
                pop = detector.population(data, ctx) if hasattr(detector, "population") else None
                return detector.score(data, ctx), pop
            data = self.to_spark(data)
        if not isinstance(data, SparkDataFrame):
            raise TypeError(
                f"score_detector needs a Polars or Spark frame, not {type(data).__name__}"
            )
        return score_on_cluster(self, detector, data, ctx, partitions)

    def map_detector(
        self,
        detector: Detector,
        data: Any,
        ctx: DetectContext,
        partitions: int | None = None,
    ) -> pl.DataFrame:
        """Score ``data`` (a Polars or Spark frame) partition by partition on Spark.

        Rows are hash-partitioned by the detector's entity columns, so each
        entity's rows reach one ``score`` call together; ``partitions``
        defaults to the larger of the default parallelism and
        ``spark.sql.shuffle.partitions``.  A detector with population state
        is fitted from statistics reduced on the cluster, never from its
        input collected to the driver (see :meth:`score_detector`).
        """
        return self.score_detector(detector, data, ctx, partitions)[0]
