"""The raw DNS events behind an alert, read lazily from the lake.

An alert names a detector, an *entity* and a window ``[window_start,
window_end)``.  The events behind it are the lake's canonical events in that
window whose subject is the entity:

``domain``
    ``registered_domain`` (or, for a name that has no registered domain, the
    ``qname`` itself) is the entity;
``client``
    ``src_ip`` is the entity;
``client_domain`` (``10.0.0.5|evil.com``)
    both at once.

Both the entity as stored and its normalised form
(:func:`dnsieve.rules.match.alert_subjects`: lower-cased, IDNA,
IPv4-mapped IPv6 clients as IPv4) are matched, so an alert finds its events
whichever way its detector spelled the entity.

Only the lake's hour partitions (``events/date=…/hour=…``) that overlap the
window are opened, and Polars pushes the time and entity predicates down into
the Parquet scan, so the cost depends on the window, not on the size of the
lake.  One pass yields the newest ``limit`` events, the total count and who
queried (a domain's clients, a client's domains).

>>> from datetime import datetime, UTC
>>> [sorted(s) for s in subject_filter("client_domain", "::ffff:10.0.0.5|Evil.COM")]
[['Evil.COM', 'evil.com'], ['10.0.0.5', '::ffff:10.0.0.5']]
>>> partition_hours(datetime(2024, 1, 1, 22, 30, tzinfo=UTC), datetime(2024, 1, 2, 0, 5, tzinfo=UTC))
[('2024-01-01', 22), ('2024-01-01', 23), ('2024-01-02', 0)]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from dnsieve.lake import Lake
from dnsieve.rules.match import alert_subjects
from dnsieve.schema import DNS_EVENT

__all__ = [
    "EVENT_VIEW_COLUMNS",
    "MAX_LIMIT",
    "AlertEvents",
    "EventsUnavailable",
    "entity_events",
    "entity_hourly",
    "events_for_alert",
    "partition_hours",
    "subject_filter",
]

#: the event columns shown for an alert (the lake has more: see dnsieve.schema)
EVENT_VIEW_COLUMNS: tuple[str, ...] = (
    "ts",
    "src_ip",
    "dst_ip",
    "proto",
    "qname",
    "qtype",
    "rcode",
    "answers",
    "registered_domain",
)
#: the most events one call returns
MAX_LIMIT = 5000
#: windows longer than this many hours scan every part file instead of listing partitions
_MAX_PARTITION_HOURS = 24 * 92
_SCHEMA = pl.DataFrame(DNS_EVENT.empty_table()).schema


class EventsUnavailable(Exception):
    """The lake cannot be read (missing directory, unreadable or corrupt files)."""


@dataclass(frozen=True)
class AlertEvents:
    """The events behind one alert: the newest ``limit`` of ``total``, and who queried.

    ``who`` has columns ``name`` and ``queries`` (most first): the clients that
    queried a domain alert's domain, or the registered domains a client alert's
    client queried (empty for client × domain alerts, whose subject is fixed).
    """

    events: pl.DataFrame
    total: int
    limit: int
    since: datetime
    until: datetime
    domains: frozenset[str]
    clients: frozenset[str]
    who: pl.DataFrame
    who_of: str | None  # "clients" | "domains" | None

    @property
    def shown(self) -> int:
        """How many events are in :attr:`events`."""
        return self.events.height

    def records(self) -> list[dict[str, Any]]:
        """The events as JSON-ready dicts (``ts`` as ISO 8601 UTC)."""
        out = []
        for r in self.events.iter_rows(named=True):
            r["ts"] = r["ts"].astimezone(UTC).isoformat().replace("+00:00", "Z")
            r["answers"] = list(r["answers"] or [])
            out.append(r)
        return out


def subject_filter(entity_type: str, entity: str) -> tuple[frozenset[str], frozenset[str]]:
    """``(domains, clients)`` to match for an alert entity: as stored and normalised.

    An empty set means "no condition on that column".
    """
    domain, client = alert_subjects(entity_type, entity)
    raw_domain: str | None = None
    raw_client: str | None = None
    if entity_type == "domain":
        raw_domain = entity
    elif entity_type == "client":
        raw_client = entity
    elif "|" in entity:
        raw_client, raw_domain = entity.split("|", 1)
    domains = frozenset(d for d in (raw_domain, domain) if d)
    clients = frozenset(c for c in (raw_client, client) if c)
    return domains, clients


def partition_hours(since: datetime, until: datetime) -> list[tuple[str, int]]:
    """The lake's ``(date, hour)`` partitions that hold events of ``[since, until)``."""
    t = _utc(since).replace(minute=0, second=0, microsecond=0)
    end = _utc(until)
    out = []
    while t < end:
        out.append((t.strftime("%Y-%m-%d"), t.hour))
        t += timedelta(hours=1)
    return out


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _subject_scan(
    files: Sequence[Path],
    domains: frozenset[str],
    clients: frozenset[str],
    since: datetime,
    until: datetime,
) -> pl.LazyFrame:
    """The view columns of the events of ``files`` in ``[since, until)`` matching the subject."""
    cond = (pl.col("ts") >= since) & (pl.col("ts") < until)
    if domains:
        dl = sorted(domains)
        cond &= pl.col("registered_domain").is_in(dl) | (
            pl.col("registered_domain").is_null() & pl.col("qname").is_in(dl)
        )
    if clients:
        cond &= pl.col("src_ip").is_in(sorted(clients))
    return (
        pl.scan_parquet([str(f) for f in files], hive_partitioning=False, schema=_SCHEMA)
        .select(EVENT_VIEW_COLUMNS)
        .filter(cond)
    )


