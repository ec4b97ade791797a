"""Pydantic schemas of the REST API: one family (Create / Update / Public) per resource."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from dnsieve.alerts.base import Alert, AlertSummary, AllowEntry, AuditEntry, ModelVersion, RunRecord
from dnsieve.threat.metrics import PrecisionReport

PRECISION_DEFINITION = (
    "Prequential precision@k per UTC day: the alerts whose first verdict was given that day, "
    "labelled by their verdict as known now (threat positive; benign and not relevant "
    "negative), ranked by the model version active at the day's first verdict (it had seen "
    "none of that day's labels); precision@k is the share of threats among the top min(k, n), "
    "ties at the cut at their expected value. base_rate is the share of threats among all n."
)

__all__ = [
    "AlertDetailPublic",
    "AlertEventsPublic",
    "AlertPage",
    "AlertPublic",
    "AlertSummaryPublic",
    "AllowCreate",
    "AllowPublic",
    "AllowUpdate",
    "AuditPublic",
    "AuthEventPublic",
    "ErrorDetail",
    "EventPublic",
    "ModelSummary",
    "ModelVersionPublic",
    "PrecisionPoint",
    "PrecisionPublic",
    "ReviewItem",
    "RunPublic",
    "SessionsEnded",
    "TokenPublic",
    "UserAdminPublic",
    "UserPublic",
    "UserUpdate",
    "VerdictCreate",
    "VerdictPublic",
    "VersionVerdicts",
    "error_responses",
]


class ErrorDetail(BaseModel):
    """Every error but 422: ``{"detail": "what went wrong"}``."""

    detail: str


_ERRORS: dict[int, str] = {
    400: "the body cannot be parsed (not UTF-8, or JSON nested too deeply)",
    401: "no API token (or session), or a revoked or unknown one",
    403: "the user's role is too low, or a session-cookie call lacks its X-CSRF-Token header",
    404: "no such resource",
    409: "the resource's state forbids the change, or an id prefix is ambiguous",
    413: "the request body is larger than the server's max_body_bytes (1 MB by default)",
    503: "the alert store is unavailable; try again",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of the errors ``codes`` (each ``{"detail": str}``).

    >>> sorted(error_responses(404, 409))
    [404, 409]
    """
    return {c: {"model": ErrorDetail, "description": _ERRORS[c]} for c in codes}


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AlertSummaryPublic(_Out):
    """An alert in a list: :class:`AlertPublic` without ``evidence`` and ``features``
    (``GET /api/alerts/{id}`` has them)."""

    id: str
    detector: str
    entity_type: str
    entity: str
    domain: str | None
    client: str | None
    window_start: datetime
    window_end: datetime
    score: float
    p_value: float | None
    threat_probability: float | None
    status: str
    severity: str
    first_seen: datetime
    last_seen: datetime
    times_seen: int
    suppressed_by: int | None
    suppressed: bool

    @classmethod
    def of(cls, a: AlertSummary | Alert) -> Self:
        return cls.model_validate(a)


class AlertPublic(AlertSummaryPublic):
    """An alert with its evidence and features documents."""

    evidence: dict[str, Any]
    features: dict[str, Any] | None


class CampaignPublic(_Out):
    """The alerts of one detector on one entity: how many windows, when, and the worst one."""

    detector: str
    entity_type: str
    entity: str
    windows: int
    first_start: datetime
    last_end: datetime
    threat_probability: float | None
    score: float
    p_value: float | None = Field(
        default=None, description="the rarest window's calibrated tail probability"
    )


class CampaignPage(BaseModel):
    items: list[CampaignPublic]
    total: int
    page: int
    per_page: int


class AlertPage(BaseModel):
    items: list[AlertSummaryPublic]
    total: int
    page: int
    per_page: int
    counts: dict[str, int] = Field(description="alerts per status (suppressed ones left out)")


class AuditPublic(_Out):
    id: int
    alert_id: str
    actor: str
    at: datetime
    old_status: str
    new_status: str
    comment: str | None
    model_version: int | None

    @classmethod
    def of(cls, e: AuditEntry) -> AuditPublic:
        return cls.model_validate(e)


