"""``dnsieve domains score``: lexical features, DGA probability and look-alike brand per domain."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dnsieve.domainscore import read_domain_lines, score_table

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``domains`` command group to the CLI."""
    domains_app = typer.Typer(help="Score domain names offline.", no_args_is_help=True)
    app.add_typer(domains_app, name="domains")

    @domains_app.command("score")
    def score(
        file: Annotated[str, typer.Argument(help="one domain per line; '-' reads stdin")],
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="write CSV here (default: stdout)")
        ] = None,
    ) -> None:
        """Write CSV: domain, registered_domain, dga_probability, lexical features, look-alike brand."""
        if file == "-":
            names, skipped = read_domain_lines(sys.stdin.buffer)
        else:
            path = Path(file)
            if not path.is_file():
                typer.echo(f"error: no such file: {file}", err=True)
                raise typer.Exit(2)
            with path.open("rb") as fh:
                names, skipped = read_domain_lines(fh)
        table = score_table(names)
        if out is None:
            sys.stdout.write(table.write_csv())
        else:
            table.write_csv(out)
        if skipped:
            typer.echo(f"skipped {skipped} line(s) that are not domain names", err=True)
