"""``dnsieve simulate``: synthetic enterprise DNS with labelled attacks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to ``app``."""

    @app.command()
    def simulate(
        out: Annotated[Path, typer.Option("--out", "-o", help="output directory")],
        hours: Annotated[int, typer.Option("--hours", min=1, help="simulated hours")] = 168,
        clients: Annotated[
            int, typer.Option("--clients", min=1, help="number of client hosts")
        ] = 2000,
        seed: Annotated[
            int, typer.Option("--seed", help="random seed (same seed, same files)")
        ] = 0,
        start: Annotated[
            str | None,
            typer.Option("--start", help="first hour, ISO-8601 (default 2024-03-04T00:00:00Z)"),
        ] = None,
        fmt: Annotated[
            str, typer.Option("--format", "-f", help="zeek (TSV) or zeek-json")
        ] = "zeek",
        dga_list: Annotated[
            list[Path] | None,
            typer.Option(
                "--dga-list",
                help="real DGA names for the bots: a family,domain CSV or a folder of them "
                "(repeatable); default: the built-in generators",
            ),
        ] = None,
        dga_family: Annotated[
            list[str] | None,
            typer.Option(
                "--dga-family", help="use only this family of the --dga-list files (repeatable)"
            ),
        ] = None,
        flows: Annotated[
            bool,
            typer.Option(
                "--flows",
                help="also write conn.log (consistent with the DNS) with injected flow campaigns"
                " and conn_labels.csv (docs/flows.md)",
            ),
        ] = False,
    ) -> None:
        """Write synthetic enterprise DNS (Zeek dns.log) and labels.csv of injected attacks."""
        from dnsieve.simulate import read_dga_lists, write_zeek
        from dnsieve.simulate import simulate as run_simulation

        console = Console(highlight=False)
        err = Console(stderr=True, highlight=False)
        if fmt not in ("zeek", "zeek-json"):
            err.print(f"[red]error:[/red] unknown format {escape(fmt)!r}; choose zeek or zeek-json")
            raise typer.Exit(2)
        if dga_family and not dga_list:
            err.print("[red]error:[/red] --dga-family needs --dga-list")
            raise typer.Exit(2)
        t0 = time.perf_counter()
        try:
            lists = read_dga_lists(dga_list, dga_family) if dga_list else None
            result = run_simulation(
                hours=hours, clients=clients, seed=seed, start=start, dga_lists=lists
            )
        except (ValueError, OSError) as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
        t1 = time.perf_counter()
        paths = write_zeek(result, out, fmt=fmt)
        t2 = time.perf_counter()
        st = result.stats
        console.print(
            f"{st['events']:,} events ({st['injected_events']:,} injected) from {clients:,} clients "
            f"over {hours} h starting {result.start:%Y-%m-%d %H:%M} UTC; "
            f"generated in {t1 - t0:.1f} s, written in {t2 - t1:.1f} s"
        )
        table = Table(title="injected campaigns", title_justify="left")
        table.add_column("kind")
        table.add_column("threat")
        table.add_column("campaigns", justify="right")
        table.add_column("label rows", justify="right")
        table.add_column("families")
        labels = result.labels
        for kind in sorted(set(labels["kind"].to_list())):
            sub = labels.filter(labels["kind"] == kind)
            table.add_row(
                kind,
                "no (benign)" if kind.startswith("benign_") else "yes",
                str(sub["campaign"].n_unique()),
                str(sub.height),
                ", ".join(sorted(set(sub["detector_family"].to_list()))),
            )
        console.print(table)
        console.print(f"wrote {escape(str(paths['log']))} and {escape(str(paths['labels']))}")
        if flows:
            from dnsieve.simulate import simulate_flows, write_conn

            sim_flows = simulate_flows(result)
            conn = write_conn(sim_flows, out)
            console.print(
                f"wrote {sim_flows.conn.height:,} flows ({sim_flows.labels.height} injected flow "
                f"campaigns) to {escape(str(conn['conn']))} and {escape(str(conn['labels']))}"
            )
