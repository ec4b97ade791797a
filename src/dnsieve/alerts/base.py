"""Alert store contract: records, status workflow, ids, and the store Protocol.

Everything here is pure: both :class:`dnsieve.alerts.store.AlertStore` (SQL)
and :class:`dnsieve.alerts.memory.MemoryAlertStore` build on it, so the two
agree on ids, merging, severity and the status workflow.

An alert is one detector × entity *episode*: a run of windows no more than the
episode gap apart (:mod:`dnsieve.episodes`, :mod:`dnsieve.alerts.merge`).  Ids are
idempotent: a window's id is the hex SHA-256 prefix of (detector, entity, window
start, window end), and an alert has the id of its first window, so re-running a
detection or replaying a stream, in any order or batches, finds the same alert.

>>> from datetime import datetime, UTC
>>> t0, t1 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 1, tzinfo=UTC)
>>> alert_id("tunnel", "evil.com", t0, t1)
'0d058b026caeef4eafd3e616'
>>> check_transition("new", "threat")
>>> try:
...     check_transition("threat", "new")
... except InvalidTransition as exc:
...     print(exc)
cannot move an alert from 'threat' to 'new'; allowed: benign, needs_review, not_relevant
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import polars as pl

from dnsieve.rules.match import AllowListError, AllowMatcher, alert_subjects, parse_value

__all__ = [
    "OPEN_STATUSES",
    "STATUSES",
    "VERDICTS",
    "Alert",
    "AlertNotFound",
    "AlertStoreError",
    "AlertStoreProtocol",
    "AlertSummary",
    "AllowEntry",
    "AmbiguousId",
    "AuditEntry",
    "InvalidTransition",
    "ModelVersion",
    "PreparedAlert",
    "RunRecord",
    "Status",
    "UpsertReport",
    "VerdictResult",
    "alert_id",
    "alerts_to_frame",
    "check_transition",
    "normalize_status",
    "prepare_anomalies",
    "severity_of",
    "status_filter",
    "validate_allow",
    "window_entry",
]

Status = Literal["new", "needs_review", "threat", "benign", "not_relevant"]
STATUSES: tuple[str, ...] = get_args(Status)
VERDICTS: tuple[str, ...] = ("threat", "benign", "not_relevant")
OPEN_STATUSES: tuple[str, ...] = ("new", "needs_review")

#: Allowed status changes.  A verdict may be corrected or re-opened for review;
#: nothing goes back to ``new`` except an alert the queue takes out of review.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"needs_review", *VERDICTS}),
    "needs_review": frozenset({"new", *VERDICTS}),
    **{v: frozenset({"needs_review", *(w for w in VERDICTS if w != v)}) for v in VERDICTS},
}

#: Severity from P(threat) when the threat model scored the alert ...
TP_SEVERITY: tuple[tuple[float, str], ...] = ((0.9, "critical"), (0.7, "high"), (0.4, "medium"))
#: ... else from the detector's p-value (no "critical" without the model).
P_SEVERITY: tuple[tuple[float, str], ...] = ((1e-6, "high"), (1e-3, "medium"))
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")

ID_HEX = 24


class AlertStoreError(Exception):
    """Base class of the store's user-facing errors."""


class AlertNotFound(AlertStoreError, KeyError):
    """No alert (or allow-list entry, model version, run) with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class AmbiguousId(AlertStoreError, ValueError):
    """An id prefix matches more than one alert."""


class InvalidTransition(AlertStoreError, ValueError):
    """A status value or status change that the workflow does not allow."""


def normalize_status(value: str) -> str:
    """``not-relevant``/``Not Relevant`` → ``not_relevant``; raises for unknown values."""
    v = value.strip().lower().replace("-", "_").replace(" ", "_")
    if v not in STATUSES:
        raise InvalidTransition(f"unknown status {value!r}; choose one of {', '.join(STATUSES)}")
    return v


def check_transition(old: str, new: str) -> None:
    """Raise :class:`InvalidTransition` unless ``old → new`` is allowed."""
    allowed = TRANSITIONS.get(old, frozenset())
    if new not in allowed:
        if old == new:
            raise InvalidTransition(f"the alert is already {old!r}")
        raise InvalidTransition(
            f"cannot move an alert from {old!r} to {new!r}; allowed: {', '.join(sorted(allowed))}"
        )


def status_filter(status: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``None``/``all`` → no filter, ``open`` → new + needs_review, else the named statuses."""
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    out: list[str] = []
    for s in items:
        key = s.strip().lower()
        if key == "all":
            return None
        if key == "open":
            out += OPEN_STATUSES
        else:
            out.append(normalize_status(s))
    return tuple(dict.fromkeys(out))


