"""Page: allow-list entries — add, expire and remove, each with a reason and an author."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from dnsieve.detectors import available
from dnsieve.web.actions import add_allow, allow_list, end_allow
from dnsieve.web.deps import AnalystPage, CsrfForm, PageUser, StoreDep
from dnsieve.web.queue import detectors
from dnsieve.web.render import flash, page
from dnsieve.web.users import role_at_least

router = APIRouter(prefix="/allowlist", include_in_schema=False)

EntryId = Annotated[int, Path(ge=1, le=2**31 - 1)]
KINDS = ("domain", "suffix", "wildcard", "client", "detector_entity")


@router.get("", response_class=HTMLResponse)
def entries(
    request: Request,
    user: PageUser,
    store: StoreDep,
    kind: Annotated[str | None, Query(max_length=32, description="prefill: entry kind")] = None,
    value: Annotated[str | None, Query(max_length=1000, description="prefill: value")] = None,
    detector: Annotated[str | None, Query(max_length=64, description="prefill: detector")] = None,
) -> HTMLResponse:
    """The entries, and the add form (prefilled from an alert's "allow-list this" link)."""
    return page(
        request,
        "allowlist.html",
        entries=allow_list(store),
        kinds=KINDS,
        detectors=sorted(set(available()) | set(detectors(store))),
        prefill={"kind": kind if kind in KINDS else None, "value": value, "detector": detector},
        can_edit=role_at_least(user.role, "analyst"),
    )


def _field(form: object, name: str, limit: int = 1000) -> str:
    value = form.get(name)  # type: ignore[attr-defined]
    return str(value or "").strip()[:limit]


@router.post("")
def add(request: Request, user: AnalystPage, form: CsrfForm, store: StoreDep) -> RedirectResponse:
    e = add_allow(
        store,
        _field(form, "kind", 20),
        _field(form, "value"),
        _field(form, "reason", 2000),
        user,
        _field(form, "detector", 64) or None,
        _field(form, "expires", 64) or None,
    )
    flash(request, f"Allow-list entry {e.id} added: it suppresses {e.suppresses} alert(s).")
    return RedirectResponse("/allowlist", status.HTTP_303_SEE_OTHER)


@router.post("/{entry_id}/expire")
def expire(
    request: Request, user: AnalystPage, form: CsrfForm, store: StoreDep, entry_id: EntryId
) -> RedirectResponse:
    e = end_allow(store, entry_id, _field(form, "expires", 64) or "now")
    flash(request, f"Allow-list entry {e.id} is now {e.state}.")
    return RedirectResponse("/allowlist", status.HTTP_303_SEE_OTHER)


@router.post("/{entry_id}/remove")
def remove(
    request: Request, user: AnalystPage, form: CsrfForm, store: StoreDep, entry_id: EntryId
) -> RedirectResponse:
    store.remove_allow(entry_id)
    flash(
        request,
        f"Allow-list entry {entry_id} removed; its alerts return unless another entry covers them.",
    )
    return RedirectResponse("/allowlist", status.HTTP_303_SEE_OTHER)
