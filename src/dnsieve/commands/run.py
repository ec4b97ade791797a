"""``dnsieve run``: the one-shot main job — ingest, detect, calibrate, write alerts.

``dnsieve run capture.pcapng`` calls the job :func:`dnsieve.jobs.run_job`: it ingests into a temporary lake (or ``--lake``),
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
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.markup import escape

from dnsieve.commands.console import console, err_console, render_ingest_summary, settings_or_exit
from dnsieve.jobs import run_job

__all__ = ["register"]


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
        from dnsieve.commands.detect import alerts_to_records, render_summary, write_alerts
        from dnsieve.ingest.sniff import FORMATS
        from dnsieve.lake import exit_status

        settings = settings_or_exit(config)
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