def severity_of(threat_probability: float | None, p_value: float | None) -> str:
    """``low``/``medium``/``high``/``critical`` from P(threat), else from the p-value.

    >>> severity_of(0.95, None), severity_of(None, 1e-7), severity_of(None, None)
    ('critical', 'high', 'low')
    """
    if threat_probability is not None:
        for cut, name in TP_SEVERITY:
            if threat_probability >= cut:
                return name
        return "low"
    if p_value is not None:
        for cut, name in P_SEVERITY:
            if p_value <= cut:
                return name
    return "low"


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _epoch_us(ts: datetime) -> int:
    d = _utc(ts) - datetime(1970, 1, 1, tzinfo=UTC)
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def alert_id(detector: str, entity: str, window_start: datetime, window_end: datetime) -> str:
    """Stable id of one window: hex SHA-256 prefix (96 bits) of detector, entity and window
    (µs, UTC).  An alert (an episode of windows) has the id of its first window."""
    key = f"{detector}\x1f{entity}\x1f{_epoch_us(window_start)}\x1f{_epoch_us(window_end)}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:ID_HEX]


def window_entry(
    start: datetime, end: datetime, score: float, p_value: float | None
) -> dict[str, Any]:
    """One window of an alert's ``windows`` evidence (times ISO 8601 UTC).

    >>> window_entry(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 1, tzinfo=UTC), 2.5, None)
    {'start': '2024-01-01T00:00:00Z', 'end': '2024-01-01T01:00:00Z', 'score': 2.5, 'p_value': None}
    """
    return {"start": _iso(start), "end": _iso(end), "score": float(score), "p_value": p_value}


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Alert:
    """One stored alert.  ``suppressed`` is whether an active allow-list entry hides it now."""

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
    evidence: dict[str, Any]
    features: dict[str, Any] | None
    first_seen: datetime
    last_seen: datetime
    times_seen: int
    suppressed_by: int | None
    #: the episode: first window's start, last window's end, number of distinct windows
    episode_start: datetime | None = None
    episode_end: datetime | None = None
    n_windows: int = 1
    #: the episode's windows as evidence, oldest first: ``{"start", "end", "score",
    #: "p_value"}`` each; for a long episode a capped selection (:func:`summarise_windows`)
    windows: list[dict[str, Any]] | None = None
    suppressed: bool = False

    def __post_init__(self) -> None:
        if self.episode_start is None:
            object.__setattr__(self, "episode_start", self.window_start)
        if self.episode_end is None:
            object.__setattr__(self, "episode_end", self.window_end)
        if self.windows is None:
            one = [window_entry(self.window_start, self.window_end, self.score, self.p_value)]
            object.__setattr__(self, "windows", one)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times as ISO 8601 UTC)."""
        out = asdict(self)
        for k in (
            "window_start",
            "window_end",
            "first_seen",
            "last_seen",
            "episode_start",
            "episode_end",
        ):
            out[k] = _iso(out[k])
        return out


@dataclass(frozen=True, slots=True)
class AlertSummary:
    """An alert as a list shows it: :class:`Alert` without the ``evidence`` and
    ``features`` documents (read them with ``AlertStore.get_alert``)."""

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
    episode_start: datetime | None = None
    episode_end: datetime | None = None
    n_windows: int = 1
    suppressed: bool = False


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return _utc(ts).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class AuditEntry:
    """One status change: who, when, from what to what, why, under which model version."""

    id: int
    alert_id: str
    actor: str
    at: datetime
    old_status: str
    new_status: str
    comment: str | None
    model_version: int | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = _iso(self.at)
        return out


@dataclass(frozen=True)
class VerdictResult:
    """What :meth:`AlertStoreProtocol.set_status` returns: the alert after the change
    (with its evidence and features, for the threat model's online update) and the audit row."""

    alert: Alert
    old_status: str
    new_status: str
    audit: AuditEntry


@dataclass(frozen=True)
class AllowEntry:
    """One allow-list entry, active or not."""

    id: int
    kind: str
    value: str
    detector: str | None
    reason: str
    author: str
    created_at: datetime
    expires_at: datetime | None
    removed_at: datetime | None

    def active(self, now: datetime) -> bool:
        """Not removed and not expired at ``now``."""
        return self.removed_at is None and (self.expires_at is None or self.expires_at > now)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("created_at", "expires_at", "removed_at"):
            out[k] = _iso(out[k])
        return out


@dataclass(frozen=True)
class ModelVersion:
    """One saved threat-model version.  ``params`` is JSON, ``blob`` opaque bytes."""

    id: int
    created_at: datetime
    kind: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    parent_id: int | None
    active: bool
    blob: bytes | None = None


@dataclass(frozen=True)
class RunRecord:
    """One pipeline run: inputs, counts and rejects, for the UI."""

    id: int
    started: datetime
    finished: datetime | None
    inputs: dict[str, Any]
    counts: dict[str, Any]
    rejects: dict[str, Any]


@dataclass
class UpsertReport:
    """Outcome of one :meth:`AlertStoreProtocol.upsert_anomalies` call: ``received``
    windows; ``inserted`` new alerts (episodes) and ``merged`` stored ones they extended
    or saw again; ``suppressed``: the written alerts an allow-list entry hides."""

    received: int = 0
    inserted: int = 0
    merged: int = 0
    suppressed: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)
    #: the alerts (episodes) the call wrote, in the order they were written
    ids: list[str] = field(default_factory=list)
    #: windows never stored before (the others were seen again)
    new_windows: int = 0
    #: stored episodes merged into another one because a window bridged them
    joined: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "inserted": self.inserted,
            "merged": self.merged,
            "new_windows": self.new_windows,
            "joined": self.joined,
            "suppressed": self.suppressed,
            "rejects": dict(self.rejects),
            "repaired": dict(self.repaired),
        }


