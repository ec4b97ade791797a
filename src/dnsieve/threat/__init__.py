"""Threat model: which anomalies are threats *for this user* (ARCHITECTURE §6).

* :mod:`~dnsieve.threat.features` — anomaly rows → fixed-layout feature vectors;
* :mod:`~dnsieve.threat.model` — P(threat): zero-label prior + online linear or
  MLP correction, verdict decay, drift report, safe versioned serialisation;
* :mod:`~dnsieve.threat.active` — the "needs review" queue (uncertainty × impact);
* :mod:`~dnsieve.threat.training` — initial training from a labels CSV or past verdicts.
"""

from __future__ import annotations

from dnsieve.threat.active import impact, next_to_review, review_priority, uncertainty
from dnsieve.threat.features import FEATURE_NAMES, TopList, anomaly_features, entity_context
from dnsieve.threat.model import (
    ModelFormatError,
    ThreatModel,
    decay_weights,
    drift_report,
    label_value,
    on_verdict,
    score_drift,
)
from dnsieve.threat.training import (
    label_anomalies,
    read_labels,
    train_from_labels,
    train_from_verdicts,
)

__all__ = [
    "FEATURE_NAMES",
    "ModelFormatError",
    "ThreatModel",
    "TopList",
    "anomaly_features",
    "decay_weights",
    "drift_report",
    "entity_context",
    "impact",
    "label_anomalies",
    "label_value",
    "next_to_review",
    "on_verdict",
    "read_labels",
    "review_priority",
    "score_drift",
    "train_from_labels",
    "train_from_verdicts",
    "uncertainty",
]
