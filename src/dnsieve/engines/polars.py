"""The embedded engine: Polars lazy scans over the lake's Parquet files (the default)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from dnsieve.engines.base import (
    EVENT_POLARS_SCHEMA,
    check_kind,
    prepare_detector,
    resolve_files,
    to_utc,
)
from dnsieve.features import SCHEMAS, aggregate

if TYPE_CHECKING:
    from dnsieve.detectors.base import DetectContext, Detector

__all__ = ["PolarsEngine", "scan_events"]


def scan_events(
    source: Any, since: datetime | None = None, until: datetime | None = None
) -> pl.LazyFrame:
    """A lazy frame of the source's canonical events in ``[since, until)``."""
    files = resolve_files(source, since, until)
    if not files:
        return pl.LazyFrame(schema=EVENT_POLARS_SCHEMA)
    lf = pl.scan_parquet(
        [str(f) for f in files], hive_partitioning=False, schema=EVENT_POLARS_SCHEMA
    )
    lo, hi = to_utc(since), to_utc(until)
    if lo is not None:
        lf = lf.filter(pl.col("ts") >= lo)
    if hi is not None:
        lf = lf.filter(pl.col("ts") < hi)
    return lf.select(list(EVENT_POLARS_SCHEMA))


class PolarsEngine:
    """Single-process engine: the aggregates are the :mod:`dnsieve.features` functions."""

    name = "polars"

    def aggregate(
        self,
        kind: str,
        source: Any,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pl.DataFrame:
        """The hourly aggregate ``kind`` of the source's events (sorted by key)."""
        check_kind(kind)
        out = aggregate(kind, scan_events(source, since, until)).collect()
        return out.cast(SCHEMAS[kind])

    def events(
        self, source: Any, since: datetime | None = None, until: datetime | None = None
    ) -> pl.DataFrame:
        """The canonical events in ``[since, until)``, sorted by time (stable)."""
        return scan_events(source, since, until).sort("ts", maintain_order=True).collect()

    def map_detector(self, detector: Detector, data: Any, ctx: DetectContext) -> pl.DataFrame:
        """Call ``detector.score`` on the whole input (it is already vectorised).

        A detector with ``fit_population`` is fitted first on the whole input,
        exactly as the distributed engines do (see :func:`prepare_detector`).
        """
        frame = data.collect() if isinstance(data, pl.LazyFrame) else data
        return prepare_detector(detector, frame, ctx.fit_until).score(frame, ctx)

    def score_fitted(self, detector: Detector, data: Any, ctx: DetectContext) -> pl.DataFrame:
        """``detector.score`` for a detector the caller already fitted on all of ``data``.

        :func:`dnsieve.pipeline.detect` fits each detector's population once (it
        needs the fitted detector for ``population`` too); this scores it
        without the second fit that :meth:`map_detector` would do.
        """
        frame = data.collect() if isinstance(data, pl.LazyFrame) else data
        return detector.score(frame, ctx)