# --------------------------------------------------------------------------- preparation


@dataclass
class PreparedAlert:
    """One anomaly ready to upsert (already merged with duplicates inside its batch)."""

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
    severity: str
    evidence: dict[str, Any]
    features: dict[str, Any] | None
    times_seen: int = 1
    suppressed_by: int | None = None

    def row(self, now: datetime) -> dict[str, Any]:
        """The column values of a new one-window alert (an episode of this window)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(status="new", first_seen=now, last_seen=now)
        out.update(episode_start=self.window_start, episode_end=self.window_end, n_windows=1)
        out["windows"] = [
            window_entry(self.window_start, self.window_end, self.score, self.p_value)
        ]
        return out


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _json_safe(value: Any) -> Any:
    """Non-finite floats → None, NUL characters escaped (PostgreSQL rejects both in JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, Mapping):
        return {str(k).replace("\x00", "\\x00"): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _as_json_obj(value: Any, what: str, repaired: Counter[str]) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return _json_safe(dict(value))  # type: ignore[no-any-return,unused-ignore]
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            repaired[f"{what}_not_json"] += 1
            return {"raw": _json_safe(value)}
        if isinstance(parsed, dict):
            return _json_safe(parsed)  # type: ignore[no-any-return,unused-ignore]
        repaired[f"{what}_not_object"] += 1
        return {"value": _json_safe(parsed)}
    repaired[f"{what}_not_object"] += 1
    return {"value": _json_safe(value)}


REQUIRED = ("detector", "entity_type", "entity", "window_start", "window_end", "score")


def prepare_anomalies(
    frame: pl.DataFrame, matcher: AllowMatcher | None, report: UpsertReport
) -> list[PreparedAlert]:
    """Validate, id, merge duplicates and match allow-lists for one batch of anomalies.

    ``frame`` is in the ANOMALY shape, optionally with ``threat_probability``
    (float), ``features`` (a struct, a dict or a JSON string) and the
    calibration's ``global_p``, which, when present, is stored as the alert's
    p-value (the calibrated significance an analyst should see).  Rows without
    a key or with a non-finite score are rejected (counted in ``report``).
    Duplicates of one id within the batch are merged: max score (its evidence
    with it), min p-value, ``times_seen`` = their number.
    """
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"anomaly frame lacks column(s) {', '.join(missing)}")
    cols = [
        c
        for c in (*REQUIRED, "p_value", "global_p", "evidence", "threat_probability", "features")
        if c in frame.columns
    ]
    report.received += frame.height
    out: dict[str, PreparedAlert] = {}
    for r in frame.select(cols).iter_rows(named=True):
        det, etype, ent = r["detector"], r["entity_type"], r["entity"]
        ws, we = r["window_start"], r["window_end"]
        if not det or not etype or ent is None or ws is None or we is None:
            report.rejects["missing_key"] += 1
            continue
        if not isinstance(ws, datetime) or not isinstance(we, datetime):
            report.rejects["bad_window"] += 1
            continue
        ws, we = _utc(ws), _utc(we)
        if we < ws:
            report.rejects["bad_window"] += 1
            continue
        score = _finite(r["score"])
        if score is None:
            report.rejects["bad_score"] += 1
            continue
        det, etype, ent = (str(x).replace("\x00", "\\x00") for x in (det, etype, ent))
        tp = _finite(r.get("threat_probability"))
        if tp is not None and not 0.0 <= tp <= 1.0:
            report.repaired["threat_probability_out_of_range"] += 1
            tp = min(1.0, max(0.0, tp))
        pv = _finite(r.get("global_p"))
        pv = pv if pv is not None else _finite(r.get("p_value"))
        evidence = _as_json_obj(r.get("evidence"), "evidence", report.repaired) or {}
        features = _as_json_obj(r.get("features"), "features", report.repaired)
        aid = alert_id(det, ent, ws, we)
        prev = out.get(aid)
        if prev is not None:
            prev.times_seen += 1
            if score > prev.score:
                prev.score, prev.evidence = score, evidence
            if pv is not None and (prev.p_value is None or pv < prev.p_value):
                prev.p_value = pv
            prev.threat_probability = tp if tp is not None else prev.threat_probability
            prev.features = features if features is not None else prev.features
            prev.severity = severity_of(prev.threat_probability, prev.p_value)
            continue
        domain, client = alert_subjects(etype, ent)
        rule = matcher.match(det, etype, ent) if matcher is not None and len(matcher) else None
        out[aid] = PreparedAlert(
            id=aid,
            detector=det,
            entity_type=etype,
            entity=ent,
            domain=domain,
            client=client,
            window_start=ws,
            window_end=we,
            score=score,
            p_value=pv,
            threat_probability=tp,
            severity=severity_of(tp, pv),
            evidence=evidence,
            features=features,
            suppressed_by=rule.id if rule is not None else None,
        )
    return list(out.values())