class AlertDetailPublic(BaseModel):
    alert: AlertPublic
    reason: str = Field(
        default="", description="why it was raised: one plain-text sentence with the numbers"
    )
    clients: list[str] = Field(
        default_factory=list, description="the client addresses to look at, most involved first"
    )
    rarity: str = Field(
        default="", description='the calibrated p-value as "1 in N" windows of its detector'
    )
    summary: list[str] = Field(description="the evidence in plain words")
    related: list[AlertPublic]
    audit: list[AuditPublic]


class VerdictCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    label: Literal["threat", "benign", "not_relevant"]
    comment: str | None = Field(default=None, max_length=2000)
    learn: bool = Field(default=True, description="let the threat model learn from it")


class VerdictPublic(BaseModel):
    alert: AlertPublic
    old_status: str
    new_status: str
    model_version: int | None
    threat_probability: float | None = Field(description="the alert's P(threat) after learning")
    rescored: int
    model_error: str | None


class ReviewItem(BaseModel):
    alert: AlertPublic
    priority: float | None = Field(description="uncertainty × impact; null: marked needs_review")


class AllowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["domain", "suffix", "wildcard", "client", "detector_entity"]
    value: str = Field(min_length=1, max_length=1000)
    reason: str = Field(min_length=1, max_length=2000)
    detector: str | None = Field(default=None, max_length=64)
    expires: str | None = Field(
        default=None, max_length=64, description="7d, 12h, 90m or an ISO 8601 time; null: never"
    )


class AllowUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    expires: str = Field(
        default="now", max_length=64, description="'now' ends the entry; or 7d, 12h or an ISO time"
    )


class AllowPublic(_Out):
    id: int
    kind: str
    value: str
    detector: str | None
    reason: str
    author: str
    created_at: datetime
    expires_at: datetime | None
    removed_at: datetime | None
    state: str
    suppresses: int

    @classmethod
    def of(cls, e: AllowEntry, now: datetime, suppresses: int) -> AllowPublic:
        state = "removed" if e.removed_at is not None else "active" if e.active(now) else "expired"
        return cls.model_validate({**e.__dict__, "state": state, "suppresses": suppresses})


class ModelVersionPublic(_Out):
    id: int
    created_at: datetime
    kind: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    parent_id: int | None
    active: bool

    @classmethod
    def of(cls, m: ModelVersion) -> ModelVersionPublic:
        return cls.model_validate({k: v for k, v in m.__dict__.items() if k != "blob"})


class ModelSummary(BaseModel):
    active: ModelVersionPublic | None
    versions: list[ModelVersionPublic]
    verdicts: dict[str, int]


class RunPublic(_Out):
    id: int
    started: datetime
    finished: datetime | None
    inputs: dict[str, Any]
    counts: dict[str, Any]
    rejects: dict[str, Any]

    @classmethod
    def of(cls, r: RunRecord) -> RunPublic:
        return cls.model_validate(r)


class StreamStatusPublic(_Out):
    """One stream's last recorded status (``dnsieve stream``)."""

    run: int = Field(description="the run the stream records its status in")
    name: str = Field(description="source: kafka:<topic> or follow:<path>")
    updated: datetime = Field(description="when the status was last written (UTC)")
    state: str = "running"
    events: int = 0
    events_per_s: float = 0.0
    late: int = Field(0, description="events older than the watermark minus the allowed lateness")
    rejected: int = 0
    rejects: dict[str, int] = Field(default_factory=dict)
    lag: dict[str, int] = Field(default_factory=dict, description="unread records per partition")
    open_windows: int = 0
    watermark: str | None = None
    scored_until: str | None = None
    last_checkpoint: str | None = None
    last_alert: str | None = None
    alerts: int = 0


class UserPublic(_Out):
    name: str
    role: str


class UserAdminPublic(_Out):
    """A user as an admin sees it: role, state and what the user holds now."""

    name: str
    role: str
    disabled: bool
    created_at: datetime
    sessions: int = Field(description="sessions running now")
    tokens: int = Field(description="API tokens not revoked")
    last_seen: datetime | None = Field(description="the last request of any session")


