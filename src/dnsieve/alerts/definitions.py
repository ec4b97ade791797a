"""Threat definitions in the alert store: versioned, authored, approved, audited.

A *definition* is an analyst's own statement of what is a threat to them (ARCHITECTURE §1
"Threat definitions"): a Sigma rule, a watchlist or an anomaly rule (:mod:`dnsieve.rules`).
It lives in the alert store next to the alerts it raises, so that one database holds the
whole analyst state, and every change is kept:

* ``definitions``: the current version of each definition (unique ``name``), its kind,
  body, severity, ATT&CK technique ids, author, reason, optional expiry and state:
  ``draft`` (written, not evaluated), ``enabled`` or ``disabled``.  Analysts write
  drafts; enabling needs the ``approve`` right (admins), which the web layer and CLI check.
* ``definition_versions``: every body a definition ever had (``version`` 1, 2, ...).
* ``definition_events``: the audit trail (created, edited, enabled, disabled, hunted,
  imported), with the actor, time and a detail text.

Every write goes through :meth:`AlertStore._write`, so other processes (server workers)
see it through the store's generation counter like any other change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from dnsieve.alerts.store import AlertStore, UTCDateTime, metadata

__all__ = [
    "DEFINITION_KINDS",
    "DEFINITION_STATES",
    "Definition",
    "DefinitionError",
    "DefinitionEvent",
    "DefinitionStore",
    "definition_events",
    "definition_versions",
    "definitions",
]

DefinitionKind = Literal["sigma", "watchlist", "anomaly"]
DEFINITION_KINDS: tuple[str, ...] = ("sigma", "watchlist", "anomaly")
DEFINITION_STATES: tuple[str, ...] = ("draft", "enabled", "disabled")
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
#: Longest definition name and body accepted (a watchlist of ~100k names fits).
MAX_NAME = 120
MAX_BODY = 16 * 1024 * 1024

definitions = sa.Table(
    "definitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(MAX_NAME), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("techniques", sa.Text, nullable=False),  # JSON list of ATT&CK ids
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime),
)

definition_versions = sa.Table(
    "definition_versions",
    metadata,
    sa.Column("definition_id", sa.Integer, sa.ForeignKey("definitions.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

definition_events = sa.Table(
    "definition_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("definition_id", sa.Integer, sa.ForeignKey("definitions.id"), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text),
)


class DefinitionError(ValueError):
    """A definition request the store refuses (unknown name, bad value, duplicate)."""


@dataclass(frozen=True)
class Definition:
    """One threat definition, at its current version."""

    id: int
    name: str
    kind: str
    body: str
    version: int
    state: str
    severity: str
    techniques: tuple[str, ...]
    author: str
    reason: str
    confidence: float
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None

    @property
    def detector(self) -> str:
        """The detector name its alerts carry: ``rule:<name>``."""
        return f"rule:{self.name}"

    def active(self, now: datetime | None = None) -> bool:
        """Enabled and not expired."""
        t = now or datetime.now(UTC)
        return self.state == "enabled" and (self.expires_at is None or self.expires_at > t)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "body": self.body,
            "version": self.version,
            "state": self.state,
            "severity": self.severity,
            "techniques": list(self.techniques),
            "author": self.author,
            "reason": self.reason,
            "confidence": self.confidence,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass(frozen=True)
class DefinitionEvent:
    """One audit-trail entry of a definition."""

    definition: str
    at: datetime
    actor: str
    action: str
    detail: str | None


def _definition(row: Any) -> Definition:
    return Definition(
        id=int(row["id"]),
        name=str(row["name"]),
        kind=str(row["kind"]),
        body=str(row["body"]),
        version=int(row["version"]),
        state=str(row["state"]),
        severity=str(row["severity"]),
        techniques=tuple(json.loads(row["techniques"] or "[]")),
        author=str(row["author"]),
        reason=str(row["reason"]),
        confidence=float(row["confidence"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
    )


def _check(name: str, kind: str, body: str, severity: str, confidence: float) -> None:
    if not name or len(name) > MAX_NAME or any(c in name for c in "\r\n\t"):
        raise DefinitionError(f"a definition name is 1-{MAX_NAME} characters on one line")
    if kind not in DEFINITION_KINDS:
        raise DefinitionError(f"kind must be one of {', '.join(DEFINITION_KINDS)}, got {kind!r}")
    if not body.strip():
        raise DefinitionError("the definition body is empty")
    if len(body) > MAX_BODY:
        raise DefinitionError(f"the definition body is larger than {MAX_BODY // 2**20} MiB")
    if severity not in SEVERITIES:
        raise DefinitionError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    if not 0.0 < confidence <= 1.0:
        raise DefinitionError(f"confidence must be in (0, 1], got {confidence}")


class DefinitionStore:
    """Definitions in an :class:`~dnsieve.alerts.store.AlertStore`'s database."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store

    def _now(self, now: datetime | None) -> datetime:
        return now or datetime.now(UTC)

    def _event(
        self, conn: Any, def_id: int, actor: str, action: str, detail: str | None, at: datetime
    ) -> None:
        conn.execute(
            definition_events.insert().values(
                definition_id=def_id, at=at, actor=actor, action=action, detail=detail
            )
        )

    def get(self, name: str) -> Definition:
        """The definition called ``name``; :class:`DefinitionError` if there is none."""
        with self.store.engine.connect() as conn:
            row = (
                conn.execute(sa.select(definitions).where(definitions.c.name == name))
                .mappings()
                .first()
            )
        if row is None:
            raise DefinitionError(f"no definition named {name!r}")
        return _definition(row)

    def all(self, state: str | None = None, kind: str | None = None) -> list[Definition]:
        """Every definition (optionally one state or kind), by name."""
        q = sa.select(definitions).order_by(definitions.c.name)
        if state is not None:
            q = q.where(definitions.c.state == state)
        if kind is not None:
            q = q.where(definitions.c.kind == kind)
        with self.store.engine.connect() as conn:
            return [_definition(r) for r in conn.execute(q).mappings()]

    def active(self, now: datetime | None = None) -> list[Definition]:
        """The enabled, unexpired definitions: what ``run``/``detect`` evaluate."""
        t = self._now(now)
        return [d for d in self.all(state="enabled") if d.active(t)]

    def add(
        self,
        name: str,
        kind: str,
        body: str,
        author: str,
        reason: str,
        severity: str = "high",
        techniques: Sequence[str] = (),
        confidence: float = 0.9,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> Definition:
        """Create a definition as a ``draft`` (version 1)."""
        _check(name, kind, body, severity, confidence)
        t = self._now(now)
        with self.store._write() as conn:
            if conn.execute(sa.select(definitions.c.id).where(definitions.c.name == name)).first():
                raise DefinitionError(f"a definition named {name!r} exists already")
            res = conn.execute(
                definitions.insert().values(
                    name=name, kind=kind, body=body, version=1, state="draft",
                    severity=severity, techniques=json.dumps(sorted(set(techniques))),
                    author=author, reason=reason, confidence=confidence,
                    created_at=t, updated_at=t, expires_at=expires_at,
                )
            )  # fmt: skip
            def_id = int(res.inserted_primary_key[0])  # type: ignore[index]
            conn.execute(
                definition_versions.insert().values(
                    definition_id=def_id, version=1, body=body, author=author,
                    reason=reason, created_at=t,
                )
            )  # fmt: skip
            self._event(conn, def_id, author, "created", f"{kind}, severity {severity}", t)
        return self.get(name)

    def edit(
        self,
        name: str,
        author: str,
        reason: str,
        body: str | None = None,
        severity: str | None = None,
        techniques: Sequence[str] | None = None,
        confidence: float | None = None,
        now: datetime | None = None,
    ) -> Definition:
        """A new version of ``name``.  An edited enabled definition goes back to ``draft``:
        what runs is always what was approved."""
        cur = self.get(name)
        new_body = cur.body if body is None else body
        sev = severity or cur.severity
        conf = cur.confidence if confidence is None else confidence
        _check(name, cur.kind, new_body, sev, conf)
        t = self._now(now)
        changed_body = new_body != cur.body
        version = cur.version + (1 if changed_body else 0)
        state = "draft" if changed_body and cur.state == "enabled" else cur.state
        with self.store._write() as conn:
            conn.execute(
                definitions.update()
                .where(definitions.c.id == cur.id)
                .values(
                    body=new_body, version=version, state=state, severity=sev,
                    techniques=json.dumps(sorted(set(techniques if techniques is not None else cur.techniques))),
                    confidence=conf, updated_at=t, reason=reason,
                )
            )  # fmt: skip
            if changed_body:
                conn.execute(
                    definition_versions.insert().values(
                        definition_id=cur.id, version=version, body=new_body, author=author,
                        reason=reason, created_at=t,
                    )
                )  # fmt: skip
            detail = f"version {version}" + (
                " (back to draft for approval)" if state != cur.state else ""
            )
            self._event(conn, cur.id, author, "edited", detail, t)
        return self.get(name)

    def set_state(
        self, name: str, state: str, actor: str, now: datetime | None = None
    ) -> Definition:
        """Enable, disable or return to draft.  Rights are the caller's to check."""
        if state not in DEFINITION_STATES:
            raise DefinitionError(f"state must be one of {', '.join(DEFINITION_STATES)}")
        cur = self.get(name)
        t = self._now(now)
        with self.store._write() as conn:
            conn.execute(
                definitions.update()
                .where(definitions.c.id == cur.id)
                .values(state=state, updated_at=t)
            )
            self._event(conn, cur.id, actor, state if state != "draft" else "drafted", None, t)
        return self.get(name)

    def record(
        self,
        name: str,
        actor: str,
        action: str,
        detail: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Add an audit entry (``hunted``, ``tested``, ``imported`` ...)."""
        cur = self.get(name)
        with self.store._write() as conn:
            self._event(conn, cur.id, actor, action, detail, self._now(now))

    def versions(self, name: str) -> list[tuple[int, str, str, datetime]]:
        """(version, author, reason, created_at) of every version of ``name``."""
        cur = self.get(name)
        q = (
            sa.select(definition_versions)
            .where(definition_versions.c.definition_id == cur.id)
            .order_by(definition_versions.c.version)
        )
        with self.store.engine.connect() as conn:
            return [
                (int(r["version"]), str(r["author"]), str(r["reason"]), r["created_at"])
                for r in conn.execute(q).mappings()
            ]

    def body_at(self, name: str, version: int) -> str:
        """The body of ``name`` at ``version``."""
        cur = self.get(name)
        q = sa.select(definition_versions.c.body).where(
            definition_versions.c.definition_id == cur.id, definition_versions.c.version == version
        )
        with self.store.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            raise DefinitionError(f"{name!r} has no version {version}")
        return str(row[0])

    def history(self, name: str | None = None, limit: int = 200) -> list[DefinitionEvent]:
        """The audit trail, newest first (of one definition, or of all)."""
        q = (
            sa.select(definition_events, definitions.c.name)
            .join(definitions, definitions.c.id == definition_events.c.definition_id)
            .order_by(definition_events.c.at.desc(), definition_events.c.id.desc())
            .limit(limit)
        )
        if name is not None:
            q = q.where(definitions.c.name == name)
        with self.store.engine.connect() as conn:
            return [
                DefinitionEvent(
                    str(r["name"]), r["at"], str(r["actor"]), str(r["action"]), r["detail"]
                )
                for r in conn.execute(q).mappings()
            ]


def active_definitions(url: str, now: datetime | None = None) -> list[Definition]:
    """The active definitions of the store at ``url``, for jobs that store no alerts.

    A SQLite URL whose file does not exist holds no definitions: ``[]``, and no
    database is created (``dnsieve detect`` must not leave a store behind).
    """
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:" and not Path(path).exists():
            return []
    with AlertStore.open(url) as store:
        return DefinitionStore(store).active(now)
