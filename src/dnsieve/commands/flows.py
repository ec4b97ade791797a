"""``dnsieve flows``: captures (or a live interface) to flows, as a FlowLabeler CSV or into the lake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``flows`` command to ``app``."""

    @app.command("flows")
    def flows(
        inputs: Annotated[
            list[Path] | None,
            typer.Argument(help="pcap/pcapng files, conn.log or flow CSVs (directories recursed)"),
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="write the flows to this CSV file")
        ] = None,
        fmt: Annotated[
            str, typer.Option("--format", "-f", help="CSV layout: flowlabeler or canonical")
        ] = "flowlabeler",
        interface: Annotated[
            str | None,
            typer.Option(
                "--interface", "-i", help="capture live from this interface (Ctrl-C stops)"
            ),
        ] = None,
        lake_dir: Annotated[
            Path | None, typer.Option("--lake", help="ingest the flows into this lake's flows/")
        ] = None,
        idle_timeout: Annotated[
            float, typer.Option(help="a flow ends after this many seconds without a packet")
        ] = 120.0,
        active_timeout: Annotated[
            float, typer.Option(help="a flow is cut after this many seconds of life")
        ] = 1800.0,
        as_json: Annotated[
            bool, typer.Option("--json", help="print a machine-readable summary")
        ] = False,
        config: Annotated[
            Path | None, typer.Option("--config", "-c", help="TOML settings file")
        ] = None,
    ) -> None:
        """Turn captures into bidirectional flows with nDPI labels (nfstream).

        ``dnsieve flows capture.pcap --out flows.csv`` writes FlowLabeler's CSV
        layout; ``--lake DIR`` ingests into the lake instead (idempotent).
        """
        from rich.markup import escape

        from dnsieve.commands.console import console, err_console
        from dnsieve.commands.console import settings_or_exit as _settings
        from dnsieve.ingest.flows_export import EXPORT_FORMATS, export_flows

        if not inputs and not interface:
            err_console.print("[red]error:[/red] give capture files or --interface")
            raise typer.Exit(2)
        if fmt not in EXPORT_FORMATS:
            err_console.print(
                f"[red]error:[/red] unknown format {escape(fmt)!r}; choose {', '.join(EXPORT_FORMATS)}"
            )
            raise typer.Exit(2)
        options = {"idle_timeout": idle_timeout, "active_timeout": active_timeout}
        if lake_dir is not None or out is None:
            if interface:
                err_console.print("[red]error:[/red] a live capture needs --out (a file to write)")
                raise typer.Exit(2)
            from dnsieve.commands.console import render_ingest_summary
            from dnsieve.lake import Lake, exit_status

            lake = Lake.from_settings(_settings(config), lake_dir)
            reports = lake.ingest_flow_files(inputs or [], "auto", options)
            if as_json:
                typer.echo(
                    json.dumps({"lake": str(lake.path), "files": [r.to_dict() for r in reports]})
                )
            else:
                render_ingest_summary(reports, lake, console)
            status = exit_status(reports)
            if status:
                raise typer.Exit(status)
            return
        stats = export_flows(inputs or [], out, fmt, interface=interface, options=options)
        failed = [s for s in stats if s.error and not s.rows_emitted]
        if as_json:
            typer.echo(json.dumps({"out": str(out), "inputs": [s.to_dict() for s in stats]}))
        else:
            rows = sum(s.rows_emitted for s in stats)
            console.print(f"wrote {rows:,} flows from {len(stats)} input(s) to {escape(str(out))}")
            for s in failed:
                console.print(f"[red]failed:[/red] {escape(s.source)}: {escape(str(s.error))}")
        if failed:
            raise typer.Exit(1 if len(failed) == len(stats) else 3)