def alerts_to_frame(alerts: Sequence[Alert]) -> pl.DataFrame:
    """Alerts → Polars frame in the ANOMALY shape (the worst window) plus id, status,
    threat_probability, features and the episode (``episode_start``, ``episode_end``,
    ``n_windows``): one row per alert, so training rows count episodes.

    Evidence and features are JSON strings, as detectors emit them, so the
    frame can go straight back into :func:`dnsieve.threat.features` code.
    """
    return pl.DataFrame(
        {
            "id": [a.id for a in alerts],
            "detector": [a.detector for a in alerts],
            "entity_type": [a.entity_type for a in alerts],
            "entity": [a.entity for a in alerts],
            "window_start": pl.Series(
                [a.window_start for a in alerts], dtype=pl.Datetime("us", "UTC")
            ),
            "window_end": pl.Series([a.window_end for a in alerts], dtype=pl.Datetime("us", "UTC")),
            "episode_start": pl.Series(
                [a.episode_start for a in alerts], dtype=pl.Datetime("us", "UTC")
            ),
            "episode_end": pl.Series(
                [a.episode_end for a in alerts], dtype=pl.Datetime("us", "UTC")
            ),
            "n_windows": pl.Series([a.n_windows for a in alerts], dtype=pl.Int64),
            "score": pl.Series([a.score for a in alerts], dtype=pl.Float64),
            "p_value": pl.Series([a.p_value for a in alerts], dtype=pl.Float64),
            "evidence": [json.dumps(a.evidence, sort_keys=True) for a in alerts],
            "threat_probability": pl.Series(
                [a.threat_probability for a in alerts], dtype=pl.Float64
            ),
            "status": [a.status for a in alerts],
            "features": [
                json.dumps(a.features, sort_keys=True) if a.features is not None else None
                for a in alerts
            ],
        },
        schema_overrides={"features": pl.String, "evidence": pl.String},
    )


def validate_allow(
    kind: str,
    value: str,
    reason: str,
    author: str,
    detector: str | None,
    expires_at: datetime | None,
    now: datetime,
) -> tuple[str, str, str | None, datetime | None]:
    """Shared validation of a new allow-list entry; returns ``(kind, value, detector, expires_at)``."""
    if not reason or not reason.strip():
        raise AllowListError("an allow-list entry needs a reason")
    if not author or not author.strip():
        raise AllowListError("an allow-list entry needs an author")
    kind, value = parse_value(kind, value)
    detector = detector.strip() if detector and detector.strip() else None
    if kind == "detector_entity" and detector is None:
        raise AllowListError("a detector × entity entry needs a detector")
    if expires_at is not None:
        expires_at = (
            expires_at.replace(tzinfo=UTC)
            if expires_at.tzinfo is None
            else expires_at.astimezone(UTC)
        )
        if expires_at <= now:
            raise AllowListError("the expiry is not in the future")
    return kind, value, detector, expires_at


