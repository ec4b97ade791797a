"""Detection pipeline: lake → engine aggregates → every detector → calibration → alerts.

:func:`detect` runs all registered detectors (or the named ones) over a lake:

1. the scored period is ``[since, until)`` or, by default, the whole lake; its
   end is the last *complete* window (a final window counts as complete when
   the data reaches 95 % of it);
2. each detector gets the input it declares (``requires``: canonical events
   or one of the hourly aggregates), read by the engine from the scored period
   plus ``baseline_hours`` before it, so every window is scored against its
   own trailing baseline: a historical lake is scored in full;
3. ``engine.map_detector`` runs the detector's pure ``score`` (a detector
   with ``fit_population`` is fitted once on the whole input here; an engine
   with ``score_fitted``, the embedded one, scores that fitted detector as it
   is instead of fitting a copy again);
4. :func:`dnsieve.calibrate.calibrate` turns the pooled candidates into
   alerts (per-detector tail fit, target false-alarm rate, score floors,
   popularity prior, and a daily budget that counts episodes: a detector ×
   entity's windows without a quiet gap longer than ``episode_gap``, the
   ``[alerts] episode_gap_hours`` setting, 6 h by default).

``ctx.window`` adapts to the span of the data: an hour for long lakes, down to
a minute for a capture of a few minutes.  Detectors that cannot work on the
span (the volume model needs ``min_baseline_hours`` of history) say why via
``skip_reason`` and the summary reports it.

Optional detector hooks used here (duck-typed, all optional):
``skip_reason(span_seconds) -> str | None``, ``fit_population(data)`` (fit
population-level state once, before a distributed engine splits the data by
entity) and ``population(data, ctx) -> int`` (how many entity-windows were
scored, for the calibration's exceedance rate; default: rows emitted).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from dnsieve.calibrate import calibrate
from dnsieve.config import DetectSettings
from dnsieve.detectors import available, get
from dnsieve.detectors.base import DetectContext, Detector, empty_anomalies
from dnsieve.engines import Engine, get_engine
from dnsieve.engines.base import fits_causally
from dnsieve.lake import Lake, open_lake

__all__ = [
    "DetectResult",
    "DetectSettings",
    "add_top_clients",
    "choose_window",
    "detect",
    "fit_epochs",
    "with_techniques",
]

_NICE_WINDOWS = (60, 300, 600, 900, 1800, 3600)


@dataclass
class DetectResult:
    """What :func:`detect` found: candidates, alerts and a summary."""

    anomalies: pl.DataFrame  # all scored candidates, with calibration columns
    alerts: pl.DataFrame  # calibrated alerts within the daily budget
    summary: dict[str, Any] = field(default_factory=dict)
    #: state each stateful detector carries to the next period (pass it back as
    #: ``detect(state=...)``): the volume models' flagged hours
    state: dict[str, pl.DataFrame] = field(default_factory=dict)


def with_techniques(anomalies: pl.DataFrame, techniques: tuple[str, ...]) -> pl.DataFrame:
    """Write a detector's ATT&CK technique ids into each candidate's evidence JSON.

    >>> df = pl.DataFrame({"evidence": ['{"a": 1}', "{}"]})
    >>> with_techniques(df, ("T1568.002",))["evidence"].to_list()
    ['{"techniques": ["T1568.002"], "a": 1}', '{"techniques": ["T1568.002"]}']
    """
    if not techniques or anomalies.height == 0:
        return anomalies
    head = '{"techniques": ' + json.dumps(list(techniques))
    ev = pl.col("evidence").fill_null("{}").str.strip_chars()
    return anomalies.with_columns(
        pl.when(ev.str.replace_all(r"\s", "") == "{}")
        .then(pl.lit(head + "}"))
        .otherwise(pl.lit(head + ", ") + ev.str.slice(1))
        .alias("evidence")
    )


def choose_window(span_seconds: float) -> float:
    """The scoring window for a span: the largest of 1 min … 1 h that fits six times (≥ 1 min).

    >>> choose_window(3 * 86400), choose_window(1800), choose_window(90)
    (3600.0, 300.0, 60.0)
    """
    fit = [w for w in _NICE_WINDOWS if w * 6 <= span_seconds]
    return float(fit[-1] if fit else _NICE_WINDOWS[0])


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _floor(t: datetime, seconds: float) -> datetime:
    ts = t.timestamp()
    return datetime.fromtimestamp(math.floor(ts / seconds) * seconds, UTC)


def _period(
    lake: Lake, since: datetime | None, until: datetime | None, fixed: float | None = None
) -> tuple[datetime, datetime, float] | None:
    """(start, end, window seconds) of the scored period, or None if no events."""
    row = (
        lake.scan(since, until)
        .select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
        .collect()
    )
    lo, hi = row.item(0, "lo"), row.item(0, "hi")
    if lo is None:
        return None
    lo, hi = _utc(lo), _utc(hi)
    assert lo is not None and hi is not None
    start = since or lo
    window = fixed or choose_window(((until or hi) - start).total_seconds())
    if until is not None:
        end = until
    else:
        end = _floor(hi, window)
        if (hi - end).total_seconds() >= 0.95 * window:
            end += timedelta(seconds=window)
    if since is None:
        start = _floor(start, window)
    return start, end, window


def fit_epochs(
    start: datetime, end: datetime, every_seconds: float
) -> list[tuple[datetime, datetime, datetime]]:
    """The fit epochs that ``[start, end)`` spans: (period start, period end, fit until).

    Epochs are ``every_seconds`` long and aligned on the Unix epoch (UTC days
    by default), so they do not depend on where a scoring period starts.  A
    detector that fits causally (:func:`dnsieve.engines.base.fits_causally`)
    scores each epoch's part of the period with population laws fitted on the
    baseline before the epoch, the same fit a stream that scores one closed
    hour at a time uses for that hour.

    >>> t = datetime(2026, 1, 1, 18, tzinfo=UTC)
    >>> [(a.hour, b.day, b.hour, u.day) for a, b, u in fit_epochs(t, t + timedelta(hours=30), 86400)]
    [(18, 2, 0, 1), (0, 3, 0, 2)]
    """
    out = []
    lo = _floor(start, every_seconds)
    while lo < end:
        hi = lo + timedelta(seconds=every_seconds)
        out.append((max(lo, start), min(hi, end), lo))
        lo = hi
    return out


def _score_causally(
    det: Detector, data: Any, ctx: DetectContext, eng: Any, every_seconds: float
) -> tuple[pl.DataFrame, int]:
    """A causally fitting detector's candidates and population over ``ctx``'s period.

    Each fit epoch's part of the period is scored with the detector fitted on
    the baseline before that epoch (``fit_until``); the candidates and the
    populations of the parts add up.
    """
    from dataclasses import replace

    from dnsieve.engines.base import prepare_detector

    frames: list[pl.DataFrame] = []
    total = 0
    stateful = hasattr(det, "score_with_state")
    busy = _busy_epochs(data, every_seconds)
    for lo, hi, until in fit_epochs(ctx.start, ctx.end, every_seconds):
        k = int(until.timestamp() // every_seconds)
        if busy is not None and k not in busy and k - 1 not in busy:
            continue  # no data in it or the epoch before: nothing closes here
        part = replace(ctx, start=lo, end=hi, fit_until=until)
        if hasattr(eng, "score_detector"):
            # fits on the cluster (honouring fit_until); a stateful detector's carried_
            # state travels to the partitions and comes back merged
            out, got = eng.score_detector(det, data, part)
            pop = out.height if got is None else int(got)
        else:
            fitted = prepare_detector(det, data, until)
            if stateful:
                frame = data.collect() if isinstance(data, pl.LazyFrame) else data
                out, det.carried_ = fitted.score_with_state(  # type: ignore[attr-defined]
                    frame, part, getattr(det, "carried_", None)
                )
            else:
                out = (
                    eng.score_fitted(fitted, data, part)
                    if hasattr(eng, "score_fitted")
                    else eng.map_detector(det, data, part)
                )
            pop = fitted.population(data, part) if hasattr(fitted, "population") else out.height
        frames.append(out)
        total += int(pop)
    out = pl.concat(frames) if frames else empty_anomalies()
    return out.sort(["entity", "window_start", "detector"]), total


def _busy_epochs(data: Any, every_seconds: float) -> set[int] | None:
    """Indices of the fit epochs holding rows of ``data`` (None: not a Polars frame).

    A lake of captures years apart spans thousands of empty epochs; only those
    with data, and the one after each (a window may close there), are scored.
    """
    if not isinstance(data, pl.DataFrame):
        return None
    col = "ts" if "ts" in data.columns else "hour" if "hour" in data.columns else None
    if col is None or data.height == 0:
        return None if col is None else set()
    t = pl.col(col).cast(pl.Datetime("us", "UTC")).dt.epoch("s")
    idx = data.select((t // int(every_seconds)).unique().drop_nulls()).to_series()
    return {int(i) for i in idx.to_list()}


def _first_event(lake: Lake, since: datetime, until: datetime) -> datetime | None:
    """The first event time in ``[since, until)`` of ``lake`` (None: no events)."""
    lo = lake.scan(since, until).select(pl.col("ts").min()).collect().item()
    return _utc(lo) if isinstance(lo, datetime) else None


def detect(
    lake: Lake | str | Path,
    *,
    engine: str | Engine = "polars",
    since: datetime | None = None,
    until: datetime | None = None,
    detectors: list[str] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    settings: DetectSettings | None = None,
    strict: bool = False,
    episode_gap: timedelta | None = None,
    window: float | None = None,
    history: tuple[pl.DataFrame, dict[str, int]] | None = None,
    state: dict[str, pl.DataFrame] | None = None,
) -> DetectResult:
    """Run the registered detectors (or ``detectors``) over ``lake`` and calibrate.

    ``params[name]`` overrides detector ``name``'s constructor arguments (on top
    of what ``settings`` implies).  A detector that raises is reported in the
    summary (``status: error``) and the others go on, unless ``strict``.
    ``episode_gap`` (default: ``AlertSettings().episode_gap``, 6 h) makes the
    daily budget count episodes rather than windows.  ``engine`` may be an
    engine instance (the stream runner's, which reads closed hours from its
    state); ``window`` fixes the scoring window (seconds) instead of adapting it
    to the span (a stream scores each closed hour with the live window).
    ``history``: candidates (ANOMALY columns) and populations per detector of
    earlier periods, pooled into the calibration (the tail fit and the daily
    budget) as if scored with this period; only this period's rows come back.
    ``state``: what stateful detectors carried out of the previous period
    (``DetectResult.state``), so a lake scored period by period (a stream)
    gives the scores of one pass.
    """
    if episode_gap is None:
        from dnsieve.config import AlertSettings

        episode_gap = AlertSettings().episode_gap
    engine_name = engine if isinstance(engine, str) else engine.name
    settings = settings or DetectSettings(engine=engine_name)  # type: ignore[arg-type,unused-ignore]
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise ValueError(
            f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})"
        )
    lk = lake if isinstance(lake, Lake) else open_lake(lake)  # Parquet or Delta
    names = list(detectors or settings.detectors or available())
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise KeyError(
            f"unknown detector(s) {', '.join(unknown)}; available: {', '.join(available())}"
        )
    summary: dict[str, Any] = {"lake": str(lk.path), "engine": engine_name, "detectors": {}}
    period = _period(lk, since, until, window)
    if period is None:
        summary["note"] = "no events in the lake for the requested period"
        empty = calibrate(empty_anomalies())
        return DetectResult(empty.anomalies, empty.alerts, summary)
    start, end, window = period
    span = (end - start).total_seconds()
    summary.update(
        start=start.isoformat(),
        end=end.isoformat(),
        span_hours=round(span / 3600, 3),
        window_seconds=window,
    )
    eng = get_engine(engine) if isinstance(engine, str) else engine
    fit_every = float(settings.fit_every_hours) * 3600.0
    # the first fit epoch's baseline is read too (a causal fit needs it: see fit_epochs)
    fetch_from = _floor(start, fit_every) - timedelta(hours=settings.baseline_hours)
    # What a detector may ask for is the data it can see: the scored period and the
    # history before it (up to the baseline), not the scored span alone.  A stream that
    # scores one closed hour sees the same history as a run over the whole lake.
    history_from = _floor(_first_event(lk, fetch_from, end) or start, window)
    seen_span = (end - min(history_from, start)).total_seconds()
    summary["history_hours"] = round(seen_span / 3600, 3)
    ctx = DetectContext(
        start=start, end=end, window=window, seed=settings.seed, params=params or {}
    )
    inputs: dict[str, Any] = {}
    frames: list[pl.DataFrame] = []
    population: dict[str, int] = {}
    new_state: dict[str, pl.DataFrame] = dict(state or {})
    for name in names:
        cls = get(name)
        kwargs = {**settings.detector_params(name), **(params or {}).get(name, {})}
        info: dict[str, Any] = {"requires": cls.requires, "entity_type": cls.entity_type}
        summary["detectors"][name] = info
        t0 = time.perf_counter()
        try:
            det: Detector = cls(**kwargs)
            if state and name in state and hasattr(det, "score_with_state"):
                det.carried_ = state[name]  # type: ignore[attr-defined]
            reason = det.skip_reason(seen_span) if hasattr(det, "skip_reason") else None
            if reason:
                info.update(status="skipped", reason=reason, candidates=0)
                continue
            if cls.requires not in inputs:
                if cls.requires == "flows":  # flows joined with their DNS (docs/flows.md)
                    from dnsieve.features.flowjoin import flow_input

                    inputs[cls.requires] = flow_input(lk, eng, fetch_from, end)
                elif hasattr(eng, "input_frame"):  # a distributed engine: the input stays there
                    inputs[cls.requires] = eng.input_frame(cls.requires, lk, fetch_from, end)
                elif cls.requires == "events":
                    inputs[cls.requires] = eng.events(lk, fetch_from, end)
                else:
                    inputs[cls.requires] = eng.aggregate(cls.requires, lk, fetch_from, end)
            data = inputs[cls.requires]
            # hourly windows (a lake, a stream) fit causally; a short capture, scored at
            # once in shorter windows, is fitted on the whole capture
            causal = fits_causally(det) and window >= 3600.0
            if causal and (cls.requires != "flows" or not hasattr(eng, "score_detector")):
                out, pop = _score_causally(det, data, ctx, eng, fit_every)
                out = with_techniques(out, cls.techniques)
            elif hasattr(eng, "score_detector") and cls.requires != "flows":
                # a distributed engine fits, scores and counts where the data is (flows are
                # joined on the driver today, so they keep the map_detector path below)
                out, got_pop = eng.score_detector(det, data, ctx)
                out = with_techniques(out, cls.techniques)
                pop = out.height if got_pop is None else got_pop
            elif hasattr(det, "fit_population"):
                det.fit_population(data)
                # Fitted on the whole input already: an engine that can score it as
                # it is skips map_detector's own fit (the same fit, done twice).
                scored = (
                    eng.score_fitted(det, data, ctx)
                    if hasattr(eng, "score_fitted")
                    else eng.map_detector(det, data, ctx)
                )
                out = with_techniques(scored, cls.techniques)
                pop = det.population(data, ctx) if hasattr(det, "population") else out.height
            else:
                out = with_techniques(eng.map_detector(det, data, ctx), cls.techniques)
                pop = det.population(data, ctx) if hasattr(det, "population") else out.height
        except Exception as exc:
            if strict:
                raise
            info.update(status="error", reason=f"{type(exc).__name__}: {exc}", candidates=0)
            continue
        population[name] = max(int(pop), out.height)
        frames.append(out)
        if getattr(det, "carried_", None) is not None:
            new_state[name] = det.carried_  # type: ignore[attr-defined]
        info.update(
            status="ok",
            input_rows=data.height if isinstance(data, pl.DataFrame) else None,
            candidates=out.height,
            population=population[name],
            seconds=round(time.perf_counter() - t0, 3),
        )
        if out.height == 0 and population[name] == 0 and hasattr(det, "population"):
            info["reason"] = "no complete window with enough history in the period"
    anomalies = pl.concat(frames) if frames else empty_anomalies()
    floors = {n: float(f) for n in names if (f := get(n).score_floor) is not None}
    pool, pool_pop = anomalies, population
    if history is not None and history[0].height:
        prev, prev_pop = history
        pool = pl.concat([prev.select(anomalies.columns).cast(anomalies.schema), anomalies])
        pool_pop = {k: population.get(k, 0) + int(prev_pop.get(k, 0)) for k in population}
    cal = calibrate(
        pool,
        target_far=settings.target_far,
        budget_per_day=settings.budget_per_day,
        population=pool_pop,
        min_exceedances=settings.min_exceedances,
        seed=settings.seed,
        floors=floors,
        episode_gap=episode_gap,
    )
    if pool is not anomalies:
        mine = pl.col("window_end") > start  # the windows that close in this period
        cal = type(cal)(cal.anomalies.filter(mine), cal.alerts.filter(mine), cal.diagnostics)
    try:
        alerts_out = add_top_clients(lk, cal.alerts)
        anomalies_out = _patch_evidence(cal.anomalies, alerts_out)
    except Exception as exc:  # enrichment is a convenience: never lose the alerts for it
        if strict:
            raise
        summary["top_clients_error"] = f"{type(exc).__name__}: {exc}"
        alerts_out, anomalies_out = cal.alerts, cal.anomalies
    cal = type(cal)(anomalies_out, alerts_out, cal.diagnostics)
    for name, d in cal.diagnostics["detectors"].items():
        summary["detectors"][name]["alerts"] = d["alerts"]
    for info in summary["detectors"].values():
        info.setdefault("alerts", 0)
    summary["calibration"] = cal.diagnostics
    summary["alerts"] = cal.alerts.height
    return DetectResult(cal.anomalies, cal.alerts, summary, new_state)


_NO_CLIENTS = r'"clients":\s*\[\s*\]'


def add_top_clients(lake: Lake, alerts: pl.DataFrame, k: int = 5) -> pl.DataFrame:
    """Fill an empty evidence ``clients`` list of domain alerts from the lake.

    Detectors that work on hourly aggregates (``volume``) see no client
    addresses; for each such alert the ``k`` clients that queried the domain
    most in the alert's window (ties by address) are written into its
    evidence, so the analyst knows whom to look at (evidence contract:
    most involved first, at most 5).  Other rows are returned unchanged.
    """
    if alerts.height == 0 or "evidence" not in alerts.columns:
        return alerts
    need = alerts.with_row_index("_i").filter(
        (pl.col("entity_type") == "domain") & pl.col("evidence").str.contains(_NO_CLIENTS)
    )
    if need.height == 0:
        return alerts
    lo = need.get_column("window_start").min()
    hi = need.get_column("window_end").max()
    wins = need.select(
        "_i", pl.col("entity").alias("registered_domain"), "window_start", "window_end"
    )
    doms = wins.get_column("registered_domain").unique().implode()
    ev = (
        lake.scan(lo, hi)  # type: ignore[arg-type]
        .filter(pl.col("registered_domain").is_in(doms))
        .select("ts", "src_ip", "registered_domain")
        .collect()
    )
    if ev.height == 0:
        return alerts
    ts_type = wins.schema["window_start"]
    ev = ev.with_columns(pl.col("ts").cast(ts_type))
    top = (
        ev.join(wins, on="registered_domain", how="inner")
        .filter(
            (pl.col("ts") >= pl.col("window_start"))
            & (pl.col("ts") < pl.col("window_end"))
            & pl.col("src_ip").is_not_null()
        )
        .group_by("_i", "src_ip")
        .len()
        .sort(["_i", "len", "src_ip"], descending=[False, True, False])
        .group_by("_i", maintain_order=True)
        .agg(pl.col("src_ip").head(k).alias("_top"))
    )
    if top.height == 0:
        return alerts
    fill = dict(zip(top.get_column("_i").to_list(), top.get_column("_top").to_list(), strict=True))
    out = []
    for i, text in enumerate(alerts.get_column("evidence").to_list()):
        if i in fill and text:
            d = json.loads(text)
            d["clients"] = [str(c) for c in fill[i]]
            text = json.dumps(d, separators=(",", ":"))
        out.append(text)
    return alerts.with_columns(pl.Series("evidence", out, dtype=pl.String))


def _patch_evidence(anomalies: pl.DataFrame, alerts: pl.DataFrame) -> pl.DataFrame:
    """Carry the alerts' enriched evidence back onto the same rows of ``anomalies``."""
    if alerts.height == 0 or anomalies.height == 0:
        return anomalies
    key = ["detector", "entity", "window_start"]
    new = alerts.select(*key, pl.col("evidence").alias("_ev"))
    return (
        anomalies.join(new, on=key, how="left")
        .with_columns(pl.coalesce("_ev", "evidence").alias("evidence"))
        .drop("_ev")
    )
