"""``dnsieve stream`` over followed files: sources, checkpoint, parity with ``run``.

Parity is checked on simulated traffic with injected campaigns, written as
zeek-kafka JSON lines shuffled within two minutes (out of order, inside the
allowed lateness) and read in many micro-batches, and on a real Zeek log
directory rotated hourly (``../shared/data``, RITA's ``missing_host``).
"""

from __future__ import annotations

import gzip
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from dnsieve.alerts.base import alerts_to_frame
from dnsieve.alerts.store import AlertStore
from dnsieve.config import Settings, load_settings
from dnsieve.features.state import HourlyState
from dnsieve.ingest.kafka import read_events, zeek_json_lines
from dnsieve.jobs import run_job
from dnsieve.lake import Lake
from dnsieve.simulate import simulate, write_zeek
from dnsieve.stream import Chunk, FollowSource, StreamCheckpoint, StreamRunner
from dnsieve.stream.checkpoint import Checkpoint

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _settings(batch: int = 3000) -> Settings:
    st = load_settings(env={})
    st.stream.max_batch_events = batch
    st.stream.poll_seconds = 0.05
    return st


def stored(db: str) -> pl.DataFrame:
    """Every stored alert (episode), sorted, with its verdict-bearing status."""
    with AlertStore.open(db) as store:
        f = alerts_to_frame(store.list_alerts(status="all", include_suppressed=True))
    return f.select("id", "detector", "entity", "window_start", "window_end", "status").sort("id")


