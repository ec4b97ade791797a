"""The ``dnsieve`` command line.  Commands are thin: load settings, call one
library function, print its result."""

from __future__ import annotations

import json
import stat
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dnsieve.config import ConfigError, Settings, load_settings, settings_as_toml
from dnsieve.ingest.sniff import FORMATS
from dnsieve.lake import FileReport, Lake, exit_status

if TYPE_CHECKING:
    from dnsieve.demo import TruthReport

app = typer.Typer(
    name="dnsieve",
    help="Sift DNS telemetry for the anomalies that are threats to you.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML settings file (default: $DNSIEVE_CONFIG or ./dnsieve.toml)"
    ),
]


def _settings(config: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    try:
        return load_settings(config, overrides=overrides)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _ingest_with_progress(
    lake: Lake,
    paths: list[Path],
    fmt: str,
    options: dict[str, Any],
    show: bool,
    pcap_flows: bool = False,
) -> list[FileReport]:
    from dnsieve.ingest import iter_input_files
    from dnsieve.ingest.flows_common import route_inputs

    files = list(iter_input_files(paths))
    flow_reports: list[FileReport] = []
    if fmt == "auto":  # each input to its kind: conn.log and flow tables to LAKE/flows
        files, flow_inputs = route_inputs(files, pcap_flows)
        flow_reports = lake.ingest_flow_files(flow_inputs) if flow_inputs else []
        if flow_inputs and not files:
            return flow_reports
    total = sum(_size(f) for f in files)
    if not show or total < 8 * 1024 * 1024:
        return flow_reports + lake.ingest_files(files, fmt, options)
    with Progress(
        TextColumn("[bold]ingest[/bold] {task.fields[name]}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("ingest", total=total, name="", rows=0)
        done_before = 0
        current: dict[str, Any] = {"path": "", "size": 0}

        def on_progress(path: str, raw_done: int, rows: int) -> None:
            nonlocal done_before
            if path != current["path"]:
                done_before += int(current["size"])
                current["path"] = path
                current["size"] = _size(Path(path))
            progress.update(
                task, completed=done_before + raw_done, name=escape(Path(path).name), rows=rows
            )

        return flow_reports + lake.ingest_files(files, fmt, options, on_progress=on_progress)


def _size(path: Path) -> int:
    """Bytes of a regular file, 0 for anything else or anything unreadable (for progress)."""
    try:
        st = path.stat()
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def render_ingest_summary(reports: list[FileReport], lake: Lake, out: Console) -> None:
    """Human summary of an ingest: one row per file and a total line."""
    table = Table(title=f"ingest into {escape(str(lake.path))}", title_justify="left")
    table.add_column("file", overflow="fold", min_width=24)
    table.add_column("format")
    table.add_column("status")
    table.add_column("read", justify="right")
    table.add_column("written", justify="right")
    table.add_column("rejected", justify="right")
    table.add_column("top reject reasons / error", overflow="fold")
    base = _common_parent([Path(r.path) for r in reports])
    shown_reports = reports
    if len(reports) > MAX_FILE_ROWS:
        # Long inputs (hourly-rotated directories): one row per (format, status)
        # group, and every file that failed on its own row.
        shown_reports = _group_reports(reports)
    for r in shown_reports:
        shown = _shown_path(Path(r.path), base)
        reasons = ", ".join(
            f"{k} {v:,}" for k, v in sorted(r.rejects.items(), key=lambda kv: -kv[1])[:3]
        )
        if r.skipped:
            reasons = ", ".join(
                x for x in (reasons, f"skipped {sum(r.skipped.values()):,} non-DNS") if x
            )
        note = "; ".join(x for x in (r.error or "", reasons) if x)
        style = {"error": "red", "unchanged": "dim", "skipped": "dim", "grown": "cyan"}.get(
            r.status, ""
        )
        table.add_row(
            escape(shown),
            escape(r.format),
            f"[{style}]{r.status}[/{style}]" if style else r.status,
            f"{r.records_read:,}",
            f"{r.rows_written:,}",
            f"{r.rejected:,}",
            escape(note),
        )
    out.print(table)
    rows = sum(r.rows_written for r in reports)
    rej = sum(r.rejected for r in reports)
    unchanged = sum(r.status == "unchanged" for r in reports)
    skipped = sum(r.status == "skipped" for r in reports)
    errors = sum(r.status == "error" for r in reports)
    out.print(
        f"{len(reports)} file(s): {rows:,} rows written, {rej:,} rejected"
        + (f", {unchanged} already ingested" if unchanged else "")
        + (f", {skipped} not DNS (skipped)" if skipped else "")
        + (f", [red]{errors} failed[/red]" if errors else "")
    )
    span = lake.time_range()
    if span:
        hours = (span[1] - span[0]).total_seconds() / 3600
        out.print(
            f"lake spans {span[0]:%Y-%m-%d %H:%M:%S} to {span[1]:%Y-%m-%d %H:%M:%S} UTC ({hours:.1f} h)"
        )


MAX_FILE_ROWS = 25


def _group_reports(reports: list[FileReport]) -> list[FileReport]:
    from collections import Counter

    groups: dict[tuple[str, str], FileReport] = {}
    counts: Counter[tuple[str, str]] = Counter()
    out: list[FileReport] = []
    for r in reports:
        if r.status == "error":
            out.append(r)
            continue
        key = (r.format, r.status)
        counts[key] += 1
        g = groups.setdefault(key, FileReport(path="", status=r.status, format=r.format))
        g.records_read += r.records_read
        g.rows_written += r.rows_written
        for k, v in r.rejects.items():
            g.rejects[k] = g.rejects.get(k, 0) + v
        for k, v in r.skipped.items():
            g.skipped[k] = g.skipped.get(k, 0) + v
    for key, g in groups.items():
        g.path = f"({counts[key]} files)"
        out.insert(0, g)
    return out


def _common_parent(paths: list[Path]) -> Path | None:
    import os

    if len(paths) < 2:
        return paths[0].parent if paths else None
    try:
        return Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:
        return None


def _shown_path(p: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(p.relative_to(base))
        except ValueError:
            pass
    return str(p)


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
    reports = _ingest_with_progress(
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


@app.command()
def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="keep the simulated logs, lake and alert store here (default: temporary)"
        ),
    ] = None,
    hours: Annotated[int, typer.Option(min=24, max=24 * 31, help="hours to simulate")] = 168,
    clients: Annotated[int, typer.Option(min=20, max=20_000, help="simulated hosts")] = 500,
    seed: Annotated[int, typer.Option(help="simulation seed")] = 7,
    samples: Annotated[
        bool,
        typer.Option(
            "--samples", help="instead: ingest the bundled real samples and summarise them"
        ),
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve", help="then serve the Alert Manager on the demo's alerts"
        ),
    ] = True,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Alert Manager port")] = 8000,
    config: ConfigOpt = None,
) -> None:
    """Simulate a week of enterprise DNS with attacks, detect, score and store, show the alerts,
    and serve them in the Alert Manager (on 127.0.0.1, with a printed random admin password)."""
    settings = _settings(config)
    if samples:
        _demo_samples(settings, directory)
        return
    from dnsieve.commands.detect import render_summary
    from dnsieve.demo import run_demo

    with tempfile.TemporaryDirectory(prefix="dnsieve-demo-") as tmp:
        target = directory or Path(tmp)
        err_console.print(
            f"simulating {hours} h of DNS for {clients} hosts (seed {seed}), then ingest, detect, score, store ..."
        )
        res = run_demo(target, hours=hours, clients=clients, seed=seed, settings=settings)
        render_ingest_summary(res.reports, Lake.from_settings(settings, res.lake), console)
        render_summary(res.summary, res.alerts, console)
        _render_truth(res.alerts, console, res.truth)
        if directory is not None:
            console.print(
                f"logs: {escape(str(res.log))}\nground truth: {escape(str(res.labels))}\n"
                f"lake: {escape(str(res.lake))}\nalert store: {escape(res.db)}\n"
                f"next: dnsieve alerts list --db {escape(res.db)}"
            )
        if serve:
            _serve_demo(res.db, port, res.lake)


def _serve_demo(db_url: str, port: int, lake: Path | None = None) -> None:
    """Serve the demo's store on loopback with a fresh admin password (no default credentials)."""
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "bokeh", "argon2")):
        err_console.print(
            "the Alert Manager is not installed; pip install 'dnsieve[web]' to browse these alerts"
        )
        return
    import secrets

    import uvicorn

    from dnsieve.demo import create_demo_admin
    from dnsieve.web import WebSettings, create_app
    from dnsieve.web.workers import SERVER_OPTIONS

    password = create_demo_admin(db_url)
    console.print(
        f"\n[bold]Alert Manager:[/bold] http://127.0.0.1:{port}/  user [bold]admin[/bold]  "
        f"password [bold]{escape(password)}[/bold]  (Ctrl-C to stop)"
    )
    settings = WebSettings(db_url=db_url, secret_key=secrets.token_urlsafe(32), freeze_gc=True)
    app_ = create_app(settings, lake=lake)
    uvicorn.run(app_, host="127.0.0.1", port=port, log_level="warning", **SERVER_OPTIONS)


