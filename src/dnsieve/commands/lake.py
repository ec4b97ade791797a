"""``dnsieve lake compact``: merge a lake's small part files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``lake`` command group to ``app``."""
    lake_app = typer.Typer(help="Maintain the Parquet lake.", no_args_is_help=True)
    app.add_typer(lake_app, name="lake")

    @lake_app.command("compact")
    def compact(
        lake_dir: Annotated[
            Path | None,
            typer.Option("--lake", help="lake directory (default: settings lake.path)"),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        config: Annotated[
            Path | None, typer.Option("--config", "-c", help="TOML settings file")
        ] = None,
    ) -> None:
        """Merge the small part files of every hour partition into files of up to
        ``lake.rows_per_file`` rows.

        Readers are never interrupted: the swap is one manifest transaction, and
        the replaced files are deleted ``lake.retire_grace_seconds`` later.
        """
        from rich.markup import escape

        from dnsieve.commands.console import console
        from dnsieve.commands.console import settings_or_exit as _settings
        from dnsieve.lake import DeltaLake, Lake

        lake = Lake.from_settings(_settings(config), lake_dir)
        if (lake.events_dir / "_delta_log").is_dir() and not isinstance(lake, DeltaLake):
            lake = DeltaLake(lake.path)  # a Delta lake, whatever [lake] format says
        if not isinstance(lake, DeltaLake) and not (lake.path / "_manifest.sqlite").is_file():
            console.print(f"[red]error:[/red] no lake at {escape(str(lake.path))}")
            raise typer.Exit(2)
        res = lake.compact()
        if as_json:
            typer.echo(json.dumps({"lake": str(lake.path), **res}))
        else:
            console.print(
                f"compacted {res['partitions']:,} partition(s) of {escape(str(lake.path))}: "
                f"{res['parts_before']:,} part files -> {res['parts_after']:,}"
                + (
                    f", [red]{res['failed']:,} failed[/red] (unreadable parts)"
                    if res["failed"]
                    else ""
                )
            )
        if res["failed"]:
            raise typer.Exit(3)
