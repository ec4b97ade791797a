"""Page: the "needs review" queue (active learning: uncertainty × impact)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from dnsieve.web.deps import PageUser, StoreDep
from dnsieve.web.queue import queue_explanations, review_queue
from dnsieve.web.render import page

router = APIRouter(prefix="/review", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def review(request: Request, user: PageUser, store: StoreDep) -> HTMLResponse:
    items = review_queue(store, k=50)
    why = queue_explanations(store, [a for a, _ in items])
    return page(request, "review.html", items=items, why=why)
