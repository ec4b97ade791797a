"""``dnsieve allow``: add, list and remove allow-list entries (suppressions).

An entry takes effect at once on stored and future alerts (no re-ingest) and
stops at its expiry with no job to run; see :mod:`dnsieve.rules.match`
for the matching rules.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from dnsieve.commands.alerts import DbOpt, _consoles, current_user, fail, open_store_or_exit

__all__ = ["register"]


def _state(removed: datetime | None, expires: datetime | None, now: datetime) -> str:
    if removed is not None:
        return "[dim]removed[/dim]"
    if expires is not None and expires <= now:
        return "[dim]expired[/dim]"
    return "[green]active[/green]"


def register(app: typer.Typer) -> None:
    """Add ``dnsieve allow ...`` to the CLI."""
    allow_app = typer.Typer(
        help="Allow-lists: suppress alerts by domain, suffix, client or detector × entity.",
        no_args_is_help=True,
    )
    app.add_typer(allow_app, name="allow")

    @allow_app.command("add")
    def add_cmd(
        reason: Annotated[
            str, typer.Option("--reason", "-r", help="why (required, shown to every analyst)")
        ],
        domain: Annotated[
            str | None,
            typer.Option("--domain", help="exactly this domain; '*.x.com' = x.com and below"),
        ] = None,
        suffix: Annotated[
            str | None,
            typer.Option("--suffix", help="this domain and everything below it (label boundary)"),
        ] = None,
        client: Annotated[
            str | None, typer.Option("--client", help="client IP address or CIDR network")
        ] = None,
        entity: Annotated[
            str | None,
            typer.Option("--entity", help="one entity of the detector given with --detector"),
        ] = None,
        detector: Annotated[
            str | None,
            typer.Option(
                "--detector",
                "-d",
                help="with --entity: required; with the others: only this detector",
            ),
        ] = None,
        expires: Annotated[
            str | None,
            typer.Option("--expires", help="30m, 12h, 7d, 2w or an ISO time (default: never)"),
        ] = None,
        author: Annotated[str | None, typer.Option("--author", help="who (default: $USER)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        db: DbOpt = None,
    ) -> None:
        """Add an entry; it suppresses matching stored and future alerts at once."""
        from dnsieve.rules.match import AllowListError, parse_expiry

        given = {
            k: v
            for k, v in (
                ("domain", domain),
                ("suffix", suffix),
                ("client", client),
                ("detector_entity", entity),
            )
            if v is not None
        }
        if len(given) != 1:
            raise fail(
                "give exactly one of --domain, --suffix, --client or --detector D --entity E", 2
            )
        ((kind, value),) = given.items()
        now = datetime.now(UTC)
        try:
            expires_at = parse_expiry(expires, now)
        except AllowListError as exc:
            raise fail(str(exc), 2) from None
        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            entry = store.add_allow(
                kind, value, reason, author or current_user(), detector, expires_at, now
            )
            n = store.suppressed_count(entry.id)
        if as_json:
            typer.echo(
                json.dumps(entry.to_dict() | {"suppresses": n}, indent=2, ensure_ascii=False)
            )
            return
        scope = f" for detector {escape(entry.detector)}" if entry.detector else ""
        until = f", until {entry.expires_at:%Y-%m-%d %H:%M} UTC" if entry.expires_at else ""
        console.print(
            f"allow-list entry {entry.id}: {entry.kind} {escape(entry.value)}{scope}{until}; "
            f"it suppresses {n:,} stored alert(s)"
        )

    @allow_app.command("list")
    def list_cmd(
        show_all: Annotated[
            bool, typer.Option("--all", help="include expired and removed entries")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        db: DbOpt = None,
    ) -> None:
        """List allow-list entries (active ones unless --all)."""
        from rich.table import Table

        now = datetime.now(UTC)
        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            entries = store.list_allow(include_inactive=show_all, now=now)
            counts = {e.id: store.suppressed_count(e.id) for e in entries}
        if as_json:
            typer.echo(
                json.dumps(
                    [e.to_dict() | {"suppresses": counts[e.id]} for e in entries],
                    indent=2,
                    ensure_ascii=False,
                )
            )
            return
        t = Table(
            title=f"{len(entries)} allow-list entr{'y' if len(entries) == 1 else 'ies'}",
            title_justify="left",
        )
        for col in (
            "id",
            "kind",
            "value",
            "detector",
            "reason",
            "author",
            "created",
            "expires",
            "state",
            "alerts",
        ):
            t.add_column(
                col, overflow="fold", justify="right" if col in ("id", "alerts") else "left"
            )
        for e in entries:
            t.add_row(
                str(e.id),
                e.kind,
                escape(e.value),
                escape(e.detector or ""),
                escape(e.reason),
                escape(e.author),
                f"{e.created_at:%Y-%m-%d %H:%M}",
                f"{e.expires_at:%Y-%m-%d %H:%M}" if e.expires_at else "never",
                _state(e.removed_at, e.expires_at, now),
                f"{counts[e.id]:,}",
            )
        console.print(t)

    @allow_app.command("remove")
    def remove_cmd(
        entry_id: Annotated[
            int, typer.Argument(metavar="ID", help="entry id (see dnsieve allow list)")
        ],
        db: DbOpt = None,
    ) -> None:
        """Remove an entry; the alerts it suppressed come back at once."""
        console, _ = _consoles()
        with open_store_or_exit(db) as store:
            before = store.suppressed_count(entry_id)
            entry = store.remove_allow(entry_id)
            still = sum(store.count_by_status(include_suppressed=True).values()) - sum(
                store.count_by_status().values()
            )
        console.print(
            f"removed allow-list entry {entry.id} ({entry.kind} {escape(entry.value)}); "
            f"{before:,} alert(s) it suppressed were re-checked, {still:,} alert(s) remain suppressed in all"
        )
