"""Initial training of the threat model from historical labels and past verdicts.

A labels CSV has one row per judged entity::

    entity,label[,detector][,window_start][,window_end]
    evil-tunnel.com,threat,tunnel,2024-03-07T14:00:00Z
    10.20.0.142,threat
    akamaiedge.net,benign

``label`` is ``threat`` (or ``malicious``/``1``) or ``benign`` /
``not-relevant`` (or ``0``).  A row labels every anomaly with the same entity
(case-insensitive; for ``client|domain`` anomalies the domain or the client
part also matches), of the same detector when one is given, whose window
overlaps ``[window_start, window_end]`` when those are given (a lone
``window_start`` must fall inside the anomaly's window).  When several rows
match one anomaly, ``threat`` wins.  Malformed rows (no entity, unknown label,
unparsable time) are counted with a reason in :class:`LabelStats`, never
raised.

:func:`train_from_labels` joins the labels to an anomaly frame, builds the
features and fits a :class:`~dnsieve.threat.model.ThreatModel`;
:func:`train_from_verdicts` does the same from stored verdicts (feature
vectors with their label and time).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from dnsieve.threat.features import TopList, anomaly_features
from dnsieve.threat.model import ThreatModel, label_value

__all__ = [
    "LabelStats",
    "TrainResult",
    "label_anomalies",
    "read_anomalies",
    "read_labels",
    "train",
    "train_from_labels",
    "train_from_verdicts",
]

_LABEL_SCHEMA: dict[str, pl.DataType] = {
    "entity": pl.String(),
    "label": pl.Int8(),
    "detector": pl.String(),
    "window_start": pl.Datetime("us", "UTC"),
    "window_end": pl.Datetime("us", "UTC"),
}


@dataclass
class LabelStats:
    """Counts of a labels file: rows read, kept, and rejects by reason."""

    rows_read: int = 0
    rows_kept: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def reject(self, reason: str, example: str) -> None:
        """Count one malformed row (the first example of each reason is kept, truncated)."""
        self.rejects[reason] += 1
        self.examples.setdefault(reason, example[:200])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rejects": dict(self.rejects),
            "reject_examples": dict(self.examples),
        }


def _parse_time(text: str | None) -> datetime | None:
    if text is None or not text.strip():
        return None
    s = text.strip()
    try:
        if s.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(s), UTC)
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"bad time {s!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def read_labels(
    source: str | Path | io.TextIOBase, default_label: str | None = None
) -> tuple[pl.DataFrame, LabelStats]:
    """Parse a labels CSV (path or text stream) into a frame and counts.

    ``default_label`` is used when the file has no ``label`` column (a
    ground-truth list such as ``dnsieve simulate``'s ``labels.csv``, where
    every row is a threat).
    """
    stats = LabelStats()
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8", errors="replace", newline="") as fh:
            return _read(fh, stats, default_label)
    return _read(source, stats, default_label)


def _read(fh: Any, stats: LabelStats, default_label: str | None) -> tuple[pl.DataFrame, LabelStats]:
    reader = csv.reader(fh)
    header = next(reader, None)
    rows: list[dict[str, Any]] = []
    if header is None:
        return pl.DataFrame(schema=_LABEL_SCHEMA), stats
    cols = [h.strip().lower() for h in header]
    if "entity" not in cols or ("label" not in cols and default_label is None):
        stats.reject("missing_header", ",".join(header))
        return pl.DataFrame(schema=_LABEL_SCHEMA), stats
    idx = {c: i for i, c in enumerate(cols)}
    for rec in reader:
        if not rec or all(not x.strip() for x in rec):
            continue
        stats.rows_read += 1
        line = ",".join(rec)
        if len(rec) < len(cols) and len(rec) <= max(idx["entity"], idx.get("label", 0)):
            stats.reject("too_few_fields", line)
            continue

        def get(name: str, rec: list[str] = rec) -> str | None:
            i = idx.get(name)
            return rec[i] if i is not None and i < len(rec) else None

        entity = (get("entity") or "").strip().lower().rstrip(".")
        if not entity:
            stats.reject("empty_entity", line)
            continue
        raw_label = get("label") if "label" in idx else default_label
        try:
            y = label_value(raw_label if raw_label is not None else "")
        except ValueError:
            stats.reject("unknown_label", line)
            continue
        try:
            ws = _parse_time(get("window_start"))
            we = _parse_time(get("window_end"))
        except ValueError:
            stats.reject("bad_time", line)
            continue
        det = (get("detector") or "").strip() or None
        rows.append(
            {"entity": entity, "label": y, "detector": det, "window_start": ws, "window_end": we}
        )
    stats.rows_kept = len(rows)
    return pl.DataFrame(rows, schema=_LABEL_SCHEMA), stats


def label_anomalies(anomalies: pl.DataFrame, labels: pl.DataFrame) -> npt.NDArray[np.int8]:
    """Label of each anomaly row: 1 threat, 0 benign, -1 unlabelled (see module doc)."""
    n = anomalies.height
    if n == 0 or labels.height == 0:
        return np.full(n, -1, dtype=np.int8)
    ent = pl.col("entity").cast(pl.String).str.to_lowercase()
    parts = ent.str.split_exact("|", 1)
    a = anomalies.select(
        pl.int_range(n).alias("_i"),
        pl.col("detector").cast(pl.String).alias("_det"),
        # an alert is an episode: a label anywhere in its span is about it
        pl.col("episode_start" if "episode_start" in anomalies.columns else "window_start")
        .fill_null(pl.col("window_start"))
        .alias("_aws"),
        pl.col("episode_end" if "episode_end" in anomalies.columns else "window_end")
        .fill_null(pl.col("window_end"))
        .alias("_awe"),
        ent.alias("k0"),
        pl.when(pl.col("entity_type") == "client_domain")
        .then(parts.struct.field("field_1"))
        .alias("k1"),
        pl.when(pl.col("entity_type") == "client_domain")
        .then(parts.struct.field("field_0"))
        .alias("k2"),
    )
    keyed = pl.concat(
        [
            a.select("_i", "_det", "_aws", "_awe", pl.col(k).alias("_key"))
            for k in ("k0", "k1", "k2")
        ]
    ).filter(pl.col("_key").is_not_null())
    j = keyed.join(labels, left_on="_key", right_on="entity", how="inner")
    ws, we = pl.col("window_start"), pl.col("window_end")
    ok_det = pl.col("detector").is_null() | (pl.col("detector") == pl.col("_det"))
    ok_time = (
        pl.when(ws.is_null() & we.is_null())
        .then(True)
        .when(we.is_null())
        .then((ws >= pl.col("_aws")) & (ws < pl.col("_awe")))
        .otherwise((pl.col("_aws") < we) & (pl.col("_awe") > ws.fill_null(pl.col("_aws"))))
    )
    hit = j.filter(ok_det & ok_time).group_by("_i").agg(pl.col("label").max())
    out = np.full(n, -1, dtype=np.int8)
    if hit.height:
        out[hit["_i"].to_numpy()] = hit["label"].to_numpy().astype(np.int8)
    return out


@dataclass
class TrainResult:
    """A trained model and how it was trained."""

    model: ThreatModel
    labelled: int
    threats: int
    anomalies: int
    label_stats: LabelStats | None = None
    version_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "model": self.model.metadata()
            | {"feature_names": len(self.model.metadata()["feature_names"])},
            "anomalies": self.anomalies,
            "labelled": self.labelled,
            "threats": self.threats,
            "labels": self.label_stats.to_dict() if self.label_stats else None,
            "model_version_id": self.version_id,
        }


def train_from_labels(
    anomalies: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    model: ThreatModel | None = None,
    context: tuple[pl.DataFrame, pl.DataFrame] | None = None,
    toplist: TopList | None = None,
    label_stats: LabelStats | None = None,
) -> TrainResult:
    """Fit ``model`` (default: a fresh linear one) on the anomalies the labels match.

    The standardiser sees every anomaly (labelled or not); each labelled
    anomaly is a verdict at its ``window_end``.
    """
    m = model or ThreatModel()
    y = label_anomalies(anomalies, labels)
    X = anomaly_features(anomalies, context=context, toplist=toplist)
    sel = y >= 0
    m.observe(X)
    if sel.any():
        ts = anomalies["window_end"].dt.epoch("us").to_numpy()[sel] / 1e6
        m.partial_fit(X[sel], y[sel], ts)
    return TrainResult(m, int(sel.sum()), int((y == 1).sum()), anomalies.height, label_stats)


def train_from_verdicts(
    verdicts: Iterable[tuple[Sequence[float], str | int, float | datetime]],
    model: ThreatModel | None = None,
) -> TrainResult:
    """Fit from past verdicts: (feature vector, verdict, time) triples, e.g. from the store."""
    m = model or ThreatModel()
    rows = list(verdicts)
    if rows:
        X = np.asarray([r[0] for r in rows], dtype=np.float64)
        m.partial_fit(X, [r[1] for r in rows], [r[2] for r in rows])
    threats = sum(label_value(r[1]) for r in rows)
    return TrainResult(m, len(rows), threats, len(rows))


_VERDICT_STATUSES = ("threat", "benign", "not_relevant")


def read_anomalies(path: str | Path) -> pl.DataFrame:
    """An anomaly file written by ``dnsieve detect``: Parquet, or JSON lines (``.jsonl``/``.json``)."""
    p = Path(path)
    if p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        df = pl.read_ndjson(p, infer_schema_length=None)
        if "evidence" in df.columns and df.schema["evidence"] != pl.String:
            df = df.with_columns(pl.col("evidence").map_elements(_dump, return_dtype=pl.String))
        for c in ("window_start", "window_end"):
            if c in df.columns and df.schema[c] == pl.String:
                df = df.with_columns(pl.col(c).str.to_datetime(time_zone="UTC", time_unit="us"))
        return df
    return pl.read_parquet(p)


def _dump(v: Any) -> str:
    import json

    return json.dumps(v, sort_keys=True, default=str)


def train(
    labels_path: str | Path | None,
    *,
    anomalies: pl.DataFrame | None = None,
    store: Any | None = None,
    kind: str = "mlp",
    toplist: TopList | None = None,
) -> TrainResult:
    """``dnsieve train``: fit a fresh model from a labels CSV and the store's past verdicts.

    The labels are joined to ``anomalies`` when given, else to every alert in
    ``store``.  Alerts in the store with a verdict (threat, benign, not
    relevant) are training rows too, at their last-seen time.  With a store,
    the model is saved as a new active model version (the previous one stays
    for rollback) and open alerts are re-scored.
    """
    model = ThreatModel(kind=kind)  # type: ignore[arg-type]
    stats: LabelStats | None = None
    labels = pl.DataFrame(schema=_LABEL_SCHEMA)
    if labels_path is not None:
        labels, stats = read_labels(labels_path)
    alerts: list[Any] = []
    if store is not None:
        from dnsieve.alerts.base import alerts_to_frame

        alerts = store.list_alerts(status="all", include_suppressed=True)
        if anomalies is None and alerts:
            anomalies = alerts_to_frame(alerts)
    anomalies = anomalies if anomalies is not None else pl.DataFrame()
    X_parts: list[npt.NDArray[np.float64]] = []
    y_parts: list[npt.NDArray[np.float64]] = []
    t_parts: list[npt.NDArray[np.float64]] = []
    if anomalies.height:
        X = anomaly_features(anomalies, toplist=toplist)
        model.observe(X)
        y = label_anomalies(anomalies, labels)
        sel = y >= 0
        X_parts.append(X[sel])
        y_parts.append(y[sel].astype(np.float64))
        t_parts.append(anomalies["window_end"].dt.epoch("us").to_numpy()[sel] / 1e6)
    judged = [a for a in alerts if a.status in _VERDICT_STATUSES]
    if judged:
        from dnsieve.alerts.feedback import feature_matrix

        X_parts.append(feature_matrix(judged))
        y_parts.append(np.asarray([label_value(a.status) for a in judged], dtype=np.float64))
        t_parts.append(np.asarray([a.last_seen.timestamp() for a in judged]))
    n = sum(len(y) for y in y_parts)
    if n:
        model.partial_fit(np.vstack(X_parts), np.concatenate(y_parts), np.concatenate(t_parts))
    threats = int(sum(float(y.sum()) for y in y_parts))
    res = TrainResult(model, n, threats, anomalies.height, stats)
    if store is not None:
        version = store.save_model_version(
            model.kind,
            model.metadata(),
            metrics={
                "trigger": "train",
                "labelled": n,
                "threats": threats,
                "from_verdicts": len(judged),
            },
            blob=model.to_bytes(),
        )
        res.version_id = version.id
        open_alerts = [a for a in alerts if a.status in ("new", "needs_review")]
        if open_alerts:
            from dnsieve.alerts.feedback import feature_matrix

            p = model.predict_proba(feature_matrix(open_alerts))
            store.set_threat_probabilities(
                {a.id: float(v) for a, v in zip(open_alerts, p, strict=True)}
            )
    return res
