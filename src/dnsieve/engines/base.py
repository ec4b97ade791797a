"""The ``Engine`` protocol (ARCHITECTURE §1: engines only move and group data).

An engine reads canonical events from the lake, computes the hourly
aggregates of :mod:`dnsieve.features`, and runs a detector's pure ``score``
function over its input.  Two engines implement it: ``polars`` (embedded, the
default) and ``spark`` (PySpark, local or a cluster).  On the same lake both
return identical frames.

A *source* is any of:

* a :class:`~dnsieve.lake.Lake`;
* the path of a lake directory (it holds ``events/``), or of its ``events/``
  directory; a Delta lake (``events/`` is a Delta table) is read by the
  table's current file list;
* a Parquet part file, or a sequence of part files (all with the
  :data:`~dnsieve.schema.DNS_EVENT` schema).

``since``/``until`` restrict events to ``since <= ts < until``; naive
datetimes are taken as UTC.  Part files in the lake's
``date=YYYY-MM-DD/hour=HH`` layout whose hour lies wholly outside the range
are not read at all.
"""

from __future__ import annotations

import copy
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import polars as pl

from dnsieve.schema import DNS_EVENT

if TYPE_CHECKING:
    from dnsieve.detectors.base import DetectContext, Detector

__all__ = [
    "AGGREGATE_KINDS",
    "ENTITY_COLUMNS",
    "EVENT_POLARS_SCHEMA",
    "Engine",
    "EngineUnavailableError",
    "check_kind",
    "entity_columns",
    "fits_causally",
    "prepare_detector",
    "resolve_files",
    "to_utc",
]

#: the aggregate kinds every engine computes.
AGGREGATE_KINDS: tuple[str, ...] = ("domain_hourly", "client_hourly", "client_domain_hourly")

#: the columns that identify a detector's entity, by entity type.
ENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "domain": ("registered_domain",),
    "client": ("src_ip",),
    "client_domain": ("src_ip", "registered_domain"),
    "client_dest": ("src_ip", "dst_ip"),  # flow detectors: client × destination address
}

EVENT_POLARS_SCHEMA: pl.Schema = pl.from_arrow(DNS_EVENT.empty_table()).schema  # type: ignore[union-attr]

_PART = re.compile(r"date=(\d{4}-\d{2}-\d{2})[/\\]hour=(\d{1,2})[/\\][^/\\]+$")


