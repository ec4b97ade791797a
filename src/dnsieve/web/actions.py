"""What the pages and the API both do: one function per action, so they cannot drift apart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query

from dnsieve.alerts.base import STATUSES
from dnsieve.alerts.feedback import FeedbackOutcome, apply_verdict
from dnsieve.alerts.store import AlertStore
from dnsieve.rules.match import AllowListError, parse_expiry
from dnsieve.web.queue import SORTS, QueueQuery, expire_allow
from dnsieve.web.schemas import AllowPublic, ModelSummary, ModelVersionPublic
from dnsieve.web.users import User

__all__ = [
    "STATUS_PATTERN",
    "QueueParams",
    "add_allow",
    "allow_list",
    "end_allow",
    "give_verdict",
    "model_summary",
    "parse_expires",
]


#: The ``status`` filter's values (the spec lists them, so a request it allows is served).
STATUS_PATTERN = (
    "^("
    + "|".join(["open", "all", *STATUSES, *(s.replace("_", "-") for s in STATUSES if "_" in s)])
    + ")$"
)


async def queue_params(  # pure: async, so FastAPI runs it without a thread hop
    status: Annotated[
        str, Query(max_length=20, pattern=STATUS_PATTERN, description="open, all or one status")
    ] = "open",
    detector: Annotated[str | None, Query(max_length=64)] = None,
    domain: Annotated[
        str | None, Query(max_length=300, description="this domain and its subdomains")
    ] = None,
    client: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=300, description="search entities and ids")] = None,
    sort: Annotated[str, Query(pattern="^(" + "|".join(SORTS) + ")$")] = "threat",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 50,
    include_suppressed: bool = False,
    entity: Annotated[
        str | None, Query(max_length=400, description="exactly this entity (a campaign)")
    ] = None,
    group: Annotated[
        str | None,
        Query(pattern="^(campaign)?$", description="campaign: one row per detector × entity"),
    ] = None,
) -> QueueQuery:
    return QueueQuery(
        status=status,
        detector=detector or None,
        domain=domain or None,
        client=client or None,
        search=q or None,
        sort=sort,  # type: ignore[arg-type]
        page=page,
        per_page=per_page,
        include_suppressed=include_suppressed,
        group="campaign" if group == "campaign" else None,
        entity=entity or None,
    )


QueueParams = Annotated[QueueQuery, Depends(queue_params)]


def parse_expires(value: str | None, now: datetime) -> datetime | None:
    """An expiry from ``7d``/ISO text; absurd durations are an :class:`AllowListError` too."""
    try:
        return parse_expiry(value, now)
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, AllowListError):
            raise
        raise AllowListError(f"unusable expiry {value!r}") from None


def give_verdict(
    store: AlertStore, alert_id: str, label: str, user: User, comment: str | None
) -> FeedbackOutcome:
    """Record the verdict as ``user`` and let the threat model learn it (re-scoring the queue)."""
    return apply_verdict(store, alert_id, label, user.name, (comment or "").strip() or None)


def add_allow(
    store: AlertStore,
    kind: str,
    value: str,
    reason: str,
    user: User,
    detector: str | None = None,
    expires: str | None = None,
) -> AllowPublic:
    now = datetime.now(UTC)
    entry = store.add_allow(
        kind, value, reason, user.name, detector or None, parse_expires(expires, now), now
    )
    return AllowPublic.of(entry, now, store.suppressed_count(entry.id))


def end_allow(store: AlertStore, entry_id: int, expires: str | None) -> AllowPublic:
    """``now`` (or empty) ends the entry at once; a duration or time sets its expiry."""
    now = datetime.now(UTC)
    at = None if not expires or expires.strip().lower() == "now" else parse_expires(expires, now)
    entry = expire_allow(store, entry_id, at, now)
    return AllowPublic.of(entry, datetime.now(UTC), store.suppressed_count(entry.id))


def allow_list(store: AlertStore, include_inactive: bool = True) -> list[AllowPublic]:
    now = datetime.now(UTC)
    return [
        AllowPublic.of(e, now, store.suppressed_count(e.id))
        for e in store.list_allow(include_inactive=include_inactive, now=now)
    ]


def model_summary(store: AlertStore) -> ModelSummary:
    active = store.active_model_version()
    counts = store.count_by_status(include_suppressed=True)
    return ModelSummary(
        active=ModelVersionPublic.of(active) if active else None,
        versions=[ModelVersionPublic.of(m) for m in store.list_model_versions()],
        verdicts={k: counts.get(k, 0) for k in ("threat", "benign", "not_relevant")},
    )
