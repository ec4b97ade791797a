"""The stream runner: source → micro-batches → lake + hourly state → closed windows → the job.

One loop (ARCHITECTURE §3 ``stream``):

1. **poll** a micro-batch of raw records from the source;
2. **decode** each partition's records with the same adapters as ``ingest``;
3. **append** the records the lake does not hold yet (positions at or past
   :meth:`~dnsieve.lake.Lake.stream_positions`) with their new positions in one
   manifest commit, so a replayed offset range writes nothing twice;
4. **update** the :class:`~dnsieve.features.HourlyState` with every decoded
   event; events of hours already closed are counted as late (they are in
   the lake, never silently dropped);
5. **close** the hours the watermark passed — the watermark is the minimum
   over partitions of each partition's newest event time, less the allowed
   lateness — into the aggregate store, and **checkpoint** state, positions
   and counters atomically;
6. **score** closed windows with :func:`dnsieve.jobs.score_period` (detectors
   read closed hours' aggregates from the store, not from the raw lake), store
   the alerts, checkpoint ``scored_until``, and only then **commit** the
   offsets to the source.

A restart resumes from the checkpoint: events after it are read again, the lake
skips what it holds, the state gets them once, scoring repeats what was not
checkpointed as scored, and the store's idempotent alert ids (detector, entity,
window) make a re-stored alert a merge that keeps its verdict.

**When closed windows are scored.**  Live (caught up with the source), every
time the watermark closes an hour, in windows of ``[stream] window_seconds``.
With ``--stop-when-idle`` the stream is a drain: it scores once, at the end,
every window the data closes, through the very call ``run`` makes, so it gives
``run``'s alerts.  ``[stream] score_every_hours`` also scores a long backlog
while catching up.
"""

from __future__ import annotations

import io
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from dnsieve.engines.polars import PolarsEngine
from dnsieve.ingest import IngestStats, ReadContext, read_stream
from dnsieve.ingest.sniff import sniff
from dnsieve.lake import Lake
from dnsieve.stream.checkpoint import AggregateStore, Checkpoint, StreamCheckpoint
from dnsieve.stream.sources import Chunk, Source

__all__ = ["StreamEngine", "StreamRunner", "StreamStatus", "decode_chunk"]


class StreamEngine(PolarsEngine):
    """The embedded engine, reading closed hours' aggregates from the stream's store.

    Hours before the stream's first closed hour (history the lake held before
    the stream started) are aggregated from the lake as usual.
    """

    def __init__(self, store: AggregateStore, agg_from: datetime | None) -> None:
        self.store = store
        self.agg_from = agg_from

    def aggregate(
        self,
        kind: str,
        source: Any,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pl.DataFrame:
        if self.agg_from is None:
            return super().aggregate(kind, source, since, until)
        parts = []
        if since is None or since < self.agg_from:
            parts.append(super().aggregate(kind, source, since, self.agg_from))
        lo = self.agg_from if since is None or since < self.agg_from else since
        parts.append(self.store.read(kind, lo, until))
        return pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]


#: Bytes of a micro-batch an adapter parses at once (see :func:`decode_chunk`).
DECODE_CHUNK_BYTES = 4 * 1024 * 1024


def decode_chunk(
    chunk: Chunk, fmt: str, options: dict[str, Any], lake: Lake
) -> tuple[pa.Table | None, IngestStats, str]:
    """Decode a chunk's records with the ingest adapter for ``fmt`` (``auto``: sniffed).

    Returns the canonical events (None when there are none), the adapter's
    counts (rejects by reason) and the format used.
    """
    data = chunk.payload()
    stats = IngestStats(source=chunk.partition)
    if not data:
        return None, stats, fmt
    if fmt == "auto":
        fmt = sniff(data[: 64 * 1024]) or "zeek-json"
    # A micro-batch is a few tens of MB: parse it in pieces of a few MB so the
    # adapters' one-chunk-ahead worker overlaps parsing with canonicalising.
    opts = {"chunk_bytes": DECODE_CHUNK_BYTES, **options}
    ctx = ReadContext(
        sensor=chunk.partition,
        stats=stats,
        batch_size=lake.batch_size,
        splitter=lake.splitter,
        options=opts,
        max_record_bytes=lake.max_record_bytes,
    )
    batches = list(read_stream(io.BytesIO(data), fmt, ctx))
    if not batches:
        return None, stats, fmt
    return pa.Table.from_batches(batches), stats, fmt


