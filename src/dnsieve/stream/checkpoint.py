"""The stream's checkpoint: hourly state, source positions and scoring progress, swapped atomically.

Layout of ``--checkpoint DIR``::

    DIR/CURRENT            # name of the live checkpoint (replaced with os.replace)
    DIR/ckpt-000042/       # state/ (HourlyState.save) and meta.json
    DIR/agg/<kind>/<YYYYmmddHH>.parquet   # aggregates of closed hours

A checkpoint is written in a fresh directory, fsynced, and only then named
in ``CURRENT``; a crash at any point leaves the previous checkpoint live.
Closed hours' aggregates are written before the checkpoint that records
them; rewriting an hour (after a replay) writes the same content.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from dnsieve.features.hourly import KEYS, SCHEMAS
from dnsieve.features.state import HourlyFrames, HourlyState

__all__ = ["AggregateStore", "Checkpoint", "StreamCheckpoint"]


@dataclass
class Checkpoint:
    """What a restart resumes from."""

    state: HourlyState = field(default_factory=HourlyState)
    #: next position to read per partition
    positions: dict[str, int] = field(default_factory=dict)
    #: newest event time seen per partition (ISO), for the watermark
    progress: dict[str, str] = field(default_factory=dict)
    #: windows before this are scored and stored
    scored_until: datetime | None = None
    #: first hour the stream closed into its aggregate store
    agg_from: datetime | None = None
    #: counters shown in the status (events, late, batches, rejects)
    counters: dict[str, Any] = field(default_factory=dict)
    #: candidates (ANOMALY columns) of the scored windows still in the calibration horizon
    candidates: pl.DataFrame | None = None
    #: entity-windows each detector scored in those windows
    population: dict[str, int] = field(default_factory=dict)
    #: state detectors carry from one scored period to the next (the volume
    #: models' flagged hours: :meth:`dnsieve.pipeline.DetectResult.state`)
    detector_state: dict[str, pl.DataFrame] = field(default_factory=dict)
    seq: int = 0


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _dt(s: str | None) -> datetime | None:
    if not s:
        return None
    t = datetime.fromisoformat(s)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StreamCheckpoint:
    """Reads and writes :class:`Checkpoint` s under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.aggregates = AggregateStore(root / "agg")

    def load(self) -> Checkpoint:
        """The live checkpoint, or a fresh one when there is none."""
        cur = self.root / "CURRENT"
        if not cur.exists():
            return Checkpoint()
        d = self.root / cur.read_text().strip()
        meta = json.loads((d / "meta.json").read_text())
        return Checkpoint(
            state=HourlyState.load(d / "state"),
            positions={k: int(v) for k, v in meta["positions"].items()},
            progress=dict(meta.get("progress", {})),
            scored_until=_dt(meta.get("scored_until")),
            agg_from=_dt(meta.get("agg_from")),
            counters=dict(meta.get("counters", {})),
            candidates=pl.read_parquet(d / "candidates.parquet")
            if (d / "candidates.parquet").exists()
            else None,
            population={k: int(v) for k, v in meta.get("population", {}).items()},
            detector_state={
                name: pl.read_parquet(d / f"state-{name}.parquet")
                for name in meta.get("detector_state", [])
            },
            seq=int(meta["seq"]),
        )

    def save(self, ck: Checkpoint) -> None:
        """Write ``ck`` as the next checkpoint and make it live atomically."""
        ck.seq += 1
        name = f"ckpt-{ck.seq:06d}"
        d = self.root / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        ck.state.save(d / "state")
        if ck.candidates is not None:
            ck.candidates.write_parquet(d / "candidates.parquet")
        for detector, frame in ck.detector_state.items():
            frame.write_parquet(d / f"state-{detector}.parquet")
        meta = {
            "seq": ck.seq,
            "positions": ck.positions,
            "progress": ck.progress,
            "scored_until": _iso(ck.scored_until),
            "agg_from": _iso(ck.agg_from),
            "counters": ck.counters,
            "population": ck.population,
            "detector_state": sorted(ck.detector_state),
            "saved_at": datetime.now(UTC).isoformat(),
        }
        with open(d / "meta.json", "w") as fh:
            json.dump(meta, fh)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(d)
        tmp = self.root / "CURRENT.tmp"
        with open(tmp, "w") as fh:
            fh.write(name)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / "CURRENT")
        _fsync_dir(self.root)
        for old in self.root.glob("ckpt-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)


class AggregateStore:
    """Hourly aggregates of closed hours, one Parquet file per kind and hour."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, frames: HourlyFrames) -> int:
        """Store every hour of ``frames``; returns the hours written."""
        hours: set[datetime] = set()
        for kind, df in frames:
            d = self.root / kind
            d.mkdir(parents=True, exist_ok=True)
            for (hour,), part in df.partition_by("hour", as_dict=True).items():
                assert isinstance(hour, datetime)
                hours.add(hour)
                f = d / f"{hour:%Y%m%d%H}.parquet"
                tmp = f.with_suffix(".tmp")
                part.write_parquet(tmp)
                os.replace(tmp, f)
        return len(hours)

    def read(self, kind: str, since: datetime | None, until: datetime | None) -> pl.DataFrame:
        """The stored rows of ``kind`` for hours in ``[since, until)``, sorted by key."""
        d = self.root / kind
        files = []
        if d.is_dir():
            for f in d.glob("*.parquet"):
                h = datetime.strptime(f.stem, "%Y%m%d%H").replace(tzinfo=UTC)
                if (since is None or h >= since.replace(minute=0, second=0, microsecond=0)) and (
                    until is None or h < until
                ):
                    files.append(f)
        schema = SCHEMAS[kind]
        if not files:
            return pl.DataFrame(schema=schema)
        df = pl.concat([pl.read_parquet(f) for f in sorted(files)], how="vertical")
        return df.select(list(schema)).cast(schema).sort(list(KEYS[kind]))

    def prune(self, before: datetime) -> int:
        """Delete hours before ``before`` (older than any baseline still needed)."""
        n = 0
        for f in self.root.glob("*/*.parquet"):
            h = datetime.strptime(f.stem, "%Y%m%d%H").replace(tzinfo=UTC)
            if h < before:
                f.unlink(missing_ok=True)
                n += 1
        return n
