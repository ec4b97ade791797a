"""Page: pipeline runs — sources ingested, rejects by reason, last run, and live streams."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from dnsieve.web.deps import PageUser, StoreDep
from dnsieve.web.render import page

router = APIRouter(prefix="/runs", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def runs(request: Request, user: PageUser, store: StoreDep) -> HTMLResponse:
    from dnsieve.stream.status import stream_statuses

    return page(
        request, "runs.html", runs=store.list_runs(limit=100), streams=stream_statuses(store)
    )
