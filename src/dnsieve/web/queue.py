"""Queries behind the Alert Manager's pages and API, on the alert store's engine.

The store's own :meth:`~dnsieve.alerts.store.AlertStore.list_alerts` serves the
CLI; the web queue also needs severity order, domain/client filters, a search
box and a total for pagination, so :func:`list_queue` builds that query with
SQLAlchemy Core against the store's tables (read-only).  Writes that the store
has no method for (ending an allow-list entry now, re-scoring after a model
rollback) are here too, each in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa

from dnsieve.alerts.base import Alert, AllowEntry, ModelVersion, status_filter
from dnsieve.alerts.store import AlertStore, metadata
from dnsieve.threat.allowlist import AllowListError

__all__ = [
    "SORTS",
    "QueueQuery",
    "expire_allow",
    "feature_percentiles",
    "list_queue",
    "related_alerts",
    "review_queue",
    "rollback_model",
]

SortKey = Literal["threat", "newest", "severity", "score"]
SORTS: tuple[str, ...] = ("threat", "newest", "severity", "score")

log = logging.getLogger(__name__)

_A = metadata.tables["alerts"].c
_ALERTS = metadata.tables["alerts"]
_ALLOW = metadata.tables["allowlist"]
_S = _ALLOW.alias("sup")


@dataclass(frozen=True)
class QueueQuery:
    """Filters, order and page of the alert queue."""

    status: str = "open"
    detector: str | None = None
    domain: str | None = None
    client: str | None = None
    search: str | None = None
    sort: SortKey = "threat"
    page: int = 1
    per_page: int = 50
    include_suppressed: bool = False


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _active_sup(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        _A.suppressed_by.is_not(None),
        _S.c.id.is_not(None),
        _S.c.removed_at.is_(None),
        sa.or_(_S.c.expires_at.is_(None), _S.c.expires_at > now),
    )


def _base(now: datetime) -> sa.Select[Any]:
    supp = sa.case((_active_sup(now), True), else_=False).label("suppressed")
    return sa.select(_ALERTS, supp).select_from(_ALERTS.outerjoin(_S, _S.c.id == _A.suppressed_by))


def _where(q: QueueQuery, now: datetime) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    statuses = status_filter(q.status or "open")
    if statuses is not None:
        conds.append(_A.status.in_(statuses))
    if q.detector:
        conds.append(_A.detector == q.detector)
    if q.domain:
        d = q.domain.strip().lower().rstrip(".")
        conds.append(sa.or_(_A.domain == d, _A.domain.like("%." + _escape_like(d), escape="\\")))
    if q.client:
        conds.append(_A.client == q.client.strip())
    if q.search:
        pat = "%" + _escape_like(q.search.strip().lower()) + "%"
        conds.append(
            sa.or_(
                sa.func.lower(_A.entity).like(pat, escape="\\"),
                _A.id.like(_escape_like(q.search.strip().lower()) + "%", escape="\\"),
            )
        )
    if not q.include_suppressed:
        conds.append(sa.not_(_active_sup(now)))
    return conds


def _order(sort: str) -> list[Any]:
    sev = sa.case(
        (_A.severity == "critical", 3),
        (_A.severity == "high", 2),
        (_A.severity == "medium", 1),
        else_=0,
    )
    tp = _A.threat_probability.desc().nulls_last()
    if sort == "newest":
        return [_A.window_start.desc(), _A.score.desc(), _A.id]
    if sort == "severity":
        return [sev.desc(), tp, _A.score.desc(), _A.id]
    if sort == "score":
        return [_A.score.desc(), _A.id]
    return [tp, _A.score.desc(), _A.window_start.desc(), _A.id]


def list_queue(
    store: AlertStore, q: QueueQuery, now: datetime | None = None
) -> tuple[list[Alert], int]:
    """One page of the queue and the number of matching alerts."""
    from dnsieve.alerts.store import _alert

    now = now or datetime.now(UTC)
    conds = _where(q, now)
    per = max(1, min(q.per_page, 500))
    page = max(1, q.page)
    rows = _base(now).where(*conds).order_by(*_order(q.sort)).limit(per).offset((page - 1) * per)
    total = (
        sa.select(sa.func.count())
        .select_from(_ALERTS.outerjoin(_S, _S.c.id == _A.suppressed_by))
        .where(*conds)
    )
    with store.engine.connect() as conn:
        items = [_alert(r) for r in conn.execute(rows).mappings()]
        n = int(conn.execute(total).scalar_one())
    return items, n


def detectors(store: AlertStore) -> list[str]:
    """The detectors that have alerts (for the filter menu)."""
    with store.engine.connect() as conn:
        q = sa.select(_A.detector).distinct().order_by(_A.detector)
        return [str(d) for d in conn.execute(q).scalars()]


def related_alerts(
    store: AlertStore, alert: Alert, limit: int = 25, now: datetime | None = None
) -> list[Alert]:
    """Other alerts on the same entity, domain or client, newest first."""
    from dnsieve.alerts.store import _alert

    now = now or datetime.now(UTC)
    same = [_A.entity == alert.entity]
    if alert.domain:
        same.append(_A.domain == alert.domain)
    if alert.client:
        same.append(_A.client == alert.client)
    q = (
        _base(now)
        .where(sa.or_(*same), _A.id != alert.id)
        .order_by(_A.window_start.desc(), _A.id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [_alert(r) for r in conn.execute(q).mappings()]


def review_queue(store: AlertStore, k: int = 50, pool: int = 2000) -> list[tuple[Alert, float]]:
    """The "needs review" queue: alerts marked ``needs_review`` first, then the open alerts
    whose verdict would teach the threat model most (:func:`dnsieve.threat.active.next_to_review`).

    Returns ``(alert, priority)`` pairs; ``pool`` bounds how many open alerts are ranked.
    """
    from dnsieve.alerts.feedback import feature_matrix, load_active_model
    from dnsieve.threat.active import impact, next_to_review, review_priority

    flagged = store.list_alerts(status="needs_review", limit=k)
    out: list[tuple[Alert, float]] = [(a, float("inf")) for a in flagged]
    if len(out) >= k:
        return out
    cand = store.list_alerts(status="new", limit=pool)
    if not cand:
        return out
    stored = np.array(
        [a.threat_probability if a.threat_probability is not None else np.nan for a in cand]
    )
    X: np.ndarray | None = None
    try:
        X = feature_matrix(cand)
        model, _ = load_active_model(store)
        p = np.where(np.isnan(stored), model.predict_proba(X), stored)
        imp = impact(X)
    except Exception:  # a broken model must not take the queue down: rank on what is stored
        log.exception("review queue: threat-model features failed; ranking on stored P(threat)")
        p = np.where(np.isnan(stored), 0.5, stored)
        imp = np.array([1.0 + np.log1p(max(a.score, 0.0)) for a in cand])
        X = None
    pri = review_priority(p, imp)
    # Features let the queue skip near-duplicates (the same campaign in ten windows).
    for i in next_to_review(p, imp, k - len(out), features=X):
        out.append((cand[int(i)], float(pri[int(i)])))
    return out


def feature_percentiles(
    store: AlertStore, alert: Alert, sample: int = 1000
) -> list[tuple[str, float, float | None]]:
    """``(feature, value, percentile among recent alerts of the same detector)`` rows."""
    from dnsieve.alerts.feedback import feature_matrix
    from dnsieve.threat.features import FEATURE_NAMES

    peers = store.list_alerts(
        status="all", detector=alert.detector, limit=sample, order="recent", include_suppressed=True
    )
    try:
        x = feature_matrix([alert])[0]
        P = feature_matrix(peers) if len(peers) > 1 else None
    except Exception:  # shown as "unavailable" on the page rather than failing it
        log.exception("feature values of alert %s could not be computed", alert.id)
        return []
    rows: list[tuple[str, float, float | None]] = []
    for j, name in enumerate(FEATURE_NAMES):
        pct = None
        if P is not None:
            col = P[:, j]
            pct = float(100.0 * (np.sum(col < x[j]) + 0.5 * np.sum(col == x[j])) / col.size)
        rows.append((name, float(x[j]), pct))
    return rows


def expire_allow(
    store: AlertStore, entry_id: int, at: datetime | None = None, now: datetime | None = None
) -> AllowEntry:
    """End an allow-list entry at ``at`` (default now), keeping it as history.

    The alerts it suppressed are re-matched in the same transaction, so they
    fall back to another active entry or come back to the queue at once.
    """
    now = now or datetime.now(UTC)
    at = at or now
    if at < now:
        raise AllowListError("an expiry cannot be set in the past")
    with store._write() as conn:
        row = conn.execute(sa.select(_ALLOW).where(_ALLOW.c.id == entry_id)).mappings().first()
        if row is None:
            from dnsieve.alerts.base import AlertNotFound

            raise AlertNotFound(f"no allow-list entry {entry_id}")
        if row["removed_at"] is not None:
            raise AllowListError(f"allow-list entry {entry_id} was removed")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise AllowListError(f"allow-list entry {entry_id} has already expired")
        conn.execute(sa.update(_ALLOW).where(_ALLOW.c.id == entry_id).values(expires_at=at))
        # re-match (at == now: the entry is no longer active; later: the longest-lasting wins)
        store._reevaluate(conn, _A.suppressed_by == entry_id, now)
    entry = next(e for e in store.list_allow(include_inactive=True) if e.id == entry_id)
    return entry


def rollback_model(store: AlertStore, version_id: int) -> tuple[ModelVersion, int]:
    """Make an older threat-model version active and re-score the open alerts with it."""
    from dnsieve.alerts.feedback import feature_matrix, load_active_model

    version = store.activate_model_version(version_id)
    model, _ = load_active_model(store)
    open_alerts = store.list_alerts(status="open", include_suppressed=True)
    if not open_alerts or version.blob is None:
        return version, 0
    p = model.predict_proba(feature_matrix(open_alerts))
    n = store.set_threat_probabilities(
        {a.id: float(v) for a, v in zip(open_alerts, p, strict=True)}
    )
    return version, n
