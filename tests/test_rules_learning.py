"""Threat definitions teach the threat model (issue 15, item 5).

A definition's hits are labelled positives weighted by its confidence; the feature vector
says which rows a definition matched (``det_rule``, ``def_confidence``); the prior never
ranks a definition's own hit below its confidence; re-running teaches nothing twice; the
model page shows where the top of the queue comes from.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dnsieve.alerts.feedback import apply_verdict, learn_from_definitions, score_and_store
from dnsieve.alerts.store import AlertStore
from dnsieve.rules.evaluate import apply_anomaly_rules
from dnsieve.threat.features import FEATURE_NAMES, anomaly_features
from dnsieve.threat.metrics import queue_sources
from test_alert_store import T0, one

DEF = FEATURE_NAMES.index("def_confidence")


def frame() -> pl.DataFrame:
    """A watchlist hit on one domain (confidence 0.8), a tunnel anomaly on the same domain,
    and unrelated detector anomalies."""
    return pl.concat(
        [
            one("c2-relay.example", detector="rule:ioc-feed", score=0.8, p_value=None),
            one("c2-relay.example", detector="tunnel", score=12.0),
            one("cdn-images.example", detector="volume", score=4.0),
            one("backup-sync.example", detector="newdomain", score=3.0),
        ],
        how="diagonal_relaxed",
    )


def test_features_say_which_rows_a_definition_matched() -> None:
    X = anomaly_features(frame(), lexical=False)
    assert X[0, FEATURE_NAMES.index("det_rule")] == 1.0
    assert X[0, FEATURE_NAMES.index("det_other")] == 0.0
    assert X[:, DEF].tolist() == [0.8, 0.8, 0.0, 0.0]


def test_anomaly_rules_carry_their_confidence() -> None:
    class Rule:
        kind = "anomaly"
        name = "big-tunnels"
        body = "detector == 'tunnel' and score > 10"
        severity = "high"
        confidence = 0.7

    marked = apply_anomaly_rules([Rule()], frame())
    assert marked["rule_confidence"].to_list() == [0.0, 0.7, 0.0, 0.0]
    X = anomaly_features(marked, lexical=False)
    assert X[1, DEF] == pytest.approx(0.8)  # the watchlist hit on its domain is surer


def test_definition_hits_teach_the_model_once(tmp_path: Path) -> None:
    with AlertStore.open(f"sqlite:///{tmp_path / 'a.db'}") as store:
        _report, scored = score_and_store(store, frame())
        p = dict(zip(scored["detector"], scored["threat_probability"], strict=True))
        assert p["rule:ioc-feed"] >= 0.8  # never below the analyst's own confidence
        versions = store.list_model_versions()
        assert len(versions) == 1 and versions[0].metrics["trigger"] == "definitions"
        meta = versions[0].params
        assert meta["n_definition_labels"] == 2 and meta["n_verdicts"] == 0
        # the same run again: nothing new to learn, no new version
        score_and_store(store, frame())
        assert len(store.list_model_versions()) == 1
        assert learn_from_definitions(store, scored) == 0
        # a verdict on a rule hit is a verdict like any other
        hit = next(a for a in store.list_alerts() if a.detector == "rule:ioc-feed")
        out = apply_verdict(store, hit.id, "benign", actor="analyst")
        assert out.model_version is not None
        assert out.model_version.params["n_verdicts"] == 1


def test_definition_labels_raise_similar_detector_alerts(tmp_path: Path) -> None:
    """Twenty watchlist hits on tunnel domains, then a fresh tunnel anomaly on a domain no
    definition names: the labelled hits lift what the model thinks of the detector's
    similar alerts, against a store that never saw the definitions."""
    hits = [
        one(f"relay{i}.example", detector="tunnel", score=12.0 + i % 3, start=T0) for i in range(20)
    ]
    rules = [
        one(f"relay{i}.example", detector="rule:c2-list", score=0.9, p_value=None)
        for i in range(20)
    ]
    probe = one("unnamed-relay.example", detector="tunnel", score=13.0, start=T0 + timedelta(1))
    with (
        AlertStore.open(f"sqlite:///{tmp_path / 'taught.db'}") as taught,
        AlertStore.open(f"sqlite:///{tmp_path / 'plain.db'}") as plain,
    ):
        score_and_store(taught, pl.concat([*hits, *rules], how="diagonal_relaxed"))
        score_and_store(plain, pl.concat(hits, how="diagonal_relaxed"))
        _r, a = score_and_store(taught, probe)
        _r, b = score_and_store(plain, probe)
        assert taught.list_model_versions()[0].params["n_definition_labels"] == 40
        assert float(a["threat_probability"][0]) > float(b["threat_probability"][0])


def test_queue_sources_split_the_top(tmp_path: Path) -> None:
    with AlertStore.open(f"sqlite:///{tmp_path / 'q.db'}") as store:
        score_and_store(store, frame())
        (s10,) = queue_sources(store, (10,))
        assert (s10.definitions, s10.matched, s10.detectors, s10.total) == (1, 1, 2, 4)
        top = store.list_alerts(limit=2)
        assert {a.detector for a in top} >= {"rule:ioc-feed"}
        assert np.isfinite([a.threat_probability for a in top]).all()
