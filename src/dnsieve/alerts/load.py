"""Read detector output files (``dnsieve run/detect --out``) back as anomaly frames.

``.parquet`` files are read as they are; JSON-lines files (one alert object
per line, ``evidence`` nested) are parsed line by line, and a line that is not
a JSON object with the key fields is counted as a reject, never raised.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["read_anomalies"]

_KEYS = ("detector", "entity_type", "entity", "window_start", "window_end", "score")


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def read_anomalies(path: str | Path) -> tuple[pl.DataFrame, Counter[str]]:
    """Anomaly frame (ANOMALY columns, plus ``global_p``/``threat_probability``/``features``
    when present) and the reject counts."""
    p = Path(path)
    rejects: Counter[str] = Counter()
    if p.suffix == ".parquet":
        return pl.read_parquet(p), rejects
    rows: list[dict[str, Any]] = []
    with p.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rejects["not_json"] += 1
                continue
            if not isinstance(rec, dict) or any(rec.get(k) is None for k in _KEYS):
                rejects["missing_key"] += 1
                continue
            ws, we = _ts(rec["window_start"]), _ts(rec["window_end"])
            if ws is None or we is None:
                rejects["bad_window"] += 1
                continue
            ev = rec.get("evidence")
            feats = rec.get("features")
            rows.append(
                {
                    "detector": str(rec["detector"]),
                    "entity_type": str(rec["entity_type"]),
                    "entity": str(rec["entity"]),
                    "window_start": ws,
                    "window_end": we,
                    "score": rec["score"] if isinstance(rec["score"], int | float) else None,
                    "p_value": rec.get("p_value")
                    if isinstance(rec.get("p_value"), int | float)
                    else None,
                    "global_p": rec.get("global_p")
                    if isinstance(rec.get("global_p"), int | float)
                    else None,
                    "threat_probability": rec.get("threat_probability")
                    if isinstance(rec.get("threat_probability"), int | float)
                    else None,
                    "evidence": ev
                    if isinstance(ev, str)
                    else json.dumps(ev if ev is not None else {}),
                    "features": json.dumps(feats) if isinstance(feats, dict) else None,
                }
            )
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "detector": pl.String,
        "entity_type": pl.String,
        "entity": pl.String,
        "window_start": pl.Datetime("us", "UTC"),
        "window_end": pl.Datetime("us", "UTC"),
        "score": pl.Float64,
        "p_value": pl.Float64,
        "global_p": pl.Float64,
        "threat_probability": pl.Float64,
        "evidence": pl.String,
        "features": pl.String,
    }
    return pl.DataFrame(rows, schema=schema), rejects
