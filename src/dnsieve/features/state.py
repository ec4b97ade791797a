"""Mergeable, incremental hourly state for streaming (ARCHITECTURE §1 "statistics are mergeable").

:class:`HourlyState` accepts event batches in any order and any size, keeps
partial aggregates per open hour, and when hours are *closed* emits exactly the
frames that :func:`~dnsieve.features.domain_hourly`,
:func:`~dnsieve.features.client_hourly` and
:func:`~dnsieve.features.client_domain_hourly` compute from all the events of
those hours at once.

What is kept, per hour:

* the summable columns of ``domain_hourly`` and ``client_hourly`` (counts and
  byte sums);
* ``client_domain_hourly`` itself (counts, first/last time), whose rows are
  also the exact distinct sets behind ``clients`` (per domain) and
  ``domains`` (per client);
* the distinct (registered_domain, subdomain) pairs behind ``subdomains``.

Partials of each batch are appended and compacted (re-grouped) every few
batches, so memory is bounded by the distinct keys of the open hours, not by
the events.  Two states merge with :meth:`HourlyState.merge` (for example
states built on separate partitions of a stream).

Once hours before ``t`` are closed, later events of those hours are *late*:
they are counted in :attr:`HourlyState.late_rows` and dropped, so an emitted
hour never changes afterwards.

>>> import datetime as dt
>>> utc = dt.timezone.utc
>>> ev = pl.DataFrame(
...     {
...         "ts": [dt.datetime(2024, 1, 1, h, 0, tzinfo=utc) for h in (9, 9, 10)],
...         "src_ip": ["10.0.0.1", "10.0.0.2", "10.0.0.1"],
...         "registered_domain": ["example.com"] * 3,
...         "subdomain": ["www", "www", "mail"],
...     }
... )
>>> st = HourlyState()
>>> st.update(ev[:2]) + st.update(ev[2:])
3
>>> out = st.close(dt.datetime(2024, 1, 1, 10, tzinfo=utc))
>>> out.domain_hourly.select("queries", "clients", "subdomains").row(0)
(2, 2, 1)
>>> st.open_hours()
[datetime.datetime(2024, 1, 1, 10, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC'))]
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from dnsieve.features.hourly import (
    CLIENT_DOMAIN_HOURLY_SCHEMA,
    CLIENT_HOURLY_SCHEMA,
    DOMAIN_HOURLY_SCHEMA,
    KEYS,
    SCHEMAS,
    client_domain_exprs,
    client_sum_exprs,
    domain_sum_exprs,
    hour_of,
)

__all__ = ["HourlyFrames", "HourlyState"]

_TS = pl.Datetime("us", "UTC")
_NEEDED: dict[str, pl.DataType] = {
    "ts": _TS,
    "src_ip": pl.String(),
    "registered_domain": pl.String(),
    "subdomain": pl.String(),
    "qtype": pl.String(),
    "rcode": pl.String(),
    "query_len": pl.Int32(),
    "response_len": pl.Int32(),
}
_DOM_KEYS = ["hour", "registered_domain"]
_CLI_KEYS = ["hour", "src_ip"]
_CD_KEYS = ["hour", "src_ip", "registered_domain"]
_SUB_COLS = ["hour", "registered_domain", "subdomain"]
_DOM_SUMS = [c for c in DOMAIN_HOURLY_SCHEMA if c not in (*_DOM_KEYS, "clients", "subdomains")]
_CLI_SUMS = [c for c in CLIENT_HOURLY_SCHEMA if c not in (*_CLI_KEYS, "domains")]
_PARTS = ("dom", "cli", "cd", "sub")


@dataclass(frozen=True)
class HourlyFrames:
    """The three hourly aggregates for a set of closed hours."""

    domain_hourly: pl.DataFrame
    client_hourly: pl.DataFrame
    client_domain_hourly: pl.DataFrame

    def __getitem__(self, kind: str) -> pl.DataFrame:
        if kind not in SCHEMAS:
            raise KeyError(kind)
        frame: pl.DataFrame = getattr(self, kind)
        return frame

    def __iter__(self) -> Iterator[tuple[str, pl.DataFrame]]:
        for kind in SCHEMAS:
            yield kind, self[kind]


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _as_frame(batch: pa.RecordBatch | pa.Table | pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    if isinstance(batch, pl.LazyFrame):
        df = batch.collect()
    elif isinstance(batch, pl.DataFrame):
        df = batch
    else:
        # only the columns the state reads cross into Polars (not answers, ttls ...)
        keep = [n for n in _NEEDED if n in batch.schema.names]
        df = pl.from_arrow(batch.select(keep))  # type: ignore[assignment]
    cols = {}
    for name, dtype in _NEEDED.items():
        if name in df.columns:
            cols[name] = df.get_column(name).cast(dtype)
        else:
            cols[name] = pl.Series(name, [None] * df.height, dtype=dtype)
    return pl.DataFrame(cols)


def _empty(kind: str) -> pl.DataFrame:
    schemas = {
        "dom": {
            **{k: DOMAIN_HOURLY_SCHEMA[k] for k in _DOM_KEYS},
            **{c: pl.Int64() for c in _DOM_SUMS},
        },
        "cli": {
            **{k: CLIENT_HOURLY_SCHEMA[k] for k in _CLI_KEYS},
            **{c: pl.Int64() for c in _CLI_SUMS},
        },
        "cd": dict(CLIENT_DOMAIN_HOURLY_SCHEMA),
        "sub": {"hour": _TS, "registered_domain": pl.String(), "subdomain": pl.String()},
    }
    return pl.DataFrame(schema=schemas[kind])


def _partials(df: pl.DataFrame) -> dict[str, pl.DataFrame]:
    lf = df.lazy().with_columns(hour_of(pl.col("ts")).alias("hour"))
    rd_ok = pl.col("registered_domain").is_not_null()
    src_ok = pl.col("src_ip").is_not_null()
    sub = pl.col("subdomain")
    frames = pl.collect_all(
        [
            lf.filter(rd_ok).group_by(_DOM_KEYS).agg(domain_sum_exprs()),
            lf.filter(src_ok).group_by(_CLI_KEYS).agg(client_sum_exprs()),
            lf.filter(src_ok & rd_ok).group_by(_CD_KEYS).agg(client_domain_exprs()),
            lf.filter(rd_ok & sub.is_not_null() & (sub != "")).select(_SUB_COLS).unique(),
        ]
    )
    return {
        k: f.select(_empty(k).columns).cast(_empty(k).schema)
        for k, f in zip(_PARTS, frames, strict=True)
    }


def _compact(kind: str, frames: list[pl.DataFrame]) -> pl.DataFrame:
    if not frames:
        return _empty(kind)
    df = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    if len(frames) == 1:
        return df
    if kind == "dom":
        return df.group_by(_DOM_KEYS).agg(pl.col(_DOM_SUMS).sum())
    if kind == "cli":
        return df.group_by(_CLI_KEYS).agg(pl.col(_CLI_SUMS).sum())
    if kind == "cd":
        return df.group_by(_CD_KEYS).agg(
            pl.col("queries").sum(),
            pl.col("nxdomain").sum(),
            pl.col("first_ts").min(),
            pl.col("last_ts").max(),
        )
    return df.unique()


class HourlyState:
    """Incremental, mergeable hourly aggregates (see the module docstring).

    ``compact_every``: partials of that many batches are re-grouped into one,
    bounding memory between :meth:`close` calls.
    """

    def __init__(self, compact_every: int = 8) -> None:
        self.compact_every = compact_every
        self._parts: dict[str, list[pl.DataFrame]] = {k: [] for k in _PARTS}
        #: hours strictly before this are closed (emitted); None before the first close.
        self.watermark: datetime | None = None
        #: events dropped because their hour was already closed.
        self.late_rows = 0
        #: events accepted into the state.
        self.rows = 0

    # ------------------------------------------------------------------ input
    def update(self, batch: pa.RecordBatch | pa.Table | pl.DataFrame | pl.LazyFrame) -> int:
        """Add a batch of canonical events; returns how many were accepted.

        Missing columns are read as nulls; events of closed hours are counted
        in :attr:`late_rows` and dropped.
        """
        df = _as_frame(batch).filter(pl.col("ts").is_not_null())
        if self.watermark is not None and df.height:
            on_time = df.get_column("ts") >= self.watermark
            self.late_rows += int(df.height - on_time.sum())
            df = df.filter(on_time)
        if df.height == 0:
            return 0
        for k, frame in _partials(df).items():
            self._parts[k].append(frame)
        self.rows += df.height
        if len(self._parts["dom"]) >= self.compact_every:
            self.compact()
        return df.height

    def merge(self, other: HourlyState) -> HourlyState:
        """Fold another state into this one (in place; returns ``self``).

        The merged watermark is the later of the two; partials of hours that
        either state had already closed are dropped.
        """
        marks = [m for m in (self.watermark, other.watermark) if m is not None]
        self.watermark = max(marks) if marks else None
        for k in _PARTS:
            self._parts[k].extend(other._parts[k])
        self.late_rows += other.late_rows
        self.rows += other.rows
        self.compact()
        if self.watermark is not None:
            mark = self.watermark
            self._parts = {k: [f[0].filter(pl.col("hour") >= mark)] for k, f in self._parts.items()}
        return self

    def compact(self) -> None:
        """Re-group the accumulated partials into one frame per kind."""
        self._parts = {k: [_compact(k, f)] for k, f in self._parts.items()}

    # ------------------------------------------------------------------ output
    def open_hours(self) -> list[datetime]:
        """The hours (UTC starts) that hold data and are not closed yet, sorted."""
        self.compact()
        hours = self._parts["dom"][0].get_column("hour")
        more = [self._parts[k][0].get_column("hour") for k in ("cli", "cd")]
        return sorted(pl.concat([hours, *more]).unique().to_list())

    def peek(self, before: datetime | None = None) -> HourlyFrames:
        """The aggregates of the open hours (before ``before``, if given), kept in the state."""
        self.compact()
        parts = {k: f[0] for k, f in self._parts.items()}
        if before is not None:
            cut = _utc(before)
            parts = {k: f.filter(pl.col("hour") < cut) for k, f in parts.items()}
        return _finalize(parts)

    def close(self, before: datetime) -> HourlyFrames:
        """Emit every hour that starts before ``before`` and remove it from the state.

        ``before`` is rounded down to the hour; an hour is emitted only when
        it is complete.  Later events of emitted hours count as late.
        """
        cut = _utc(before).replace(minute=0, second=0, microsecond=0)
        out = self.peek(cut)
        self._parts = {k: [f[0].filter(pl.col("hour") >= cut)] for k, f in self._parts.items()}
        if self.watermark is None or cut > self.watermark:
            self.watermark = cut
        return out

    def close_all(self) -> HourlyFrames:
        """Emit every open hour (end of input) and empty the state."""
        hours = self.open_hours()
        if not hours:
            return self.peek()
        return self.close(hours[-1] + timedelta(hours=1))

    # ------------------------------------------------------------------ checkpoint
    def save(self, path: str | os.PathLike[str]) -> None:
        """Checkpoint the state to a directory (Parquet files plus ``state.json``).

        The directory is written beside the target and swapped in, so a crash
        leaves either the old or the new checkpoint readable.
        """
        self.compact()
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for k, f in self._parts.items():
            f[0].write_parquet(tmp / f"{k}.parquet")
        meta: dict[str, Any] = {
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "late_rows": self.late_rows,
            "rows": self.rows,
            "compact_every": self.compact_every,
        }
        (tmp / "state.json").write_text(json.dumps(meta))
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HourlyState:
        """Read a checkpoint written by :meth:`save`."""
        target = Path(path)
        if not (target / "state.json").exists():
            for alt in (
                target.with_name(target.name + ".old"),
                target.with_name(target.name + ".tmp"),
            ):
                if (alt / "state.json").exists():
                    target = alt
                    break
            else:
                raise FileNotFoundError(f"no hourly-state checkpoint at {path}")
        meta = json.loads((target / "state.json").read_text())
        st = cls(compact_every=int(meta.get("compact_every", 8)))
        st.watermark = (
            _utc(datetime.fromisoformat(meta["watermark"])) if meta["watermark"] else None
        )
        st.late_rows = int(meta["late_rows"])
        st.rows = int(meta["rows"])
        for k in _PARTS:
            st._parts[k] = [pl.read_parquet(target / f"{k}.parquet").cast(_empty(k).schema)]
        return st


def _finalize(parts: dict[str, pl.DataFrame]) -> HourlyFrames:
    cd = parts["cd"]
    clients = cd.group_by(_DOM_KEYS).agg(pl.len().cast(pl.Int64).alias("clients"))
    domains = cd.group_by(_CLI_KEYS).agg(pl.len().cast(pl.Int64).alias("domains"))
    subs = parts["sub"].group_by(_DOM_KEYS).agg(pl.len().cast(pl.Int64).alias("subdomains"))
    dom = (
        parts["dom"]
        .join(clients, on=_DOM_KEYS, how="left")
        .join(subs, on=_DOM_KEYS, how="left")
        .with_columns(pl.col("clients", "subdomains").fill_null(0))
    )
    cli = (
        parts["cli"]
        .join(domains, on=_CLI_KEYS, how="left")
        .with_columns(pl.col("domains").fill_null(0))
    )

    def fin(df: pl.DataFrame, kind: str) -> pl.DataFrame:
        schema = SCHEMAS[kind]
        return df.select(list(schema)).cast(schema).sort(list(KEYS[kind]))

    return HourlyFrames(
        domain_hourly=fin(dom, "domain_hourly"),
        client_hourly=fin(cli, "client_hourly"),
        client_domain_hourly=fin(cd, "client_domain_hourly"),
    )