class UserUpdate(BaseModel):
    """A role change or (dis)abling; either ends the user's sessions."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["viewer", "analyst", "admin"] | None = None
    disabled: bool | None = Field(
        default=None, description="true: no login, sessions ended, tokens refused"
    )


class TokenPublic(_Out):
    """An API token's metadata: never the token, which is not stored."""

    id: int
    user: str
    prefix: str = Field(description="the token's first characters, to recognise it")
    created_at: datetime
    last_used: datetime | None = Field(description="to the minute")
    revoked_at: datetime | None


class SessionsEnded(BaseModel):
    user: str
    ended: int = Field(description="sessions that were running")


class AuthEventPublic(_Out):
    """A line of the authentication audit log."""

    id: int
    at: datetime
    event: str = Field(
        description="login, login_failed, login_throttled, logout, replaced, password_changed,"
        " role_changed, disabled, enabled, sessions_ended, token_created, token_revoked"
    )
    account: str
    address: str | None
    actor: str | None = Field(description="who made the change (an admin, or cli)")
    detail: str | None


class EventPublic(BaseModel):
    """One canonical DNS event from the lake (see ``dnsieve.schema``)."""

    ts: datetime
    src_ip: str | None = Field(description="the client")
    dst_ip: str | None = Field(description="the server")
    proto: str | None
    qname: str | None
    qtype: str | None
    rcode: str | None
    answers: list[str]
    registered_domain: str | None


class AlertEventsPublic(BaseModel):
    """The raw events behind an alert: its entity's events in its window, newest first."""

    alert_id: str
    lake_configured: bool = Field(description="the server was started with a lake")
    available: bool = Field(description="the lake could be read")
    message: str | None = Field(description="why nothing is shown (no lake, unreadable, empty)")
    window_start: datetime
    window_end: datetime
    domains: list[str] = Field(description="registered domains matched (empty: any)")
    clients: list[str] = Field(description="clients matched (empty: any)")
    total: int = Field(description="events in the window")
    shown: int
    limit: int
    events: list[EventPublic]


class PrecisionPoint(BaseModel):
    """Prequential precision@k of one UTC day (see docs/web.md, "Model quality")."""

    day: str
    verdicts: int = Field(description="alerts whose first verdict was given that day")
    threats: int
    base_rate: float = Field(description="share of threats among them (precision of chance)")
    model_version: int | None = Field(description="the frozen model (null: prior only)")
    precision: dict[str, float | None] = Field(
        description="k → precision@k among the day's alerts ranked by the frozen model"
    )


class VersionVerdicts(BaseModel):
    """Verdicts given while a model version was the active one, by label."""

    model_version: int | None
    threat: int = 0
    benign: int = 0
    not_relevant: int = 0


class PrecisionPublic(BaseModel):
    """Precision@k over time and verdict counts per model version."""

    definition: str
    ks: list[int]
    days: int
    points: list[PrecisionPoint]
    pooled: dict[str, float | None] = Field(
        description="k → mean daily precision@k weighted by min(k, verdicts)"
    )
    unscored_days: list[str] = Field(description="days whose frozen model could not be loaded")
    by_version: list[VersionVerdicts]

    @classmethod
    def of(cls, rep: PrecisionReport) -> PrecisionPublic:
        points = [
            PrecisionPoint(
                day=r["day"].isoformat(),
                verdicts=r["verdicts"],
                threats=r["threats"],
                base_rate=r["base_rate"],
                model_version=r["model_version"],
                precision={str(k): r[f"p_at_{k}"] for k in rep.ks},
            )
            for r in rep.daily.iter_rows(named=True)
        ]
        return cls(
            definition=PRECISION_DEFINITION,
            ks=list(rep.ks),
            days=rep.days,
            points=points,
            pooled={str(k): v for k, v in rep.pooled.items()},
            unscored_days=[d.isoformat() for d in rep.unscored_days],
            by_version=[VersionVerdicts.model_validate(v) for v in rep.by_version],
        )