def _window_files(events_dir: Path, since: datetime, until: datetime) -> list[Path]:
    """The part files of the hour partitions overlapping the window: those the
    lake's manifest committed (never a directory listing, which would show the
    part files of an ingest that crashed before its commit)."""
    if (events_dir.parent / "_manifest.sqlite").is_file():
        return Lake(events_dir.parent).files(since, until)
    hours = (until - since).total_seconds() / 3600.0
    if hours > _MAX_PARTITION_HOURS:
        return sorted(events_dir.rglob("part-*.parquet"))
    files: list[Path] = []
    for date, hour in partition_hours(since, until):
        d = events_dir / f"date={date}" / f"hour={hour:02d}"
        if d.is_dir():
            files += sorted(d.glob("part-*.parquet"))
    return files


class _AlertLike(Protocol):
    @property
    def entity_type(self) -> str: ...
    @property
    def entity(self) -> str: ...
    @property
    def window_start(self) -> datetime: ...
    @property
    def window_end(self) -> datetime: ...


def events_for_alert(
    lake: Lake | str | os.PathLike[str], alert: _AlertLike, limit: int = 200
) -> AlertEvents:
    """The events behind ``alert`` (an :class:`~dnsieve.alerts.base.Alert`), newest first.

    See :func:`entity_events`.
    """
    return entity_events(
        lake, alert.entity_type, alert.entity, alert.window_start, alert.window_end, limit
    )


