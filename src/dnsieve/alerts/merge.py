"""Planning an episode upsert: which windows join which stored alert (pure, no I/O).

An alert is one detector × entity *episode* (:mod:`dnsieve.episodes`): its windows,
sorted by start, are never more than ``gap`` apart.  Each upsert batch brings windows;
both stores (SQL and in memory) read what they hold near those windows and hand it to
:func:`plan_upsert`, which decides, for every episode the batch touches:

- the alert's **id**: the id of its first window (earliest start, ties by window id),
  :func:`dnsieve.alerts.base.alert_id` of that window.  An episode that starts with a
  window therefore has the id a one-window alert always had, and the id depends only on
  the set of windows, never on the order or the batches they came in;
- its **windows**: every window id is kept (table ``alert_windows``), so a window seen
  again is counted once (``n_windows``) and any window's id still finds its alert;
- a **bridge**: a window that closes the gap between two stored episodes merges them
  into the one that starts first.  The other one's verdicts and audit trail move to it,
  and an audit entry records the merge (:func:`merge_statuses` says which status wins);
- the **representative window** (highest score, ties: the earliest): its score,
  evidence, features and P(threat) are the alert's.  ``p_value`` is the smallest of
  all windows', ``times_seen`` counts every sighting.

>>> merge_statuses(["benign", "new"]), merge_statuses(["threat", "benign"])
('benign', 'needs_review')
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dnsieve.alerts.base import VERDICTS, Alert, PreparedAlert, severity_of, window_entry

__all__ = [
    "DEFAULT_EPISODE_GAP",
    "MAX_WINDOWS",
    "MERGE_ACTOR",
    "AuditNote",
    "EpisodePlan",
    "Window",
    "merge_statuses",
    "plan_upsert",
    "summarise_windows",
    "window_of",
]

#: windows kept as an alert's evidence: the first and last few and the highest-scoring
#: ones (``n_windows`` always counts all of them)
MAX_WINDOWS = 48
_EDGE = 8

#: the actor of the audit entries a merge writes
MERGE_ACTOR = "dnsieve"
#: quiet time after which a detector × entity's windows start a new alert (the default of
#: ``[alerts] episode_gap_hours``)
DEFAULT_EPISODE_GAP = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class Window:
    """One incoming window, valid and unique by ``id`` within its batch.

    ``evidence`` and ``features`` are JSON object texts (as the stores write them)."""

    id: str
    detector: str
    entity_type: str
    entity: str
    domain: str | None
    client: str | None
    start: datetime
    end: datetime
    score: float
    p_value: float | None
    threat_probability: float | None
    evidence: str
    features: str | None
    times_seen: int
    suppressed_by: int | None


@dataclass(frozen=True, slots=True)
class AuditNote:
    """A system entry for the audit trail of ``alert_id`` (a merge or a re-key)."""

    alert_id: str
    old_status: str
    new_status: str
    comment: str


@dataclass
class EpisodePlan:
    """What one batch changes; the stores apply it in one transaction, in this order:
    ``rows`` (upsert by id), ``moves`` (verdicts and windows of ``loser`` → ``winner``,
    then delete ``loser``), ``notes`` (audit), ``windows`` (upsert by window id)."""

    #: full alert rows (column → value; evidence/features/windows as Python objects)
    rows: list[dict[str, Any]] = field(default_factory=list)
    moves: list[tuple[str, str]] = field(default_factory=list)
    notes: list[AuditNote] = field(default_factory=list)
    #: ``(window id, alert id, start, end, score, p_value, times_seen)``: new windows are
    #: inserted, known ones get max score, min p-value and ``times_seen`` added
    windows: list[tuple[str, str, datetime, datetime, float, float | None, int]] = field(
        default_factory=list
    )
    #: ``(alert id, status)`` of stored alerts whose status a merge changed (``rows`` do
    #: not change a stored alert's status)
    status_changes: list[tuple[str, str]] = field(default_factory=list)
    inserted: int = 0
    merged: int = 0
    joined: int = 0
    new_windows: int = 0


def merge_statuses(statuses: Sequence[str]) -> str:
    """The status of episodes merged into one.

    One verdict among open episodes stands (the analyst judged the campaign; it proved
    longer); different verdicts, or an open ``needs_review``, go (back) to
    ``needs_review`` so that an analyst settles them; only open ``new`` ones stay new.
    """
    verdicts = {s for s in statuses if s in VERDICTS}
    if len(verdicts) > 1:
        return "needs_review"
    if verdicts:
        return verdicts.pop()
    return "needs_review" if "needs_review" in statuses else "new"


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _entry_key(e: Mapping[str, Any]) -> tuple[str, str]:
    return (str(e["start"]), str(e["end"]))


def summarise_windows(
    entries: Iterable[Mapping[str, Any]], cap: int = MAX_WINDOWS
) -> list[dict[str, Any]]:
    """The windows an alert keeps as evidence, oldest first.

    Repeats of one window (same start and end) merge (max score, min p-value).  Up to
    ``cap`` are kept: the first and last few and the highest-scoring of the rest, a
    selection that summarising summaries gives again (so batches never change it).

    >>> w = [window_entry(datetime(2024, 1, 1, h, tzinfo=UTC),
    ...      datetime(2024, 1, 1, h + 1, tzinfo=UTC), float(h % 5), None) for h in range(20)]
    >>> [e["score"] for e in summarise_windows(w, cap=6)]
    [0.0, 3.0, 4.0, 4.0, 4.0, 4.0]
    """
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for e in entries:
        k = _entry_key(e)
        old = best.get(k)
        if old is None:
            best[k] = dict(e)
            continue
        if float(e["score"]) > float(old["score"]):
            old["score"] = float(e["score"])
        p = e.get("p_value")
        if p is not None and (old.get("p_value") is None or p < old["p_value"]):
            old["p_value"] = p
    items = sorted(best.values(), key=_entry_key)
    if len(items) <= cap:
        return items
    edge = min(_EDGE, cap // 4)
    keep = {_entry_key(e) for e in items[:edge]} | {_entry_key(e) for e in items[-edge:]}
    by_score = sorted(items, key=lambda e: (-float(e["score"]), _entry_key(e)))
    for e in by_score:
        if len(keep) >= cap:
            break
        keep.add(_entry_key(e))
    return [e for e in items if _entry_key(e) in keep]


def _loads(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def plan_upsert(
    batch: Sequence[Window],
    known: Mapping[str, str],
    stored: Mapping[str, Alert],
    gap: timedelta,
    now: datetime,
) -> EpisodePlan:
    """Decide what a batch of windows does to the stored episodes.

    ``known`` maps the batch's window ids that are already stored to their alert id;
    ``stored`` holds (at least) those alerts and every stored alert of the batch's
    detector × entity pairs whose episode comes within ``gap`` of a new window.
    """
    plan = EpisodePlan()
    by_key: dict[tuple[str, str], list[tuple[datetime, datetime, str, Any]]] = defaultdict(list)
    seen: dict[str, list[Window]] = defaultdict(list)  # alert id → its windows seen again
    for a in stored.values():
        assert a.episode_start is not None and a.episode_end is not None
        by_key[(a.detector, a.entity)].append((a.episode_start, a.episode_end, a.id, a))
    for w in batch:
        aid = known.get(w.id)
        if aid is not None and aid in stored:
            seen[aid].append(w)
        else:
            by_key[(w.detector, w.entity)].append((w.start, w.end, w.id, w))
    for items in by_key.values():
        items.sort(key=lambda t: (t[0], t[1], t[2]))
        cluster: list[Any] = []
        end: datetime | None = None
        for start, stop, _, obj in items:
            if end is not None and start - end > gap:
                _plan_cluster(cluster, seen, gap, now, plan)
                cluster = []
                end = None
            cluster.append(obj)
            end = stop if end is None or stop > end else end
        if cluster:
            _plan_cluster(cluster, seen, gap, now, plan)
    return plan


def _plan_cluster(
    cluster: list[Any],
    seen: Mapping[str, list[Window]],
    gap: timedelta,
    now: datetime,
    plan: EpisodePlan,
) -> None:
    members: list[Alert] = [o for o in cluster if isinstance(o, Alert)]
    new: list[Window] = [o for o in cluster if isinstance(o, Window)]
    again: list[Window] = [w for a in members for w in seen.get(a.id, ())]
    if not new and not again:
        return  # a stored episode the batch does not touch
    firsts = [(a.episode_start, a.id) for a in members] + [(w.start, w.id) for w in new]
    win_id = min(firsts, key=lambda t: (t[0], t[1]))[1]
    winner = next((a for a in members if a.id == win_id), None)
    fresh = [*new, *again]

    # the representative window: highest score, then earliest; a fresh sighting of the
    # same window wins a tie (a re-run brings the current model's P(threat) and features)
    def rank(score: float, s: datetime, e: datetime, stored_: int, i: str) -> tuple[Any, ...]:
        return (-score, s, e, stored_, i)

    cands: list[tuple[tuple[Any, ...], Any]] = [
        (rank(a.score, a.window_start, a.window_end, 1, a.id), a) for a in members
    ] + [(rank(w.score, w.start, w.end, 0, w.id), w) for w in fresh]
    rep = min(cands, key=lambda c: c[0])[1]
    best_stored = min(
        ((rank(a.score, a.window_start, a.window_end, 1, a.id), a) for a in members),
        key=lambda c: c[0],
        default=(None, None),
    )[1]
    if isinstance(rep, Window):
        evidence: dict[str, Any] = _loads(rep.evidence) or {}
        features = _loads(rep.features)
        tp = rep.threat_probability
        if best_stored is not None:
            tp = tp if tp is not None else best_stored.threat_probability
            features = features if features is not None else best_stored.features
        ws, we, score = rep.start, rep.end, rep.score
    else:
        evidence, features, tp = rep.evidence, rep.features, rep.threat_probability
        ws, we, score = rep.window_start, rep.window_end, rep.score
    pvals = [a.p_value for a in members if a.p_value is not None] + [
        w.p_value for w in fresh if w.p_value is not None
    ]
    p_value = min(pvals) if pvals else None
    entries: list[Mapping[str, Any]] = [e for a in members for e in (a.windows or [])]
    entries += [window_entry(w.start, w.end, w.score, w.p_value) for w in fresh]
    status = merge_statuses([a.status for a in members]) if members else "new"
    head = fresh[0] if fresh else None
    proto: Any = head if head is not None else members[0]
    suppressed_by = head.suppressed_by if head is not None else members[0].suppressed_by
    starts = [a.episode_start for a in members] + [w.start for w in new]
    ends = [a.episode_end for a in members] + [w.end for w in new]
    row = {
        "id": win_id,
        "detector": proto.detector,
        "entity_type": proto.entity_type,
        "entity": proto.entity,
        "domain": proto.domain,
        "client": proto.client,
        "window_start": ws,
        "window_end": we,
        "score": score,
        "p_value": p_value,
        "threat_probability": tp,
        "status": status,
        "severity": severity_of(tp, p_value),
        "evidence": evidence,
        "features": features,
        "first_seen": min((a.first_seen for a in members), default=now),
        "last_seen": now,
        "times_seen": sum(a.times_seen for a in members) + sum(w.times_seen for w in fresh),
        "suppressed_by": suppressed_by,
        "episode_start": min(s for s in starts if s is not None),
        "episode_end": max(e for e in ends if e is not None),
        "n_windows": sum(a.n_windows for a in members) + len(new),
        "windows": summarise_windows(entries),
    }
    plan.rows.append(row)
    if winner is not None and winner.status != status:
        plan.status_changes.append((win_id, status))
    if members:
        plan.merged += 1
    else:
        plan.inserted += 1
    plan.new_windows += len(new)
    before = winner.status if winner is not None else None
    for a in sorted(members, key=lambda a: (a.episode_start, a.id)):
        if a.id == win_id:
            continue
        plan.moves.append((a.id, win_id))
        if winner is not None or len(members) > 1:
            plan.joined += 1
            what = (
                f"episode {a.id} ({a.status}, {a.n_windows} window(s) from "
                f"{_iso(a.episode_start or a.window_start)} to {_iso(a.episode_end or a.window_end)})"
                f" joined this one: a window within {_hours(gap)} of both bridged them"
            )
        else:
            what = f"re-keyed from {a.id}: a window before the episode's first one arrived"
        plan.notes.append(AuditNote(win_id, before or a.status, status, what))
        before = status
    for w in new:
        plan.windows.append((w.id, win_id, w.start, w.end, w.score, w.p_value, w.times_seen))
    for w in again:
        plan.windows.append((w.id, win_id, w.start, w.end, w.score, w.p_value, w.times_seen))


def _hours(gap: timedelta) -> str:
    h = gap.total_seconds() / 3600
    return f"{h:g} h"


def window_of(p: PreparedAlert) -> Window:
    """A prepared (per-row path) anomaly as a :class:`Window`."""
    return Window(
        id=p.id,
        detector=p.detector,
        entity_type=p.entity_type,
        entity=p.entity,
        domain=p.domain,
        client=p.client,
        start=p.window_start,
        end=p.window_end,
        score=p.score,
        p_value=p.p_value,
        threat_probability=p.threat_probability,
        evidence=json.dumps(p.evidence),
        features=json.dumps(p.features) if p.features is not None else None,
        times_seen=p.times_seen,
        suppressed_by=p.suppressed_by,
    )
