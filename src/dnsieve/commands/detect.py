"""``dnsieve detect``: score a lake with every detector and write calibrated alerts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from dnsieve.explain import Explanation, explain, one_in

__all__ = [
    "AlertLine",
    "alerts_to_records",
    "parse_time",
    "print_alert_lines",
    "register",
    "render_summary",
    "write_alerts",
]


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO-8601 time (naive = UTC) or a BadParameter naming the option."""
    if value is None or value == "":
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO-8601 time (e.g. 2024-04-20 or 2024-04-20T13:00:00Z)",
            param_hint=option,
        ) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def alerts_to_records(alerts: pl.DataFrame) -> list[dict[str, Any]]:
    """Alerts as JSON-ready dicts; ``evidence`` becomes a nested object, times ISO-8601,
    and each record gains ``reason`` and ``clients`` (:func:`dnsieve.explain.explain`)."""
    out = []
    for row in alerts.iter_rows(named=True):
        explainable = {"detector", "entity"} <= row.keys() and all(
            isinstance(row.get(k), datetime) for k in ("window_start", "window_end")
        )
        why = _explain_row(row) if explainable else None
        rec: dict[str, Any] = {}
        if why is not None:
            rec["reason"], rec["clients"] = why.reason, why.clients
        for k, v in row.items():
            if k == "evidence":
                try:
                    rec[k] = json.loads(v) if v else {}
                except (TypeError, ValueError):
                    rec[k] = {"raw": v}
            elif isinstance(v, datetime):
                rec[k] = v.isoformat().replace("+00:00", "Z")
            else:
                rec[k] = v
        out.append(rec)
    return out


