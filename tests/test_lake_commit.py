"""The lake's commit protocol (issue 12, items 10 and 11).

* Readers see exactly what the manifest committed: a part file on disk that no
  commit lists (an ingest killed before its commit) is never read, by
  ``Lake.scan``, the engines' file resolution or the Alert Manager's event view.
* Many small inputs share a commit and a part file; ``Lake.compact`` (``dnsieve
  lake compact``) and the automatic compaction merge small part files.
* A Hypothesis-driven fuzz kills a real ``dnsieve ingest`` at random points and
  checks that readers then see exactly the committed rows, and that a retry
  completes the lake without duplicates.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dnsieve.alerts.events import _window_files
from dnsieve.cli import app
from dnsieve.engines.base import resolve_files
from dnsieve.lake import Lake

SAMPLE = Path(str(resources.files("dnsieve") / "data" / "samples" / "wrccdc2018-dns.log.gz"))
N_SAMPLE_ROWS = 3000
SRC = Path(__file__).resolve().parents[1] / "src"


def _split_sample(out: Path, n_files: int) -> list[Path]:
    """The bundled real Zeek log cut into ``n_files`` complete logs (header + rows each)."""
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
    body = [ln for ln in lines if not ln.startswith(b"#")]
    out.mkdir(parents=True, exist_ok=True)
    per = -(-len(body) // n_files)
    paths = []
    for i in range(n_files):
        p = out / f"dns.{i:05d}.log"
        p.write_bytes(b"".join(header + body[i * per : (i + 1) * per]))
        paths.append(p)
    return paths


def _rows(lake: Lake) -> int:
    return int(lake.scan().select(pl.len()).collect().item())


# --------------------------------------------------------------------------- item 11


def test_readers_never_see_uncommitted_part_files(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.ingest_files([SAMPLE])
    (committed,) = lake.files()
    # What an ingest killed before its commit leaves: a complete part file under an
    # id the manifest never committed, in the same and in a new partition.
    for hour in ("17", "18"):
        d = committed.parent.parent / f"hour={hour}"
        d.mkdir(exist_ok=True)
        shutil.copy(committed, d / "part-00000000-0000-0000-0000-000000000000-00001.parquet")
    assert lake.files() == [committed]
    assert _rows(lake) == N_SAMPLE_ROWS
    assert resolve_files(str(lake.path)) == [committed]
    assert resolve_files(str(lake.events_dir)) == [committed]
    since = datetime(2018, 3, 24, 0, tzinfo=UTC)
    until = datetime(2018, 3, 25, 0, tzinfo=UTC)
    assert _window_files(lake.events_dir, since, until) == [committed]
    # The next writer removes them.
    lake.ingest_files([])
    assert sorted(lake.events_dir.rglob("part-*")) == [committed]


def test_detect_reads_only_committed_rows(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.ingest_files([SAMPLE])
    (committed,) = lake.files()
    shutil.copy(
        committed, committed.parent / "part-11111111-1111-1111-1111-111111111111-00001.parquet"
    )
    from dnsieve.engines import get_engine

    agg = get_engine("polars").aggregate("domain_hourly", lake.path)
    assert int(agg["queries"].sum()) == N_SAMPLE_ROWS


def test_a_lake_written_before_the_parts_table_is_listed_by_its_committed_ids(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path / "lake")
    lake.ingest_files([SAMPLE])
    (committed,) = lake.files()
    orphan = committed.parent / "part-22222222-2222-2222-2222-222222222222-00001.parquet"
    shutil.copy(committed, orphan)
    with contextlib.closing(sqlite3.connect(lake.path / "_manifest.sqlite")) as con, con:
        con.execute("DELETE FROM parts")  # the state of an older lake
        con.execute("DELETE FROM meta")
    assert lake.files() == [committed]
    assert _rows(lake) == N_SAMPLE_ROWS


# --------------------------------------------------------------------------- item 10


def test_many_small_files_share_commits_and_part_files(tmp_path: Path) -> None:
    files = _split_sample(tmp_path / "logs", 300)
    lake = Lake(tmp_path / "lake")
    reps = lake.ingest_files([tmp_path / "logs"])
    assert [r.status for r in reps] == ["ingested"] * 300
    assert sum(r.rows_written for r in reps) == N_SAMPLE_ROWS
    assert len(lake.files()) == 1  # one hour partition, one commit
    assert _rows(lake) == N_SAMPLE_ROWS
    with contextlib.closing(sqlite3.connect(lake.path / "_manifest.sqlite")) as con:
        assert con.execute("SELECT count(*) FROM ingests").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM sources").fetchone()[0] == 300
    again = lake.ingest_files(files)
    assert {r.status for r in again} == {"unchanged"}
    assert _rows(lake) == N_SAMPLE_ROWS


def test_same_content_and_grown_copies_within_one_batch(tmp_path: Path) -> None:
    (small,) = _split_sample(tmp_path / "a", 1)
    lines = small.read_bytes().splitlines(keepends=True)
    body_at = next(i for i, ln in enumerate(lines) if not ln.startswith(b"#"))
    first = tmp_path / "first.log"
    first.write_bytes(b"".join(lines[: body_at + 1000]))
    copy = tmp_path / "copy.log"
    shutil.copy(first, copy)
    grown = tmp_path / "grown.log"
    grown.write_bytes(b"".join(lines[: body_at + 1500]))
    lake = Lake(tmp_path / "lake")
    reps = lake.ingest_files([first, copy, grown])
    assert [(r.status, r.rows_written) for r in reps] == [
        ("ingested", 1000),
        ("unchanged", 0),
        ("grown", 500),
    ]
    assert _rows(lake) == 1500


def test_commit_limits_split_batches(tmp_path: Path) -> None:
    _split_sample(tmp_path / "logs", 30)
    lake = Lake(tmp_path / "lake", commit_files=10, compact_min_parts=0)
    lake.ingest_files([tmp_path / "logs"])
    assert len(lake.files()) == 3
    assert _rows(lake) == N_SAMPLE_ROWS


def test_compact_merges_small_parts_and_readers_keep_working(tmp_path: Path) -> None:
    _split_sample(tmp_path / "logs", 20)
    lake = Lake(tmp_path / "lake", commit_files=1, compact_min_parts=0)
    lake.ingest_files([tmp_path / "logs"])
    before = lake.files()
    assert len(before) == 20
    expected = lake.scan().collect().sort(["ts", "trans_id", "src_port", "qname"])
    pending_scan = lake.scan()  # a reader that listed the old files before the compaction
    res = lake.compact()
    assert res == {"partitions": 1, "parts_before": 20, "parts_after": 1, "failed": 0}
    assert len(lake.files()) == 1
    got = lake.scan().collect().sort(["ts", "trans_id", "src_port", "qname"])
    assert got.equals(expected)
    assert pending_scan.select(pl.len()).collect().item() == N_SAMPLE_ROWS  # grace period
    assert all(f.exists() for f in before)
    # past the grace period the next writer deletes them
    Lake(lake.path, retire_grace_s=0).ingest_files([])
    assert not any(f.exists() for f in before)
    assert _rows(lake) == N_SAMPLE_ROWS


def test_ingest_compacts_a_partition_with_many_small_parts(tmp_path: Path) -> None:
    _split_sample(tmp_path / "logs", 40)
    lake = Lake(tmp_path / "lake", commit_files=1, compact_min_parts=8)
    lake.ingest_files([tmp_path / "logs"])
    assert len(lake.files()) < 8
    assert _rows(lake) == N_SAMPLE_ROWS


def test_a_damaged_part_does_not_fail_ingest_or_other_partitions(tmp_path: Path) -> None:
    """Compaction meets a committed part damaged outside dnsieve: the ingest that
    triggered it still commits, and ``compact`` reports the partition as failed."""
    files = _split_sample(tmp_path / "logs", 12)
    lake = Lake(tmp_path / "lake", commit_files=1, compact_min_parts=0)
    lake.ingest_files(files[:6])
    lake.files()[0].write_bytes(b"PAR1 damaged")
    auto = Lake(tmp_path / "lake", commit_files=1, compact_min_parts=4)
    reps = auto.ingest_files(files[6:])
    assert [r.status for r in reps] == ["ingested"] * 6
    assert auto.committed_rows() == N_SAMPLE_ROWS
    assert Lake(tmp_path / "lake").compact()["failed"] == 1


def test_cli_lake_compact(tmp_path: Path) -> None:
    _split_sample(tmp_path / "logs", 6)
    Lake(tmp_path / "lake", commit_files=1, compact_min_parts=0).ingest_files([tmp_path / "logs"])
    res = CliRunner().invoke(app, ["lake", "compact", "--lake", str(tmp_path / "lake"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["parts_after"] == 1
    missing = CliRunner().invoke(app, ["lake", "compact", "--lake", str(tmp_path / "nope")])
    assert missing.exit_code == 2


# --------------------------------------------------------------------------- crash fuzz

_CRASH_FILES = 60
_CRASH_CONFIG = "[lake]\ncommit_rows = 200\nretire_grace_seconds = 0\n"


def _start_ingest(files: list[Path], lake_dir: Path, cfg: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "dnsieve.cli", "ingest", *map(str, files)]
    argv += ["--lake", str(lake_dir), "--config", str(cfg), "--json"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_manifest(proc: subprocess.Popen[bytes], lake_dir: Path) -> float:
    """Wait until the process is past its imports (it has opened the lake)."""
    t0 = time.monotonic()
    while not (lake_dir / "_manifest.sqlite").exists() and proc.poll() is None:
        if time.monotonic() - t0 > 120:
            break
        time.sleep(0.005)
    return time.monotonic()


@pytest.fixture(scope="module")
def crash_inputs(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[Path], dict[str, int], float]:
    """60 real Zeek logs, the rows each gives alone, and how long a full ingest of
    them runs once the lake is open (so kills can be spread over that span)."""
    d = tmp_path_factory.mktemp("crash")
    files = _split_sample(d / "logs", _CRASH_FILES)
    cfg = d / "dnsieve.toml"
    cfg.write_text(_CRASH_CONFIG + "compact_min_parts = 0\n")
    proc = _start_ingest(files, d / "ref", cfg)
    opened = _wait_for_manifest(proc, d / "ref")
    assert proc.wait(timeout=1800) == 0  # a ceiling
    span = time.monotonic() - opened
    rows = {s["path"]: int(s["rows_written"]) for s in Lake(d / "ref").sources()}
    assert sum(rows.values()) == N_SAMPLE_ROWS
    return files, rows, span


def _committed_view(lake: Lake) -> tuple[dict[str, int], dict[str, int], int]:
    """(rows per sensor that readers see, rows per source the manifest committed,
    rows the manifest lists in part files)."""
    seen = lake.scan().group_by("sensor").len().collect()
    by_sensor = dict(zip(seen["sensor"].to_list(), seen["len"].to_list(), strict=True))
    committed = {s["path"]: int(s["rows_written"]) for s in lake.sources()}
    return by_sensor, committed, lake.committed_rows()


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(at=st.floats(0.0, 1.1), compact=st.booleans())
def test_fuzz_kill_9_mid_ingest_readers_see_exactly_the_committed_rows(
    crash_inputs: tuple[list[Path], dict[str, int], float],
    tmp_path: Path,
    at: float,
    compact: bool,
) -> None:
    """``at``: when to kill, as a fraction of a full ingest's run time."""
    files, alone, span = crash_inputs
    run = tmp_path / f"run-{time.monotonic_ns()}"
    run.mkdir()
    cfg = run / "dnsieve.toml"
    cfg.write_text(_CRASH_CONFIG + f"compact_min_parts = {3 if compact else 0}\n")
    lake_dir = run / "lake"
    proc = _start_ingest(files, lake_dir, cfg)
    opened = _wait_for_manifest(proc, lake_dir)
    time.sleep(max(0.0, opened + at * span - time.monotonic()))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=600)

    lake = Lake(lake_dir)
    by_sensor, committed, listed = _committed_view(lake)
    # Readers see exactly the committed sources, each with all its rows.
    assert set(by_sensor) <= set(committed)
    for path, n in committed.items():
        assert n == alone[path]
        assert by_sensor.get(path, 0) == n
    assert sum(by_sensor.values()) == listed == sum(committed.values())

    # A retry completes the lake, without duplicates.
    reps = Lake(lake_dir, commit_rows=200).ingest_files(files)
    assert {r.status for r in reps} <= {"ingested", "unchanged"}
    by_sensor, committed, _ = _committed_view(lake)
    assert by_sensor == {str(f): alone[str(f)] for f in files}
    assert sorted(lake.events_dir.rglob("part-*")) == sorted(lake.files())
