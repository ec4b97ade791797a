"""``dnsieve demo``: a simulated week through the whole job, then the Alert Manager.

The command is thin over :func:`dnsieve.demo.run_demo` (simulate → the job in
:mod:`dnsieve.jobs` → the alert store); this module only prints the results
against the simulation's ground truth and serves them.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dnsieve.commands.console import (
    ConfigOpt,
    console,
    err_console,
    render_ingest_summary,
    settings_or_exit,
)
from dnsieve.config import Settings
from dnsieve.lake import Lake

if TYPE_CHECKING:
    from dnsieve.demo import TruthReport

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``dnsieve demo`` to the CLI."""

    @app.command()
    def demo(
        directory: Annotated[
            Path | None,
            typer.Option(
                "--dir",
                help="keep the simulated logs, lake and alert store here (default: temporary)",
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
        stream: Annotated[
            bool,
            typer.Option(
                "--stream",
                help="live: replay the week into a local Kafka (mock cluster) and stream it",
            ),
        ] = False,
        rate: Annotated[
            float, typer.Option("--rate", min=100.0, help="with --stream: events/s replayed")
        ] = 3000.0,
        config: ConfigOpt = None,
    ) -> None:
        """Simulate a week of enterprise DNS with attacks, detect, score and store, show the alerts,
        and serve them in the Alert Manager (on 127.0.0.1, with a printed random admin password)."""
        settings = settings_or_exit(config)
        if samples:
            _demo_samples(settings, directory)
            return
        from dnsieve.commands.detect import render_summary
        from dnsieve.demo import run_demo

        if stream:
            _demo_stream(directory, hours, clients, seed, settings, rate, serve, port)
            return

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


def _demo_stream(
    directory: Path | None,
    hours: int,
    clients: int,
    seed: int,
    settings: Settings,
    rate: float,
    serve: bool,
    port: int,
) -> None:
    """``dnsieve demo --stream``: the week replayed into Kafka, streamed, served live."""
    import importlib.util
    import threading

    from dnsieve.demo import run_demo_stream

    if importlib.util.find_spec("confluent_kafka") is None:
        err_console.print("the streaming demo needs confluent-kafka: pip install 'dnsieve[kafka]'")
        raise typer.Exit(2)
    server: list[threading.Thread] = []

    def started(db_url: str, lake: Path) -> None:
        if serve:
            th = _serve_demo(db_url, port, lake, background=True)
            if th is not None:
                server.append(th)

    def show(s: Any) -> None:
        err_console.print(escape(s.line()))

    with tempfile.TemporaryDirectory(prefix="dnsieve-demo-") as tmp:
        target = directory or Path(tmp)
        err_console.print(
            f"simulating {hours} h of DNS for {clients} hosts (seed {seed}); replaying it into a "
            f"local Kafka (librdkafka mock cluster) at {rate:,.0f} events/s while dnsieve "
            "stream scores each hour as it closes ..."
        )
        res = run_demo_stream(
            target, hours=hours, clients=clients, seed=seed, settings=settings, rate=rate,
            on_status=show, started=started,
        )  # fmt: skip
        console.print(
            f"streamed {res.summary['replayed']:,} events; "
            f"{escape(str(res.summary['stream'].get('alerts', 0)))} alert window(s) scored live"
        )
        _render_truth(res.alerts, console, res.truth)
        if directory is not None:
            console.print(
                f"lake: {escape(str(res.lake))}\nalert store: {escape(res.db)}\n"
                f"checkpoint: {escape(str(target / 'checkpoint'))}"
            )
        for th in server:
            console.print("the Alert Manager keeps serving; Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                th.join()


def _serve_demo(db_url: str, port: int, lake: Path | None = None, background: bool = False) -> Any:
    """Serve the demo's store on loopback with a fresh admin password (no default credentials)."""
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "bokeh", "argon2")):
        err_console.print(
            "the Alert Manager is not installed; pip install 'dnsieve[web]' to browse these alerts"
        )
        return None
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
    if background:  # the streaming demo fills the store while the pages are served
        import threading

        cfg = uvicorn.Config(
            app_, host="127.0.0.1", port=port, log_level="warning", **SERVER_OPTIONS
        )
        th = threading.Thread(target=uvicorn.Server(cfg).run, name="alert-manager", daemon=True)
        th.start()
        return th
    uvicorn.run(app_, host="127.0.0.1", port=port, log_level="warning", **SERVER_OPTIONS)
    return None


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
