"""The JSON REST API under ``/api``: everything the pages do.

Every route needs a user (``Authorization: Bearer TOKEN``, or the session
cookie plus ``X-CSRF-Token`` for writes).  Verdicts and allow-list changes
need the analyst role, model rollback the admin role.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from dnsieve.alerts.events import MAX_LIMIT
from dnsieve.explain import one_in
from dnsieve.threat.metrics import precision_report
from dnsieve.web.actions import (
    QueueParams,
    add_allow,
    allow_list,
    end_allow,
    give_verdict,
    model_summary,
)
from dnsieve.web.deps import AdminApi, AnalystApi, ApiUser, LakePathDep, StoreDep, api_user
from dnsieve.web.evidence import alert_events, alert_explanation, evidence_sentences
from dnsieve.web.queue import (
    list_campaigns,
    list_queue,
    related_alerts,
    review_queue,
    rollback_model,
)
from dnsieve.web.routes.model import PrecisionParams
from dnsieve.web.schemas import (
    AlertDetailPublic,
    AlertEventsPublic,
    AlertPage,
    AlertPublic,
    AlertSummaryPublic,
    AllowCreate,
    AllowPublic,
    AllowUpdate,
    AuditPublic,
    CampaignPage,
    CampaignPublic,
    EventPublic,
    ModelSummary,
    ModelVersionPublic,
    PrecisionPublic,
    ReviewItem,
    RunPublic,
    StreamStatusPublic,
    UserPublic,
    VerdictCreate,
    VerdictPublic,
    error_responses,
)

router = APIRouter(
    prefix="/api", dependencies=[Depends(api_user)], responses=error_responses(401, 413, 503)
)

AlertId = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{1,64}$", max_length=64)]
EntryId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/me", tags=["users"])
def me(user: ApiUser) -> UserPublic:
    """The authenticated user and role."""
    return UserPublic.model_validate(user)


@router.get("/alerts", tags=["alerts"], response_model=AlertPage)
def list_alerts(store: StoreDep, q: QueueParams) -> Response:
    """The alert queue: filtered, sorted, one page, with counts by status.

    The items leave out ``evidence`` and ``features``: ``GET /api/alerts/{id}`` has them."""
    items, total = list_queue(store, q)
    page = AlertPage(
        items=[AlertSummaryPublic.of(a) for a in items],
        total=total,
        page=q.page,
        per_page=q.per_page,
        counts=store.count_by_status(),
    )
    # serialized once here (FastAPI would validate the built model a second time)
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/campaigns", tags=["alerts"])
def list_campaigns_api(store: StoreDep, q: QueueParams) -> CampaignPage:
    """The queue grouped by detector × entity (the ``group`` parameter is implied): one row
    per campaign with its number of windows, its span and its worst P(threat) and score."""
    items, total = list_campaigns(store, q)
    return CampaignPage(
        items=[CampaignPublic.model_validate(c) for c in items],
        total=total,
        page=q.page,
        per_page=q.per_page,
    )


@router.get("/alerts/counts", tags=["alerts"])
def counts(store: StoreDep, include_suppressed: bool = False) -> dict[str, int]:
    """Alerts per status."""
    return store.count_by_status(include_suppressed=include_suppressed)


@router.get("/alerts/{alert_id}", tags=["alerts"], responses=error_responses(404, 409))
def get_alert(store: StoreDep, alert_id: AlertId) -> AlertDetailPublic:
    """One alert (id or unique prefix): evidence in words, related alerts, audit trail."""
    a = store.get_alert(alert_id)
    why = alert_explanation(a, a.evidence)
    return AlertDetailPublic(
        alert=AlertPublic.of(a),
        reason=why.reason,
        clients=why.clients,
        rarity=one_in(a.p_value),
        summary=evidence_sentences(a.detector, a.entity_type, a.evidence),
        related=[AlertPublic.of(r) for r in related_alerts(store, a)],
        audit=[AuditPublic.of(e) for e in store.audit_trail(a.id)],
    )


@router.get("/alerts/{alert_id}/events", tags=["alerts"], responses=error_responses(404, 409))
def alert_events_api(
    store: StoreDep,
    lake_path: LakePathDep,
    alert_id: AlertId,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 200,
) -> AlertEventsPublic:
    """The raw lake events behind an alert (its entity in its window), newest first.

    ``available`` is false, with a ``message``, when the server has no lake or
    cannot read it; ``total`` is 0 when the lake has no events for the window.
    """
    a = store.get_alert(alert_id)
    view = alert_events(lake_path, a, limit)
    res = view.result
    return AlertEventsPublic(
        alert_id=a.id,
        lake_configured=view.configured,
        available=view.available,
        message=view.message,
        window_start=a.window_start,
        window_end=a.window_end,
        domains=sorted(res.domains) if res else [],
        clients=sorted(res.clients) if res else [],
        total=res.total if res else 0,
        shown=res.shown if res else 0,
        limit=limit,
        events=[EventPublic.model_validate(r) for r in res.records()] if res else [],
    )


@router.post(
    "/alerts/{alert_id}/verdict", tags=["alerts"], responses=error_responses(400, 403, 404, 409)
)
def verdict(
    store: StoreDep, user: AnalystApi, alert_id: AlertId, body: VerdictCreate
) -> VerdictPublic:
    """Record a verdict; the threat model learns it and re-scores the open alerts."""
    if body.learn:
        out = give_verdict(store, alert_id, body.label, user, body.comment)
    else:
        from dnsieve.alerts.feedback import apply_verdict

        out = apply_verdict(store, alert_id, body.label, user.name, body.comment, learn=False)
    return VerdictPublic(
        alert=AlertPublic.of(store.get_alert(out.verdict.alert.id)),
        old_status=out.verdict.old_status,
        new_status=out.verdict.new_status,
        model_version=out.model_version.id if out.model_version else None,
        threat_probability=out.probability,
        rescored=out.rescored,
        model_error=out.model_error,
    )


@router.get("/review", tags=["review"])
def review(store: StoreDep, k: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ReviewItem]:
    """The needs-review queue: alerts marked for review, then the most informative open ones."""
    return [
        ReviewItem(alert=AlertPublic.of(a), priority=None if pr == float("inf") else pr)
        for a, pr in review_queue(store, k=k)
    ]


@router.get("/allowlist", tags=["allowlist"])
def list_allow(store: StoreDep, all: bool = True) -> list[AllowPublic]:
    """Allow-list entries with their state and how many alerts each suppresses."""
    return allow_list(store, include_inactive=all)


@router.post(
    "/allowlist",
    tags=["allowlist"],
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 403),
)
def create_allow(store: StoreDep, user: AnalystApi, body: AllowCreate) -> AllowPublic:
    """Add an entry (the author is the authenticated user); covered alerts leave the queue.

    A value its kind cannot take (a URL as a domain, a bad network) or an expiry that is
    not in the future is a 422 whose ``detail`` names the field, as a schema error is."""
    return add_allow(store, body.kind, body.value, body.reason, user, body.detector, body.expires)


@router.patch(
    "/allowlist/{entry_id}", tags=["allowlist"], responses=error_responses(400, 403, 404, 409)
)
def update_allow(
    store: StoreDep, user: AnalystApi, entry_id: EntryId, body: AllowUpdate
) -> AllowPublic:
    """Expire an entry now, or set when it expires."""
    return end_allow(store, entry_id, body.expires)


@router.delete(
    "/allowlist/{entry_id}", tags=["allowlist"], responses=error_responses(403, 404, 409)
)
def delete_allow(store: StoreDep, user: AnalystApi, entry_id: EntryId) -> AllowPublic:
    """Remove an entry (kept as history); its alerts come back unless another entry matches."""
    from datetime import UTC, datetime

    e = store.remove_allow(entry_id)
    return AllowPublic.of(e, datetime.now(UTC), store.suppressed_count(e.id))


@router.get("/model", tags=["model"])
def model(store: StoreDep) -> ModelSummary:
    """The active threat-model version, its history and the verdict counts."""
    return model_summary(store)


@router.get("/model/precision", tags=["model"])
def model_precision(store: StoreDep, q: PrecisionParams) -> PrecisionPublic:
    """Prequential precision@k per UTC day: the alerts first judged that day, ranked by the
    model as it stood before that day's verdicts; plus verdict counts per model version."""
    return PrecisionPublic.of(precision_report(store, q.ks, q.days))


@router.post(
    "/model/versions/{version_id}/activate",
    tags=["model"],
    responses=error_responses(403, 404),
)
def activate(store: StoreDep, user: AdminApi, version_id: EntryId) -> ModelVersionPublic:
    """Roll back (or forward) to a model version and re-score the open alerts."""
    version, _ = rollback_model(store, version_id)
    return ModelVersionPublic.of(version)


@router.get("/stream", tags=["runs"])
def stream(store: StoreDep) -> list[StreamStatusPublic]:
    """Running (or last run) ``dnsieve stream`` processes, newest first: events, events/s,
    lag per partition, open windows, late events, watermark, last checkpoint and alert."""
    from dnsieve.stream.status import stream_statuses

    return [StreamStatusPublic.model_validate(s) for s in stream_statuses(store)]


@router.get("/runs", tags=["runs"])
def runs(store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[RunPublic]:
    """Pipeline runs, newest first: inputs, counts and rejects by reason."""
    return [RunPublic.of(r) for r in store.list_runs(limit=limit)]
