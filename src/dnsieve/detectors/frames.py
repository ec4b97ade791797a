"""Polars building blocks shared by the event-level detectors.

The scored period and its fixed windows (:func:`scored_period`,
:func:`window_columns`; epoch tiles scored where they close: :func:`tile_columns`,
:func:`closing_tiles`), evidence as JSON (:func:`evidence_json`,
:func:`tidy`, :func:`sample_names`) and canonical example frames for the
detectors' ``example`` methods (:func:`example_events`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from dnsieve.detectors.base import DetectContext
from dnsieve.schema import DNS_EVENT

__all__ = [
    "closing_tiles",
    "evidence_json",
    "example_events",
    "sample_names",
    "scored_period",
    "tidy",
    "tile_columns",
    "utc",
    "window_columns",
]

_EVENT_SCHEMA: pl.Schema = pl.from_arrow(DNS_EVENT.empty_table()).schema  # type: ignore[union-attr]


def scored_period(data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    """Rows of ``data`` inside the scored period [ctx.start, ctx.end), null ``ts`` dropped."""
    start, end = utc(ctx.start), utc(ctx.end)
    return data.filter(pl.col("ts").is_not_null() & (pl.col("ts") >= start) & (pl.col("ts") < end))


def window_columns(ctx: DetectContext, ts: str = "ts", min_window: float = 0.0) -> list[pl.Expr]:
    """Expressions for ``window_start``/``window_end``: fixed windows of
    ``ctx.window`` seconds aligned on ``ctx.start`` (the last one is clipped to
    ``ctx.end``).  ``min_window`` lengthens the windows for detectors that need
    more time than the run's window (beaconing needs hours).

    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> ctx = DetectContext(start=t0, end=t0 + timedelta(hours=2), window=3600)
    >>> df = pl.DataFrame({"ts": [t0 + timedelta(minutes=90)]}).with_columns(
    ...     pl.col("ts").dt.cast_time_unit("us"))
    >>> df.select(window_columns(ctx))["window_start"].dt.hour().to_list()
    [1]
    """
    start_us = int(utc(ctx.start).timestamp() * 1_000_000)
    end_us = int(utc(ctx.end).timestamp() * 1_000_000)
    w_us = max(1, int(max(ctx.window, min_window) * 1_000_000))
    t_us = pl.col(ts).dt.epoch("us")
    ws = pl.lit(start_us) + ((t_us - start_us) // w_us) * w_us
    we = pl.min_horizontal(ws + w_us, pl.lit(end_us))
    return [
        pl.from_epoch(ws, time_unit="us").dt.replace_time_zone("UTC").alias("window_start"),
        pl.from_epoch(we, time_unit="us").dt.replace_time_zone("UTC").alias("window_end"),
    ]


def tile_columns(length: float, ts: str = "ts") -> list[pl.Expr]:
    """Expressions for ``window_start``/``window_end``: the tile of ``length``
    seconds, aligned on the Unix epoch, that holds each row's ``ts``.

    Unlike :func:`window_columns` the tiles do not depend on where a scoring
    period starts or ends, so a lake scored at once and the same lake scored
    hour by hour (a stream) cut the same windows.

    >>> from datetime import datetime, timezone
    >>> df = pl.DataFrame({"ts": [datetime(2024, 1, 1, 7, 30, tzinfo=timezone.utc)]})
    >>> w = df.select(tile_columns(6 * 3600.0))
    >>> (w["window_start"].dt.hour().item(), w["window_end"].dt.hour().item())
    (6, 12)
    """
    w_us = max(1, int(length * 1_000_000))
    ws = (pl.col(ts).dt.epoch("us") // w_us) * w_us
    return [
        pl.from_epoch(ws, time_unit="us").dt.replace_time_zone("UTC").alias("window_start"),
        pl.from_epoch(ws + w_us, time_unit="us").dt.replace_time_zone("UTC").alias("window_end"),
    ]


def closing_tiles(ctx: DetectContext, length: float) -> tuple[datetime, datetime]:
    """``(first tile start, last tile end)`` of the epoch tiles (:func:`tile_columns`)
    that *close* in ``ctx``'s period: their end is in ``(ctx.start, ctx.end]``,
    ``ctx.end`` rounded up to the hour.  A tile is then scored once, in the
    period in which it closes, however a lake is cut into hourly periods; a
    run that ends inside an hour (the last event) scores the tile that closes
    at the end of that hour, as a stream scoring that hour does.  The first is
    not before the last when no tile closes.

    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2024, 1, 1, 5, tzinfo=timezone.utc)
    >>> ctx = DetectContext(start=t0, end=t0 + timedelta(hours=13, minutes=20), window=3600)
    >>> [t.hour for t in closing_tiles(ctx, 6 * 3600.0)]
    [0, 18]
    """
    w_us = max(1, int(length * 1_000_000))
    h_us = 3_600_000_000
    start_us = int(utc(ctx.start).timestamp() * 1_000_000)
    end_us = -(-int(utc(ctx.end).timestamp() * 1_000_000) // h_us) * h_us
    first_end = (start_us // w_us + 1) * w_us
    last_end = (end_us // w_us) * w_us
    first = datetime.fromtimestamp((first_end - w_us) / 1e6, tz=UTC)
    return first, datetime.fromtimestamp(last_end / 1e6, tz=UTC)


def utc(t: datetime) -> datetime:
    """``t`` in UTC (a naive time is taken as UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def example_events(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A canonical event frame (all :data:`DNS_EVENT` columns) from row dicts;
    missing columns are null.  Used by the detectors' ``example`` methods."""
    cols: dict[str, list[Any]] = {name: [r.get(name) for r in rows] for name in _EVENT_SCHEMA}
    return pl.DataFrame(cols, schema=_EVENT_SCHEMA)


def evidence_json(*exprs: pl.Expr) -> pl.Expr:
    """Vectorised evidence: a JSON object built from named expressions (NaN → null)."""
    return pl.struct(*exprs).struct.json_encode().alias("evidence")


def tidy(x: pl.Expr, decimals: int = 3) -> pl.Expr:
    """Round a float for evidence; ``-0.0`` becomes ``0.0`` so output never
    depends on summation order."""
    r = x.cast(pl.Float64).round(decimals)
    return pl.when(r == 0.0).then(r.abs()).otherwise(r)


def sample_names(col: str, k: int) -> pl.Expr:
    """Aggregation: up to ``k`` distinct values of ``col``, deterministic (sorted)."""
    return pl.col(col).drop_nulls().unique().sort().head(k)
