"""Page: threat-model versions, verdict counts and rollback (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from dnsieve.web.actions import model_summary
from dnsieve.web.deps import AdminPage, CsrfForm, PageUser, StoreDep
from dnsieve.web.queue import rollback_model
from dnsieve.web.render import flash, page
from dnsieve.web.users import role_at_least

router = APIRouter(prefix="/model", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
def model(request: Request, user: PageUser, store: StoreDep) -> HTMLResponse:
    return page(
        request,
        "model.html",
        summary=model_summary(store),
        can_rollback=role_at_least(user.role, "admin"),
    )


@router.post("/{version_id}/activate")
def activate(
    request: Request,
    user: AdminPage,
    form: CsrfForm,
    store: StoreDep,
    version_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
) -> RedirectResponse:
    version, n = rollback_model(store, version_id)
    flash(request, f"Model version {version.id} is active; {n} open alert(s) re-scored.")
    return RedirectResponse("/model", status.HTTP_303_SEE_OTHER)