def shuffled_json(log: Path, out: Path, seed: int = 5, jitter_s: int = 120) -> int:
    """``log``'s events as zeek JSON lines, shuffled within ``jitter_s`` buckets."""
    ev, _ = read_events([log])
    rng = random.Random(seed)
    order = sorted(
        range(ev.height),
        key=lambda i: (int(ev["ts"][i].timestamp()) // jitter_s, rng.random()),
    )
    lines = zeek_json_lines(ev[order])
    out.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


def stream_once(src: FollowSource, tmp: Path, db: str, st: Settings, name: str = "s") -> None:
    runner = StreamRunner(
        src, Lake.from_settings(st, tmp / f"lake_{name}"), tmp / f"ck_{name}", st,
        store_url=db, stop_when_idle=0.2,
    )  # fmt: skip
    status = runner.run()
    src.close()
    assert status.state == "finished"


# --------------------------------------------------------------------------- sources


def test_chunk_after_cuts_at_a_position() -> None:
    ch = Chunk("t/0", [(5, b"a"), (6, b"b"), (7, b"c")], end=8)
    assert [p for p, _ in ch.after(6).records] == [6, 7]
    assert ch.after(8).records == []
    f = Chunk("file:1:2", [(10, b"l1\nl2\nl3\n")], end=19)
    assert f.after(13).records == [(13, b"l2\nl3\n")]
    assert f.after(13).payload() == b"l2\nl3\n"


def test_follow_reads_growth_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "dns.log"
    log.write_bytes(b'{"a":1}\n{"a":2}\n{"a":')  # last line not complete yet
    src = FollowSource(log)
    got = src.poll(100, 0.1)
    assert [c.payload() for c in got] == [b'{"a":1}\n{"a":2}\n']
    with open(log, "ab") as fh:
        fh.write(b"3}\n")
    assert src.poll(100, 0.1)[0].payload() == b'{"a":3}\n'
    # rotation: the old file moves away (with a last line), a new one takes its name
    with open(log, "ab") as fh:
        fh.write(b'{"a":4}\n')
    os.rename(log, tmp_path / "dns.log.1")
    log.write_bytes(b'{"b":1}\n')
    payloads = sorted(c.payload() for c in src.poll(100, 0.1))
    assert payloads == [b'{"a":4}\n', b'{"b":1}\n']
    # truncation in place: read again from the start
    log.write_bytes(b'{"c":1}\n')
    assert [c.payload() for c in src.poll(100, 0.1)] == [b'{"c":1}\n']
    assert src.caught_up() or src.poll(100, 0.05) == []
    src.close()


def test_follow_directory_keeps_zeek_headers_and_reads_rotated_gzip(tmp_path: Path) -> None:
    sample = Path(__file__).parent / "data" / "zeek" / "brim_dns_head.log"
    d = tmp_path / "logs"
    d.mkdir()
    (d / "dns.00.log.gz").write_bytes(gzip.compress(sample.read_bytes()))
    (d / "current.log").write_bytes(sample.read_bytes())
    st = _settings(batch=50)
    db = f"sqlite:///{tmp_path / 'a.db'}"
    stream_once(FollowSource(d), tmp_path, db, st)
    lake = Lake(tmp_path / "lake_s")
    ref = Lake(tmp_path / "ref")
    ref.ingest_files([sample])
    n = ref.scan().select(pl.len()).collect().item()
    assert n > 100
    # the same events twice (two files), none rejected, none lost to the header handling
    assert lake.scan().select(pl.len()).collect().item() == 2 * n


# --------------------------------------------------------------------------- checkpoint


def test_checkpoint_round_trip_is_atomic(tmp_path: Path) -> None:
    cks = StreamCheckpoint(tmp_path / "ck")
    assert cks.load().positions == {}
    st = HourlyState()
    st.update(
        pl.DataFrame(
            {
                "ts": [datetime(2024, 1, 1, 9, 5, tzinfo=UTC)],
                "src_ip": ["10.0.0.1"],
                "registered_domain": ["example.com"],
                "subdomain": ["www"],
            }
        )
    )
    ck = Checkpoint(state=st, positions={"t/0": 42}, scored_until=datetime(2024, 1, 1, tzinfo=UTC))
    cks.save(ck)
    cks.save(ck)  # a second checkpoint replaces the first
    assert len(list((tmp_path / "ck").glob("ckpt-*"))) == 1
    back = cks.load()
    assert back.positions == {"t/0": 42}
    assert back.scored_until == datetime(2024, 1, 1, tzinfo=UTC)
    assert back.state.rows == 1
    assert back.seq == 2
    # a checkpoint half-written by a crash is never the live one
    (tmp_path / "ck" / "ckpt-000003").mkdir()
    assert cks.load().seq == 2


# --------------------------------------------------------------------------- parity


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sim")
    sim = simulate(hours=48, clients=50, seed=21)
    log = write_zeek(sim, d / "logs")["log"]
    out = d / "shuffled.json"
    shuffled_json(log, out)
    return out


def test_stream_gives_run_alerts_out_of_order_in_micro_batches(
    sim_log: Path, tmp_path: Path
) -> None:
    st = _settings(batch=2000)
    db_run = f"sqlite:///{tmp_path / 'run.db'}"
    _, _, alerts = run_job([sim_log], tmp_path / "lake_run", "auto", st, store_url=db_run)
    db_s = f"sqlite:///{tmp_path / 's.db'}"
    stream_once(FollowSource(sim_log), tmp_path, db_s, st)
    a, b = stored(db_run), stored(db_s)
    assert a.height > 0 and alerts.height > 0
    assert a.drop("status").equals(b.drop("status"))
    # the stream wrote every event once, and scored closed hours from its own state
    n_run = Lake(tmp_path / "lake_run").scan().select(pl.len()).collect().item()
    n_s = Lake(tmp_path / "lake_s").scan().select(pl.len()).collect().item()
    assert n_s == n_run
    assert list((tmp_path / "ck_s" / "agg" / "domain_hourly").glob("*.parquet"))


def test_stream_rerun_over_the_same_file_adds_nothing(sim_log: Path, tmp_path: Path) -> None:
    st = _settings(batch=4000)
    db = f"sqlite:///{tmp_path / 's.db'}"
    stream_once(FollowSource(sim_log), tmp_path, db, st)
    before = stored(db)
    rows = Lake(tmp_path / "lake_s").scan().select(pl.len()).collect().item()
    # the checkpoint is lost: the file is read again from 0; the lake skips what it holds
    import shutil

    shutil.rmtree(tmp_path / "ck_s")
    stream_once(FollowSource(sim_log), tmp_path, db, st)
    assert Lake(tmp_path / "lake_s").scan().select(pl.len()).collect().item() == rows
    assert stored(db).drop("status").equals(before.drop("status"))


@pytest.mark.shared
def test_stream_parity_on_a_real_rotated_zeek_directory(tmp_path: Path) -> None:
    src_dir = SHARED / "zeek" / "rita" / "missing_host"
    if not src_dir.exists():
        pytest.skip("shared corpus not present")
    d = tmp_path / "logs"
    d.mkdir()
    for f in sorted(src_dir.glob("*/dns.*.log.gz")):
        (d / f"{f.parent.name}_{f.name}").write_bytes(f.read_bytes())
    st = _settings(batch=500)
    db_run = f"sqlite:///{tmp_path / 'run.db'}"
    run_job(sorted(d.iterdir()), tmp_path / "lake_run", "auto", st, store_url=db_run)
    db_s = f"sqlite:///{tmp_path / 's.db'}"
    stream_once(FollowSource(d), tmp_path, db_s, st)
    a, b = stored(db_run), stored(db_s)
    assert a.drop("status").equals(b.drop("status"))
    n = Lake(tmp_path / "lake_s").scan().select(pl.len()).collect().item()
    assert n == Lake(tmp_path / "lake_run").scan().select(pl.len()).collect().item() > 5000
