"""The one job pipeline: ingest → detect → calibrate → threat model → store.

``dnsieve run``, ``dnsieve demo`` and the stream runner (:mod:`dnsieve.stream`)
all call these functions; the CLI only parses options and prints
(ARCHITECTURE §1 "one job, three drivers").

* :func:`run_job` ingests files into a lake and runs the rest once over it;
* :func:`score_period` detects and stores the windows of a period of a lake
  already filled (what the stream runner calls on closed windows);
* :func:`store_alerts` scores calibrated alerts with the active threat model
  and stores them as a recorded run (with the analysts' definitions).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["run_job", "score_period", "store_alerts"]


def run_job(
    paths: list[Path],
    lake_dir: Path | None = None,
    fmt: str = "auto",
    settings: Any = None,
    detectors: list[str] | None = None,
    store_url: str | bool | None = False,
) -> tuple[list[Any], Any, pl.DataFrame]:
    """Ingest ``paths`` into ``lake_dir`` (a temporary lake when None), detect and calibrate.

    Returns ``(ingest reports, DetectResult, alerts)``; ``alerts`` are the
    calibrated alerts (score floors included).  Unless
    ``store_url`` is False the alerts are also scored by the active threat
    model and stored (``None``: the default store, see
    :func:`dnsieve.alerts.store.resolve_db_url`), recorded as a run.
    """
    from dnsieve.config import load_settings
    from dnsieve.lake import Lake
    from dnsieve.pipeline import DetectSettings, detect

    settings = settings or load_settings()
    ds = getattr(settings, "detect", None)
    dset = ds.model_copy() if isinstance(ds, DetectSettings) else DetectSettings.model_validate({})
    if dset.engine == "spark":
        from dnsieve.engines.spark import configure

        configure(getattr(settings, "spark", None))  # [spark] master, conf, scratch
    options: dict[str, Any] = {"mapping": dict(settings.ingest.column_mapping)}
    if settings.ingest.year:
        options["year"] = settings.ingest.year
    with tempfile.TemporaryDirectory(prefix="dnsieve-run-") as tmp:
        lake = Lake.from_settings(settings, lake_dir or Path(tmp) / "lake")
        if fmt == "auto":  # conn.log and flow tables to LAKE/flows (docs/flows.md)
            from dnsieve.ingest import iter_input_files
            from dnsieve.ingest.flows_common import route_inputs

            dns_files, flow_files = route_inputs(list(iter_input_files(paths)))
            reports = lake.ingest_flow_files(flow_files) if flow_files else []
            reports += (
                lake.ingest_files(dns_files, fmt, options) if dns_files or not flow_files else []
            )
        else:
            reports = lake.ingest_files(paths, fmt, options)
        # A one-shot run has all its data: score the final partial window too
        # (``detect`` otherwise waits for windows to complete, as a lake that
        # still grows must).
        span = lake.time_range()
        until = span[1] + timedelta(seconds=1) if span else None
        # [alerts] episode_gap_hours: the budget and the store count the same episodes.
        gap = getattr(getattr(settings, "alerts", None), "episode_gap", None)
        res = detect(
            lake, engine=dset.engine, settings=dset, detectors=detectors, until=until,
            episode_gap=gap,
        )  # fmt: skip
        alerts = res.alerts
        if store_url is not False:
            res.summary["store"], alerts = store_alerts(
                store_url, paths, reports, alerts, lake, gap, res
            )
    res.summary["alerts"] = alerts.height
    counts = alerts.group_by("detector").len() if alerts.height else None
    for name, info in res.summary.get("detectors", {}).items():
        n = 0
        if counts is not None:
            hit = counts.filter(pl.col("detector") == name)
            n = int(hit["len"][0]) if hit.height else 0
        info["alerts"] = n
    return reports, res, alerts


def store_alerts(
    url: str | bool | None,
    paths: list[Path],
    reports: list[Any],
    alerts: pl.DataFrame,
    lake: Any,
    gap: timedelta | None = None,
    res: Any = None,
    inputs: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Score ``alerts`` with the threat model and store them as one recorded run.

    ``url``: a store URL, ``None`` for the default store or ``True`` for the
    default store as well.  The analysts' enabled definitions are evaluated
    over ``lake`` against ``res`` first.  Returns the store summary and the
    scored alerts (without the model's feature column).
    """
    from dnsieve.alerts.definitions import DefinitionStore
    from dnsieve.alerts.feedback import score_and_store
    from dnsieve.alerts.store import AlertStore
    from dnsieve.rules.evaluate import definition_alerts

    with AlertStore.open(None if url is True else url) as store:  # type: ignore[arg-type]
        if gap is not None:  # [alerts] episode_gap_hours: windows this close are one alert
            store.episode_gap = gap
        run_id = store.start_run(inputs or {"paths": [str(p) for p in paths]})
        # The analysts' own threat definitions: enabled Sigma rules and watchlists raise
        # alerts of their own; anomaly rules promote candidates whatever the budget.
        defs = DefinitionStore(store).active()
        rules_summary: dict[str, Any] = {}
        if defs and res is not None:
            alerts, rules_summary = definition_alerts(defs, lake, res, alerts)
        report, scored = score_and_store(store, alerts, events=lake.scan())
        rejects: dict[str, int] = {}
        for r in reports:
            for k, v in r.rejects.items():
                rejects[k] = rejects.get(k, 0) + v
        store.finish_run(
            run_id,
            counts={
                "files": len(reports),
                "rows": sum(r.rows_written for r in reports),
                "alerts": alerts.height,
                "inserted": report.inserted,
                "merged": report.merged,
                "suppressed": report.suppressed,
            },
            rejects=rejects,
        )
        out = {"db": store.url, "run": run_id, **report.to_dict()}
        if rules_summary:
            out["definitions"] = rules_summary
        return out, scored.drop("features")


