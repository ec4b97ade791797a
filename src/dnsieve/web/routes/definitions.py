"""Threat definitions in the Alert Manager: the Definitions pages and ``/api/definitions``.

Analysts write, edit, test (a retro-hunt over the lake) and import definitions; admins
approve them by enabling or disabling.  Viewers read.  Every value shown is escaped by the
templates (Jinja autoescape); bodies are shown in ``<pre>``/``<textarea>``, never as HTML.
Both routers are thin over :mod:`dnsieve.alerts.definitions` and
:mod:`dnsieve.rules.evaluate`, which the CLI and tests call too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Path,
    Request,
    UploadFile,
    status,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from dnsieve.alerts.definitions import (
    DEFINITION_KINDS,
    Definition,
    DefinitionError,
    DefinitionStore,
)
from dnsieve.web.deps import (
    AdminApi,
    AdminPage,
    AnalystApi,
    AnalystPage,
    CsrfForm,
    LakePathDep,
    PageUser,
    StoreDep,
    api_user,
)
from dnsieve.web.render import flash, page
from dnsieve.web.schemas import error_responses
from dnsieve.web.users import role_at_least

router = APIRouter(prefix="/definitions", include_in_schema=False)
api_router = APIRouter(
    prefix="/api/definitions",
    tags=["definitions"],
    dependencies=[Depends(api_user)],
    responses=error_responses(401, 413, 503),
)

DefId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MAX_BODY_FORM = 1_000_000  # the form's body limit (the request cap is the server's)
SEVERITIES = ("low", "medium", "high", "critical")


# --------------------------------------------------------------------------- library glue


def _by_id(store: Any, def_id: int) -> Definition:
    ds = DefinitionStore(store)
    for d in ds.all():
        if d.id == def_id:
            return d
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no definition {def_id}")


def _techniques(text: str) -> list[str]:
    return sorted({t.strip().upper() for t in text.replace(";", ",").split(",") if t.strip()})[:20]


def _validate(kind: str, body: str) -> list[str]:
    from dnsieve.rules.evaluate import check_definition

    if kind not in DEFINITION_KINDS:
        return [f"kind must be one of {', '.join(DEFINITION_KINDS)}"]
    if not body.strip():
        return ["the body is empty"]
    return check_definition(kind, body)


def _hunt(
    store: Any, defn: Any, lake: FsPath | None, since: str | None, actor: str
) -> dict[str, Any]:
    """A retro-hunt preview (what a Test button shows), recorded in the audit trail."""
    from dnsieve.lake import Lake
    from dnsieve.rules.evaluate import hunt

    if lake is None:
        return {"error": "no lake is configured for this server (dnsieve serve --lake DIR)"}
    if defn.kind == "anomaly":
        return {"error": "anomaly rules apply to detector output: they run with dnsieve run"}
    start = None
    if since:
        try:
            start = datetime.fromisoformat(since)
            start = start if start.tzinfo else start.replace(tzinfo=UTC)
        except ValueError:
            return {"error": f"since: not an ISO time: {since[:40]!r}"}
    res = hunt(defn, Lake(lake), start, None)
    rows = []
    for r in res.anomalies.head(50).iter_rows(named=True):
        ev = json.loads(r["evidence"] or "{}")
        rows.append(
            {
                "entity": r["entity"],
                "window_start": r["window_start"],
                "reason": ev.get("reason", ""),
                "clients": ev.get("clients", []),
            }
        )
    out = {**res.to_dict(), "rows": rows}
    if getattr(defn, "id", None):
        DefinitionStore(store).record(
            defn.name, actor, "tested", f"{res.events} events, {res.anomalies.height} alerts"
        )
    return out


# --------------------------------------------------------------------------- pages


def _list_page(request: Request, store: Any, user: Any, **extra: Any) -> HTMLResponse:
    ds = DefinitionStore(store)
    return page(
        request,
        "definitions.html",
        status_code=extra.pop("status_code", 200),
        definitions=ds.all(),
        kinds=DEFINITION_KINDS,
        severities=SEVERITIES,
        can_edit=role_at_least(user.role, "analyst"),
        form=extra.pop("form", {}),
        errors=extra.pop("errors", []),
        **extra,
    )


@router.get("", response_class=HTMLResponse)
def definitions_page(request: Request, user: PageUser, store: StoreDep) -> HTMLResponse:
    """Every definition, and (for analysts) the new-definition and import forms."""
    return _list_page(request, store, user)


def _text(form: Any, name: str, limit: int) -> str:
    return str(form.get(name) or "")[:limit]


@router.post("", response_class=HTMLResponse, response_model=None)
def create(
    request: Request, user: AnalystPage, form: CsrfForm, store: StoreDep
) -> HTMLResponse | RedirectResponse:
    """Create a draft; on a validation error the form comes back with the errors inline."""
    data = {
        "name": _text(form, "name", 120).strip(),
        "kind": _text(form, "kind", 16),
        "body": _text(form, "body", MAX_BODY_FORM),
        "reason": _text(form, "reason", 2000).strip(),
        "severity": _text(form, "severity", 16) or "high",
        "techniques": _text(form, "techniques", 400),
    }
    errors = _validate(data["kind"], data["body"])
    if not data["reason"]:
        errors.append("a reason is required")
    if not errors:
        name = data["name"]
        techniques = _techniques(data["techniques"])
        if data["kind"] == "sigma":
            from dnsieve.rules.sigma import compile_rule

            rule = compile_rule(data["body"])
            name = name or rule.title
            techniques = sorted({*techniques, *rule.techniques})
        try:
            d = DefinitionStore(store).add(
                name, data["kind"], data["body"], user.name, data["reason"], data["severity"],
                techniques,
            )  # fmt: skip
        except DefinitionError as exc:
            errors.append(str(exc))
        else:
            flash(
                request,
                f"Definition {d.name!r} saved as a draft: test it, then an admin enables it.",
            )
            return RedirectResponse(f"/definitions/{d.id}", status.HTTP_303_SEE_OTHER)
    return _list_page(request, store, user, form=data, errors=errors, status_code=422)


@router.post("/import", response_model=None)
async def import_feed_page(
    request: Request, user: AnalystPage, form: CsrfForm, store: StoreDep
) -> RedirectResponse:
    """Import a ThreatFox / plain / STIX / MISP file as a watchlist (a new version if it exists)."""
    from dnsieve.rules.feeds import import_feed, to_plain

    upload = form.get("file")
    name = _text(form, "name", 120).strip()
    reason = _text(form, "reason", 2000).strip() or "imported feed"
    fmt = _text(form, "format", 16) or "auto"
    if not isinstance(upload, UploadFile) or not name:
        flash(request, "Import needs a file and a watchlist name.")
        return RedirectResponse("/definitions", status.HTTP_303_SEE_OTHER)
    import tempfile

    data = await upload.read()
    with tempfile.NamedTemporaryFile(suffix=FsPath(upload.filename or "feed").suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            feed = await run_in_threadpool(import_feed, tmp.name, fmt)
        except ValueError as exc:
            flash(
                request, f"Import failed: {str(exc).replace(tmp.name, upload.filename or 'file')}"
            )
            return RedirectResponse("/definitions", status.HTTP_303_SEE_OTHER)
    if not feed.entries:
        flash(request, f"Import failed: no domain, suffix or address in the {feed.format} file.")
        return RedirectResponse("/definitions", status.HTTP_303_SEE_OTHER)
    ds = DefinitionStore(store)
    body = to_plain(feed.entries)
    try:
        try:
            ds.get(name)
            d = ds.edit(name, user.name, reason, body=body)
        except DefinitionError:
            d = ds.add(name, "watchlist", body, user.name, reason)
        ds.record(name, user.name, "imported", f"{len(feed.entries)} entries ({feed.format})")
    except DefinitionError as exc:
        flash(request, f"Import failed: {exc}")
        return RedirectResponse("/definitions", status.HTTP_303_SEE_OTHER)
    flash(
        request,
        f"Watchlist {d.name!r}: {len(feed.entries):,} entries from {feed.format} "
        f"({sum(feed.rejected.values()):,} rejected), version {d.version}, {d.state}.",
    )
    return RedirectResponse(f"/definitions/{d.id}", status.HTTP_303_SEE_OTHER)


def _detail(
    request: Request, store: Any, user: Any, d: Definition, status_code: int = 200, **extra: Any
) -> HTMLResponse:
    ds = DefinitionStore(store)
    return page(
        request,
        "definition.html",
        status_code=status_code,
        d=d,
        versions=ds.versions(d.name),
        history=ds.history(d.name, limit=100),
        severities=SEVERITIES,
        can_edit=role_at_least(user.role, "analyst"),
        can_approve=role_at_least(user.role, "admin"),
        hunt=extra.pop("hunt", None),
        errors=extra.pop("errors", []),
        body=extra.pop("body", d.body),
        **extra,
    )


@router.get("/{def_id}", response_class=HTMLResponse)
def definition_page(
    request: Request, user: PageUser, store: StoreDep, def_id: DefId
) -> HTMLResponse:
    """One definition: its body, versions, audit trail, and the edit/test/approve forms."""
    return _detail(request, store, user, _by_id(store, def_id))


@router.post("/{def_id}/edit", response_class=HTMLResponse, response_model=None)
def edit(
    request: Request, user: AnalystPage, form: CsrfForm, store: StoreDep, def_id: DefId
) -> HTMLResponse | RedirectResponse:
    d = _by_id(store, def_id)
    body = _text(form, "body", MAX_BODY_FORM)
    reason = _text(form, "reason", 2000).strip()
    errors = _validate(d.kind, body)
    if not reason:
        errors.append("say why you changed it")
    if errors:
        return _detail(request, store, user, d, status_code=422, errors=errors, body=body)
    try:
        new = DefinitionStore(store).edit(
            d.name, user.name, reason, body=body,
            severity=_text(form, "severity", 16) or None,
            techniques=_techniques(_text(form, "techniques", 400)) or None,
        )  # fmt: skip
    except DefinitionError as exc:
        return _detail(request, store, user, d, status_code=422, errors=[str(exc)], body=body)
    flash(request, f"Saved as version {new.version} ({new.state}).")
    return RedirectResponse(f"/definitions/{d.id}", status.HTTP_303_SEE_OTHER)


@router.post("/{def_id}/test", response_class=HTMLResponse)
def test(
    request: Request,
    user: AnalystPage,
    form: CsrfForm,
    store: StoreDep,
    lake: LakePathDep,
    def_id: DefId,
) -> HTMLResponse:
    """Retro-hunt the stored definition over the lake and show what it would raise."""
    d = _by_id(store, def_id)
    result = _hunt(store, d, lake, _text(form, "since", 40).strip() or None, user.name)
    return _detail(request, store, user, _by_id(store, def_id), hunt=result)


@router.post("/{def_id}/state")
def set_state(
    request: Request, user: AdminPage, form: CsrfForm, store: StoreDep, def_id: DefId
) -> RedirectResponse:
    """Enable (approve), disable, or return to draft: admins only."""
    d = _by_id(store, def_id)
    state = _text(form, "state", 16)
    try:
        new = DefinitionStore(store).set_state(d.name, state, user.name)
    except DefinitionError as exc:
        flash(request, str(exc))
    else:
        flash(request, f"Definition {new.name!r} is now {new.state}.")
    return RedirectResponse(f"/definitions/{d.id}", status.HTTP_303_SEE_OTHER)


# --------------------------------------------------------------------------- API


class DefinitionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    kind: Literal["sigma", "watchlist", "anomaly"]
    body: str = Field(min_length=1, max_length=MAX_BODY_FORM)
    reason: str = Field(min_length=1, max_length=2000)
    severity: Literal["low", "medium", "high", "critical"] = "high"
    techniques: list[str] = Field(default_factory=list, max_length=20)
    confidence: float = Field(default=0.9, gt=0, le=1)


class DefinitionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
    body: str | None = Field(default=None, min_length=1, max_length=MAX_BODY_FORM)
    severity: Literal["low", "medium", "high", "critical"] | None = None
    techniques: list[str] | None = Field(default=None, max_length=20)


class DefinitionState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["draft", "enabled", "disabled"]


class HuntRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None


class DefinitionPublic(BaseModel):
    id: int
    name: str
    kind: str
    body: str
    version: int
    state: str
    severity: str
    techniques: list[str]
    author: str
    reason: str
    confidence: float
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


class HuntPublic(BaseModel):
    name: str
    kind: str
    events: int
    entities: int
    alerts: int
    alerts_per_day: float
    floods_queue: bool
    seconds: float
    notes: list[str]


def _public(d: Definition) -> DefinitionPublic:
    return DefinitionPublic(**{**d.to_dict(), "techniques": list(d.techniques)})


def _unprocessable(errors: list[str]) -> RequestValidationError:
    """A 422 in the API's one error shape (the app's validation handler renders it)."""
    return RequestValidationError(
        [{"loc": ("body", "body"), "msg": e[:500], "type": "value_error"} for e in errors]
    )


@api_router.get("", response_model=list[DefinitionPublic])
def api_list(store: StoreDep) -> list[DefinitionPublic]:
    """Every threat definition (Sigma rules, watchlists, anomaly rules)."""
    return [_public(d) for d in DefinitionStore(store).all()]


@api_router.post(
    "", response_model=DefinitionPublic, status_code=201, responses=error_responses(400, 403)
)
def api_create(payload: DefinitionCreate, user: AnalystApi, store: StoreDep) -> DefinitionPublic:
    """Create a draft definition (analysts); the body is validated for its kind."""
    errors = _validate(payload.kind, payload.body)
    if errors:
        raise _unprocessable(errors)
    try:
        d = DefinitionStore(store).add(
            payload.name, payload.kind, payload.body, user.name, payload.reason,
            payload.severity, payload.techniques, payload.confidence,
        )  # fmt: skip
    except DefinitionError as exc:
        raise _unprocessable([str(exc)]) from None
    return _public(d)


@api_router.get("/{def_id}", response_model=DefinitionPublic, responses=error_responses(404))
def api_get(store: StoreDep, def_id: DefId) -> DefinitionPublic:
    return _public(_by_id(store, def_id))


@api_router.patch(
    "/{def_id}", response_model=DefinitionPublic, responses=error_responses(400, 403, 404)
)
def api_edit(
    payload: DefinitionUpdate, user: AnalystApi, store: StoreDep, def_id: DefId
) -> DefinitionPublic:
    """A new version (an enabled definition whose body changes returns to draft)."""
    d = _by_id(store, def_id)
    if payload.body is not None:
        errors = _validate(d.kind, payload.body)
        if errors:
            raise _unprocessable(errors)
    try:
        new = DefinitionStore(store).edit(
            d.name, user.name, payload.reason, body=payload.body, severity=payload.severity,
            techniques=payload.techniques,
        )  # fmt: skip
    except DefinitionError as exc:
        raise _unprocessable([str(exc)]) from None
    return _public(new)


@api_router.post(
    "/{def_id}/state", response_model=DefinitionPublic, responses=error_responses(400, 403, 404)
)
def api_state(
    payload: DefinitionState, user: AdminApi, store: StoreDep, def_id: DefId
) -> DefinitionPublic:
    """Enable (approve), disable or return to draft: admins only."""
    d = _by_id(store, def_id)
    return _public(DefinitionStore(store).set_state(d.name, payload.state, user.name))


@api_router.post(
    "/{def_id}/hunt", response_model=HuntPublic, responses=error_responses(400, 403, 404, 409)
)
def api_hunt(
    payload: HuntRequest, user: AnalystApi, store: StoreDep, lake: LakePathDep, def_id: DefId
) -> HuntPublic:
    """Retro-hunt a definition over the server's lake (409 without a lake)."""
    d = _by_id(store, def_id)
    since = payload.since.isoformat() if payload.since else None
    res = _hunt(store, d, lake, since, user.name)
    if "error" in res:
        raise HTTPException(status.HTTP_409_CONFLICT, res["error"])
    return HuntPublic(**{k: v for k, v in res.items() if k in HuntPublic.model_fields})
