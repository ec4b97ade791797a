"""MITRE ATT&CK technique ids: every built-in detector carries them, alerts and ECS exports too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dnsieve.detectors import available, get
from dnsieve.pipeline import with_techniques

TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", available())
def test_every_builtin_detector_names_its_techniques(name: str) -> None:
    techniques = get(name).techniques
    assert techniques, f"{name} carries no ATT&CK technique"
    assert all(TECHNIQUE.match(t) for t in techniques), techniques


def test_run_writes_them_into_evidence_and_ecs(tmp_path: Path) -> None:
    from dnsieve.alerts.export import to_ecs
    from dnsieve.alerts.store import AlertStore
    from dnsieve.jobs import run_job

    db = f"sqlite:///{tmp_path / 'a.db'}"
    pcaps = DATA / "pcap"
    run_job(sorted(pcaps.glob("*.pcap")), tmp_path / "lake", store_url=db)
    with AlertStore.open(db) as store:
        stored = list(store.iter_alerts())
    for a in stored:
        if a.detector.startswith("rule:"):
            continue
        assert a.evidence.get("techniques") == list(get(a.detector).techniques)
        doc = to_ecs(a)
        assert doc["threat"]["technique"]["id"] == list(get(a.detector).techniques)
        assert doc["threat"]["framework"] == "MITRE ATT&CK"


def test_with_techniques_keeps_the_evidence() -> None:
    import polars as pl

    df = pl.DataFrame({"evidence": ['{"reason": "x", "n": 3}', "{}", None]})
    out = [json.loads(e) for e in with_techniques(df, ("T1071.004",))["evidence"]]
    assert out == [
        {"techniques": ["T1071.004"], "reason": "x", "n": 3},
        {"techniques": ["T1071.004"]},
        {"techniques": ["T1071.004"]},
    ]
