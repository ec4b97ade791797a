"""Analyst verdict → online threat-model update → re-scored queue.

:func:`apply_verdict` is what ``dnsieve alerts verdict`` (and the web UI) call:

1. the verdict is recorded and audited in its own transaction first, so no
   model problem can ever lose it (``dnsieve train`` can always relearn from
   the audit trail);
2. the active threat model (the newest active version in the store's
   ``model_versions``, a :class:`dnsieve.threat.model.ThreatModel` blob; a
   fresh prior-only model when there is none yet) learns the verdict through
   :func:`dnsieve.threat.model.on_verdict`;
3. the updated model is saved as a new version whose parent is the old one
   (``dnsieve`` can roll back with
   :meth:`~dnsieve.alerts.base.AlertStoreProtocol.activate_model_version`);
4. every open alert (new, needs review) is re-scored with it, so the queue
   reflects the verdict at once.

Feature vectors: an alert's stored ``features`` (a mapping from
:data:`dnsieve.threat.features.FEATURE_NAMES` to values, written by the run
that stored it) when present, else computed from the alert's own row
(detector, score, p-value, evidence) by
:func:`dnsieve.threat.features.anomaly_features`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from dnsieve.alerts.base import (
    Alert,
    AlertStoreProtocol,
    ModelVersion,
    UpsertReport,
    VerdictResult,
    alerts_to_frame,
)

log = logging.getLogger(__name__)

__all__ = [
    "FeedbackOutcome",
    "apply_verdict",
    "feature_matrix",
    "learn_from_definitions",
    "learn_from_verdict",
    "load_active_model",
    "score_alerts",
    "score_and_store",
]


@dataclass
class FeedbackOutcome:
    """What :func:`apply_verdict` did."""

    verdict: VerdictResult
    model_version: ModelVersion | None = None
    probability: float | None = None
    rescored: int = 0
    model_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "alert": v.alert.to_dict(),
            "old_status": v.old_status,
            "new_status": v.new_status,
            "audit": v.audit.to_dict(),
            "model_version": self.model_version.id if self.model_version else None,
            "threat_probability": self.probability,
            "rescored": self.rescored,
            "model_error": self.model_error,
        }


def feature_matrix(alerts: Sequence[Alert]) -> npt.NDArray[np.float64]:
    """Feature rows for ``alerts``: stored vectors where present, computed otherwise."""
    from dnsieve.threat.features import FEATURE_NAMES, anomaly_features

    X = np.zeros((len(alerts), len(FEATURE_NAMES)))
    missing = [i for i, a in enumerate(alerts) if not a.features]
    for i, a in enumerate(alerts):
        if a.features:
            X[i] = [float(a.features.get(n) or 0.0) for n in FEATURE_NAMES]
    if missing:
        X[missing] = anomaly_features(alerts_to_frame([alerts[i] for i in missing]))
    return X


def load_active_model(store: AlertStoreProtocol) -> tuple[Any, ModelVersion | None]:
    """The active :class:`~dnsieve.threat.model.ThreatModel` and its version (a fresh one, None)."""
    from dnsieve.threat.model import ThreatModel

    version = store.active_model_version()
    if version is None or version.blob is None:
        return ThreatModel(), None
    return ThreatModel.from_bytes(version.blob), version


def learn_from_verdict(
    store: AlertStoreProtocol,
    verdict: VerdictResult,
    now: datetime | None = None,
    rescore: bool = True,
) -> FeedbackOutcome:
    """Steps 2–4 of the module doc for a verdict already recorded."""
    from dnsieve.threat.model import on_verdict

    now = now or datetime.now(UTC)
    out = FeedbackOutcome(verdict)
    model, parent = load_active_model(store)
    x = feature_matrix([verdict.alert])
    model = on_verdict(model, x[0], verdict.new_status, now)
    out.model_version = store.save_model_version(
        model.kind,
        model.metadata(),
        metrics={
            "trigger": "verdict",
            "alert_id": verdict.alert.id,
            "verdict": verdict.new_status,
            "actor": verdict.audit.actor,
        },
        blob=model.to_bytes(),
        parent_id=parent.id if parent else None,
        now=now,
    )
    out.probability = float(model.predict_proba(x)[0])
    updates = {verdict.alert.id: out.probability}
    if rescore:
        open_alerts = store.list_alerts(status="open", include_suppressed=True, now=now)
        if open_alerts:
            p = model.predict_proba(feature_matrix(open_alerts))
            updates.update({a.id: float(v) for a, v in zip(open_alerts, p, strict=True)})
    out.rescored = store.set_threat_probabilities(updates)
    return out


def apply_verdict(
    store: AlertStoreProtocol,
    alert_id: str,
    label: str,
    actor: str,
    comment: str | None = None,
    now: datetime | None = None,
    learn: bool = True,
) -> FeedbackOutcome:
    """Record an analyst's verdict, then let the threat model learn from it.

    Errors in the verdict itself (unknown id, invalid transition) raise; a
    failure of the model update is reported in ``model_error`` and leaves the
    recorded verdict in place.
    """
    result = store.record_verdict(alert_id, label, actor, comment, now)
    if not learn:
        return FeedbackOutcome(result)
    try:
        return learn_from_verdict(store, result, now)
    except Exception as exc:  # the verdict is stored; the model can relearn it later
        return FeedbackOutcome(result, model_error=f"{type(exc).__name__}: {exc}")


def score_alerts(
    store: AlertStoreProtocol,
    alerts: pl.DataFrame,
    events: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """``alerts`` plus ``threat_probability`` (active model) and ``features`` (JSON).

    ``events`` are the canonical events the alerts came from, for context
    features (first-seen age, distinct clients, NXDOMAIN and qtype mix).
    """
    from dnsieve.threat.features import FEATURE_NAMES, anomaly_features, entity_context

    if alerts.height == 0:
        return alerts.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("threat_probability"),
            pl.lit(None, dtype=pl.String).alias("features"),
        )
    context = entity_context(events) if events is not None else None
    X = anomaly_features(alerts, context=context)
    model, _ = load_active_model(store)
    p = model.predict_proba(X)
    feats = [dict(zip(FEATURE_NAMES, map(float, row), strict=True)) for row in X]
    return alerts.with_columns(
        pl.Series("threat_probability", [float(v) for v in p], dtype=pl.Float64),
        pl.Series("features", [json.dumps(f, sort_keys=True) for f in feats], dtype=pl.String),
    )


def score_and_store(
    store: AlertStoreProtocol,
    alerts: pl.DataFrame,
    events: pl.DataFrame | pl.LazyFrame | None = None,
    now: datetime | None = None,
) -> tuple[UpsertReport, pl.DataFrame]:
    """Score calibrated alerts with the active threat model (:func:`score_alerts`) and upsert them.

    Each stored alert carries its feature vector so later verdicts teach the
    model with the context the run saw.  Re-running is idempotent: ids hash
    (detector, entity, window), repeats merge and verdicts are kept.  Returns
    the upsert report and the scored frame.
    """
    scored = score_alerts(store, alerts, events)
    if scored.height == 0:
        return UpsertReport(), scored
    report = store.upsert_anomalies(scored, now=now)
    try:
        learn_from_definitions(store, scored, now)
    except Exception:  # the alerts are stored; a failed model update must not lose them
        log.exception("threat model: learning from definition hits failed")
    return report, scored


def learn_from_definitions(
    store: AlertStoreProtocol, scored: pl.DataFrame, now: datetime | None = None
) -> int:
    """Teach the active model the hits of the analysts' own definitions (issue 15, item 5).

    Every row a definition vouches for is a labelled positive weighted by the definition's
    confidence (its ``def_confidence`` feature): the definition's own alerts
    (``rule:<name>``), the detector anomalies an anomaly rule promoted, and the detector
    anomalies on a domain a definition matched in the same run.  The last are what lets
    the model generalise: it learns what the detectors' view of a confirmed threat looks
    like, and ranks similar detector alerts higher where no definition names them.  A row
    whose feature vector is already a positive label (a definition's or a verdict's) is
    skipped, so re-running a job teaches nothing twice.  Returns the number of labels
    added (0: no new model version is saved).
    """
    from dnsieve.threat.features import FEATURE_NAMES

    if scored.height == 0 or "features" not in scored.columns:
        return 0
    X = np.array(
        [[float(json.loads(f).get(n) or 0.0) for n in FEATURE_NAMES] for f in scored["features"]]
    )
    conf = X[:, FEATURE_NAMES.index("def_confidence")]
    if not (conf > 0).any():
        return 0
    model, parent = load_active_model(store)
    known = model.X_buf_[model.y_buf_ == 1]  # positives already learned, from either source
    fresh = [
        i
        for i in range(X.shape[0])
        if conf[i] > 0 and not (known.shape[0] and np.isclose(known, X[i]).all(axis=1).any())
    ]
    if not fresh:
        return 0
    now = now or datetime.now(UTC)
    model.partial_fit(X[fresh], [1] * len(fresh), now, weight=conf[fresh], source="definition")
    store.save_model_version(
        model.kind,
        model.metadata(),
        metrics={"trigger": "definitions", "labels": len(fresh)},
        blob=model.to_bytes(),
        parent_id=parent.id if parent else None,
        now=now,
    )
    open_alerts = store.list_alerts(status="open", include_suppressed=True, now=now)
    if open_alerts:  # as after a verdict: the queue reflects what the model now knows
        p = model.predict_proba(feature_matrix(open_alerts))
        store.set_threat_probabilities(
            {a.id: float(v) for a, v in zip(open_alerts, p, strict=True)}
        )
    return len(fresh)
