"""``dnsieve alerts``: list, show, verdict, import, export, webhook, syslog.

Every command takes ``--db URL`` (default ``$DNSIEVE_DB``, else a SQLite file in
the user data directory; see :func:`dnsieve.alerts.store.resolve_db_url`).
Commands are thin: open the store, call one library function, print.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from dnsieve.commands.console import console, err_console, fail

if TYPE_CHECKING:
    from rich.console import Console

    from dnsieve.alerts.base import Alert
    from dnsieve.alerts.store import AlertStore

__all__ = ["DbOpt", "current_user", "fail", "open_store_or_exit", "register"]

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="alert store URL or SQLite path (default: $DNSIEVE_DB, else alerts.db in the user data dir)",
        show_default=False,
    ),
]
StatusOpt = Annotated[
    str,
    typer.Option("--status", "-s", help="open (new + needs_review), all, or one status"),
]
DetectorOpt = Annotated[str | None, typer.Option("--detector", "-d", help="only this detector")]
SuppressedOpt = Annotated[
    bool,
    typer.Option("--include-suppressed", help="also alerts hidden by an active allow-list entry"),
]

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "dim"}
STATUS_STYLE = {
    "threat": "bold red",
    "benign": "green",
    "not_relevant": "dim",
    "needs_review": "cyan",
}


def _consoles() -> tuple[Console, Console]:
    return console, err_console


def current_user() -> str:
    """``$USER``, else the login name, else ``unknown``."""
    user = os.environ.get("USER") or os.environ.get("USERNAME")
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@contextmanager
def open_store_or_exit(db: str | None) -> Iterator[AlertStore]:
    """Open the SQL store; store errors become clean CLI errors, not tracebacks."""
    import sqlalchemy.exc

    from dnsieve.alerts.base import AlertStoreError
    from dnsieve.alerts.store import AlertStore, resolve_db_url
    from dnsieve.rules.match import AllowListError

    url = resolve_db_url(db)
    try:
        store = AlertStore.open(url)
    except (sqlalchemy.exc.SQLAlchemyError, OSError, ValueError) as exc:
        shown = (
            sqlalchemy.make_url(url).render_as_string(hide_password=True) if "://" in url else url
        )
        raise fail(f"cannot open the alert store {shown}: {exc}") from None
    try:
        yield store
    except (AlertStoreError, AllowListError) as exc:
        raise fail(str(exc)) from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise fail(f"alert store error: {exc}") from None
    finally:
        store.close()


def _fmt_p(p: float | None) -> str:
    return "" if p is None else f"{p:.2f}"


def _ts(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def render_alerts(alerts: list[Alert], out: Console, title: str) -> None:
    """The alert table (every string escaped: entities are attacker-controlled)."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for col, kw in (
        ("id", {"no_wrap": True}),
        ("status", {"no_wrap": True}),
        ("sev", {"no_wrap": True}),
        ("P(thr)", {"justify": "right", "no_wrap": True}),
        ("score", {"justify": "right", "no_wrap": True}),
        ("detector", {"no_wrap": True}),
        ("entity", {"overflow": "fold", "min_width": 20, "ratio": 1}),
        ("window (UTC)", {"overflow": "fold", "min_width": 10}),
    ):
        t.add_column(col, **kw)
    for a in alerts:
        st = STATUS_STYLE.get(a.status, "")
        sv = SEVERITY_STYLE.get(a.severity, "")
        t.add_row(
            a.id[:10],
            f"[{st}]{a.status}[/{st}]" if st else a.status,
            f"[{sv}]{a.severity}[/{sv}]" if sv else a.severity,
            _fmt_p(a.threat_probability),
            f"{a.score:.3g}",
            escape(a.detector),
            escape(a.entity) + (" [dim](suppressed)[/dim]" if a.suppressed else ""),
            _ts(a.window_start),
        )
    out.print(t)


