"""How good is the threat model's ranking?  Prequential precision@k over time.

**Definition.**  Time is cut into UTC days.  For day ``D``:

* the *judged set* is the alerts whose **first** verdict (threat, benign or
  not relevant) was given on ``D``; each is labelled by its verdict as known
  now (a later correction wins; an alert re-opened for review and not judged
  again has no label and is left out), threat = positive, benign and not
  relevant = negative;
* the *frozen model* is the model version that was active when the first
  verdict of ``D`` was given (recorded with every verdict in the audit
  trail), i.e. the model as it stood before it learned anything from ``D``;
  no version yet means the prior-only model that scored the queue then;
* the judged set is ranked by the frozen model's P(threat), and
  **precision@k** is the share of threats among the top ``min(k, n)``
  (``n`` the size of the judged set), with ties at the cut counted at their
  expected value under a random order.

Every label is thus predicted by a model that had not seen it (test, then
train, one day at a time), and one ranking function is used per day.  Each
point carries ``n`` and the day's **base rate** (share of threats among all
``n``, the precision of a random order): a day with ``n < k`` says little,
and precision@k above the base rate is what the ranking adds.  The
*pooled* value over days is the micro-average: threats in all daily top-k
slots over all those slots.

A caveat worth reading: analysts choose what they judge, mostly the top of
the queue, so the judged set is not a random sample of alerts; the measure
says how well the model orders what analysts look at.

:func:`precision_at_k` and :func:`daily_precision` are pure;
:func:`judged_alerts` reads the store (audit trail, judged alerts, one model
blob per day) and :func:`precision_report` puts the two together.

>>> precision_at_k([0.9, 0.8, 0.7, 0.6], [True, False, True, False], k=3)
0.6666666666666666
>>> precision_at_k([0.5, 0.5, 0.5, 0.1], [True, False, False, True], k=1)
0.3333333333333333
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

if TYPE_CHECKING:
    from dnsieve.alerts.base import AuditEntry
    from dnsieve.alerts.store import AlertStore

__all__ = [
    "DEFAULT_KS",
    "JUDGED_SCHEMA",
    "PrecisionReport",
    "SourceSplit",
    "daily_precision",
    "first_verdict_days",
    "judged_alerts",
    "pooled_precision",
    "precision_at_k",
    "precision_report",
    "queue_sources",
    "source_split",
    "verdict_counts_by_version",
]

DEFAULT_KS: tuple[int, ...] = (10, 20)
VERDICT_LABELS: tuple[str, ...] = ("threat", "benign", "not_relevant")

#: the input of :func:`daily_precision`: one row per judged alert
JUDGED_SCHEMA: dict[str, Any] = {
    "alert_id": pl.String,
    "day": pl.Date,
    "threat": pl.Boolean,
    "score": pl.Float64,
    "model_version": pl.Int64,
}


def precision_at_k(scores: npt.ArrayLike, threats: npt.ArrayLike, k: int) -> float | None:
    """Share of threats among the ``min(k, n)`` highest scores (None when ``n == 0``).

    Scores tied at the cut count at their expected value under a random
    order; NaN scores rank last.

    >>> precision_at_k([0.5, 0.5, 0.5, 0.1], [True, False, False, True], k=4)
    0.5
    >>> precision_at_k([], [], k=10) is None
    True
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(threats, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError("scores and threats must be 1-D and of the same length")
    n = s.size
    if n == 0:
        return None
    s = np.where(np.isnan(s), -np.inf, s)
    m = min(k, n)
    cut = np.sort(s)[::-1][m - 1]
    above = s > cut
    tie = s == cut
    hits = float(y[above].sum()) + (m - int(above.sum())) * float(y[tie].mean())
    return hits / m


def daily_precision(judged: pl.DataFrame, ks: Sequence[int] = DEFAULT_KS) -> pl.DataFrame:
    """One row per day of ``judged`` (:data:`JUDGED_SCHEMA`), oldest first.

    Columns: ``day``, ``verdicts``, ``threats``, ``base_rate``,
    ``model_version`` (the day's first non-null one) and ``p_at_K`` for each
    ``K`` in ``ks``.  A day whose scores are all null (its model could not be
    loaded) gets null precisions.

    >>> import polars as pl
    >>> from datetime import date
    >>> df = pl.DataFrame({"alert_id": ["a", "b", "c"], "day": [date(2024, 1, 1)] * 3,
    ...     "threat": [True, False, False], "score": [0.9, 0.2, 0.4], "model_version": [3, 3, 3]})
    >>> daily_precision(df, [1, 2]).select("verdicts", "threats", "p_at_1", "p_at_2").row(0)
    (3, 1, 1.0, 0.5)
    """
    cols = ["day", "verdicts", "threats", "base_rate", "model_version"]
    out: dict[str, list[Any]] = {c: [] for c in cols}
    for k in ks:
        out[f"p_at_{k}"] = []
    for (day,), g in judged.sort("day").group_by("day", maintain_order=True):
        y = g["threat"].to_numpy().astype(bool)
        sc = g["score"]
        mv = g["model_version"].drop_nulls()
        out["day"].append(day)
        out["verdicts"].append(g.height)
        out["threats"].append(int(y.sum()))
        out["base_rate"].append(float(y.mean()) if g.height else None)
        out["model_version"].append(int(mv[0]) if len(mv) else None)
        scored = sc.null_count() < g.height
        for k in ks:
            p = precision_at_k(sc.fill_null(np.nan).to_numpy(), y, k) if scored else None
            out[f"p_at_{k}"].append(p)
    schema: dict[str, Any] = {
        "day": pl.Date,
        "verdicts": pl.Int64,
        "threats": pl.Int64,
        "base_rate": pl.Float64,
        "model_version": pl.Int64,
        **{f"p_at_{k}": pl.Float64 for k in ks},
    }
    return pl.DataFrame(out, schema=schema)


def pooled_precision(daily: pl.DataFrame, k: int) -> float | None:
    """Threats in all daily top-``k`` slots over all those slots (days without scores skipped).

    >>> import polars as pl
    >>> d = pl.DataFrame({"verdicts": [2, 10], "p_at_5": [0.5, 0.8]})
    >>> pooled_precision(d, 5)  # (0.5·2 + 0.8·5) / (2 + 5)
    0.7142857142857143
    """
    col = f"p_at_{k}"
    rows = daily.filter(pl.col(col).is_not_null())
    if rows.height == 0:
        return None
    slots = rows["verdicts"].clip(upper_bound=k).cast(pl.Float64).to_numpy()
    return float(np.dot(rows[col].to_numpy(), slots) / slots.sum())


@dataclass(frozen=True)
class _First:
    alert_id: str
    at: datetime
    day: date


def first_verdict_days(
    trail: Sequence[AuditEntry],
) -> tuple[dict[str, _First], dict[date, int | None]]:
    """From the audit trail (oldest first): each alert's first verdict, and per UTC day
    the model version active at that day's first status change (the frozen model)."""
    firsts: dict[str, _First] = {}
    day_model: dict[date, int | None] = {}
    for e in sorted(trail, key=lambda e: (e.at, e.id)):
        day = e.at.astimezone(UTC).date()
        if day not in day_model:
            day_model[day] = e.model_version
        if e.new_status in VERDICT_LABELS and e.alert_id not in firsts:
            firsts[e.alert_id] = _First(e.alert_id, e.at, day)
    return firsts, day_model


def verdict_counts_by_version(trail: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """Verdicts given while each model version was active, by label (newest version first;
    ``model_version`` None: before any version existed)."""
    counts: dict[int | None, Counter[str]] = {}
    for e in trail:
        if e.new_status in VERDICT_LABELS:
            counts.setdefault(e.model_version, Counter())[e.new_status] += 1
    order = sorted(counts, key=lambda v: -1 if v is None else v, reverse=True)
    return [
        {"model_version": v, **{lab: counts[v].get(lab, 0) for lab in VERDICT_LABELS}}
        for v in order
    ]


def judged_alerts(
    store: AlertStore,
    days: int = 90,
    now: datetime | None = None,
    trail: Sequence[AuditEntry] | None = None,
) -> pl.DataFrame:
    """The judged alerts of the last ``days`` UTC days (:data:`JUDGED_SCHEMA`), each scored
    by its day's frozen model.  A day whose model cannot be loaded gets null scores."""
    from dnsieve.alerts.base import AlertStoreError
    from dnsieve.alerts.feedback import feature_matrix
    from dnsieve.threat.model import ModelFormatError, ThreatModel

    now = now or datetime.now(UTC)
    first_day = (now.astimezone(UTC) - timedelta(days=days - 1)).date()
    trail = store.audit_trail() if trail is None else trail
    firsts, day_model = first_verdict_days(trail)
    wanted = {a for a, f in firsts.items() if f.day >= first_day}
    if not wanted:
        return pl.DataFrame(schema=JUDGED_SCHEMA)
    by_day: dict[date, list[Any]] = {}
    for a in store.iter_alerts(status=list(VERDICT_LABELS), include_suppressed=True, now=now):
        if a.id in wanted:
            by_day.setdefault(firsts[a.id].day, []).append(a)
    rows: dict[str, list[Any]] = {c: [] for c in JUDGED_SCHEMA}
    for day in sorted(by_day):
        alerts = by_day[day]
        mv = day_model.get(day)
        scores: list[float | None]
        try:
            blob = store.get_model_version(mv).blob if mv is not None else None
            if mv is not None and blob is None:
                raise ModelFormatError("no blob")
            model = ThreatModel.from_bytes(blob) if blob is not None else ThreatModel()
            scores = [float(p) for p in model.predict_proba(feature_matrix(alerts))]
        except (AlertStoreError, ModelFormatError, ValueError):
            scores = [None] * len(alerts)
        for a, sc in zip(alerts, scores, strict=True):
            rows["alert_id"].append(a.id)
            rows["day"].append(day)
            rows["threat"].append(a.status == "threat")
            rows["score"].append(sc)
            rows["model_version"].append(mv)
    return pl.DataFrame(rows, schema=JUDGED_SCHEMA)


@dataclass(frozen=True)
class PrecisionReport:
    """Daily precision@k (:func:`daily_precision`), pooled values and per-version counts."""

    ks: tuple[int, ...]
    days: int
    daily: pl.DataFrame
    pooled: dict[int, float | None]
    by_version: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unscored_days(self) -> list[date]:
        """Days whose frozen model could not be loaded."""
        if not self.ks or self.daily.height == 0:
            return []
        col = f"p_at_{self.ks[0]}"
        return list(self.daily.filter(pl.col(col).is_null())["day"])


def precision_report(
    store: AlertStore,
    ks: Sequence[int] = DEFAULT_KS,
    days: int = 90,
    now: datetime | None = None,
) -> PrecisionReport:
    """Prequential precision@k per day over the last ``days`` days, and verdict counts per
    model version (see the module doc for the definition)."""
    ks = tuple(dict.fromkeys(int(k) for k in ks))
    if not ks or min(ks) < 1:
        raise ValueError("every k must be at least 1")
    trail = store.audit_trail()
    judged = judged_alerts(store, days, now, trail)
    daily = daily_precision(judged, ks)
    return PrecisionReport(
        ks=ks,
        days=days,
        daily=daily,
        pooled={k: pooled_precision(daily, k) for k in ks},
        by_version=verdict_counts_by_version(trail),
    )


@dataclass(frozen=True)
class SourceSplit:
    """Where the top ``k`` open alerts of the queue come from."""

    k: int
    definitions: int  # raised by an analyst's definition (``rule:<name>``)
    matched: int  # raised by a detector where a definition also matched (``def_confidence``)
    detectors: int  # raised by a detector alone

    @property
    def total(self) -> int:
        return self.definitions + self.matched + self.detectors


def source_split(detectors: Sequence[str], def_confidence: Sequence[float], k: int) -> SourceSplit:
    """Count the first ``k`` rows (already in queue order) by source.

    >>> source_split(["rule:ioc", "tunnel", "dga", "beacon"], [0.9, 0.8, 0.0, 0.0], 3)
    SourceSplit(k=3, definitions=1, matched=1, detectors=1)
    """
    d = m = o = 0
    for det, conf in list(zip(detectors, def_confidence, strict=True))[:k]:
        if str(det).startswith("rule:"):
            d += 1
        elif conf and conf > 0:
            m += 1
        else:
            o += 1
    return SourceSplit(k, d, m, o)


def queue_sources(store: AlertStore, ks: Sequence[int] = DEFAULT_KS) -> list[SourceSplit]:
    """:func:`source_split` of the open queue (ranked by P(threat), as analysts see it)."""
    from dnsieve.alerts.base import OPEN_STATUSES

    top = store.list_alerts(status=list(OPEN_STATUSES), limit=max(ks, default=0))
    dets = [a.detector for a in top]
    conf = [float((a.features or {}).get("def_confidence") or 0.0) for a in top]
    return [source_split(dets, conf, k) for k in ks]
