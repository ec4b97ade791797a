"""Beacons, volume spikes and masquerades found at 200 and 2,000 hosts on
simulated weeks (issue 11, §1): the same detectors and calibration, no
setting changed with the size.

The simulator injects beacons (60-3,600 s periods, up to 30 % jitter),
masquerades and volume spikes of ×3-×28 among benign anomalies.  Spikes of
about ×3 add 11-38 queries over a few hours: p ≈ 1e-2-1e-4 under the domain's
own baseline, inside the benign noise of a week (docs/volume.md), so only
spikes of ×8 and more are required here, and half the masquerades.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from dnsieve.config import DetectSettings
from dnsieve.lake import Lake
from dnsieve.pipeline import detect
from dnsieve.simulate import simulate, write_zeek

DETECTORS = ["beacon", "volume", "visitors"]


def _run(tmp: Path, clients: int, hours: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    sim = simulate(hours=hours, clients=clients, seed=seed)
    paths = write_zeek(sim, tmp / "logs")
    lake = Lake(tmp / "lake")
    lake.ingest_files([paths["log"]], "auto", {})
    span = lake.time_range()
    assert span is not None
    res = detect(
        lake,
        settings=DetectSettings.model_validate({}),
        detectors=DETECTORS,
        until=span[1] + timedelta(seconds=1),
    )
    return res.alerts, pl.read_csv(paths["labels"])


def _alerted(alerts: pl.DataFrame, detectors: set[str]) -> set[str]:
    """Entities of the alerts, with a ``client|domain`` alert's parts too."""
    out: set[str] = set()
    for det, ent in alerts.select("detector", "entity").iter_rows():
        if det in detectors:
            out |= {ent, *ent.split("|")}
    return out


def _check(alerts: pl.DataFrame, labels: pl.DataFrame) -> None:
    beacons = set(labels.filter(pl.col("kind") == "beacon")["entity"])
    assert beacons, "the simulation injected no beacon"
    got_beacons = set(alerts.filter(pl.col("detector") == "beacon")["entity"])
    assert beacons <= got_beacons, sorted(beacons - got_beacons)
    assert got_beacons <= beacons, sorted(got_beacons - beacons)  # no beacon on benign software
    masq = set(labels.filter(pl.col("kind") == "masquerade")["entity"])
    got = _alerted(alerts, {"volume", "visitors"})
    # at 200 hosts a masquerade reaches 7-10 hosts in a few hours, at the
    # visitors floor (docs/detectors.md): most, not all, are required
    assert len(masq & got) >= 0.5 * len(masq), sorted(masq - got)
    spikes = labels.filter(pl.col("kind") == "volume_spike")
    big = {
        e
        for e, d in spikes.select("entity", "description").iter_rows()
        if int(re.search(r"x(\d+)", d).group(1)) >= 8  # type: ignore[union-attr]
    }
    assert big <= got, sorted(big - got)
    # every alert carries the evidence contract
    for text in alerts["evidence"]:
        ev = json.loads(text)
        assert ev["reason"] and isinstance(ev["clients"], list)
        assert len(ev["clients"]) <= 5


def test_beacons_and_spikes_at_200_hosts(tmp_path: Path) -> None:
    alerts, labels = _run(tmp_path, clients=200, hours=168, seed=11)
    _check(alerts, labels)


@pytest.mark.slow
def test_beacons_and_spikes_at_2000_hosts(tmp_path: Path) -> None:
    alerts, labels = _run(tmp_path, clients=2000, hours=120, seed=12)
    _check(alerts, labels)