def render_alert(store: AlertStore, a: Alert, out: Console) -> None:
    """One alert in full: fields, evidence, suppression and audit trail."""
    from rich.table import Table

    t = Table(show_header=False, title=f"alert {a.id}", title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    rows = [
        ("detector", a.detector),
        ("entity", f"{a.entity} ({a.entity_type})"),
        ("domain", a.domain or ""),
        ("client", a.client or ""),
        ("window", f"{a.window_start.isoformat()} → {a.window_end.isoformat()}"),
        ("status", a.status),
        ("severity", a.severity),
        ("score", f"{a.score:.6g}"),
        ("p-value", "" if a.p_value is None else f"{a.p_value:.3g}"),
        ("P(threat)", _fmt_p(a.threat_probability)),
        (
            "seen",
            f"{a.times_seen}× (first {a.first_seen.isoformat()}, last {a.last_seen.isoformat()})",
        ),
    ]
    if a.suppressed_by is not None:
        entry = next(
            (e for e in store.list_allow(include_inactive=True) if e.id == a.suppressed_by), None
        )
        state = "active" if a.suppressed else "no longer active"
        desc = f"entry {a.suppressed_by} ({state})"
        if entry is not None:
            desc += f": {entry.kind} {entry.value} — {entry.reason} ({entry.author})"
        rows.append(("suppressed by", desc))
    for k, v in rows:
        t.add_row(k, escape(v))
    out.print(t)
    out.print("[bold]evidence[/bold]")
    out.print(escape(json.dumps(a.evidence, indent=2, sort_keys=True, ensure_ascii=False)))
    trail = store.audit_trail(a.id)
    if trail:
        h = Table(title="history", title_justify="left")
        for c in ("when (UTC)", "who", "change", "comment", "model"):
            h.add_column(c, overflow="fold")
        for e in trail:
            h.add_row(
                e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                escape(e.actor),
                f"{e.old_status} → {e.new_status}",
                escape(e.comment or ""),
                "" if e.model_version is None else str(e.model_version),
            )
        out.print(h)


def export_alerts(
    store: AlertStore,
    out: Any,
    fmt: str = "jsonl",
    status: str = "open",
    detector: str | None = None,
    include_suppressed: bool = False,
) -> int:
    """Write the selected alerts to the text stream ``out``; returns how many."""
    from dnsieve.alerts.export import write_lines

    alerts = store.iter_alerts(
        status=status, detector=detector, include_suppressed=include_suppressed
    )
    return write_lines(alerts, out, fmt)  # type: ignore[arg-type]


def _check_format(fmt: str) -> None:
    if fmt not in ("jsonl", "ecs"):
        raise fail(f"unknown format {fmt!r}; choose jsonl or ecs", 2)


def _check_status(status: str) -> None:
    from dnsieve.alerts.base import AlertStoreError, status_filter

    try:
        status_filter(status)
    except AlertStoreError as exc:
        raise fail(f"{exc} (or open, all)", 2) from None


def register(app: typer.Typer) -> None:
    """Add ``dnsieve alerts ...`` to the CLI."""
    alerts_app = typer.Typer(help="Review, judge and export stored alerts.", no_args_is_help=True)
    app.add_typer(alerts_app, name="alerts")

    @alerts_app.command("list")
    def list_cmd(
        status: StatusOpt = "open",
        detector: DetectorOpt = None,
        entity: Annotated[
            str | None, typer.Option("--entity", help="only this exact entity")
        ] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="at most this many")] = 50,
        order: Annotated[
            str, typer.Option("--order", help="queue (P(threat), score) or recent")
        ] = "queue",
        include_suppressed: SuppressedOpt = False,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        db: DbOpt = None,
    ) -> None:
        """List alerts, the review queue first (highest P(threat), then score)."""
        _check_status(status)
        if order not in ("queue", "recent"):
            raise fail("--order is queue or recent", 2)
        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            rows = store.list_alerts(
                status=status,
                detector=detector,
                entity=entity,
                limit=limit,
                include_suppressed=include_suppressed,
                order=order,  # type: ignore[arg-type]
            )
            if as_json:
                typer.echo(json.dumps([a.to_dict() for a in rows], indent=2, ensure_ascii=False))
                return
            counts = store.count_by_status(include_suppressed=include_suppressed)
            render_alerts(rows, console, f"{len(rows)} alert(s), status {status}")
            console.print(
                ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "the store is empty"
            )

    @alerts_app.command("show")
    def show_cmd(
        alert_id: Annotated[str, typer.Argument(metavar="ID", help="alert id or a unique prefix")],
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        db: DbOpt = None,
    ) -> None:
        """Show one alert: fields, evidence, suppression and its audit trail."""
        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            a = store.get_alert(alert_id)
            if as_json:
                payload = a.to_dict() | {"history": [e.to_dict() for e in store.audit_trail(a.id)]}
                typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
                return
            render_alert(store, a, console)

    @alerts_app.command("verdict")
    def verdict_cmd(
        alert_id: Annotated[str, typer.Argument(metavar="ID", help="alert id or a unique prefix")],
        label: Annotated[
            str, typer.Argument(metavar="VERDICT", help="threat, benign or not-relevant")
        ],
        comment: Annotated[
            str | None, typer.Option("--comment", "-m", help="why (kept in the audit trail)")
        ] = None,
        user: Annotated[str | None, typer.Option("--user", help="who (default: $USER)")] = None,
        learn: Annotated[
            bool, typer.Option("--learn/--no-learn", help="update the threat model")
        ] = True,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        db: DbOpt = None,
    ) -> None:
        """Record an analyst verdict; the threat model learns from it at once."""
        from dnsieve.alerts.feedback import apply_verdict

        if label.strip().lower().replace("-", "_") not in ("threat", "benign", "not_relevant"):
            raise fail(f"the verdict is threat, benign or not-relevant, not {label!r}", 2)
        console, err = _consoles()
        with open_store_or_exit(db) as store:
            out = apply_verdict(
                store, alert_id, label, user or current_user(), comment, learn=learn
            )
        if as_json:
            typer.echo(json.dumps(out.to_dict(), indent=2, ensure_ascii=False))
            return
        v = out.verdict
        console.print(
            f"alert {v.alert.id}: {v.old_status} → [bold]{v.new_status}[/bold] "
            f"by {escape(v.audit.actor)} ({escape(v.alert.detector)} {escape(v.alert.entity)})"
        )
        if out.model_version is not None:
            console.print(
                f"threat model v{out.model_version.id} learned it: P(threat) of this alert "
                f"{_fmt_p(out.probability)}; {out.rescored:,} alert(s) re-scored"
            )
        if out.model_error:
            err.print(
                f"[yellow]warning:[/yellow] the verdict is saved but the model was not updated: {escape(out.model_error)}"
            )

    @alerts_app.command("import")
    def import_cmd(
        path: Annotated[
            Path,
            typer.Argument(help="alerts written by dnsieve run/detect --out (.jsonl or .parquet)"),
        ],
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        db: DbOpt = None,
    ) -> None:
        """Store alerts from a file; re-importing merges, never duplicates, keeps verdicts.

        Windows of one detector and entity within ``[alerts] episode_gap_hours`` of each
        other become one alert (an episode)."""
        from dnsieve.alerts.load import read_anomalies
        from dnsieve.config import ConfigError, load_settings

        if not path.is_file():
            raise fail(f"no such file: {path}", 2)
        try:
            gap = load_settings().alerts.episode_gap
        except ConfigError as exc:
            raise fail(str(exc), 2) from None
        frame, rejects = read_anomalies(path)
        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            rep = store.upsert_anomalies(frame, gap=gap)
        rep.rejects.update(rejects)
        if as_json:
            typer.echo(json.dumps(rep.to_dict(), indent=2))
            return
        bad = ", ".join(f"{k} {v:,}" for k, v in rep.rejects.items())
        console.print(
            f"{rep.received:,} window(s): {rep.inserted:,} new alert(s), "
            f"{rep.merged:,} stored one(s) extended or seen again, "
            f"{rep.suppressed:,} suppressed by the allow-list"
            + (f"; rejected: {bad}" if bad else "")
        )

    @alerts_app.command("export")
    def export_cmd(
        fmt: Annotated[
            str, typer.Option("--format", "-f", help="jsonl or ecs (Elastic Common Schema)")
        ] = "jsonl",
        status: StatusOpt = "open",
        detector: DetectorOpt = None,
        include_suppressed: SuppressedOpt = False,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="file to write (default: stdout)")
        ] = None,
        db: DbOpt = None,
    ) -> None:
        """Export alerts as JSON lines, flat (jsonl) or with ECS field names (ecs)."""
        _check_format(fmt)
        _check_status(status)
        _, err = _consoles()
        with open_store_or_exit(db) as store:
            if out is None:
                n = export_alerts(store, sys.stdout, fmt, status, detector, include_suppressed)
                sys.stdout.flush()
            else:
                tmp = out.with_name(out.name + ".tmp")
                with tmp.open("w", encoding="utf-8") as fh:
                    n = export_alerts(store, fh, fmt, status, detector, include_suppressed)
                tmp.replace(out)
        err.print(f"exported {n:,} alert(s)" + (f" to {escape(str(out))}" if out else ""))

    @alerts_app.command("webhook")
    def webhook_cmd(
        url: Annotated[str, typer.Argument(help="http(s) URL that receives JSON arrays of alerts")],
        fmt: Annotated[str, typer.Option("--format", "-f", help="ecs or jsonl documents")] = "ecs",
        status: StatusOpt = "open",
        detector: DetectorOpt = None,
        include_suppressed: SuppressedOpt = False,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10000)] = 100,
        retries: Annotated[
            int, typer.Option("--retries", min=0, max=20, help="retries per batch")
        ] = 5,
        timeout: Annotated[
            float, typer.Option("--timeout", min=0.1, help="seconds per request")
        ] = 10.0,
        header: Annotated[
            list[str] | None,
            typer.Option("--header", "-H", help="extra header 'Name: value' (repeatable)"),
        ] = None,
        db: DbOpt = None,
    ) -> None:
        """POST alerts to a webhook, retrying with exponential backoff.

        A bearer token is read from $DNSIEVE_WEBHOOK_TOKEN (never from a file or
        the command line, which other users can see).
        """
        from dnsieve.alerts.export import WebhookError, post_webhook

        _check_format(fmt)
        _check_status(status)
        headers: dict[str, str] = {}
        token = os.environ.get("DNSIEVE_WEBHOOK_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for h in header or []:
            name, sep, value = h.partition(":")
            if not sep or not name.strip():
                raise fail(f"--header expects 'Name: value', got {h!r}", 2)
            headers[name.strip()] = value.strip()
        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            alerts = store.iter_alerts(
                status=status, detector=detector, include_suppressed=include_suppressed
            )
            try:
                rep = post_webhook(
                    alerts,
                    url,
                    "ecs" if fmt == "ecs" else "jsonl",
                    batch_size=batch_size,
                    max_retries=retries,
                    timeout=timeout,
                    headers=headers,
                )
            except WebhookError as exc:
                raise fail(str(exc)) from None
            except ValueError as exc:
                raise fail(str(exc), 2) from None
        console.print(
            f"sent {rep.sent:,} alert(s) in {rep.batches} request(s), {rep.retries} retried"
        )

    @alerts_app.command("syslog")
    def syslog_cmd(
        target: Annotated[
            str, typer.Argument(metavar="HOST:PORT", help="syslog collector ([v6]:port too)")
        ],
        tcp: Annotated[
            bool, typer.Option("--tcp", help="TCP with octet counting (default: UDP)")
        ] = False,
        facility: Annotated[
            str, typer.Option("--facility", help="local0..local7, user, daemon, auth, security")
        ] = "local0",
        text: Annotated[
            bool, typer.Option("--text", help="one-line text MSG instead of ECS JSON")
        ] = False,
        hostname: Annotated[
            str | None, typer.Option("--hostname", help="HOSTNAME field (default: this host)")
        ] = None,
        status: StatusOpt = "open",
        detector: DetectorOpt = None,
        include_suppressed: SuppressedOpt = False,
        db: DbOpt = None,
    ) -> None:
        """Send alerts to a syslog collector as RFC 5424 messages."""
        from dnsieve.alerts.export import FACILITIES, SyslogSender, parse_hostport

        _check_status(status)
        if facility not in FACILITIES:
            raise fail(f"unknown facility {facility!r}; choose one of {', '.join(FACILITIES)}", 2)
        try:
            host, port = parse_hostport(target)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            alerts = store.iter_alerts(
                status=status, detector=detector, include_suppressed=include_suppressed
            )
            try:
                with SyslogSender(host, port, "tcp" if tcp else "udp") as sender:
                    n = sender.send(
                        alerts,
                        hostname=hostname,
                        facility=FACILITIES[facility],
                        msg_format="text" if text else "json",
                    )
            except OSError as exc:
                raise fail(f"syslog {host}:{port}: {exc}") from None
        console.print(
            f"sent {n:,} syslog message(s) to {escape(host)}:{port} over {'TCP' if tcp else 'UDP'}"
        )
