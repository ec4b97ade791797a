"""``dnsieve domains score``: lexical features, DGA probability and look-alike brand per domain."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import polars as pl
import typer

from dnsieve.domains import escape_name
from dnsieve.ingest.base import is_name_too_long

__all__ = ["read_domain_lines", "register", "score_table"]


_MAX_LINE = 64 * 1024
_UNSAFE_BYTES = re.compile(rb"[^\x21-\x7e]")


def read_domain_lines(stream: BinaryIO) -> tuple[list[str], int]:
    """Names from a one-domain-per-line byte stream, and the count of skipped lines.

    Blank lines and ``#`` comments are skipped; the first whitespace-separated
    field is the name; bytes outside printable ASCII are escaped (``\\xNN``),
    so junk is scored as the string it is instead of crashing.  Names past the
    protocol's limits (over 253 bytes, or a label over 63) are skipped (not a DNS
    name), and so are lines
    over 64 KiB, which are never read into memory whole.
    """
    names: list[str] = []
    skipped = 0
    while True:
        raw = stream.readline(_MAX_LINE + 1)
        if not raw:
            break
        if len(raw) > _MAX_LINE:  # an over-long line: skip it without holding it whole
            skipped += 1
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(_MAX_LINE)
            continue
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        field = line.split(None, 1)[0]
        if len(field) > 253 * 4:
            skipped += 1
            continue
        if _UNSAFE_BYTES.search(field) is None:
            # Printable ASCII (nearly every line): escape_name's result without its byte loop.
            name = field.decode("ascii").lower()
            if len(name) > 1 and name.endswith("."):
                name = name[:-1]
        else:
            name = escape_name(field)
        # Escapes only shorten a name, so one of 63 characters or fewer is within every limit.
        if not name or name == "." or (len(name) > 63 and is_name_too_long(name)):
            skipped += 1
            continue
        names.append(name)
    return names, skipped


def score_table(names: list[str]) -> pl.DataFrame:
    """The output table: domain, registered_domain, dga_probability, features, look-alike."""
    from dnsieve.detectors.dga import private_registered_domains, registered_labels, score_names
    from dnsieve.detectors.lookalike import match_names

    s = pl.Series("domain", names, dtype=pl.String)
    # One ICANN split serves all three: the DGA label, the look-alike label and
    # (where no private PSL rule applies, i.e. almost always) the registered domain.
    icann = registered_labels(s)
    scored = score_names(s, labels=icann)
    look = match_names(s, labels=icann)
    table = pl.concat(
        [
            s.to_frame(),
            private_registered_domains(s, icann).to_frame(),
            scored.select(
                pl.col("label").alias("scored_label"), pl.col("dga_probability").round(6)
            ),
            scored.drop("icann_domain", "label", "dga_probability"),
            look.select("lookalike_brand", "lookalike_method", "lookalike_distance"),
        ],
        how="horizontal",
    )
    return table.with_columns(pl.col(pl.Float64).round(6))


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