@dataclass
class StreamStatus:
    """What the status line, the store and ``GET /api/stream`` show."""

    name: str
    events: int = 0
    events_per_s: float = 0.0
    late: int = 0
    rejected: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)
    open_windows: int = 0
    watermark: str | None = None
    scored_until: str | None = None
    last_checkpoint: str | None = None
    last_alert: str | None = None
    alerts: int = 0
    state: str = "running"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def line(self) -> str:
        """One status line (no attacker-controlled text in it)."""
        lag = sum(self.lag.values())
        return (
            f"{self.events:,} events ({self.events_per_s:,.0f}/s), lag {lag:,} over "
            f"{len(self.lag)} partition(s), {self.open_windows} open window(s), "
            f"{self.late:,} late, {self.alerts:,} alert(s)"
            + (f", scored to {self.scored_until}" if self.scored_until else "")
        )


class StreamRunner:
    """Run a source through the lake, the hourly state and the job (see the module doc)."""

    def __init__(
        self,
        source: Source,
        lake: Lake,
        checkpoint: Path,
        settings: Any,
        *,
        fmt: str = "auto",
        store_url: str | bool | None = None,
        stop_when_idle: float | None = None,
        on_status: Callable[[StreamStatus], None] | None = None,
        hooks: dict[str, Callable[[], None]] | None = None,
    ) -> None:
        self.source = source
        self.lake = lake
        self.ckpts = StreamCheckpoint(checkpoint)
        self.settings = settings
        self.cfg = settings.stream
        self.fmt = fmt
        self.store_url = store_url
        self.stop_when_idle = stop_when_idle
        self.on_status = on_status
        #: test hooks by point name: "consumed", "checkpointed" (each micro-batch),
        #: "detected" (scored, not stored), "stored", "checkpointed_scored" (not
        #: committed to the source yet), "committed"
        self.hooks = hooks or {}
        self.options: dict[str, Any] = {"mapping": dict(settings.ingest.column_mapping)}
        if settings.ingest.year:
            self.options["year"] = settings.ingest.year
        self.prefix = f"{source.name}/"
        self.status = StreamStatus(name=source.name)
        self._stop = False
        self._run_id: int | None = None
        self._formats: dict[str, str] = {}
        self._reached: dict[str, int] = {}

    # ------------------------------------------------------------------ control
    def stop(self, *_: Any) -> None:
        """Ask the loop to stop after the current micro-batch (SIGTERM, Ctrl-C)."""
        self._stop = True

    def _hook(self, point: str) -> None:
        fn = self.hooks.get(point)
        if fn is not None:
            fn()
        # Crash tests: DNSIEVE_STREAM_CRASH_AT=point[:n] kills this process (SIGKILL)
        # at the n-th time (default: first) it reaches that point.
        spec = os.environ.get("DNSIEVE_STREAM_CRASH_AT", "")
        if spec:
            name, _, nth = spec.partition(":")
            if name == point:
                self._reached[point] = self._reached.get(point, 0) + 1
                if self._reached[point] >= int(nth or 1):
                    os.kill(os.getpid(), signal.SIGKILL)

    # ------------------------------------------------------------------ loop
    def run(self) -> StreamStatus:
        """Run until stopped (or idle for ``stop_when_idle`` seconds); returns the final status."""
        self.lake.splitter.warm()  # the suffix list loads while the first batch is read
        ck = self.ckpts.load()
        if ck.positions:
            self.source.seek(ck.positions)
        self.status.events = int(ck.counters.get("events", 0))
        self.status.late = ck.state.late_rows
        self.status.rejected = int(ck.counters.get("rejected", 0))
        self.status.alerts = int(ck.counters.get("alerts", 0))
        self.status.last_alert = ck.counters.get("last_alert")
        old_handlers = self._install_signals()
        idle_since = time.monotonic()
        t_status = time.monotonic()
        rate_events, rate_t = self.status.events, time.monotonic()
        try:
            while not self._stop:
                chunks = self.source.poll(self.cfg.max_batch_events, self.cfg.poll_seconds)
                got = self._ingest(ck, chunks) if chunks else 0
                if got:
                    idle_since = time.monotonic()
                self._close(ck)
                self._hook("consumed")
                if chunks:
                    self.ckpts.save(ck)
                    self._hook("checkpointed")
                caught_up = not chunks and self.source.caught_up()
                if self.stop_when_idle is None and (caught_up or self._backlog_due(ck)):
                    self._score(ck, final=False)
                now = time.monotonic()
                if now - t_status >= self.cfg.status_seconds:
                    self.status.events_per_s = (self.status.events - rate_events) / (now - rate_t)
                    rate_events, rate_t = self.status.events, now
                    self._report(ck)
                    t_status = now
                if (
                    self.stop_when_idle is not None
                    and not chunks
                    and now - idle_since >= self.stop_when_idle
                    and self.source.caught_up()
                ):
                    self._score(ck, final=True)
                    self.status.state = "finished"
                    break
            else:
                self.status.state = "stopped"
            self._report(ck)
        finally:
            self._restore_signals(old_handlers)
        return self.status

    def _install_signals(self) -> dict[int, Any]:
        old: dict[int, Any] = {}
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                old[sig] = signal.signal(sig, self.stop)
        except ValueError:  # not the main thread: the caller stops us with stop()
            pass
        return old

    @staticmethod
    def _restore_signals(old: dict[int, Any]) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

    # ------------------------------------------------------------------ steps
    def _ingest(self, ck: Checkpoint, chunks: list[Chunk]) -> int:
        """Decode, append what the lake lacks, update the state; returns events decoded."""
        have = self.lake.stream_positions(self.prefix)
        new_tables: list[pa.Table] = []
        positions: dict[str, int] = {}
        total = 0
        rejects: Counter[str] = Counter()
        decoded: list[tuple[Chunk, pa.Table | None]] = []
        ends: dict[str, int] = {}  # where each partition's previous chunk of this poll ended
        for ch in chunks:
            fmt = self._formats.get(ch.partition, self.fmt)
            table, stats, used = decode_chunk(ch, fmt, self.options, self.lake)
            self._formats.setdefault(ch.partition, used)
            rejects.update(stats.rejects)
            rejects.update(ch.rejects)
            expect = ends.get(ch.partition, ck.positions.get(ch.partition))
            ends[ch.partition] = ch.end
            if (
                expect is not None
                and not ch.partition.startswith("file:")
                and ch.records
                and ch.records[0][0] > expect
            ):
                # the broker no longer holds these offsets (retention): say so, never silently
                rejects["offsets_lost"] += ch.records[0][0] - expect
            start = have.get(ch.partition, 0)
            fresh = ch.after(start) if ch.records and ch.records[0][0] < start else ch
            if fresh is ch:
                new = table
            elif fresh.records:
                new, _, _ = decode_chunk(fresh, used, self.options, self.lake)
            else:
                new = None
            if new is not None and new.num_rows:
                new_tables.append(new)
            positions[ch.partition] = max(ch.end, start)
            decoded.append((ch, table))
        # The lake append (Parquet encoding, fsync, manifest commit) runs in a thread
        # while the hourly state folds the same events in: the two are independent.
        batches = [b for t in new_tables for b in t.to_batches()]
        with ThreadPoolExecutor(1, thread_name_prefix="stream-append") as pool:
            appended = pool.submit(self.lake.append_stream, batches, self.prefix, positions)
            for ch, table in decoded:
                total += self._fold(ck, ch, table)
            appended.result()
        n_rej = sum(rejects.values())
        ck.counters["events"] = int(ck.counters.get("events", 0)) + total
        ck.counters["rejected"] = int(ck.counters.get("rejected", 0)) + n_rej
        if rejects:
            reasons: dict[str, int] = dict(ck.counters.get("rejects", {}))
            for k, v in rejects.items():
                reasons[k] = reasons.get(k, 0) + v
            ck.counters["rejects"] = reasons
        self.status.events = int(ck.counters["events"])
        self.status.rejected = int(ck.counters["rejected"])
        self.status.late = ck.state.late_rows
        return total

    @staticmethod
    def _fold(ck: Checkpoint, ch: Chunk, table: pa.Table | None) -> int:
        """Fold a decoded chunk into the state and the checkpoint's progress; returns events."""
        if table is None or table.num_rows == 0:
            ck.positions[ch.partition] = ch.end
            return 0
        hi = pa.compute.max(table.column("ts")).as_py()
        if hi is not None:
            hi = hi.replace(tzinfo=UTC) if hi.tzinfo is None else hi.astimezone(UTC)
            prev = ck.progress.get(ch.partition)
            if prev is None or hi.isoformat() > prev:
                ck.progress[ch.partition] = hi.isoformat()
        ck.state.update(table)
        ck.positions[ch.partition] = ch.end
        return int(table.num_rows)

    def _watermark(self, ck: Checkpoint) -> datetime | None:
        """Min over partitions of their newest event time, less the allowed lateness.

        Taking the minimum (not the newest event overall) keeps a slower
        partition's events from looking late while Kafka interleaves partitions;
        a partition not read yet holds it back, an empty one read to its end
        does not.
        """
        marks = []
        for part in self.source.partitions():
            if part in ck.progress:
                marks.append(ck.progress[part])
            elif not self.source.at_end(part):
                return None  # a partition not read yet holds event time back
        marks = marks or list(ck.progress.values())
        if not marks:
            return None
        t = datetime.fromisoformat(min(marks))
        return t - timedelta(seconds=self.cfg.allowed_lateness_seconds)

    def _close(self, ck: Checkpoint) -> None:
        wm = self._watermark(ck)
        if wm is None:
            return
        cut = wm.replace(minute=0, second=0, microsecond=0)
        if ck.state.watermark is not None and cut <= ck.state.watermark:
            return
        frames = ck.state.close(cut)
        if frames.domain_hourly.height or frames.client_hourly.height:
            self.ckpts.aggregates.write(frames)
            first = frames.domain_hourly.get_column("hour").min()
            if isinstance(first, datetime) and (ck.agg_from is None or first < ck.agg_from):
                ck.agg_from = first

    def _engine(self, ck: Checkpoint) -> Any:
        """The engine scoring closed windows: the embedded one over the stream's aggregates."""
        return StreamEngine(self.ckpts.aggregates, ck.agg_from)

    def _backlog_due(self, ck: Checkpoint) -> bool:
        every = self.cfg.score_every_hours
        if every <= 0 or ck.state.watermark is None:
            return False
        done = ck.scored_until or ck.agg_from
        return done is not None and (ck.state.watermark - done) >= timedelta(hours=every)

    def _score(self, ck: Checkpoint, final: bool) -> None:
        """Score the closed, not yet scored windows; store; checkpoint; commit offsets."""
        from dnsieve.jobs import score_period

        window: float | None = self.cfg.window_seconds
        if final:
            frames = ck.state.close_all()
            if frames.domain_hourly.height or frames.client_hourly.height:
                self.ckpts.aggregates.write(frames)
                first = frames.domain_hourly.get_column("hour").min()
                if isinstance(first, datetime) and (ck.agg_from is None or first < ck.agg_from):
                    ck.agg_from = first
            span = self.lake.time_range()
            until = span[1] + timedelta(seconds=1) if span else None
        else:
            until = ck.state.watermark
        if until is None or (ck.scored_until is not None and until <= ck.scored_until):
            if final:
                self._commit(ck)
            return
        since = ck.scored_until
        if since is None:
            span = self.lake.time_range()
            origin = ck.agg_from
            # a lake the stream filled: score it whole, exactly as run does
            since = None if span is None or origin is None or span[0] >= origin else origin
        if final and since is None:
            window = None  # the whole input at once: the window adapts as in run
        engine = self._engine(ck)
        history = (ck.candidates, ck.population) if ck.candidates is not None else None
        res, alerts = score_period(
            self.lake, since, until, self.settings, engine=engine, window=window,
            store_url=self.store_url, before_store=lambda: self._hook("detected"),
            history=history, state=ck.detector_state,
            inputs={"stream": self.source.name, "since": str(since), "until": str(until)},
        )  # fmt: skip
        self._remember(ck, res, until)
        ck.detector_state = dict(getattr(res, "state", {}) or {})
        ck.scored_until = until
        n = int(alerts.height)
        ck.counters["alerts"] = int(ck.counters.get("alerts", 0)) + n
        if n:
            ck.counters["last_alert"] = datetime.now(UTC).isoformat(timespec="seconds")
        ck.counters["last_score_summary"] = {
            "since": str(since),
            "until": str(until),
            "alerts": n,
        }
        self.status.alerts = int(ck.counters["alerts"])
        self.status.last_alert = ck.counters.get("last_alert")
        self._hook("stored")
        self.ckpts.save(ck)
        self._hook("checkpointed_scored")
        self._commit(ck)
        # Only now (a re-score after a crash needs them) drop the aggregates no later
        # window's baseline needs.
        base = getattr(getattr(self.settings, "detect", None), "baseline_hours", 168)
        self.ckpts.aggregates.prune(until - timedelta(hours=float(base) + 1))

    def _remember(self, ck: Checkpoint, res: Any, until: datetime) -> None:
        """Keep this period's candidates and populations for later calibrations
        (the windows of the last ``[stream] calibration_hours``)."""
        from dnsieve.detectors.base import empty_anomalies

        cols = empty_anomalies().columns
        new = res.anomalies.select(cols) if res.anomalies.height else None
        frames = [f for f in (ck.candidates, new) if f is not None and f.height]
        horizon = until - timedelta(hours=self.cfg.calibration_hours)
        if frames:
            ck.candidates = pl.concat(frames, how="vertical_relaxed").filter(
                pl.col("window_start") >= horizon
            )
        for name, info in res.summary.get("detectors", {}).items():
            pop = int(info.get("population", 0) or 0)
            # populations are kept as totals over the horizon, scaled as it slides
            ck.population[name] = ck.population.get(name, 0) + pop
        span = ck.counters.get("calibration_from")
        start = datetime.fromisoformat(span) if span else None
        if start is None:
            ck.counters["calibration_from"] = (until - timedelta(hours=1)).isoformat()
        elif start < horizon:
            total = (until - start).total_seconds()
            keep = (until - horizon).total_seconds() / total if total > 0 else 1.0
            ck.population = {k: int(v * keep) for k, v in ck.population.items()}
            ck.counters["calibration_from"] = horizon.isoformat()

    def _commit(self, ck: Checkpoint) -> None:
        self.source.commit(ck.positions)
        self._hook("committed")

    # ------------------------------------------------------------------ status
    def _report(self, ck: Checkpoint) -> None:
        s = self.status
        s.lag = self.source.lag()
        s.open_windows = len(ck.state.open_hours())
        s.watermark = ck.state.watermark.isoformat() if ck.state.watermark else None
        s.scored_until = ck.scored_until.isoformat() if ck.scored_until else None
        s.last_checkpoint = datetime.now(UTC).isoformat(timespec="seconds")
        s.rejects = dict(ck.counters.get("rejects", {}))
        if self.on_status is not None:
            self.on_status(s)
        if self.store_url is not False:
            self._store_status(s)

    def _store_status(self, s: StreamStatus) -> None:
        """Record the status as this stream's run in the alert store (runs page, /api/stream)."""
        from dnsieve.alerts.store import AlertStore

        url = None if self.store_url is True else self.store_url
        try:
            # the schema is brought up to date once, by the first report; the later
            # ones (every few seconds, for the life of the stream) only write a row
            with AlertStore.open(url, migrate=self._run_id is None) as store:  # type: ignore[arg-type]
                if self._run_id is None:
                    self._run_id = store.start_run({"stream": s.name, "kind": "stream"})
                store.finish_run(self._run_id, counts={"stream": s.to_dict()}, rejects=s.rejects)
        except Exception as exc:
            s.state = f"{s.state} (status not stored: {type(exc).__name__})"
