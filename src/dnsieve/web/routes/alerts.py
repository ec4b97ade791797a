"""Pages: the alert queue, an alert's detail, and the verdict buttons."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from dnsieve.alerts.base import VERDICTS, InvalidTransition
from dnsieve.alerts.events import MAX_LIMIT
from dnsieve.web.actions import QueueParams, give_verdict
from dnsieve.web.deps import AnalystPage, CsrfForm, LakePathDep, PageUser, StoreDep
from dnsieve.web.evidence import (
    alert_events,
    alert_explanation,
    alert_flows,
    alert_hourly,
    alert_windows,
    evidence_json,
    evidence_sentences,
    feature_rows,
    labelled_evidence,
)
from dnsieve.web.plots import volume_plot, who_events, who_plot
from dnsieve.web.queue import (
    SORTS,
    Campaign,
    detectors,
    feature_percentiles,
    list_campaigns,
    list_queue,
    queue_explanations,
    related_alerts,
)
from dnsieve.web.render import flash, page
from dnsieve.web.users import role_at_least

router = APIRouter(prefix="/alerts", include_in_schema=False)

AlertId = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{1,64}$", max_length=64)]


@router.get("", response_class=HTMLResponse)
def queue(request: Request, user: PageUser, store: StoreDep, q: QueueParams) -> HTMLResponse:
    campaigns: list[Campaign] = []
    if q.group == "campaign":
        items: list[Any] = []
        campaigns, total = list_campaigns(store, q)
    else:
        items, total = list_queue(store, q)
    pages = max(1, -(-total // q.per_page))
    current = {
        "status": q.status,
        "detector": q.detector,
        "domain": q.domain,
        "client": q.client,
        "q": q.search,
        "sort": q.sort,
        "per_page": q.per_page,
        "include_suppressed": "true" if q.include_suppressed else None,
        "group": q.group,
        "entity": q.entity,
    }

    def link(**over: object) -> str:
        """This queue's URL with some parameters changed (values URL-encoded)."""
        params = {k: v for k, v in {**current, **over}.items() if v not in (None, "")}
        return "/alerts?" + urlencode(params)

    return page(
        request,
        "queue.html",
        q=q,
        items=items,
        why=queue_explanations(store, items),
        campaigns=campaigns,
        total=total,
        pages=pages,
        counts=store.count_by_status(),
        detectors=detectors(store),
        sorts=SORTS,
        link=link,
    )


@router.get("/{alert_id}", response_class=HTMLResponse)
def detail(
    request: Request,
    user: PageUser,
    store: StoreDep,
    lake_path: LakePathDep,
    alert_id: AlertId,
    events: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="raw events shown")] = 200,
) -> HTMLResponse:
    alert = store.get_alert(alert_id)
    why = alert_explanation(alert, alert.evidence)
    related = related_alerts(store, alert, clients=why.clients)
    raw = alert_events(lake_path, alert, events)
    flows = alert_flows(lake_path, alert)
    entry = None
    if alert.suppressed_by is not None:
        entry = next(
            (e for e in store.list_allow(include_inactive=True) if e.id == alert.suppressed_by),
            None,
        )
    plots = {
        k: v
        for k, v in (
            ("volume", volume_plot(alert, related, alert_hourly(lake_path, alert))),
            ("who", who_plot(alert, related, raw.result, who_events(lake_path, alert))),
        )
        if v is not None
    }
    related_why = queue_explanations(store, related)
    return page(
        request,
        "alert.html",
        with_bokeh=bool(plots),
        alert=alert,
        why=why,
        summary=evidence_sentences(alert.detector, alert.entity_type, alert.evidence, False),
        evidence=labelled_evidence(alert.evidence),
        evidence_raw=evidence_json(alert.evidence),
        windows=alert_windows(alert),
        flows=flows,
        features=feature_rows(feature_percentiles(store, alert)),
        related=related,
        related_why=related_why,
        audit=store.audit_trail(alert.id),
        entry=entry,
        plots=plots,
        raw=raw,
        verdicts=VERDICTS,
        can_judge=role_at_least(user.role, "analyst"),
    )


@router.post("/{alert_id}/verdict")
def verdict(
    request: Request, user: AnalystPage, form: CsrfForm, store: StoreDep, alert_id: AlertId
) -> RedirectResponse:
    label = str(form.get("label") or "")
    comment = str(form.get("comment") or "")[:2000]
    if label not in VERDICTS:
        raise InvalidTransition(f"a verdict is one of {', '.join(VERDICTS)}")
    out = give_verdict(store, alert_id, label, user, comment)
    msg = f"Verdict recorded: {out.verdict.old_status} → {out.verdict.new_status}."
    if out.probability is not None and out.model_version is not None:
        msg += (
            f" Threat model v{out.model_version.id} learned it: P(threat) now "
            f"{out.probability:.2f}; {out.rescored} alert(s) re-scored."
        )
    elif out.model_error:
        msg += f" The threat model could not learn it ({out.model_error})."
    flash(request, msg)
    return RedirectResponse(f"/alerts/{out.verdict.alert.id}", status.HTTP_303_SEE_OTHER)
