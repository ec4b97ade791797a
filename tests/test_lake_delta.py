"""The lake as a Delta table (``[lake] format = "delta"``, delta-rs).

Real input: RITA's ``missing_host`` Zeek logs (../shared/data, read in place)
and, where the shared data is absent, a simulated day written as a Zeek log.
Checks the round trip against the Parquet lake, idempotent re-ingest (by
content: the app transaction), concurrent appenders in separate processes,
time travel ("as of" a version reproduces a detection), and the Spark engine
reading the table by its file list with parity to the Parquet lake.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from conftest import require_module
from dnsieve.config import load_settings
from dnsieve.engines import get_engine, resolve_files
from dnsieve.lake import DELTA_APP_PREFIX, DeltaLake, Lake, open_lake
from dnsieve.pipeline import detect

ORDER = ["ts", "src_ip", "qname", "trans_id", "src_port"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three simulated days as three daily Zeek logs."""
    from dnsieve import simulate as sim

    tmp = tmp_path_factory.mktemp("delta-logs")
    out = []
    for day in range(3):
        res = sim.simulate(hours=24, clients=40, seed=3, start=f"2024-05-0{day + 1}T00:00:00")
        out.append(sim.write_zeek(res, tmp / f"day{day}")["log"])
    return out


def _events(lake: Lake) -> pl.DataFrame:
    return lake.scan().collect().sort(ORDER, nulls_last=True)


def test_round_trip_equals_parquet_lake(tmp_path: Path, logs: list[Path]) -> None:
    pq_lake = Lake(tmp_path / "pq")
    dl = DeltaLake(tmp_path / "delta")
    want = pq_lake.ingest_files(logs)
    got = dl.ingest_files(logs)
    assert [r.rows_written for r in got] == [r.rows_written for r in want]
    assert all(r.status == "ingested" for r in got)
    a, b = _events(pq_lake), _events(dl)
    assert b.height == dl.committed_rows() > 10_000
    assert_frame_equal(b, a)
    # a Delta reader sees the same rows: the table is a standard Delta table

    native = pl.scan_delta(str(dl.events_dir)).collect()
    assert native.height == a.height and {"date", "hour"} <= set(native.columns)
    # hour partitions prune the files read
    t0 = a.get_column("ts").min()
    assert 0 < len(dl.files(t0, t0 + timedelta(hours=1))) < len(dl.files())


def test_reingest_is_idempotent_by_content(tmp_path: Path, logs: list[Path]) -> None:
    dl = DeltaLake(tmp_path / "delta")
    dl.ingest_files(logs[:1])
    v = dl.table().version()
    copy = tmp_path / "renamed.log"
    shutil.copy(logs[0], copy)
    again = dl.ingest_files([logs[0], copy])
    assert [r.status for r in again] == ["unchanged", "unchanged"]
    assert dl.table().version() == v  # no new commit at all
    txn = dl.table().transaction_version(DELTA_APP_PREFIX + again[0].sha256)
    assert txn == 1
    assert [s["sha256"] for s in dl.sources()] == [again[0].sha256]


