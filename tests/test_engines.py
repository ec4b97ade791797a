"""The engines: the Polars engine, and parity of the Spark engine with it.

The lake holds real events (brimdata's Zeek dns.log and one day of RITA's
``missing_host`` logs, ingested through :class:`dnsieve.lake.Lake`) plus
generated part files, written straight into the lake layout, with the edge
cases real logs lack.  Spark tests share one local session for the whole run
(``dnsieve.engines.spark.get_session``); they run wherever pyspark is
installed (CI installs the ``spark`` extra).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from conftest import require_module
from dnsieve.detectors.base import DetectContext, Detector, EntityType, InputKind, anomaly_frame
from dnsieve.engines import (
    AGGREGATE_KINDS,
    Engine,
    EngineUnavailableError,
    get_engine,
    resolve_files,
)
from dnsieve.features import KEYS, SCHEMAS, aggregate
from dnsieve.ingest.base import IngestStats, ReadContext, canonicalize
from dnsieve.lake import Lake
from dnsieve.schema import DNS_EVENT

T0 = datetime(2024, 4, 19, 10, 0, tzinfo=UTC)
RITA_START = datetime(2024, 4, 19, tzinfo=UTC)


def write_generated_parts(lake: Lake) -> int:
    """Generated edge-case events, written as hour-partitioned part files."""
    us, h = timedelta(microseconds=1), timedelta(hours=1)
    rows = [
        (T0, "10.0.0.1", "www.example.com", "A", "NOERROR", 40),
        (T0 + h - us, "10.0.0.1", "mail.example.com", "AAAA", "NOERROR", None),
        (T0 + h, "10.0.0.1", "www.example.com", "A", "NOERROR", 41),
        (T0 + h, None, "example.com", "TXT", "NXDOMAIN", 30),
        (T0 + h, "10.0.0.2", None, "A", None, None),
        (T0 + h, "10.0.0.3", "x\\x00y.evil.example", "NULL", "NXDOMAIN", 80),
        (T0 + h, "10.0.0.3", "aGVsbG8.t.evil.example", "TYPE65399", "REFUSED", 90),
        (T0 + h, "10.0.0.3", "ÄÖ.例え.jp", None, "SERVFAIL", 20),
        (T0 + h, "", "example.com", "ANY", "NOERROR", 3),
        (T0 - timedelta(days=400), "10.0.0.9", "old.example.org", "MX", "NOERROR", 5),
    ]
    cols = ["ts", "src_ip", "qname", "qtype", "rcode", "query_len"]
    ctx = ReadContext(sensor="generated", stats=IngestStats())
    ev = canonicalize(
        pl.DataFrame({c: [r[i] for r in rows] for i, c in enumerate(cols)}, strict=False), ctx
    )
    ev = ev.with_columns(pl.col("query_len").alias("response_len"))
    for (hour,), part in ev.group_by(pl.col("ts").dt.truncate("1h")):
        assert isinstance(hour, datetime)
        d = lake.events_dir / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(part.to_arrow().cast(DNS_EVENT), d / "part-generated-00001.parquet")
    return ev.height


@pytest.fixture(scope="module")
def lake(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lk = Lake(tmp_path_factory.mktemp("lake"), rows_per_file=20_000)
    rita = shared_data / "zeek" / "rita" / "missing_host"
    files = [shared_data / "zeek" / "brimdata" / "dns.log.gz", *sorted(rita.glob("*/dns.*.log.gz"))]
    reports = lk.ingest_files(files)
    assert all(r.rows_written > 0 for r in reports)
    write_generated_parts(lk)
    return lk


class QueriesPerEntity(Detector):
    """A tiny pure test detector: one row per entity, scored on its whole input.

    If an engine split an entity's rows over two ``score`` calls, that entity
    would come back twice with partial sums, so parity catches splitting.
    """

    name: ClassVar[str] = "test_queries_per_entity"
    entity_type: ClassVar[EntityType] = "client_domain"
    requires: ClassVar[InputKind] = "client_domain_hourly"

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        g = (
            data.group_by("src_ip", "registered_domain")
            .agg(
                pl.col("queries").sum().alias("total"),
                pl.col("hour").n_unique().alias("hours"),
                pl.col("first_ts").min(),
                pl.col("last_ts").max(),
            )
            .sort("src_ip", "registered_domain")
        )
        entity = g.select(pl.concat_str("src_ip", pl.lit("|"), "registered_domain")).to_series()
        return anomaly_frame(
            self.name,
            self.entity_type,
            entity,
            g.get_column("first_ts"),
            g.get_column("last_ts"),
            (g.get_column("total") / g.get_column("hours")).cast(pl.Float64),
            evidence=[{"total": t, "hours": h} for t, h in g.select("total", "hours").iter_rows()],
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        return pl.DataFrame(schema=SCHEMAS["client_domain_hourly"])


CTX = DetectContext(start=T0 - timedelta(days=1), end=T0 + timedelta(days=1))


# ---------------------------------------------------------------------------- Polars engine


def test_polars_engine_matches_features(lake: Lake) -> None:
    eng = get_engine("polars")
    assert isinstance(eng, Engine) and eng.name == "polars"
    events = eng.events(lake)
    assert events.height == lake.scan().collect().height
    assert events.get_column("ts").is_sorted()
    for kind in AGGREGATE_KINDS:
        got = eng.aggregate(kind, lake)
        assert got.schema == SCHEMAS[kind] and got.height > 0
        assert_frame_equal(got, aggregate(kind, lake.scan()).collect())
        # a lake directory, its events/ directory and its file list are the same source
        assert_frame_equal(eng.aggregate(kind, lake.path), got)
        assert_frame_equal(eng.aggregate(kind, lake.events_dir), got)
        assert_frame_equal(eng.aggregate(kind, lake.files()), got)


def test_polars_engine_time_range(lake: Lake) -> None:
    eng = get_engine("polars")
    since, until = T0, T0 + timedelta(hours=1, minutes=30)
    files = resolve_files(lake, since, until)
    assert 0 < len(files) < len(lake.files())  # partitions outside the range are not read
    for kind in AGGREGATE_KINDS:
        got = eng.aggregate(kind, lake, since=since, until=until)
        want = aggregate(kind, lake.scan(since, until)).collect()
        assert_frame_equal(got, want)
    ev = eng.events(lake, since=since.replace(tzinfo=None), until=until.replace(tzinfo=None))
    assert ev.get_column("ts").min() >= since and ev.get_column("ts").max() < until
    empty = eng.aggregate("domain_hourly", lake, since=datetime(2030, 1, 1))
    assert empty.height == 0 and empty.schema == SCHEMAS["domain_hourly"]


def test_polars_map_detector_and_errors(lake: Lake) -> None:
    eng = get_engine("polars")
    data = eng.aggregate("client_domain_hourly", lake)
    out = eng.map_detector(QueriesPerEntity(), data, CTX)
    assert out.height == data.select("src_ip", "registered_domain").n_unique()
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("duckdb")
    with pytest.raises(ValueError, match="unknown aggregate"):
        eng.aggregate("domain_daily", lake)


def test_spark_engine_without_pyspark_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark -> ImportError
    with pytest.raises(EngineUnavailableError, match=r"pip install 'dnsieve\[spark\]'"):
        get_engine("spark")


# ---------------------------------------------------------------------------- Spark parity


@pytest.fixture(scope="session")
def spark_engine() -> Any:
    require_module("pyspark", reason="the spark extra is not installed")
    from pyspark import cloudpickle

    from dnsieve.engines.spark import get_session

    # Spark's workers cannot import this test module: ship its detector class by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    get_session()  # one shared local session for the whole test run
    return get_engine("spark")


@pytest.mark.slow
def test_spark_aggregates_equal_polars(lake: Lake, spark_engine: Any) -> None:
    pe = get_engine("polars")
    assert isinstance(spark_engine, Engine) and spark_engine.name == "spark"
    assert spark_engine.spark.conf.get("spark.sql.session.timeZone") == "UTC"
    for kind in AGGREGATE_KINDS:
        want = pe.aggregate(kind, lake)
        got = spark_engine.aggregate(kind, lake)
        assert got.schema == SCHEMAS[kind]
        assert_frame_equal(got, want)  # identical: same rows, same values, same dtypes
    since, until = T0, T0 + timedelta(hours=1, minutes=30)
    assert_frame_equal(
        spark_engine.aggregate("domain_hourly", lake.path, since, until),
        pe.aggregate("domain_hourly", lake.path, since, until),
    )
    empty = spark_engine.aggregate("client_hourly", lake, since=datetime(2030, 1, 1))
    assert empty.height == 0 and empty.schema == SCHEMAS["client_hourly"]


@pytest.mark.slow
def test_spark_events_equal_polars(lake: Lake, spark_engine: Any) -> None:
    since, until = T0 - timedelta(hours=3), T0 + timedelta(hours=2)
    want = get_engine("polars").events(lake, since, until)
    got = spark_engine.events(lake, since, until)
    assert got.schema == want.schema and got.height == want.height > 0
    order = [c for c, t in want.schema.items() if not isinstance(t, pl.List)]
    assert_frame_equal(got.sort(order, nulls_last=True), want.sort(order, nulls_last=True))


@pytest.mark.slow
def test_spark_map_detector_equals_polars(lake: Lake, spark_engine: Any) -> None:
    data = get_engine("polars").aggregate("client_domain_hourly", lake)
    det = QueriesPerEntity()
    want = get_engine("polars").map_detector(det, data, CTX)
    # several partitions, so entities really are spread over separate score() calls
    got = spark_engine.map_detector(det, data, CTX, partitions=4)
    assert want.height > 100
    assert_frame_equal(got, want)
    # the input may also stay on Spark (no round trip through the driver)
    sdf = spark_engine.aggregate_frame("client_domain_hourly", lake)
    assert_frame_equal(spark_engine.map_detector(det, sdf, CTX), want)
    with pytest.raises(ValueError, match="lacks"):
        spark_engine.map_detector(det, data.drop("src_ip"), CTX)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["volume", "tunnel"])
def test_spark_map_detector_real_detectors(lake: Lake, spark_engine: Any, name: str) -> None:
    from dnsieve import detectors

    assert name in detectors.available()
    det = detectors.get(name)()
    pe = get_engine("polars")
    data = pe.events(lake) if det.requires == "events" else pe.aggregate(det.requires, lake)
    # score the three RITA days (the lake also holds older brimdata and generated events)
    ctx = DetectContext(start=RITA_START + timedelta(days=1), end=RITA_START + timedelta(days=3))
    want = pe.map_detector(det, data, ctx)
    got = spark_engine.map_detector(det, data, ctx, partitions=3)
    assert want.height > 0, f"{name} flagged nothing: the parity check would be empty"
    assert_frame_equal(got, want.sort(["entity", "window_start", "detector", "entity_type"]))


def test_keys_cover_entity_columns() -> None:
    from dnsieve.engines import ENTITY_COLUMNS

    assert set(ENTITY_COLUMNS["domain"]) <= set(KEYS["domain_hourly"])
    assert set(ENTITY_COLUMNS["client"]) <= set(KEYS["client_hourly"])
    assert set(ENTITY_COLUMNS["client_domain"]) <= set(KEYS["client_domain_hourly"])
