"""``dnsieve model``: versions, rollback (re-scores open alerts) and score drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from typer.testing import CliRunner

from dnsieve.alerts.store import AlertStore
from dnsieve.cli import app
from dnsieve.commands.model import drift_from_store, rollback
from dnsieve.detectors.base import anomaly_frame


def _anomalies(n: int, start: datetime, loc: float, seed: int, detector: str) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    starts = [start + timedelta(hours=i) for i in range(n)]
    return anomaly_frame(
        detector,
        "domain",
        [f"d{seed}-{i}.example.com" for i in range(n)],
        starts,
        [s + timedelta(hours=1) for s in starts],
        rng.normal(loc, 1.0, n).tolist(),
        [1e-4] * n,
        [{"queries": 10}] * n,
    )


def test_drift_flags_a_shifted_detector_only(tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with AlertStore.open(f"sqlite:///{tmp_path / 'a.db'}") as store:
        store.upsert_anomalies(_anomalies(200, t0, 5.0, 1, "tunnel"))
        store.upsert_anomalies(_anomalies(150, t0 + timedelta(days=10), 9.0, 2, "tunnel"))
        store.upsert_anomalies(_anomalies(200, t0, 5.0, 3, "beacon"))
        store.upsert_anomalies(_anomalies(150, t0 + timedelta(days=10), 5.0, 4, "beacon"))
        store.upsert_anomalies(_anomalies(5, t0, 1.0, 5, "fastflux"))
        store.upsert_anomalies(_anomalies(5, t0 + timedelta(days=10), 9.0, 6, "fastflux"))
        rows = {r.name: r for r in drift_from_store(store, days=7)}
    assert rows["tunnel"].drifted
    assert not rows["beacon"].drifted
    assert not rows["fastflux"].drifted  # five scores a side: noise, not drift


def test_rollback_activates_and_rescores(tmp_path: Path) -> None:
    from dnsieve.alerts.feedback import apply_verdict

    db = f"sqlite:///{tmp_path / 'a.db'}"
    with AlertStore.open(db) as store:
        store.upsert_anomalies(_anomalies(20, datetime(2026, 1, 1, tzinfo=UTC), 5.0, 1, "tunnel"))
        ids = [a.id for a in store.list_alerts(status="all")]
        apply_verdict(store, ids[0], "threat", "ana")
        apply_verdict(store, ids[1], "benign", "ana")
        versions = store.list_model_versions()
        assert len(versions) == 2 and versions[0].active
        first = min(v.id for v in versions)
        version, n = rollback(store, first)
        assert version.id == first and n == 18
        assert store.active_model_version().id == first  # type: ignore[union-attr]
    res = CliRunner().invoke(app, ["model", "list", "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["model", "rollback", "999", "--db", db])
    assert res.exit_code == 2 and "no model version" in res.output
