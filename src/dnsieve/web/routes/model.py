"""Page: threat-model versions, verdict counts, precision@k over time, and rollback (admin)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import Field

from dnsieve.threat.metrics import DEFAULT_KS, precision_report, queue_sources
from dnsieve.web.actions import model_summary
from dnsieve.web.deps import AdminPage, CsrfForm, PageUser, StoreDep
from dnsieve.web.plots import precision_plot
from dnsieve.web.queue import rollback_model
from dnsieve.web.render import flash, page
from dnsieve.web.schemas import PRECISION_DEFINITION
from dnsieve.web.users import role_at_least

__all__ = ["PrecisionParams", "PrecisionQuery", "router"]

router = APIRouter(prefix="/model", include_in_schema=False)

MAX_KS = 5
MAX_K = 1000


@dataclass(frozen=True)
class PrecisionQuery:
    """Which precision@k values, over how many days."""

    ks: tuple[int, ...]
    days: int


def precision_query(
    k: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_K)]] | None,
        Query(
            max_length=MAX_KS,
            description=f"k of precision@k (repeatable, up to {MAX_KS}; default 10 and 20)",
        ),
    ] = None,
    days: Annotated[int, Query(ge=1, le=366, description="UTC days back from today")] = 90,
) -> PrecisionQuery:
    """The query's k values (1 to :data:`MAX_KS` of them, each 1 to :data:`MAX_K`; a bad
    one is a 422 with the usual list of errors) and days."""
    ks = tuple(dict.fromkeys(k)) if k else DEFAULT_KS
    return PrecisionQuery(tuple(sorted(ks)), days)


PrecisionParams = Annotated[PrecisionQuery, Depends(precision_query)]


@router.get("", response_class=HTMLResponse)
def model(request: Request, user: PageUser, store: StoreDep, q: PrecisionParams) -> HTMLResponse:
    rep = precision_report(store, q.ks, q.days)
    plot = precision_plot(rep.daily, rep.ks)
    return page(
        request,
        "model.html",
        with_bokeh=plot is not None,
        summary=model_summary(store),
        can_rollback=role_at_least(user.role, "admin"),
        precision=rep,
        precision_rows=list(reversed(rep.daily.rows(named=True))),
        precision_plot=plot,
        definition=PRECISION_DEFINITION,
        by_version={v["model_version"]: v for v in rep.by_version},
        sources=queue_sources(store, q.ks),
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
