"""Crash safety of the one-shot job: ``kill -9`` during ``dnsieve run`` loses no
stored alert or verdict, and a re-run creates no duplicates and keeps every verdict.

The input is a simulated day (real-shaped traffic with injected campaigns), so
the run takes a few seconds and the kill lands in ingest, detection or storage
depending on the delay.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dnsieve.alerts.store import AlertStore
from dnsieve.simulate import simulate, write_zeek


def _run(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dnsieve.cli", "run", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_kill_9_during_run_loses_nothing(tmp_path: Path) -> None:
    sim = simulate(hours=48, clients=120, seed=11)
    log = write_zeek(sim, tmp_path / "logs")["log"]
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [str(log), "--db", db, "--lake", str(tmp_path / "lake")]

    first = _run(args, env)
    assert first.wait(timeout=600) == 0, first.stderr.read().decode() if first.stderr else ""
    with AlertStore.open(db) as store:
        before = {a.id: a for a in store.list_alerts(status="all", include_suppressed=True)}
        assert before, "the simulated campaigns must produce alerts"
        judged = sorted(before)[: min(3, len(before))]
        for i, aid in enumerate(judged):
            store.record_verdict(
                aid, ("threat", "benign", "not_relevant")[i % 3], "analyst", "kept"
            )
        audit_before = {aid: len(store.audit_trail(aid)) for aid in judged}

    # Kill re-runs of the same input at increasing delays: in ingest, in
    # detection and while storing.
    for delay in (0.5, 1.5, 3.0, 5.0):
        proc = _run(args, env)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=600)
        with AlertStore.open(db) as store:
            after = {a.id: a for a in store.list_alerts(status="all", include_suppressed=True)}
            assert set(after) == set(before), f"kill after {delay}s changed the stored alerts"
            for aid in judged:
                assert after[aid].status == store.get_alert(aid).status
                assert after[aid].status in ("threat", "benign", "not_relevant")
                assert len(store.audit_trail(aid)) == audit_before[aid]

    final = _run(args, env)
    assert final.wait(timeout=600) == 0
    with AlertStore.open(db) as store:
        again = {a.id: a for a in store.list_alerts(status="all", include_suppressed=True)}
        assert set(again) == set(before)  # no duplicates, nothing lost
        for i, aid in enumerate(judged):
            assert again[aid].status == ("threat", "benign", "not_relevant")[i % 3]
        assert all(again[a].times_seen >= 2 for a in judged)
