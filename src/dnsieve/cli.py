"""The ``dnsieve`` command line.  Commands are thin: load settings, call one
library function, print its result.

This module holds the app, ``ingest`` and ``config``; the other commands live in
:mod:`dnsieve.commands` (registered below) and share their console helpers from
:mod:`dnsieve.commands.console`, never from here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from dnsieve.commands.console import (
    ConfigOpt,
    console,
    err_console,
    ingest_with_progress,
    render_ingest_summary,
)
from dnsieve.commands.console import settings_or_exit as _settings
from dnsieve.config import settings_as_toml
from dnsieve.ingest.sniff import FORMATS
from dnsieve.lake import Lake, exit_status

app = typer.Typer(
    name="dnsieve",
    help="Sift DNS telemetry for the anomalies that are threats to you.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or directories (recursed)")],
    lake_dir: Annotated[
        Path | None, typer.Option("--lake", help="lake directory (default: settings lake.path)")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help=f"auto or one of: {', '.join(FORMATS)}")
    ] = "",
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="CSV/Parquet column mapping CANONICAL=SOURCE (repeatable)"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print a machine-readable summary")
    ] = False,
    flows: Annotated[
        bool, typer.Option("--flows", help="also read pcaps' flows (nfstream) into LAKE/flows")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Ingest DNS logs, EVE JSON, pcaps or query logs into the Parquet lake.

    Zeek conn.log and flow tables (FlowLabeler, CICFlowMeter) go to the lake's
    ``flows/`` (docs/flows.md).

    Re-ingesting content already ingested is a no-op; a log that has grown is
    read from where the last ingest stopped.
    """
    settings = _settings(config)
    fmt = fmt or settings.ingest.format
    if fmt != "auto" and fmt not in FORMATS:
        err_console.print(
            f"[red]error:[/red] unknown format {escape(fmt)!r}; choose auto or one of {', '.join(FORMATS)}"
        )
        raise typer.Exit(2)
    options: dict[str, Any] = {"mapping": dict(settings.ingest.column_mapping)}
    if settings.ingest.year:
        options["year"] = settings.ingest.year
    for m in mapping or []:
        if "=" not in m:
            err_console.print(
                f"[red]error:[/red] --map expects CANONICAL=SOURCE, got {escape(m)!r}"
            )
            raise typer.Exit(2)
        k, v = m.split("=", 1)
        options["mapping"][k.strip()] = v.strip()
    lake = Lake.from_settings(settings, lake_dir)
    reports = ingest_with_progress(
        lake, paths, fmt, options, show=not as_json and sys.stderr.isatty(), pcap_flows=flows
    )
    if as_json:
        payload = {"lake": str(lake.path), "files": [r.to_dict() for r in reports]}
        typer.echo(json.dumps(payload, indent=2))
    else:
        render_ingest_summary(reports, lake, console)
    status = exit_status(reports)
    if status:  # 3: some inputs failed (each is in the summary), 1: all of them
        raise typer.Exit(status)


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of TOML")] = False,
) -> None:
    """Print the effective settings (defaults, file and DNSIEVE_* variables merged)."""
    settings = _settings(config)
    if as_json:
        typer.echo(settings.model_dump_json(indent=2))
    else:
        typer.echo(settings_as_toml(settings))


def _register_command_modules() -> None:
    import importlib

    from dnsieve.commands import MODULES

    for mod in MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
            continue
        module.register(app)


_register_command_modules()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