# --------------------------------------------------------------------------- the Protocol


@runtime_checkable
class AlertStoreProtocol(Protocol):
    """What every alert store offers (SQL: :class:`~dnsieve.alerts.store.AlertStore`;
    in memory, for tests of other layers: :class:`~dnsieve.alerts.memory.MemoryAlertStore`)."""

    def upsert_anomalies(
        self,
        frame: pl.DataFrame,
        now: datetime | None = None,
        batch_size: int = 5000,
        gap: timedelta | None = None,
    ) -> UpsertReport:
        """Merge windows into episodes (alerts) ``gap`` apart at most (the store's
        ``episode_gap`` by default); statuses and verdicts are kept."""
        ...

    def get_alert(self, id_or_prefix: str, now: datetime | None = None) -> Alert:
        """One alert by id or unique id prefix."""
        ...

    def list_alerts(
        self,
        status: str | Sequence[str] | None = None,
        detector: str | None = None,
        entity: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        include_suppressed: bool = False,
        order: Literal["queue", "recent"] = "queue",
        now: datetime | None = None,
    ) -> list[Alert]:
        """Alerts, the review queue first (P(threat), then score) or most recent first."""
        ...

    def iter_alerts(
        self,
        status: str | Sequence[str] | None = None,
        detector: str | None = None,
        include_suppressed: bool = False,
        now: datetime | None = None,
        batch: int = 1000,
    ) -> Iterator[Alert]:
        """All matching alerts in window order, read in batches (for exports)."""
        ...

    def count_by_status(
        self, include_suppressed: bool = False, now: datetime | None = None
    ) -> dict[str, int]:
        """Number of alerts per status."""
        ...

    def set_status(
        self,
        alert_id: str,
        status: str,
        actor: str,
        comment: str | None = None,
        now: datetime | None = None,
        model_version: int | None = None,
    ) -> VerdictResult:
        """Audited status change; raises :class:`InvalidTransition`."""
        ...

    def record_verdict(
        self,
        alert_id: str,
        label: str,
        actor: str,
        comment: str | None = None,
        now: datetime | None = None,
    ) -> VerdictResult:
        """An analyst's verdict (threat, benign, not_relevant), audited."""
        ...

    def audit_trail(
        self, alert_id: str | None = None, limit: int | None = None
    ) -> list[AuditEntry]:
        """Status changes, oldest first."""
        ...

    def set_threat_probabilities(self, probabilities: Mapping[str, float]) -> int:
        """Store the threat model's P(threat) per alert id (severity follows)."""
        ...

    def add_allow(
        self,
        kind: str,
        value: str,
        reason: str,
        author: str,
        detector: str | None = None,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> AllowEntry:
        """Add an allow-list entry; stored alerts it matches are suppressed at once."""
        ...

    def remove_allow(self, entry_id: int, now: datetime | None = None) -> AllowEntry:
        """Remove an entry; the alerts it suppressed come back (unless another entry matches)."""
        ...

    def list_allow(
        self, include_inactive: bool = False, now: datetime | None = None
    ) -> list[AllowEntry]:
        """Allow-list entries, active ones only by default."""
        ...

    def save_model_version(
        self,
        kind: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
        blob: bytes | None = None,
        parent_id: int | None = None,
        activate: bool = True,
        now: datetime | None = None,
    ) -> ModelVersion:
        """Save a model version (and make it the active one of its kind)."""
        ...

    def active_model_version(self, kind: str | None = None) -> ModelVersion | None:
        """The active version of ``kind`` (of any kind: the newest active one)."""
        ...

    def list_model_versions(self, kind: str | None = None) -> list[ModelVersion]:
        """All versions, newest first."""
        ...

    def activate_model_version(self, version_id: int) -> ModelVersion:
        """Make a version the active one of its kind (rollback)."""
        ...

    def start_run(self, inputs: Mapping[str, Any], now: datetime | None = None) -> int:
        """Record the start of a pipeline run; returns its id."""
        ...

    def finish_run(
        self,
        run_id: int,
        counts: Mapping[str, Any],
        rejects: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> RunRecord:
        """Record the end of a run."""
        ...

    def list_runs(self, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
