"""An in-memory alert store with the same behaviour as the SQL one.

For tests of other layers (threat model, web UI, streaming runner) that need
a store but not a database.  It is never a substitute for testing
:class:`dnsieve.alerts.store.AlertStore` itself: the shared store tests run
against both.

>>> from datetime import datetime, UTC
>>> import polars as pl
>>> s = MemoryAlertStore()
>>> t = datetime(2024, 1, 1, tzinfo=UTC)
>>> frame = pl.DataFrame({"detector": ["dga"], "entity_type": ["domain"], "entity": ["x.com"],
...     "window_start": [t], "window_end": [t], "score": [3.0]})
>>> s.upsert_anomalies(frame).inserted, s.upsert_anomalies(frame).merged
(1, 1)
>>> s.list_alerts()[0].times_seen
2
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl

from dnsieve.alerts.base import (
    STATUSES,
    VERDICTS,
    Alert,
    AlertNotFound,
    AllowEntry,
    AmbiguousId,
    AuditEntry,
    InvalidTransition,
    ModelVersion,
    RunRecord,
    UpsertReport,
    VerdictResult,
    check_transition,
    normalize_status,
    prepare_anomalies,
    severity_of,
    status_filter,
    validate_allow,
)
from dnsieve.alerts.merge import (
    DEFAULT_EPISODE_GAP,
    MERGE_ACTOR,
    EpisodePlan,
    Window,
    plan_upsert,
    window_of,
)
from dnsieve.rules.match import AllowListError, AllowMatcher, Rule

__all__ = ["MemoryAlertStore"]

_HEX = re.compile(r"[0-9a-f]{1,64}")


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


class MemoryAlertStore:
    """Dictionaries behind a lock; same ids, merging, workflow and allow-list rules as SQL."""

    episode_gap: timedelta = DEFAULT_EPISODE_GAP

    def __init__(self) -> None:
        self._alerts: dict[str, Alert] = {}
        self._audit: list[AuditEntry] = []
        self._allow: dict[int, AllowEntry] = {}
        self._models: dict[int, ModelVersion] = {}
        self._runs: dict[int, RunRecord] = {}
        #: window id → [alert id, start, end, score, p_value, times_seen]
        self._windows: dict[str, list[Any]] = {}
        self._lock = threading.RLock()

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> MemoryAlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    def _rules(self, now: datetime) -> list[Rule]:
        return [
            Rule(e.id, e.kind, e.value, e.detector, e.expires_at)
            for e in self._allow.values()
            if e.active(now)
        ]

    def _view(self, a: Alert, now: datetime) -> Alert:
        entry = self._allow.get(a.suppressed_by) if a.suppressed_by is not None else None
        return dataclasses.replace(a, suppressed=entry is not None and entry.active(now))

    # ------------------------------------------------------------------ alerts

    def upsert_anomalies(
        self,
        frame: pl.DataFrame,
        now: datetime | None = None,
        batch_size: int = 5000,
        gap: timedelta | None = None,
    ) -> UpsertReport:
        now = _now(now)
        gap = self.episode_gap if gap is None else gap
        report = UpsertReport()
        with self._lock:
            for off in range(0, frame.height, max(1, batch_size)):
                prepared = prepare_anomalies(
                    frame.slice(off, batch_size), AllowMatcher(self._rules(now)), report
                )
                batch = [window_of(p) for p in prepared]
                known = {w.id: self._windows[w.id][0] for w in batch if w.id in self._windows}
                plan = plan_upsert(batch, known, self._near(batch, known, gap), gap, now)
                self._apply(plan, now)
                report.inserted += plan.inserted
                report.merged += plan.merged
                report.new_windows += plan.new_windows
                report.joined += plan.joined
                report.suppressed += sum(r["suppressed_by"] is not None for r in plan.rows)
                report.ids += [r["id"] for r in plan.rows]
        return report

    def _near(
        self, batch: Sequence[Window], known: Mapping[str, str], gap: timedelta
    ) -> dict[str, Alert]:
        out = {aid: self._alerts[aid] for aid in known.values()}
        keys: dict[tuple[str, str], list[Window]] = {}
        for w in batch:
            if w.id not in known:
                keys.setdefault((w.detector, w.entity), []).append(w)
        for a in self._alerts.values():
            ws = keys.get((a.detector, a.entity))
            if not ws or a.episode_start is None or a.episode_end is None:
                continue
            lo = min(w.start for w in ws) - gap
            hi = max(w.end for w in ws) + gap
            if a.episode_start <= hi and a.episode_end >= lo:
                out[a.id] = a
        return out

    def _apply(self, plan: EpisodePlan, now: datetime) -> None:
        for r in plan.rows:
            self._alerts[r["id"]] = Alert(**r, suppressed=False)
        for loser, winner in plan.moves:
            self._audit = [
                dataclasses.replace(e, alert_id=winner) if e.alert_id == loser else e
                for e in self._audit
            ]
            for rec in self._windows.values():
                if rec[0] == loser:
                    rec[0] = winner
            self._alerts.pop(loser, None)
        for n in plan.notes:
            self._audit.append(
                AuditEntry(
                    len(self._audit) + 1,
                    n.alert_id,
                    MERGE_ACTOR,
                    now,
                    n.old_status,
                    n.new_status,
                    n.comment,
                    None,
                )
            )
        for wid, aid, start, end, score, p, times in plan.windows:
            old = self._windows.get(wid)
            if old is None:
                self._windows[wid] = [aid, start, end, score, p, times]
                continue
            old[0] = aid
            old[3] = max(old[3], score)
            if p is not None and (old[4] is None or p < old[4]):
                old[4] = p
            old[5] += times

    def resolve_id(self, id_or_prefix: str) -> str:
        """Full alert id from an id or a unique prefix."""
        p = id_or_prefix.strip().lower()
        if not _HEX.fullmatch(p):
            raise AlertNotFound(f"not an alert id: {id_or_prefix!r} (ids are hexadecimal)")
        if p in self._alerts:
            return p
        found = sorted(k for k in self._alerts if k.startswith(p))
        if not found:  # a window's id, or the id of an episode merged into another
            found = sorted({r[0] for k, r in self._windows.items() if k.startswith(p)})
            if len(found) == 1:
                return str(found[0])
        if not found:
            raise AlertNotFound(f"no alert with id {id_or_prefix!r}")
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise AmbiguousId(f"id prefix {id_or_prefix!r} is ambiguous: {shown}")
        return found[0]

    def get_alert(self, id_or_prefix: str, now: datetime | None = None) -> Alert:
        with self._lock:
            return self._view(self._alerts[self.resolve_id(id_or_prefix)], _now(now))

    def _filtered(
        self,
        now: datetime,
        status: str | Sequence[str] | None,
        detector: str | None,
        entity: str | None,
        include_suppressed: bool,
    ) -> list[Alert]:
        statuses = status_filter(status)
        out = []
        for a in self._alerts.values():
            v = self._view(a, now)
            if statuses is not None and v.status not in statuses:
                continue
            if detector and v.detector != detector:
                continue
            if entity and v.entity != entity:
                continue
            if not include_suppressed and v.suppressed:
                continue
            out.append(v)
        return out

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
        with self._lock:
            rows = self._filtered(_now(now), status, detector, entity, include_suppressed)
        if order == "queue":
            rows.sort(key=lambda a: a.id)
            rows.sort(key=lambda a: a.window_start, reverse=True)
            rows.sort(key=lambda a: a.score, reverse=True)
            rows.sort(key=lambda a: (a.threat_probability is None, -(a.threat_probability or 0.0)))
        else:
            rows.sort(key=lambda a: a.id)
            rows.sort(key=lambda a: a.score, reverse=True)
            rows.sort(key=lambda a: a.window_start, reverse=True)
        rows = rows[offset:]
        return rows if limit is None else rows[:limit]

    def iter_alerts(
        self,
        status: str | Sequence[str] | None = None,
        detector: str | None = None,
        include_suppressed: bool = False,
        now: datetime | None = None,
        batch: int = 1000,
    ) -> Iterator[Alert]:
        with self._lock:
            rows = self._filtered(_now(now), status, detector, None, include_suppressed)
        rows.sort(key=lambda a: (a.window_start, a.id))
        yield from rows

    def count_by_status(
        self, include_suppressed: bool = False, now: datetime | None = None
    ) -> dict[str, int]:
        with self._lock:
            rows = self._filtered(_now(now), None, None, None, include_suppressed)
        got: dict[str, int] = {}
        for a in rows:
            got[a.status] = got.get(a.status, 0) + 1
        return {s: got[s] for s in STATUSES if s in got}

    def suppressed_count(self, entry_id: int) -> int:
        """How many stored alerts this entry suppresses (its own expiry not considered)."""
        with self._lock:
            return sum(a.suppressed_by == entry_id for a in self._alerts.values())

    # ------------------------------------------------------------------ workflow

    def set_status(
        self,
        alert_id: str,
        status: str,
        actor: str,
        comment: str | None = None,
        now: datetime | None = None,
        model_version: int | None = None,
    ) -> VerdictResult:
        new = normalize_status(status)
        if not actor or not actor.strip():
            raise InvalidTransition("a status change needs an actor (who made it)")
        now = _now(now)
        with self._lock:
            aid = self.resolve_id(alert_id)
            old = self._alerts[aid].status
            check_transition(old, new)
            self._alerts[aid] = dataclasses.replace(self._alerts[aid], status=new)
            active = self.active_model_version()
            mv = model_version if model_version is not None else (active.id if active else None)
            audit = AuditEntry(len(self._audit) + 1, aid, actor.strip(), now, old, new, comment, mv)
            self._audit.append(audit)
            return VerdictResult(self._view(self._alerts[aid], now), old, new, audit)

    def record_verdict(
        self,
        alert_id: str,
        label: str,
        actor: str,
        comment: str | None = None,
        now: datetime | None = None,
    ) -> VerdictResult:
        v = normalize_status(label)
        if v not in VERDICTS:
            raise InvalidTransition(
                f"a verdict is one of threat, benign, not-relevant; got {label!r}"
            )
        return self.set_status(alert_id, v, actor, comment, now)

    def audit_trail(
        self, alert_id: str | None = None, limit: int | None = None
    ) -> list[AuditEntry]:
        with self._lock:
            aid = self.resolve_id(alert_id) if alert_id is not None else None
            rows = [e for e in self._audit if aid is None or e.alert_id == aid]
        rows.sort(key=lambda e: (e.at, e.id))
        return rows if limit is None else rows[:limit]

    def set_threat_probabilities(self, probabilities: Mapping[str, float]) -> int:
        n = 0
        with self._lock:
            for k, v in probabilities.items():
                a = self._alerts.get(k)
                if a is None or v is None or float(v) != float(v):
                    continue
                tp = min(1.0, max(0.0, float(v)))
                self._alerts[k] = dataclasses.replace(
                    a, threat_probability=tp, severity=severity_of(tp, a.p_value)
                )
                n += 1
        return n

    # ------------------------------------------------------------------ allow-lists

    def _reevaluate(self, ids: Sequence[str], now: datetime) -> None:
        matcher = AllowMatcher(self._rules(now))
        for aid in ids:
            a = self._alerts[aid]
            rule = matcher.match(a.detector, a.entity_type, a.entity)
            self._alerts[aid] = dataclasses.replace(a, suppressed_by=rule.id if rule else None)

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
        now = _now(now)
        kind, value, detector, expires_at = validate_allow(
            kind, value, reason, author, detector, expires_at, now
        )
        with self._lock:
            entry = AllowEntry(
                id=max(self._allow, default=0) + 1,
                kind=kind,
                value=value,
                detector=detector,
                reason=reason.strip(),
                author=author.strip(),
                created_at=now,
                expires_at=expires_at,
                removed_at=None,
            )
            self._allow[entry.id] = entry
            self._reevaluate(list(self._alerts), now)
        return entry

    def remove_allow(self, entry_id: int, now: datetime | None = None) -> AllowEntry:
        now = _now(now)
        with self._lock:
            entry = self._allow.get(entry_id)
            if entry is None:
                raise AlertNotFound(f"no allow-list entry {entry_id}")
            if entry.removed_at is not None:
                raise AllowListError(f"allow-list entry {entry_id} was already removed")
            entry = dataclasses.replace(entry, removed_at=now)
            self._allow[entry_id] = entry
            self._reevaluate(
                [k for k, a in self._alerts.items() if a.suppressed_by == entry_id], now
            )
        return entry

    def list_allow(
        self, include_inactive: bool = False, now: datetime | None = None
    ) -> list[AllowEntry]:
        now = _now(now)
        with self._lock:
            return [e for _, e in sorted(self._allow.items()) if include_inactive or e.active(now)]

    # ------------------------------------------------------------------ model versions

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
        with self._lock:
            if activate:
                for k, m in list(self._models.items()):
                    if m.kind == kind:
                        self._models[k] = dataclasses.replace(m, active=False)
            mv = ModelVersion(
                id=max(self._models, default=0) + 1,
                created_at=_now(now),
                kind=kind,
                params=dict(params),
                metrics=dict(metrics or {}),
                parent_id=parent_id,
                active=activate,
                blob=blob,
            )
            self._models[mv.id] = mv
            return mv

    def active_model_version(self, kind: str | None = None) -> ModelVersion | None:
        with self._lock:
            act = [
                m for m in self._models.values() if m.active and (kind is None or m.kind == kind)
            ]
        return max(act, key=lambda m: m.id) if act else None

    def list_model_versions(self, kind: str | None = None) -> list[ModelVersion]:
        with self._lock:
            rows = [m for m in self._models.values() if kind is None or m.kind == kind]
        return sorted(rows, key=lambda m: -m.id)

    def activate_model_version(self, version_id: int) -> ModelVersion:
        with self._lock:
            target = self._models.get(version_id)
            if target is None:
                raise AlertNotFound(f"no model version {version_id}")
            for k, m in list(self._models.items()):
                if m.kind == target.kind:
                    self._models[k] = dataclasses.replace(m, active=k == version_id)
            return self._models[version_id]

    # ------------------------------------------------------------------ runs

    def start_run(self, inputs: Mapping[str, Any], now: datetime | None = None) -> int:
        with self._lock:
            rid = max(self._runs, default=0) + 1
            self._runs[rid] = RunRecord(rid, _now(now), None, dict(inputs), {}, {})
            return rid

    def finish_run(
        self,
        run_id: int,
        counts: Mapping[str, Any],
        rejects: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> RunRecord:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise AlertNotFound(f"no run {run_id}")
            run = dataclasses.replace(
                run, finished=_now(now), counts=dict(counts), rejects=dict(rejects or {})
            )
            self._runs[run_id] = run
            return run

    def list_runs(self, limit: int | None = None) -> list[RunRecord]:
        with self._lock:
            rows = sorted(self._runs.values(), key=lambda r: -r.id)
        return rows if limit is None else rows[:limit]