def _render_truth(alerts: pl.DataFrame, out: Console, report: TruthReport | None = None) -> None:
    """Alerts against the simulation's ground truth: the top alerts with their reason,
    recall per injected kind, each missed campaign, and the alerts nothing was injected on."""
    from dnsieve.commands.detect import AlertLine, print_alert_lines
    from dnsieve.explain import explain

    if alerts.height:
        items = []
        tp = (
            alerts.get_column("threat_probability")
            if "threat_probability" in alerts.columns
            else None
        )
        has_ev = "evidence" in alerts.columns
        for i, row in enumerate(alerts.head(20).iter_rows(named=True)):
            kind = row["truth"]
            p = tp[i] if tp is not None else None
            ev = _evidence_of(row["evidence"]) if has_ev else None
            hours = (row["window_end"] - row["window_start"]).total_seconds() / 3600.0
            tag = (
                "[red]no campaign[/red]"
                if not kind
                else f"[yellow]{escape(kind)}[/yellow]"
                if kind.startswith("benign_")
                else f"[green]{escape(kind)}[/green]"
            )
            items.append(
                AlertLine(
                    str(row["detector"]),
                    str(row["entity"]),
                    f"{row['window_start']:%Y-%m-%d %H:%M}",
                    "" if p is None else f"{p:.2f}",
                    explain(row["detector"], str(row["entity"]), ev, row.get("entity_type"), hours),
                    tag,
                )
            )
        print_alert_lines(
            items, out, "alerts against the injected campaigns (ground truth)", "P(threat)"
        )
    if report is None:
        hits = alerts.get_column("truth").is_not_null().sum() if alerts.height else 0
        out.print(f"{hits} of {alerts.height} alerts point at an injected campaign")
        return
    r = Table(
        title="recall per injected kind",
        caption=(
            "caught: at least one alert overlaps the campaign; for a benign anomaly, "
            "that an analyst had one more alert to dismiss"
        ),
        title_justify="left",
    )
    for col, just in (("kind", "left"), ("caught", "right"), ("recall", "right")):
        r.add_column(col, justify=just)  # type: ignore[arg-type]
    for row in report.per_kind.iter_rows(named=True):
        style = "green" if row["recall"] >= 0.9 else "yellow" if row["recall"] >= 0.5 else "red"
        kind = escape(row["kind"]) + ("" if row["threat"] else " (benign)")
        r.add_row(
            kind,
            f"{row['caught']} of {row['campaigns']}",
            f"[{style}]{row['recall']:.0%}[/{style}]" if row["threat"] else f"{row['recall']:.0%}",
        )
    out.print(r)
    if report.missed.height:
        m = Table(title=f"missed campaigns ({report.missed.height})", title_justify="left")
        for col in ("kind", "entity", "from (UTC)", "to (UTC)", "what was injected"):
            m.add_column(col, overflow="fold", no_wrap=col.endswith("(UTC)"))
        for row in report.missed.iter_rows(named=True):
            m.add_row(
                escape(row["kind"]),
                escape(str(row["entity"])),
                f"{row['window_start']:%Y-%m-%d %H:%M}",
                f"{row['window_end']:%Y-%m-%d %H:%M}",
                escape(str(row["description"] or "")),
            )
        out.print(m)
    else:
        out.print("[green]every injected attack campaign drew at least one alert[/green]")
    out.print(
        f"{report.alerts} alert{'s' if report.alerts != 1 else ''}: "
        f"{report.on_attacks} point at an injected campaign (an attack), "
        f"{report.on_benign} at an injected benign anomaly, "
        f"{report.not_injected} at entities where nothing was injected"
    )
    if report.not_injected:
        top = ", ".join(
            f"{escape(str(r['entity']))} ({escape(str(r['detector']))} ×{r['alerts']})"
            for r in report.false_entities.head(5).iter_rows(named=True)
        )
        more = report.false_entities.height - 5
        out.print(f"  not injected: {top}" + (f" and {more} more" if more > 0 else ""))


