"""``dnsieve stream`` against a real Kafka-protocol broker: librdkafka's mock cluster.

The cluster runs in this process (:class:`dnsieve.ingest.kafka.MockCluster`);
the stream connects over TCP like any client.  A simulated day and a half with
injected campaigns is replayed as zeek-kafka JSON keyed by client, so it lands
on the topic's 4 partitions.  (The mock keeps only a few MB per partition and
drops older messages, so the producer compresses with lz4, as ``replay`` does.)
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import polars as pl
import pytest

from conftest import require_module  # fails in CI, skips elsewhere

confluent_kafka = require_module("confluent_kafka", reason="the kafka extra is not installed")

from dnsieve.config import Settings  # noqa: E402
from dnsieve.ingest.kafka import MockCluster, read_events, replay  # noqa: E402
from dnsieve.jobs import run_job  # noqa: E402
from dnsieve.lake import Lake  # noqa: E402
from dnsieve.simulate import simulate, write_zeek  # noqa: E402
from dnsieve.stream import KafkaSource, StreamRunner, StreamStatus  # noqa: E402
from test_stream import _settings, stored  # noqa: E402

FAST = {"group.protocol": "consumer"}  # KIP-848: first message in ~0.1 s on the mock


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> tuple[MockCluster, Path, int]:
    d = tmp_path_factory.mktemp("kafka")
    sim = simulate(hours=36, clients=40, seed=17)
    log = write_zeek(sim, d / "logs")["log"]
    mc = MockCluster()
    rep = replay([log], mc.bootstrap, "dns")
    assert rep.events == read_events([log])[0].height
    yield mc, log, rep.events
    mc.close()


def _stream(
    mc: MockCluster, group: str, tmp: Path, st: Settings, name: str, db: str
) -> tuple[StreamStatus, KafkaSource]:
    src = KafkaSource(mc.bootstrap, "dns", group, FAST)
    runner = StreamRunner(
        src, Lake.from_settings(st, tmp / f"lake_{name}"), tmp / f"ck_{name}", st,
        store_url=db, stop_when_idle=0.5,
    )  # fmt: skip
    try:
        status = runner.run()
    finally:
        src.close()
    return status, src


def _high_watermarks(mc: MockCluster) -> dict[str, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": mc.bootstrap, "group.id": "probe"})
    try:
        return {
            f"dns/{p}": c.get_watermark_offsets(TopicPartition("dns", p), timeout=120)[1]
            for p in range(4)
        }
    finally:
        c.close()


def _committed(mc: MockCluster, group: str) -> dict[str, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": mc.bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition("dns", p) for p in range(4)], timeout=120)
        return {f"dns/{tp.partition}": tp.offset for tp in got}
    finally:
        c.close()


def test_kafka_stream_gives_run_alerts(
    cluster: tuple[MockCluster, Path, int], tmp_path: Path
) -> None:
    mc, log, n = cluster
    st = _settings(batch=2500)
    db_run = f"sqlite:///{tmp_path / 'run.db'}"
    run_job([log], tmp_path / "lake_run", "auto", st, store_url=db_run)
    db = f"sqlite:///{tmp_path / 's.db'}"
    status, _ = _stream(mc, "parity", tmp_path, st, "s", db)
    assert status.events == n and status.late == 0 and status.rejected == 0
    a, b = stored(db_run), stored(db)
    assert a.height > 0
    assert a.drop("status").equals(b.drop("status"))
    # several partitions, each appended once, positions at the topic's end
    lake = Lake(tmp_path / "lake_s")
    pos = lake.stream_positions("kafka:dns/")
    assert pos == _high_watermarks(mc) and len(pos) == 4
    assert lake.scan().select(pl.len()).collect().item() == n
    # offsets are committed to the group once the alerts are stored
    assert _committed(mc, "parity") == pos


def test_groups_restart_from_committed_offsets(
    cluster: tuple[MockCluster, Path, int], tmp_path: Path
) -> None:
    mc, _, n = cluster
    st = _settings(batch=5000)
    db = f"sqlite:///{tmp_path / 's.db'}"
    first, _ = _stream(mc, "g-a", tmp_path, st, "a", db)
    assert first.events == n
    alerts = stored(db)
    # the same group without its checkpoint resumes from the committed offsets: nothing new
    shutil.rmtree(tmp_path / "ck_a")
    again, _ = _stream(mc, "g-a", tmp_path, st, "a", db)
    assert again.events == 0
    assert stored(db).drop("status").equals(alerts.drop("status"))
    # another group reads the whole topic on its own
    other, _ = _stream(mc, "g-b", tmp_path, st, "b", f"sqlite:///{tmp_path / 'b.db'}")
    assert other.events == n
    assert stored(f"sqlite:///{tmp_path / 'b.db'}").drop("status").equals(alerts.drop("status"))


def test_replaying_an_offset_range_writes_nothing_twice(
    cluster: tuple[MockCluster, Path, int], tmp_path: Path
) -> None:
    from dnsieve.stream import StreamCheckpoint

    mc, _, n = cluster
    st = _settings(batch=5000)
    db = f"sqlite:///{tmp_path / 's.db'}"
    _stream(mc, "g-r", tmp_path, st, "r", db)
    alerts = stored(db)
    rows = Lake(tmp_path / "lake_r").scan().select(pl.len()).collect().item()
    # rewind the checkpoint to the middle of every partition and run again
    cks = StreamCheckpoint(tmp_path / "ck_r")
    ck = cks.load()
    ck.positions = {k: v // 2 for k, v in ck.positions.items()}
    replayed = sum(v - v // 2 for v in _high_watermarks(mc).values())
    cks.save(ck)
    status, _ = _stream(mc, "g-r", tmp_path, st, "r", db)
    assert status.events == n + replayed  # the counters continue from the checkpoint
    assert status.late == replayed  # their hours are closed and scored: counted, not rescored
    assert Lake(tmp_path / "lake_r").scan().select(pl.len()).collect().item() == rows
    assert stored(db).drop("status").equals(alerts.drop("status"))


def test_replay_command_publishes_in_time_order(tmp_path: Path) -> None:
    from confluent_kafka import Consumer
    from typer.testing import CliRunner

    from dnsieve.cli import app

    sample = Path(__file__).parent / "data" / "zeek" / "brim_dns_head.log"
    n = read_events([sample])[0].height
    with MockCluster() as mc:
        r = CliRunner().invoke(
            app, ["replay", str(sample), "--kafka", mc.bootstrap, "--topic", "t1", "--rate", "5000"]
        )
        assert r.exit_code == 0, r.output
        assert f"published {n:,} events to t1" in r.output
        c = Consumer(
            {
                "bootstrap.servers": mc.bootstrap,
                "group.id": "check",
                "auto.offset.reset": "earliest",
            }
        )
        c.subscribe(["t1"])
        got = []
        deadline = time.monotonic() + 600  # a ceiling: the loop ends once all n arrived
        while len(got) < n and time.monotonic() < deadline:
            msgs = c.consume(1000, timeout=5)
            got += [m for m in msgs if m.error() is None]
        c.close()
    assert len(got) == n
    # per client (the message key), events are in time order
    by_client: dict[bytes, list[str]] = {}
    for m in got:
        by_client.setdefault(m.key(), []).append(json.loads(m.value())["ts"])
    assert all(ts == sorted(ts) for ts in by_client.values())
    bad = CliRunner().invoke(
        app, ["replay", str(tmp_path / "nope"), "--kafka", "x:1", "--topic", "t"]
    )
    assert bad.exit_code == 2 and "no such file" in bad.output


def test_demo_stream_fills_the_store_live(tmp_path: Path) -> None:
    from dnsieve.config import load_settings
    from dnsieve.demo import run_demo_stream

    st = load_settings(env={})
    st.stream.poll_seconds = 0.05
    seen: list[int] = []
    res = run_demo_stream(
        tmp_path, hours=30, clients=30, seed=3, settings=st, rate=20_000,
        on_status=lambda s: seen.append(s.alerts),
    )  # fmt: skip
    assert res.summary["replayed"] == res.events
    assert res.summary["stream"]["events"] == res.events
    assert res.truth is not None and res.truth.alerts > 0
    assert Lake(res.lake).scan().select(pl.len()).collect().item() == res.events
