"""Queries behind the Alert Manager's pages and API, through the alert store's public API.

The store's own :meth:`~dnsieve.alerts.store.AlertStore.list_alerts` serves the
CLI; the web queue also needs severity order, domain/client filters, a search
box and a total for pagination, so :func:`list_queue` adds those conditions to
:meth:`~dnsieve.alerts.store.AlertStore.select_summaries` (read-only) and orders
by the store's indexed sort keys.  Pages are read with ``OFFSET`` or, given the
id of the last alert seen (``after``), with a keyset condition whose cost does
not grow with the page number.  The total of a queue filtered by status and
detector only comes from the store's cached counts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa

from dnsieve.alerts.base import Alert, AlertSummary, AllowEntry, ModelVersion, status_filter
from dnsieve.alerts.store import AlertStore, metadata
from dnsieve.explain import Explanation, explain

__all__ = [
    "SORTS",
    "Campaign",
    "QueueQuery",
    "detectors",
    "expire_allow",
    "feature_percentiles",
    "list_campaigns",
    "list_queue",
    "queue_explanations",
    "related_alerts",
    "review_queue",
    "rollback_model",
]

SortKey = Literal["threat", "newest", "severity", "score"]
SORTS: tuple[str, ...] = ("threat", "newest", "severity", "score")

log = logging.getLogger(__name__)

_A = metadata.tables["alerts"].c
_HEX = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True)
class QueueQuery:
    """Filters, order and page of the alert queue.

    ``after`` (an alert id) asks for the page that follows that alert in
    ``sort`` order, instead of page number ``page``.
    """

    status: str = "open"
    detector: str | None = None
    domain: str | None = None
    client: str | None = None
    search: str | None = None
    sort: SortKey = "threat"
    page: int = 1
    per_page: int = 50
    include_suppressed: bool = False
    after: str | None = None
    group: Literal["campaign"] | None = None
    entity: str | None = None


def _where(q: QueueQuery, now: datetime, store: AlertStore) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    statuses = status_filter(q.status or "open")
    if statuses is not None:
        conds.append(store.status_in(statuses))
    if q.detector:
        # not index-usable on purpose: the page walks the sort order's index and skips other
        # detectors, instead of sorting all of this detector's alerts
        conds.append(_A.detector.concat("") == q.detector)
    if q.domain:
        conds.append(store.domain_or_below(q.domain))
    if q.client:
        conds.append(_A.client == q.client.strip())
    if q.entity:  # exact (a campaign's windows), through the entity index
        conds.append(_A.entity == q.entity)
    if q.search:
        term = q.search.strip().lower()
        found = store.entity_contains(term)
        if _HEX.fullmatch(term):  # an id prefix, as a primary-key range
            found = sa.or_(found, sa.and_(_A.id >= term, _A.id < term + "g"))
        conds.append(found)
    if not q.include_suppressed:
        conds.append(AlertStore.not_suppressed(now))
    return conds


@dataclass(frozen=True)
class Campaign:
    """The alerts (episodes) of one detector on one entity, as one row of the queue:
    ``windows`` counts the windows of all of them, and the span is theirs."""

    detector: str
    entity_type: str
    entity: str
    windows: int
    first_start: datetime
    last_end: datetime
    threat_probability: float | None
    score: float
    p_value: float | None = None  # the rarest window's calibrated tail probability


def list_campaigns(
    store: AlertStore, q: QueueQuery, now: datetime | None = None
) -> tuple[list[Campaign], int]:
    """The queue's alerts grouped by detector × entity: one page of campaigns and their number.

    The same filters as :func:`list_queue`.  Campaigns are ordered by their highest
    P(threat) (unscored last), then highest score: a tunnel seen in twenty hourly windows is
    one row, ranked by its worst window.  Grouping reads every matching alert in one pass
    (the number of campaigns comes from a window function over the groups), so on a very
    large store it costs a scan of the filtered alerts: 0.6 s for the 14k tunnel alerts
    of the 1M-alert benchmark store, 5.5 s for all of its 1M (SQLite, this 2-core
    machine under load).  Filters (detector, status, domain) keep it short.
    """
    now = now or datetime.now(UTC)
    conds = _where(q, now, store)
    per = max(1, min(q.per_page, 500))
    p_max = sa.func.max(_A.threat_probability)
    s_max = sa.func.max(_A.score)
    keys = (_A.detector, _A.entity_type, _A.entity)
    rows = (
        sa.select(
            *keys,
            sa.func.sum(_A.n_windows).label("windows"),  # an alert is an episode
            sa.func.min(sa.func.coalesce(_A.episode_start, _A.window_start)).label("first_start"),
            sa.func.max(sa.func.coalesce(_A.episode_end, _A.window_end)).label("last_end"),
            p_max.label("threat_probability"),
            s_max.label("score"),
            sa.func.min(_A.p_value).label("p_value"),
            sa.func.count().over().label("_total"),  # groups in all, in the same pass
        )
        .where(*conds)
        .group_by(*keys)
        .order_by(p_max.desc().nulls_last(), s_max.desc(), *keys)
        .limit(per)
        .offset((max(1, q.page) - 1) * per)
    )
    with store.engine.connect() as conn:
        got = [dict(r) for r in conn.execute(rows).mappings()]
        if got:
            total = int(got[0].pop("_total"))
            for r in got[1:]:
                del r["_total"]
        else:  # a page past the end: count the groups on their own
            grouped = sa.select(*keys).where(*conds).group_by(*keys).subquery()
            total = int(conn.execute(sa.select(sa.func.count()).select_from(grouped)).scalar_one())
    items = [Campaign(**r) for r in got]
    return items, total


def list_queue(
    store: AlertStore, q: QueueQuery, now: datetime | None = None
) -> tuple[list[AlertSummary], int]:
    """One page of the queue (alerts without their evidence and features documents, which
    only an alert's own page shows) and the number of matching alerts."""
    now = now or datetime.now(UTC)
    conds = _where(q, now, store)
    per = max(1, min(q.per_page, 500))
    rows = store.select_summaries(now).where(*conds).order_by(*store.order_keys(q.sort))
    rows = rows.limit(per)
    if q.after:
        rows = rows.where(store.after_alert(q.sort, q.after))
    else:
        rows = rows.offset((max(1, q.page) - 1) * per)
    if not (q.domain or q.client or q.search or q.entity):
        # the page walks the order's index; the total is the cached counts'
        items = store.fetch_summaries(rows)
        return items, store.count_alerts(q.status or "open", q.include_suppressed, now, q.detector)
    # a domain or a search: their index (trigram, reversed domain) finds every match before
    # the sort, so the same pass counts them (past the end, or after a keyset: counted alone).
    # Not for a client or an entity: their plans may walk the order's index up to the LIMIT.
    if q.after or not (q.domain or q.search):
        return store.fetch_summaries(rows), store.count_where(*conds)
    items, counted = store.fetch_summaries_counted(rows)
    if counted is None:  # no row to read it from
        counted = store.count_where(*conds) if q.page > 1 else 0
    return items, counted


def queue_explanations(
    store: AlertStore, items: Sequence[AlertSummary | Alert]
) -> dict[str, Explanation]:
    """The reason sentence and clients of each alert of a queue page, by alert id.

    A page's summaries carry no evidence (the queue's query stays off that column);
    the page's own evidence is read here in one primary-key look-up of its ids.
    """
    evidence: dict[str, Any] = {a.id: a.evidence for a in items if isinstance(a, Alert)}
    ids = [a.id for a in items if a.id not in evidence]
    if ids:
        q = sa.select(_A.id, _A.evidence).where(_A.id.in_(ids))
        with store.engine.connect() as conn:
            evidence.update({r.id: r.evidence for r in conn.execute(q)})
    out: dict[str, Explanation] = {}
    for a in items:
        hours = (a.window_end - a.window_start).total_seconds() / 3600.0
        ev = evidence.get(a.id)
        out[a.id] = explain(
            a.detector, a.entity, ev if isinstance(ev, dict) else None, a.entity_type, hours
        )
    return out


def detectors(store: AlertStore) -> list[str]:
    """The detectors that have alerts (for the filter menu)."""
    return store.detector_names()


def related_alerts(
    store: AlertStore,
    alert: Alert,
    limit: int = 25,
    now: datetime | None = None,
    clients: Sequence[str] = (),
) -> list[Alert]:
    """Other alerts on the same entity, domain or client, newest first.

    ``clients`` (the clients the alert's reason names, :func:`dnsieve.explain.explain`)
    adds their alerts: a DGA name's infected host, a tunnel's sender.
    """
    same = [_A.entity == alert.entity]
    if alert.domain:
        same.append(_A.domain == alert.domain)
    if alert.client:
        same.append(_A.client == alert.client)
    same += [_A.client == c for c in dict.fromkeys(clients) if c and c != alert.client]
    q = (
        store.select_alerts(now)
        .where(sa.or_(*same), _A.id != alert.id)
        .order_by(_A.window_start.desc(), _A.id)
        .limit(limit)
    )
    return store.fetch_alerts(q)


def review_queue(store: AlertStore, k: int = 50, pool: int = 2000) -> list[tuple[Alert, float]]:
    """The "needs review" queue: alerts marked ``needs_review`` first, then the open alerts
    whose verdict would teach the threat model most (:func:`dnsieve.threat.active.next_to_review`).

    Returns ``(alert, priority)`` pairs; ``pool`` bounds how many open alerts are ranked.
    """
    from dnsieve.alerts.base import VERDICTS
    from dnsieve.alerts.feedback import feature_matrix, load_active_model
    from dnsieve.threat.active import impact, next_to_review, review_priority

    flagged = store.list_alerts(status="needs_review", limit=k)
    out: list[tuple[Alert, float]] = [(a, float("inf")) for a in flagged]
    if len(out) >= k:
        return out
    cand = store.list_alerts(status="new", limit=pool)
    if not cand:
        return out
    # The judged alerts go in too, excluded from the choice: they set the plan's question
    # number (so every few questions explore instead of always asking about the top) and
    # damp their near-duplicates (a judged campaign's other windows wait).
    judged = store.list_alerts(status=list(VERDICTS), limit=pool)
    every = cand + judged
    stored = np.array(
        [a.threat_probability if a.threat_probability is not None else np.nan for a in every]
    )
    X: np.ndarray | None = None
    try:
        X = feature_matrix(every)
        model, _ = load_active_model(store)
        p = np.where(np.isnan(stored), model.predict_proba(X), stored)
        imp = impact(X)
    except Exception:  # a broken model must not take the queue down: rank on what is stored
        log.exception("review queue: threat-model features failed; ranking on stored P(threat)")
        p = np.where(np.isnan(stored), 0.5, stored)
        imp = np.array([1.0 + np.log1p(max(a.score, 0.0)) for a in every])
        X = None
    pri = review_priority(p, imp)
    groups = [(a.detector, a.entity) for a in every]
    exclude = range(len(cand), len(every))
    for i in next_to_review(p, imp, k - len(out), exclude, features=X, groups=groups):
        out.append((every[int(i)], float(pri[int(i)])))
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
    """End an allow-list entry at ``at`` (default now): :meth:`AlertStore.expire_allow`."""
    return store.expire_allow(entry_id, at, now)


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