def _evidence_of(value: object) -> dict[str, Any] | None:
    """An alert frame's evidence cell (a JSON string or a dict) as a dict."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            got = json.loads(value)
        except ValueError:
            return None
        return got if isinstance(got, dict) else None
    return None


def _demo_samples(settings: Settings, directory: Path | None) -> None:
    samples_dir = resources.files("dnsieve") / "data" / "samples"
    with (
        resources.as_file(samples_dir) as sample_dir,
        tempfile.TemporaryDirectory(prefix="dnsieve-demo-") as tmp,
    ):
        target = (directory / "lake") if directory else Path(tmp) / "lake"
        lake = Lake.from_settings(settings, target)
        inputs = sorted(p for p in Path(sample_dir).iterdir() if p.suffix != ".md")
        reports = lake.ingest_files(inputs)
        render_ingest_summary(reports, lake, console)
        top = (
            lake.scan()
            .group_by("registered_domain")
            .agg(queries=pl.len(), clients=pl.col("src_ip").n_unique())
            .sort(["queries", "registered_domain"], descending=[True, False])
            .head(10)
            .collect()
        )
        t = Table(title="top registered domains", title_justify="left")
        t.add_column("registered domain")
        t.add_column("queries", justify="right")
        t.add_column("clients", justify="right")
        for row in top.iter_rows(named=True):
            t.add_row(
                escape(str(row["registered_domain"])), f"{row['queries']:,}", f"{row['clients']:,}"
            )
        console.print(t)


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