def test_grown_log_appends_only_its_new_rows(tmp_path: Path, logs: list[Path]) -> None:
    """A log that grew since it was ingested: only the new records land (no duplicates)."""
    lines = logs[0].read_bytes().splitlines(keepends=True)
    body = [i for i, ln in enumerate(lines) if not ln.startswith(b"#")]
    cut = body[len(body) // 2]
    live = tmp_path / "dns.log"
    live.write_bytes(b"".join(lines[:cut]))  # half the log, as a sensor is still writing it
    dl = DeltaLake(tmp_path / "delta")
    (first,) = dl.ingest_files([live])
    with open(live, "ab") as fh:
        fh.write(b"".join(lines[cut:]))
    (grown,) = dl.ingest_files([live])
    assert (first.status, grown.status) == ("ingested", "grown")
    whole = Lake(tmp_path / "pq")
    (ref,) = whole.ingest_files([logs[0]])
    assert first.rows_written + grown.rows_written == ref.rows_written
    assert dl.committed_rows() == ref.rows_written
    assert_frame_equal(_events(dl).drop("sensor"), _events(whole).drop("sensor"))
    (again,) = dl.ingest_files([live])  # the grown file itself is now committed content
    assert again.status == "unchanged"
    assert [s["rows_written"] for s in dl.sources()] == [first.rows_written, grown.rows_written]
    # the first version still reads the half that was there then
    assert DeltaLake(dl.path, version=0).committed_rows() == first.rows_written


def _ingest(path: str, log: str) -> int:
    return sum(r.rows_written for r in DeltaLake(path).ingest_files([log]))


def test_concurrent_appenders(tmp_path: Path, logs: list[Path]) -> None:
    """Four processes append (two of them the same content): every file lands exactly once."""
    root = str(tmp_path / "delta")
    jobs = [str(logs[0]), str(logs[1]), str(logs[2]), str(logs[1])]
    with mp.get_context("spawn").Pool(4) as pool:
        written = pool.starmap(_ingest, [(root, j) for j in jobs])
    dl = DeltaLake(root)
    single = Lake(tmp_path / "pq")
    single.ingest_files(logs)
    assert sum(written) == dl.committed_rows() == single.committed_rows()
    assert sorted(w > 0 for w in written) == [False, True, True, True]
    assert_frame_equal(_events(dl), _events(single))
    assert len(dl.sources()) == 3


def test_time_travel_reproduces_a_detection(tmp_path: Path, logs: list[Path]) -> None:
    dl = DeltaLake(tmp_path / "delta")
    dl.ingest_files(logs[:2])
    v = dl.table().version()
    before = detect(dl, detectors=["nxdomain", "tunnel"], strict=True)
    dl.ingest_files(logs[2:])
    assert dl.table().version() == v + 1
    now = detect(dl, detectors=["nxdomain", "tunnel"], strict=True)
    assert now.summary["end"] > before.summary["end"]
    old = DeltaLake(dl.path, version=v)
    again = detect(old, detectors=["nxdomain", "tunnel"], strict=True)
    assert again.summary["end"] == before.summary["end"]
    assert_frame_equal(again.anomalies, before.anomalies)
    assert open_lake(dl.path, version=v).committed_rows() == old.committed_rows()
    with pytest.raises(ValueError, match="read-only"):
        old.ingest_files(logs[2:])


def test_settings_choose_the_format(tmp_path: Path) -> None:
    cfg = tmp_path / "dnsieve.toml"
    cfg.write_text('[lake]\nformat = "delta"\n')
    lk = Lake.from_settings(load_settings(cfg, env={}), tmp_path / "lake")
    assert isinstance(lk, DeltaLake)
    assert not isinstance(Lake.from_settings(load_settings(env={}), tmp_path / "x"), DeltaLake)


@pytest.mark.slow
def test_spark_reads_delta_like_parquet(tmp_path: Path, logs: list[Path]) -> None:
    require_module("pyspark", reason="the spark extra is not installed")
    pq_lake, dl = Lake(tmp_path / "pq"), DeltaLake(tmp_path / "delta")
    pq_lake.ingest_files(logs)
    dl.ingest_files(logs)
    dl.compact()  # a new version whose file list replaces the old files
    assert set(resolve_files(dl.path)) == set(dl.files())
    eng: Any = get_engine("spark")
    for kind in ("domain_hourly", "client_domain_hourly"):
        assert_frame_equal(eng.aggregate(kind, dl), eng.aggregate(kind, pq_lake))
        assert_frame_equal(
            eng.aggregate(kind, dl.path), get_engine("polars").aggregate(kind, pq_lake)
        )
    want = detect(pq_lake, engine="polars", detectors=["volume", "nxdomain"], strict=True)
    got = detect(dl, engine="spark", detectors=["volume", "nxdomain"], strict=True)
    key = ["detector", "entity", "window_start"]
    assert want.anomalies.height > 0
    assert_frame_equal(got.anomalies.sort(key).select(key), want.anomalies.sort(key).select(key))
