"""``dnsieve rules``: the analyst's own threat definitions (Sigma rules, watchlists,
anomaly rules), kept in the alert store, tested and hunted back through the lake.

Thin commands over :mod:`dnsieve.alerts.definitions` (storage, versions, audit) and
:mod:`dnsieve.rules.evaluate` (validation, hunts).  A new definition is a *draft*; it runs
in ``dnsieve run``/``detect`` once enabled.  See docs/rules.md.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dnsieve.commands.alerts import DbOpt, _consoles, current_user, fail, open_store_or_exit

__all__ = ["register"]

KindOpt = Annotated[
    str | None,
    typer.Option("--kind", "-k", help="sigma, watchlist or anomaly (default: from the file)"),
]

LakeOpt = Annotated[Path | None, typer.Option("--lake", help="lake directory (default: settings)")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="7d, 12h ... back, or an ISO time")]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="ISO time (default: the end of the lake)")
]


def _since(value: str | None) -> datetime | None:
    from dnsieve.rules.match import AllowListError, parse_expiry

    if value is None:
        return None
    try:
        # "7d" means 7 days back; parse_expiry measures forward from now.
        now = datetime.now().astimezone()
        fwd = parse_expiry(value, now)
    except AllowListError as exc:
        raise fail(str(exc), 2) from None
    if fwd is None:
        return None
    if value[:1].isdigit() and value[-1:] in "mhdw":
        return now - (fwd - now)
    return fwd


def _guess_kind(path: Path, text: str) -> str:
    if path.suffix.lower() in {".yml", ".yaml"} or text.lstrip().startswith(("title:", "---")):
        return "sigma"
    if path.suffix.lower() in {".expr", ".rule"}:
        return "anomaly"
    return "watchlist"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise fail(f"{path}: {exc.strerror or exc}", 2) from None


def register(app: typer.Typer) -> None:
    """Add ``dnsieve rules ...`` to the CLI."""
    rules_app = typer.Typer(
        help="Threat definitions: Sigma rules, watchlists and anomaly rules.",
        no_args_is_help=True,
    )
    app.add_typer(rules_app, name="rules")

    @rules_app.command("add")
    def add_cmd(
        file: Annotated[
            Path, typer.Argument(help="Sigma YAML, watchlist (one value a line) or expression file")
        ],
        reason: Annotated[
            str, typer.Option("--reason", "-r", help="why this is a threat here (required)")
        ],
        name: Annotated[
            str | None, typer.Option("--name", help="default: the Sigma title or the file name")
        ] = None,
        kind: KindOpt = None,
        severity: Annotated[
            str, typer.Option("--severity", help="low, medium, high, critical")
        ] = "high",
        technique: Annotated[
            list[str] | None,
            typer.Option("--technique", "-t", help="ATT&CK id, e.g. T1071.004 (repeatable)"),
        ] = None,
        confidence: Annotated[
            float,
            typer.Option(
                "--confidence",
                min=0.01,
                max=1.0,
                help="how sure a hit is a threat (0-1], weights the model's learning",
            ),
        ] = 0.9,
        expires: Annotated[
            str | None, typer.Option("--expires", help="30m, 12h, 7d, 2w or an ISO time")
        ] = None,
        author: Annotated[str | None, typer.Option("--author")] = None,
        db: DbOpt = None,
    ) -> None:
        """Add a definition as a draft (validated first; errors name the construct)."""
        from dnsieve.alerts.definitions import DefinitionError, DefinitionStore
        from dnsieve.rules.evaluate import check_definition
        from dnsieve.rules.match import AllowListError, parse_expiry
        from dnsieve.rules.sigma import compile_rule

        console, _ = _consoles()
        text = _read(file)
        k = kind or _guess_kind(file, text)
        errors = check_definition(k, text)
        if errors:
            raise fail(f"{file}: " + "; ".join(errors), 2)
        techniques = list(technique or [])
        title = name
        if k == "sigma":
            rule = compile_rule(text)
            title = title or rule.title
            techniques = sorted({*techniques, *rule.techniques})
        title = title or file.stem
        try:
            exp = parse_expiry(expires, datetime.now().astimezone()) if expires else None
        except AllowListError as exc:
            raise fail(str(exc), 2) from None
        with open_store_or_exit(db) as store:
            try:
                d = DefinitionStore(store).add(
                    title, k, text, author or current_user(), reason, severity, techniques,
                    confidence, exp,
                )  # fmt: skip
            except DefinitionError as exc:
                raise fail(str(exc), 2) from None
        console.print(
            f"added {escape(d.kind)} definition [bold]{escape(d.name)}[/bold] as a draft "
            f"(version {d.version}); test it with: dnsieve rules hunt {escape(repr(d.name))}"
        )

    @rules_app.command("list")
    def list_cmd(
        as_json: Annotated[bool, typer.Option("--json")] = False,
        db: DbOpt = None,
    ) -> None:
        """List definitions with their state, version and author."""
        from dnsieve.alerts.definitions import DefinitionStore

        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            defs = DefinitionStore(store).all()
        if as_json:
            typer.echo(json.dumps([d.to_dict() | {"body": None} for d in defs], indent=2))
            return
        t = Table(title=f"{len(defs)} definition(s)", title_justify="left")
        for col in ("name", "kind", "state", "version", "severity", "ATT&CK", "author", "reason"):
            t.add_column(col, overflow="fold")
        for d in defs:
            t.add_row(
                escape(d.name), d.kind, d.state, str(d.version), d.severity,
                escape(", ".join(d.techniques)), escape(d.author), escape(d.reason[:80]),
            )  # fmt: skip
        console.print(t)

    @rules_app.command("show")
    def show_cmd(
        name: Annotated[str, typer.Argument()],
        version: Annotated[
            int | None, typer.Option("--version", help="an earlier version's body")
        ] = None,
        db: DbOpt = None,
    ) -> None:
        """Show a definition, its versions and its audit trail."""
        from dnsieve.alerts.definitions import DefinitionError, DefinitionStore

        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            ds = DefinitionStore(store)
            try:
                d = ds.get(name)
                body = ds.body_at(name, version) if version else d.body
                versions = ds.versions(name)
                history = ds.history(name)
            except DefinitionError as exc:
                raise fail(str(exc)) from None
        console.print(
            f"[bold]{escape(d.name)}[/bold]  {d.kind}, {d.state}, version {d.version}, "
            f"severity {d.severity}, confidence {d.confidence:g}\n"
            f"ATT&CK: {escape(', '.join(d.techniques) or '-')}\nreason: {escape(d.reason)}"
        )
        console.print(escape(body), markup=False, highlight=False)
        for v, who, why, at in versions:
            console.print(f"v{v}  {at:%Y-%m-%d %H:%M} UTC  {escape(who)}: {escape(why)}")
        for e in history:
            console.print(
                f"{e.at:%Y-%m-%d %H:%M} UTC  {escape(e.actor)} {escape(e.action)}"
                + (f" ({escape(e.detail)})" if e.detail else "")
            )

    def _hunt(
        name: str,
        lake_dir: Path | None,
        since: str | None,
        until: str | None,
        db: str | None,
        as_json: bool,
        record: str,
    ) -> None:
        from dnsieve.alerts.definitions import DefinitionError, DefinitionStore
        from dnsieve.config import load_settings
        from dnsieve.lake import Lake
        from dnsieve.rules.evaluate import hunt

        console, _ = _consoles()
        settings = load_settings()
        lake = Lake.from_settings(settings, lake_dir)
        with open_store_or_exit(db) as store:
            ds = DefinitionStore(store)
            try:
                d = ds.get(name)
            except DefinitionError as exc:
                raise fail(str(exc)) from None
            if d.kind == "anomaly":
                raise fail(
                    "anomaly rules apply to detector output: run 'dnsieve run' or 'detect'", 2
                )
            res = hunt(
                d, lake, _since(since), _since(until),
                budget_per_day=float(getattr(settings.detect, "budget_per_day", 50)),
            )  # fmt: skip
            ds.record(
                name, current_user(), record, f"{res.events} events, {res.anomalies.height} alerts"
            )
        if as_json:
            typer.echo(json.dumps(res.to_dict(), indent=2))
            return
        console.print(
            f"[bold]{escape(name)}[/bold]: {res.events:,} matching events, {res.entities:,} "
            f"entities, {res.anomalies.height:,} alerts ({res.per_day:.1f}/day) in {res.seconds:.2f} s"
        )
        for note in res.notes:
            console.print(f"[yellow]{escape(note)}[/yellow]")
        if res.anomalies.height:
            t = Table(title="alerts it would add (first 20)", title_justify="left")
            for col in ("entity", "window", "reason"):
                t.add_column(col, overflow="fold")
            for row in res.anomalies.head(20).iter_rows(named=True):
                reason = json.loads(row["evidence"]).get("reason", "")
                t.add_row(
                    escape(row["entity"]), f"{row['window_start']:%Y-%m-%d %H:%M}", escape(reason)
                )
            console.print(t)

    @rules_app.command("hunt")
    def hunt_cmd(
        name: Annotated[str, typer.Argument()],
        lake_dir: LakeOpt = None,
        since: SinceOpt = None,
        until: UntilOpt = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        db: DbOpt = None,
    ) -> None:
        """Run a definition over the lake's history: hits, entities and the alerts it would add."""
        _hunt(name, lake_dir, since, until, db, as_json, "hunted")

    @rules_app.command("test")
    def test_cmd(
        file: Annotated[Path, typer.Argument(help="a definition file, not yet stored")],
        kind: KindOpt = None,
        lake_dir: LakeOpt = None,
        since: SinceOpt = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Validate a definition file and hunt it over the lake, without storing it."""
        from types import SimpleNamespace

        from dnsieve.config import load_settings
        from dnsieve.lake import Lake
        from dnsieve.rules.evaluate import check_definition, hunt

        console, _ = _consoles()
        text = _read(file)
        k = kind or _guess_kind(file, text)
        errors = check_definition(k, text)
        if errors:
            raise fail(f"{file}: " + "; ".join(errors), 2)
        if k == "anomaly":
            console.print("valid anomaly rule")
            return
        settings = load_settings()
        d: Any = SimpleNamespace(
            name=file.stem, kind=k, body=text, version=0, confidence=0.9, techniques=()
        )
        res = hunt(d, Lake.from_settings(settings, lake_dir), _since(since), None,
                   budget_per_day=float(getattr(settings.detect, "budget_per_day", 50)))  # fmt: skip
        if as_json:
            typer.echo(json.dumps(res.to_dict(), indent=2))
        else:
            console.print(
                f"valid {k}: {res.events:,} matching events, {res.entities:,} entities, "
                f"{res.anomalies.height:,} alerts ({res.per_day:.1f}/day)"
            )
            for note in res.notes:
                console.print(f"[yellow]{escape(note)}[/yellow]")

    def _set(name: str, state: str, db: str | None) -> None:
        from dnsieve.alerts.definitions import DefinitionError, DefinitionStore

        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            try:
                d = DefinitionStore(store).set_state(name, state, current_user())
            except DefinitionError as exc:
                raise fail(str(exc)) from None
        console.print(f"{escape(d.name)}: {d.state}")

    @rules_app.command("enable")
    def enable_cmd(name: Annotated[str, typer.Argument()], db: DbOpt = None) -> None:
        """Enable a definition: run and detect evaluate it from now on."""
        _set(name, "enabled", db)

    @rules_app.command("disable")
    def disable_cmd(name: Annotated[str, typer.Argument()], db: DbOpt = None) -> None:
        """Disable a definition (kept, with its history)."""
        _set(name, "disabled", db)

    @rules_app.command("import")
    def import_cmd(
        file: Annotated[
            Path,
            typer.Argument(help="ThreatFox CSV, plain list, STIX 2.1 bundle or MISP event JSON"),
        ],
        name: Annotated[str, typer.Option("--name", help="the watchlist's name")],
        reason: Annotated[str, typer.Option("--reason", "-r")],
        fmt: Annotated[
            str, typer.Option("--format", "-f", help="auto, threatfox, plain, stix, misp")
        ] = "auto",
        severity: Annotated[str, typer.Option("--severity")] = "high",
        confidence: Annotated[float, typer.Option("--confidence", min=0.01, max=1.0)] = 0.9,
        db: DbOpt = None,
    ) -> None:
        """Import a threat-intelligence file as a watchlist (a new version if it exists)."""
        from dnsieve.rules.feeds import import_feed

        try:
            feed = import_feed(file, fmt)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
        _store_feed(feed, str(file), file.name, name, reason, severity, confidence, db, False)

    @rules_app.command("refresh")
    def refresh_cmd(
        name: Annotated[str, typer.Argument(help="the watchlist to refresh (or create)")],
        url: Annotated[str, typer.Option("--url", help="where the feed is published (https)")],
        reason: Annotated[str, typer.Option("--reason", "-r")] = "scheduled feed refresh",
        fmt: Annotated[
            str, typer.Option("--format", "-f", help="auto, threatfox, plain, stix, misp")
        ] = "auto",
        severity: Annotated[str, typer.Option("--severity")] = "high",
        confidence: Annotated[float, typer.Option("--confidence", min=0.01, max=1.0)] = 0.9,
        enable: Annotated[
            bool,
            typer.Option(
                "--enable",
                help="enable the new version at once (you approve the feed, not each "
                "version); without it a changed, enabled watchlist goes back to draft",
            ),
        ] = False,
        allow_http: Annotated[
            bool, typer.Option("--allow-http", help="also fetch a plain http:// URL")
        ] = False,
        timeout: Annotated[float, typer.Option("--timeout", min=1.0)] = 30.0,
        db: DbOpt = None,
    ) -> None:
        """Download a feed (ThreatFox, plain, STIX, MISP) and store it as a new version of a
        watchlist: for users with network access, e.g. from cron.  Nothing else in dnsieve
        goes online."""
        from dnsieve.rules.feeds import fetch_feed

        try:
            feed = fetch_feed(url, fmt, timeout=timeout, allow_http=allow_http)
        except ValueError as exc:
            raise fail(str(exc), 1) from None
        _store_feed(feed, url, url, name, reason, severity, confidence, db, enable)

    def _store_feed(
        feed: Any,
        source: str,
        label: str,
        name: str,
        reason: str,
        severity: str,
        confidence: float,
        db: str | None,
        enable: bool,
    ) -> None:
        from dnsieve.alerts.definitions import DefinitionError, DefinitionStore
        from dnsieve.rules.feeds import to_plain

        console, _ = _consoles()
        if not feed.entries:
            raise fail(f"{source}: no domain, suffix or address found ({feed.format})", 2)
        body = to_plain(feed.entries)
        with open_store_or_exit(db) as store:
            ds = DefinitionStore(store)
            try:
                try:
                    ds.get(name)
                    d = ds.edit(
                        name,
                        current_user(),
                        reason,
                        body=body,
                        severity=severity,
                        confidence=confidence,
                    )
                except DefinitionError:
                    d = ds.add(
                        name, "watchlist", body, current_user(), reason, severity, (), confidence
                    )
                ds.record(
                    name,
                    current_user(),
                    "imported",
                    f"{label}: {len(feed.entries)} entries ({feed.format})",
                )
                if enable and d.state != "enabled":
                    d = ds.set_state(name, "enabled", current_user())
            except DefinitionError as exc:
                raise fail(str(exc), 2) from None
        rej = sum(feed.rejected.values())
        skipped = sum(feed.skipped.values())
        console.print(
            f"{escape(d.name)}: {len(feed.entries):,} entries from {feed.format} "
            f"({rej:,} rejected, {skipped:,} skipped), version {d.version}, {d.state}"
        )

    @rules_app.command("export")
    def export_cmd(
        name: Annotated[
            str | None, typer.Argument(help="one definition (default: all, as JSON lines)")
        ] = None,
        db: DbOpt = None,
    ) -> None:
        """Print a definition's body, or every definition as JSON lines (for backup or review)."""
        from dnsieve.alerts.definitions import DefinitionError, DefinitionStore

        with open_store_or_exit(db) as store:
            ds = DefinitionStore(store)
            try:
                if name is not None:
                    typer.echo(ds.get(name).body, nl=False)
                    return
                for d in ds.all():
                    typer.echo(json.dumps(d.to_dict()))
            except DefinitionError as exc:
                raise fail(str(exc)) from None