def entity_events(
    lake: Lake | str | os.PathLike[str],
    entity_type: str,
    entity: str,
    window_start: datetime,
    window_end: datetime,
    limit: int = 200,
    who_top: int = 15,
) -> AlertEvents:
    """The lake events of an entity in ``[window_start, window_end)``, newest first.

    ``lake`` is a :class:`~dnsieve.lake.Lake` or its root directory
    (``[lake] path``).  Raises :class:`EventsUnavailable` when that is not a
    directory or its files cannot be read; an existing lake with nothing in the
    window (pruned, or the alert came from another lake) gives ``total == 0``.
    ``limit`` is clipped to ``[0, MAX_LIMIT]``.
    """
    root = lake.path if isinstance(lake, Lake) else Path(lake)
    if not root.is_dir():
        raise EventsUnavailable("its directory does not exist")
    limit = max(0, min(int(limit), MAX_LIMIT))
    since = _utc(window_start)
    until = _utc(window_end)
    if until <= since:  # a point alert: its one instant
        until = since + timedelta(microseconds=1)
    domains, clients = subject_filter(entity_type, entity)
    who_of = "clients" if not clients else "domains" if not domains else None
    empty_who = pl.DataFrame(schema={"name": pl.String, "queries": pl.UInt32})
    files = _window_files(root / "events", since, until)
    if not files or (not domains and not clients):
        return AlertEvents(
            pl.DataFrame(schema={c: _SCHEMA[c] for c in EVENT_VIEW_COLUMNS}),
            0,
            limit,
            since,
            until,
            domains,
            clients,
            empty_who,
            who_of,
        )
    lf = _subject_scan(files, domains, clients, since, until)
    queries: list[pl.LazyFrame] = [
        lf.select(pl.len().alias("n")),
        lf.sort(["ts", "src_ip", "qname"], descending=[True, False, False], nulls_last=True).head(
            limit
        ),
    ]
    key = "src_ip" if who_of == "clients" else "registered_domain"
    if who_of is not None:
        queries.append(
            lf.group_by(pl.col(key).fill_null("(none)").alias("name"))
            .agg(pl.len().alias("queries"))
            .sort(["queries", "name"], descending=[True, False])
            .head(who_top)
        )
    try:
        got: Sequence[pl.DataFrame] = pl.collect_all(queries)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise EventsUnavailable(f"its files could not be read ({type(exc).__name__})") from None
    return AlertEvents(
        events=got[1],
        total=int(got[0].item(0, "n")),
        limit=limit,
        since=since,
        until=until,
        domains=domains,
        clients=clients,
        who=got[2] if who_of is not None else empty_who,
        who_of=who_of,
    )


def entity_hourly(
    lake: Lake | str | os.PathLike[str],
    entity_type: str,
    entity: str,
    since: datetime,
    until: datetime,
) -> pl.DataFrame:
    """Hourly ``queries`` and distinct ``clients`` of an entity, one row per hour of ``[since, until)``.

    The context of an alert's volume plot.  Hours the lake holds no data for at
    all (no partition: before the first ingest, a sensor outage, pruned) have
    null counts, so a plot shows a gap rather than a false zero; hours with
    data but none of this entity's events count 0.  Raises
    :class:`EventsUnavailable` like :func:`entity_events`.
    """
    root = lake.path if isinstance(lake, Lake) else Path(lake)
    if not root.is_dir():
        raise EventsUnavailable("its directory does not exist")
    t0 = _utc(since).replace(minute=0, second=0, microsecond=0)
    t1 = _utc(until)
    schema = pl.Schema(
        {"hour": pl.Datetime("us", "UTC"), "queries": pl.Int64(), "clients": pl.Int64()}
    )
    if t1 <= t0 or (t1 - t0) > timedelta(hours=_MAX_PARTITION_HOURS):
        return pl.DataFrame(schema=schema)
    files = _window_files(root / "events", t0, t1)
    covered = sorted(
        {
            datetime.fromisoformat(f.parent.parent.name.removeprefix("date=")).replace(
                hour=int(f.parent.name.removeprefix("hour=")), tzinfo=UTC
            )
            for f in files
        }
    )
    hours = pl.DataFrame(
        {"hour": pl.datetime_range(t0, t1, "1h", closed="left", time_zone="UTC", eager=True)}
    ).with_columns(pl.col("hour").dt.cast_time_unit("us"))
    domains, clients = subject_filter(entity_type, entity)
    if not files or (not domains and not clients):
        counts = pl.DataFrame(schema=schema)
    else:
        try:
            counts = (
                _subject_scan(files, domains, clients, t0, t1)
                .group_by(pl.col("ts").dt.truncate("1h").dt.cast_time_unit("us").alias("hour"))
                .agg(
                    pl.len().cast(pl.Int64).alias("queries"),
                    pl.col("src_ip").n_unique().cast(pl.Int64).alias("clients"),
                )
                .collect()
            )
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise EventsUnavailable(f"its files could not be read ({type(exc).__name__})") from None
    cov = pl.Series("hour", covered, dtype=pl.Datetime("us", "UTC"))
    out = hours.join(counts, on="hour", how="left").with_columns(
        pl.when(pl.col("hour").is_in(cov.implode()))
        .then(pl.col(c).fill_null(0))
        .otherwise(None)
        .alias(c)
        for c in ("queries", "clients")
    )
    return out.sort("hour")
