"""``dnsieve run``: the one-shot main job — ingest, detect, calibrate, write alerts.

``dnsieve run capture.pcapng`` ingests into a temporary lake (or ``--lake``),
runs every registered detector through :func:`dnsieve.pipeline.detect` (which
adapts the window to the span: a minute for a short capture, an hour for
months) and calibrates, then writes the alerts as JSON lines and prints a
ranked summary.

**Score floors.**  A single capture may hold two domains, too few to fit a
population tail; detectors declare a ``score_floor`` that calibration uses as
the absolute evidence bar there (:func:`dnsieve.calibrate.floor_decision`), so
``run`` and ``detect`` decide alike.
"""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, cast

import polars as pl
import typer
from rich.markup import escape

__all__ = ["register", "run_job"]


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
            res.summary["store"], alerts = _store_alerts(
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


def _store_alerts(
    url: str | bool | None,
    paths: list[Path],
    reports: list[Any],
    alerts: pl.DataFrame,
    lake: Any,
    gap: timedelta | None = None,
    res: Any = None,
) -> tuple[dict[str, Any], pl.DataFrame]:
    from dnsieve.alerts.definitions import DefinitionStore
    from dnsieve.alerts.feedback import score_and_store
    from dnsieve.alerts.store import AlertStore
    from dnsieve.rules.evaluate import definition_alerts

    with AlertStore.open(None if url is True else url) as store:  # type: ignore[arg-type]
        if gap is not None:  # [alerts] episode_gap_hours: windows this close are one alert
            store.episode_gap = gap
        run_id = store.start_run({"paths": [str(p) for p in paths]})
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


def register(app: typer.Typer) -> None:
    """Add ``dnsieve run`` to the CLI."""

    @app.command()
    def run(
        paths: Annotated[
            list[Path], typer.Argument(help="captures, logs or directories (recursed)")
        ],
        lake_dir: Annotated[
            Path | None, typer.Option("--lake", help="lake directory (default: a temporary one)")
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="write alerts as JSON lines here")
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="print summary and alerts as JSON")
        ] = False,
        fmt: Annotated[
            str, typer.Option("--format", "-f", help="input format (default: auto)")
        ] = "",
        detector: Annotated[
            list[str] | None, typer.Option("--detector", help="run only this detector (repeatable)")
        ] = None,
        config: Annotated[
            Path | None, typer.Option("--config", "-c", help="TOML settings file")
        ] = None,
        db: Annotated[
            str | None,
            typer.Option(
                "--db", help="alert store URL (default: $DNSIEVE_DB or the user data dir)"
            ),
        ] = None,
        no_store: Annotated[
            bool, typer.Option("--no-store", help="do not store alerts, only write/print them")
        ] = False,
    ) -> None:
        """Ingest, run every detector, calibrate, score with the threat model, store and write alerts."""
        from dnsieve.cli import _settings, console, err_console, render_ingest_summary
        from dnsieve.commands.detect import alerts_to_records, render_summary, write_alerts
        from dnsieve.ingest.sniff import FORMATS
        from dnsieve.lake import exit_status

        settings = _settings(config)
        fmt = fmt or settings.ingest.format
        if fmt != "auto" and fmt not in FORMATS:
            err_console.print(
                f"[red]error:[/red] unknown format {escape(fmt)!r}; choose auto or one of {', '.join(FORMATS)}"
            )
            raise typer.Exit(2)
        missing = [p for p in paths if not p.exists()]
        for p in missing:
            err_console.print(f"[red]error:[/red] no such file or directory: {escape(str(p))}")
        if missing and len(missing) == len(paths):
            raise typer.Exit(2)
        try:
            reports, res, alerts = run_job(
                paths, lake_dir, fmt, settings,
                list(detector) if detector else None,
                store_url=False if no_store else (db or True),
            )  # fmt: skip
        except KeyError as exc:
            err_console.print(f"[red]error:[/red] {escape(str(exc.args[0] if exc.args else exc))}")
            raise typer.Exit(2) from None
        if out is not None:
            write_alerts(alerts, out)
            res.summary["out"] = str(out)
        if as_json:
            payload = {
                "ingest": [r.to_dict() for r in reports],
                "summary": res.summary,
                "alerts": alerts_to_records(alerts),
            }
            typer.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))
        else:
            from dnsieve.lake import Lake

            render_ingest_summary(
                reports, Lake(lake_dir) if lake_dir else cast(Any, _NoLake()), console
            )
            render_summary(res.summary, alerts, console)
            if out is not None:
                console.print(f"wrote {alerts.height:,} alerts to {escape(str(out))}")
        status = exit_status(reports)
        if status:  # 3: some inputs failed (each is in the summary), 1: all of them
            raise typer.Exit(status)


class _NoLake:
    """Stands in for a temporary lake that is gone by the time the summary prints."""

    path = Path("(temporary lake)")

    def time_range(self) -> None:
        return None