def score_period(
    lake: Any,
    since: datetime | None,
    until: datetime,
    settings: Any = None,
    *,
    engine: Any = None,
    window: float | None = None,
    store_url: str | bool | None = False,
    inputs: dict[str, Any] | None = None,
    before_store: Callable[[], None] | None = None,
    history: tuple[pl.DataFrame, dict[str, int]] | None = None,
    state: dict[str, pl.DataFrame] | None = None,
) -> tuple[Any, pl.DataFrame]:
    """Detect, calibrate, score and store the windows of ``[since, until)`` of ``lake``.

    The part of :func:`run_job` after ingest, for a lake that is already
    filled: the stream runner calls it on the windows its watermark closed.
    ``since=None`` scores from the start of the lake, as ``run`` does, so a
    stream that scores its whole input at once gives exactly ``run``'s
    alerts.  ``engine``: an engine name or instance (default: the settings'
    engine); ``window``: a fixed scoring window in seconds (default: adapted
    to the span, as ``run``).  Unless ``store_url`` is False the alerts are
    stored as a run whose ``inputs`` are ``inputs`` (``before_store`` is called
    between detection and storage: a crash-test hook).  ``state``: the
    stateful detectors' state after the previous period (``DetectResult.state``).  Returns
    ``(DetectResult, alerts)``.
    """
    from dnsieve.config import load_settings
    from dnsieve.pipeline import DetectSettings, detect

    settings = settings or load_settings()
    ds = getattr(settings, "detect", None)
    dset = ds.model_copy() if isinstance(ds, DetectSettings) else DetectSettings.model_validate({})
    if dset.engine == "spark":
        from dnsieve.engines.spark import configure

        configure(getattr(settings, "spark", None))  # [spark] master, conf, scratch
    gap = getattr(getattr(settings, "alerts", None), "episode_gap", None)
    res = detect(
        lake, engine=engine or dset.engine, settings=dset, since=since, until=until,
        episode_gap=gap, window=window, history=history, state=state,
    )  # fmt: skip
    alerts = res.alerts
    if before_store is not None:
        before_store()
    if store_url is not False:
        res.summary["store"], alerts = store_alerts(
            store_url, [], [], alerts, lake, gap, res, inputs=inputs
        )
    res.summary["alerts"] = alerts.height
    return res, alerts