@runtime_checkable
class Engine(Protocol):
    """What every engine provides."""

    name: str

    def aggregate(
        self,
        kind: str,
        source: Any,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pl.DataFrame:
        """The hourly aggregate ``kind`` (one of :data:`AGGREGATE_KINDS`) of the source's events.

        The frame has exactly the schema :data:`dnsieve.features.SCHEMAS` gives
        for ``kind`` and is sorted by its key columns.
        """
        ...

    def events(
        self, source: Any, since: datetime | None = None, until: datetime | None = None
    ) -> pl.DataFrame:
        """The canonical events of the source in ``[since, until)``, sorted by time."""
        ...

    def map_detector(self, detector: Detector, data: Any, ctx: DetectContext) -> pl.DataFrame:
        """Run ``detector.score`` over ``data`` (its ``requires`` input) and return the anomalies.

        A distributed engine splits ``data`` by entity (the columns of
        :data:`ENTITY_COLUMNS` for ``detector.entity_type``), never splitting
        one entity's rows, and scores each part with the same pure function.
        The result is sorted by (entity, window_start, detector).
        """
        ...


class EngineUnavailableError(ImportError):
    """An engine's optional dependencies are not installed (the message says what to install)."""


def prepare_detector(
    detector: Detector, data: pl.DataFrame, until: datetime | None = None
) -> Detector:
    """A copy of ``detector`` fitted on the whole input, ready to score any part of it.

    Detectors whose scores depend on the population (empirical-Bayes priors,
    for example) expose ``fit_population(data) -> self``; engines call it once
    on the *whole* input and then score entity partitions with the fitted
    copy, so a partitioned run gives the same scores as a single one.  Other
    detectors are returned as they are.  The caller's detector is never
    modified.  ``until``: a causal fit (population laws on the baseline before
    it), passed on to detectors whose ``fit_population`` takes it
    (:func:`fits_causally`).
    """
    fit = getattr(detector, "fit_population", None)
    if not callable(fit):
        return detector
    fitted = copy.deepcopy(detector)
    if until is not None and fits_causally(detector):
        fitted.fit_population(data, until=until)  # type: ignore[attr-defined]
    else:
        fitted.fit_population(data)  # type: ignore[attr-defined]
    return fitted


def fits_causally(detector: Detector) -> bool:
    """Whether ``detector.fit_population`` takes ``until`` (fits on the baseline before it).

    Such a detector's population laws are refitted per fit epoch by
    :func:`dnsieve.pipeline.detect`, so a window's score depends only on data
    up to its own end, however the lake is cut into scoring periods.
    """
    fit = getattr(detector, "fit_population", None)
    if not callable(fit):
        return False
    import inspect

    return "until" in inspect.signature(fit).parameters


def check_kind(kind: str) -> str:
    """``kind`` if it names an aggregate, else a ValueError listing the valid ones."""
    if kind not in AGGREGATE_KINDS:
        raise ValueError(
            f"unknown aggregate {kind!r}; expected one of {', '.join(AGGREGATE_KINDS)}"
        )
    return kind


def entity_columns(entity_type: str) -> tuple[str, ...]:
    """The key columns of an entity type (``domain``, ``client``, ``client_domain``)."""
    try:
        return ENTITY_COLUMNS[entity_type]
    except KeyError:
        raise ValueError(
            f"unknown entity type {entity_type!r}; expected one of {', '.join(ENTITY_COLUMNS)}"
        ) from None


def to_utc(t: datetime | None) -> datetime | None:
    """An aware UTC datetime (naive values are taken as UTC)."""
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _part_hour(path: Path) -> datetime | None:
    m = _PART.search(str(path))
    if not m:
        return None
    try:
        day = datetime.strptime(m.group(1), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day + timedelta(hours=int(m.group(2)))


def resolve_files(
    source: Any, since: datetime | None = None, until: datetime | None = None
) -> list[Path]:
    """The Parquet part files of a source (see the module docstring), pruned to the time range.

    >>> resolve_files(["/l/events/date=2024-01-01/hour=05/part-a.parquet",
    ...                "/l/events/date=2024-01-01/hour=07/part-b.parquet"],
    ...               since=datetime(2024, 1, 1, 6), until=datetime(2024, 1, 1, 8))
    [PosixPath('/l/events/date=2024-01-01/hour=07/part-b.parquet')]
    """
    from dnsieve.lake import Lake

    files: list[Path]
    if isinstance(source, Lake):
        files = source.files()
    elif isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if (p / "events" / "_delta_log").is_dir() or (p / "_delta_log").is_dir():
            from dnsieve.lake import DeltaLake  # a Delta table: its current file list

            files = DeltaLake(p if (p / "events").is_dir() else p.parent).files()
        elif (p / "_manifest.sqlite").is_file():  # a lake: only what its manifest committed
            files = Lake(p).files()
        elif p.name == "events" and (p.parent / "_manifest.sqlite").is_file():
            files = Lake(p.parent).files()
        elif p.is_dir():  # a bare directory of part files (no manifest to trust)
            files = sorted(p.rglob("part-*.parquet"))
        else:
            files = [p]
    else:
        files = [Path(f) for f in source]
    lo, hi = to_utc(since), to_utc(until)
    if lo is None and hi is None:
        return files
    kept = []
    for f in files:
        h = _part_hour(f)
        if h is not None and (
            (lo is not None and h + timedelta(hours=1) <= lo) or (hi is not None and h >= hi)
        ):
            continue
        kept.append(f)
    return kept
