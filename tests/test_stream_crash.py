"""Exactly-once effect of ``dnsieve stream``: ``kill -9`` at any point, restart, same store.

``DNSIEVE_STREAM_CRASH_AT=point[:n]`` makes the stream SIGKILL itself the n-th
time it reaches ``point``: while consuming (after a micro-batch went into the
lake and the state, before its checkpoint), right after a checkpoint, while
scoring (detected, not stored), after storing (before the checkpoint that
records it), and between that checkpoint and the offset commit.  After each
crash a plain restart finishes the drain; the store must then hold exactly the
alerts of an uninterrupted stream, none lost, none duplicated, and the
verdicts an analyst gave between crash and restart must be kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from dnsieve.alerts.store import AlertStore
from dnsieve.lake import Lake
from dnsieve.simulate import simulate, write_zeek
from test_stream import shuffled_json, stored

VERDICTS = ("threat", "benign", "not_relevant")


def _stream(log: Path, d: Path, crash: str | None = None) -> int:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DNSIEVE_STREAM__MAX_BATCH_EVENTS": "2000",
        "DNSIEVE_STREAM__POLL_SECONDS": "0.05",
    }
    env.pop("DNSIEVE_STREAM_CRASH_AT", None)
    if crash:
        env["DNSIEVE_STREAM_CRASH_AT"] = crash
    args = [
        sys.executable, "-m", "dnsieve.cli", "stream", "--follow", str(log),
        "--checkpoint", str(d / "ck"), "--lake", str(d / "lake"),
        "--db", f"sqlite:///{d / 'alerts.db'}", "--stop-when-idle", "0.3", "--json",
    ]  # fmt: skip
    proc = subprocess.run(args, env=env, capture_output=True, timeout=600)
    if proc.returncode not in (0, -9):
        raise AssertionError(proc.stderr.decode()[-3000:])
    return proc.returncode


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, int]:
    d = tmp_path_factory.mktemp("ref")
    sim = simulate(hours=36, clients=40, seed=29)
    log = d / "dns.json"
    shuffled_json(write_zeek(sim, d / "logs")["log"], log)
    assert _stream(log, d) == 0
    alerts = stored(f"sqlite:///{d / 'alerts.db'}")
    assert alerts.height > 0, "the simulated campaigns must produce alerts"
    rows = Lake(d / "lake").scan().select(pl.len()).collect().item()
    return log, alerts, rows


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    ["consumed:3", "checkpointed:5", "detected", "stored", "checkpointed_scored"],
)
def test_kill_9_then_restart_gives_the_uninterrupted_alerts(
    point: str, reference: tuple[Path, pl.DataFrame, int], tmp_path: Path
) -> None:
    log, ref, rows = reference
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    assert _stream(log, tmp_path, crash=point) == -9
    judged: dict[str, str] = {}
    if (tmp_path / "alerts.db").exists():
        with AlertStore.open(db) as store:
            ids = sorted(a.id for a in store.list_alerts(status="all", include_suppressed=True))
            for i, aid in enumerate(ids[:3]):
                judged[aid] = VERDICTS[i % 3]
                store.record_verdict(
                    aid, judged[aid], "analyst", "judged between crash and restart"
                )
    if point in ("stored", "checkpointed_scored"):
        assert judged, "alerts are in the store once the crash point is past storing"
    assert _stream(log, tmp_path) == 0
    got = stored(db)
    assert got.drop("status").equals(ref.drop("status"))  # none lost, none duplicated
    for aid, verdict in judged.items():
        assert got.filter(pl.col("id") == aid)["status"].item() == verdict
    assert Lake(tmp_path / "lake").scan().select(pl.len()).collect().item() == rows