def write_alerts(alerts: pl.DataFrame, out: Path) -> Path:
    """Write alerts as JSON lines to ``out`` and as Parquet beside it; return the Parquet path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for rec in alerts_to_records(alerts):
            fh.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
    pq = out.with_suffix(".parquet")
    alerts.write_parquet(pq)
    return pq


def render_summary(
    summary: dict[str, Any], alerts: pl.DataFrame, console: Console, top: int = 20
) -> None:
    """Readable summary: one row per detector, then the top alerts."""
    span = summary.get("span_hours")
    head = (
        f"scored {escape(str(summary.get('start', '?')))} → {escape(str(summary.get('end', '?')))}"
    )
    if span is not None:
        head += f" ({span:g} h, window {summary.get('window_seconds', 0):g} s)"
    console.print(head if "note" not in summary else escape(summary["note"]))
    t = Table(title="detectors", title_justify="left")
    for col, just in (("detector", "left"), ("status", "left"), ("candidates", "right"),
                      ("population", "right"), ("alerts", "right"), ("note", "left")):  # fmt: skip
        t.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for name, d in summary.get("detectors", {}).items():
        status = d.get("status", "?")
        style = {"error": "red", "skipped": "yellow"}.get(status, "")
        t.add_row(
            escape(name),
            f"[{style}]{status}[/{style}]" if style else status,
            f"{d.get('candidates', 0):,}",
            f"{d.get('population', 0):,}",
            f"{d.get('alerts', 0):,}",
            escape(str(d.get("reason", ""))),
        )
    console.print(t)
    if alerts.height == 0:
        console.print("no alerts")
        return
    title = f"top alerts ({alerts.height:,} in all)"
    items = []
    for row in alerts.head(top).iter_rows(named=True):
        p = row.get("global_p")
        p = p if p is not None else row.get("p_value")
        items.append(
            AlertLine(
                str(row["detector"]),
                str(row["entity"]),
                f"{row['window_start']:%Y-%m-%d %H:%M}",
                one_in(p),
                _explain_row(row),
            )
        )
    print_alert_lines(items, console, title)


@dataclass(frozen=True)
class AlertLine:
    """One alert as the CLI lists it: who, when, how rare, why (and an optional tag)."""

    detector: str
    entity: str
    window: str
    figure: str  # the comparable figure: the rarity, or P(threat)
    why: Explanation
    extra: str = ""  # already rich markup (e.g. the demo's ground-truth tag)


#: Below this console width alerts are listed as two lines each (facts, then the reason)
#: instead of a table whose reason column would wrap a word per line.
WIDE_CONSOLE = 130


def print_alert_lines(
    items: list[AlertLine], console: Console, title: str, figure: str = "rarity"
) -> None:
    """Alerts with their reason and client: a table on a wide console, else two lines each.

    ``figure`` names the items' comparable figure (their ``figure`` field).

    Every attacker-controlled string (entities, reasons, clients) is escaped for rich.
    """
    if console.width >= WIDE_CONSOLE:
        t = Table(title=title, title_justify="left")
        for col in ("detector", "entity", "window start", figure, "client", "why"):
            t.add_column(col, overflow="fold", no_wrap=col in ("window start", figure))
        if any(i.extra for i in items):
            t.add_column("truth")
        for i in items:
            cells = [
                escape(i.detector),
                escape(i.entity),
                i.window,
                i.figure,
                escape(", ".join(i.why.clients[:2])),
                escape(i.why.reason),
            ]
            t.add_row(*cells, *([i.extra] if any(x.extra for x in items) else []))
        console.print(t)
        return
    console.print(f"[italic]{escape(title)}[/italic]")
    for n, i in enumerate(items, 1):
        facts = i.window + (f" · {figure} {i.figure}" if i.figure else "")
        tag = f"  {i.extra}" if i.extra else ""
        console.print(
            f"{n:>3}. [bold]{escape(i.detector)}[/bold] {escape(i.entity)}  {facts}{tag}",
            overflow="fold",
        )
        console.print(Padding(Text(i.why.reason), (0, 0, 0, 5)))


def _explain_row(row: dict[str, Any]) -> Explanation:
    """:func:`dnsieve.explain.explain` of one alert row (evidence as JSON text or a dict)."""
    ev = row.get("evidence")
    if isinstance(ev, str):
        try:
            ev = json.loads(ev or "{}")
        except ValueError:
            ev = None
    hours = (row["window_end"] - row["window_start"]).total_seconds() / 3600.0
    return explain(
        str(row["detector"]),
        str(row["entity"]),
        ev if isinstance(ev, dict) else None,
        row.get("entity_type"),
        hours or None,
    )


def register(app: typer.Typer) -> None:
    """Add ``dnsieve detect`` to the CLI."""

    @app.command()
    def detect(
        lake_dir: Annotated[
            Path | None, typer.Option("--lake", help="lake directory (default: settings lake.path)")
        ] = None,
        engine: Annotated[
            str | None, typer.Option("--engine", help="polars (default) or spark")
        ] = None,
        since: Annotated[
            str | None, typer.Option("--since", help="score from this ISO-8601 time")
        ] = None,
        until: Annotated[
            str | None, typer.Option("--until", help="score up to this ISO-8601 time")
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", help="write alerts as JSON lines (and .parquet beside it)"),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="print summary and alerts as JSON")
        ] = False,
        detector: Annotated[
            list[str] | None, typer.Option("--detector", help="run only this detector (repeatable)")
        ] = None,
        config: Annotated[
            Path | None, typer.Option("--config", "-c", help="TOML settings file")
        ] = None,
        db: Annotated[
            str | None,
            typer.Option(
                "--db",
                help="alert store whose enabled threat definitions are evaluated too "
                "(default: $DNSIEVE_DB, else alerts.db in the user data dir; none there: none)",
                show_default=False,
            ),
        ] = None,
        definitions: Annotated[
            bool,
            typer.Option(
                "--definitions/--no-definitions",
                help="evaluate the store's enabled Sigma rules, watchlists and anomaly rules",
            ),
        ] = True,
        lake_version: Annotated[
            int | None,
            typer.Option(
                "--lake-version",
                min=0,
                help="Delta lake only: score the table as of this version (time travel)",
            ),
        ] = None,
    ) -> None:
        """Score every complete window of the lake (or --since/--until) and write calibrated alerts.

        The enabled threat definitions of the alert store (``dnsieve rules``) are evaluated
        over the same period, as ``run`` does: their hits are alerts of their own
        (``rule:<name>``), and anomaly rules keep the candidates they match."""
        from dnsieve.commands.console import console, err_console
        from dnsieve.commands.console import settings_or_exit as _settings
        from dnsieve.engines import EngineUnavailableError
        from dnsieve.lake import Lake
        from dnsieve.pipeline import DetectSettings
        from dnsieve.pipeline import detect as run_detect

        settings = _settings(config)
        t_since, t_until = parse_time(since, "--since"), parse_time(until, "--until")
        ds = getattr(settings, "detect", None)
        dset = ds.model_copy() if isinstance(ds, DetectSettings) else DetectSettings()
        if engine:
            if engine not in ("polars", "spark"):
                raise typer.BadParameter(
                    f"{engine!r}: choose polars or spark", param_hint="--engine"
                )
            dset.engine = engine  # type: ignore[assignment]
        if dset.engine == "spark":
            from dnsieve.engines.spark import configure

            configure(getattr(settings, "spark", None))  # [spark] master, conf, scratch
        lake = Lake.from_settings(settings, lake_dir)
        if (lake.events_dir / "_delta_log").is_dir():  # a Delta lake, whatever [lake] format says
            from dnsieve.lake import DeltaLake

            lake = DeltaLake(lake.path, version=lake_version)
        elif lake_version is not None:
            err_console.print(
                f"[red]error:[/red] --lake-version needs a Delta lake; "
                f"{escape(str(lake.path))} is not one"
            )
            raise typer.Exit(2)
        if not lake.events_dir.is_dir():
            err_console.print(
                f"[red]error:[/red] no lake at {escape(str(lake.path))} (run dnsieve ingest first)"
            )
            raise typer.Exit(2)
        try:
            res = run_detect(
                lake, engine=dset.engine, since=t_since, until=t_until,
                detectors=list(detector) if detector else None, settings=dset,
            )  # fmt: skip
        except (KeyError, ValueError, EngineUnavailableError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            err_console.print(f"[red]error:[/red] {escape(str(msg))}")
            raise typer.Exit(2) from None
        if definitions:
            from dnsieve.alerts.definitions import active_definitions
            from dnsieve.alerts.store import resolve_db_url
            from dnsieve.rules.evaluate import definition_alerts

            try:
                defs = active_definitions(resolve_db_url(db))
            except Exception as exc:  # a store we cannot read: say so, detect without it
                err_console.print(
                    f"[yellow]warning:[/yellow] threat definitions not read: {escape(str(exc))}"
                )
                defs = []
            if defs:
                res.alerts, res.summary["definitions"] = definition_alerts(
                    defs, lake, res, res.alerts
                )
        if out is not None:
            pq = write_alerts(res.alerts, out)
            res.summary["out"] = {"jsonl": str(out), "parquet": str(pq)}
        if as_json:
            payload = {"summary": res.summary, "alerts": alerts_to_records(res.alerts)}
            typer.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))
        else:
            render_summary(res.summary, res.alerts, console)
            if out is not None:
                console.print(
                    f"wrote {res.alerts.height:,} alerts to {escape(str(out))} and {escape(str(pq))}"
                )
