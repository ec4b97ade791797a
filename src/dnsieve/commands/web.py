"""``dnsieve serve`` (the Alert Manager) and ``dnsieve users`` (accounts and API tokens).

Passwords are never command-line arguments: they are read from stdin when it
is not a terminal (one line), else prompted twice without echo.
"""

from __future__ import annotations

import getpass
import ipaddress
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dnsieve.commands.alerts import DbOpt, fail, open_store_or_exit

__all__ = ["read_password", "register", "require_web"]


def read_password(confirm: bool = True) -> str:
    """The new password: one line of stdin if piped, else prompted (twice) on the terminal."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != first:
        raise fail("the passwords differ", 2)
    return first


def require_web() -> None:
    """Exit with a friendly message when the web extra is not installed."""
    import importlib.util

    missing = [
        m
        for m in ("fastapi", "uvicorn", "jinja2", "multipart", "itsdangerous", "argon2", "bokeh")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise fail(f"the Alert Manager needs {', '.join(missing)}: pip install 'dnsieve[web]'", 2)


class LogLevel(StrEnum):
    """uvicorn's log levels."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``users`` group to ``app``."""
    users_app = typer.Typer(help="Alert Manager users, roles and API tokens.", no_args_is_help=True)
    app.add_typer(users_app, name="users")

    @app.command()
    def serve(
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
        db: DbOpt = None,
        lake: Annotated[
            Path | None,
            typer.Option(
                help="the lake whose raw events the alert pages show (default: [lake] path)",
                show_default=False,
            ),
        ] = None,
        https_only: Annotated[
            bool | None,
            typer.Option(
                "--https-only/--no-https-only",
                help="Secure session cookie + HSTS (default: on unless listening on loopback)",
                show_default=False,
            ),
        ] = None,
        workers: Annotated[
            int,
            typer.Option(
                min=1, max=64, help="server processes (about one per CPU core for many users)"
            ),
        ] = 1,
        log_level: Annotated[
            LogLevel,
            typer.Option(help="uvicorn's log level (info: one access-log line per request)"),
        ] = LogLevel.info,
    ) -> None:
        """Serve the Alert Manager (web pages and the REST API at /api, reference at /docs)."""
        require_web()
        import uvicorn

        from dnsieve.alerts.store import resolve_db_url
        from dnsieve.commands.console import err_console
        from dnsieve.web import WebSettings, create_app
        from dnsieve.web.app import SECRET_ENV
        from dnsieve.web.workers import SERVER_OPTIONS, run_workers

        secure = (not _loopback(host)) if https_only is None else https_only
        if lake is None:
            from rich.markup import escape

            from dnsieve.config import ConfigError, load_settings

            try:
                lake = load_settings().lake.path
            except ConfigError as exc:
                err_console.print(f"[yellow]raw events not shown:[/yellow] {escape(str(exc))}")
        settings = WebSettings(db_url=resolve_db_url(db), https_only=secure, freeze_gc=True)
        with open_store_or_exit(db) as store:
            from dnsieve.web.users import UserStore

            if not UserStore(store.engine).list_users():
                err_console.print(
                    "[yellow]no users yet:[/yellow] create one with "
                    "'dnsieve users add NAME --role admin'"
                )
        import os

        if not os.environ.get(SECRET_ENV):
            err_console.print(
                f"[dim]{SECRET_ENV} is unset: sessions use a random key and end on restart[/dim]"
            )
        if workers == 1:
            uvicorn.run(
                create_app(settings, lake=lake),
                host=host,
                port=port,
                log_level=log_level.value,
                **SERVER_OPTIONS,
            )
            return
        import secrets

        from dnsieve.web.app import WORKER_ENV, worker_environment

        # the workers are new processes: they read the settings and one shared session key
        # from the environment (a random key, when unset, is shared by them all)
        os.environ.setdefault(SECRET_ENV, secrets.token_urlsafe(48))
        os.environ[WORKER_ENV] = worker_environment(settings, lake)
        config = uvicorn.Config(
            "dnsieve.web.app:create_worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level.value,
            **SERVER_OPTIONS,
        )

        run_workers(config)

    @users_app.command("add")
    def add(
        name: Annotated[str, typer.Argument(help="user name")],
        role: Annotated[str, typer.Option("--role", "-r", help="viewer, analyst or admin")],
        db: DbOpt = None,
    ) -> None:
        """Create a user; the password is read from stdin or prompted (never an argument)."""
        require_web()
        from dnsieve.web.users import UserError, UserStore

        with open_store_or_exit(db) as store:
            try:
                users = UserStore(store.engine)
                users.check_name(name)
                users.check_role(role)
                if users.get_user(name) is not None:
                    raise UserError(f"user {name!r} already exists")
                user = users.add_user(name, role, read_password())
            except UserError as exc:
                raise fail(str(exc), 2) from None
            typer.echo(f"user {user.name} created with role {user.role}")

    @users_app.command("passwd")
    def passwd(
        name: Annotated[str, typer.Argument(help="user name")],
        keep_tokens: Annotated[
            bool,
            typer.Option(
                "--keep-tokens",
                help="do not revoke the user's API tokens (only if the old password was not"
                " leaked: whoever knew it may have made a token)",
            ),
        ] = False,
        db: DbOpt = None,
    ) -> None:
        """Set a user's password (read from stdin or prompted); ends the user's sessions
        and revokes their API tokens."""
        require_web()
        from dnsieve.web.users import UserError, UserStore

        with open_store_or_exit(db) as store:
            users = UserStore(store.engine)
            if users.get_user(name) is None:
                raise fail(f"no user {name!r}")
            try:
                ended, revoked = users.set_password(
                    name, read_password(), actor="cli", revoke_tokens=not keep_tokens
                )
            except UserError as exc:
                raise fail(str(exc), 2) from None
            typer.echo(
                f"password of {name} changed; {ended} sessions ended, {revoked} tokens revoked"
            )

    @users_app.command("role")
    def role(
        name: Annotated[str, typer.Argument(help="user name")],
        new_role: Annotated[str, typer.Argument(metavar="ROLE", help="viewer, analyst or admin")],
        db: DbOpt = None,
    ) -> None:
        """Change a user's role; their sessions end (they log in again under the new role)."""
        require_web()
        from dnsieve.web.users import UserError, UserStore

        with open_store_or_exit(db) as store:
            try:
                ended = UserStore(store.engine).set_role(name, new_role, actor="cli")
            except UserError as exc:
                raise fail(str(exc), 2) from None
            typer.echo(f"{name} is now {new_role.strip().lower()}; {ended} sessions ended")

    def _set_disabled(name: str, disabled: bool, db: str | None) -> None:
        require_web()
        from dnsieve.web.users import UserError, UserStore

        with open_store_or_exit(db) as store:
            try:
                ended = UserStore(store.engine).set_disabled(name, disabled, actor="cli")
            except UserError as exc:
                raise fail(str(exc)) from None
            state = f"disabled; {ended} sessions ended" if disabled else "enabled"
            typer.echo(f"{name} {state}")

    @users_app.command("disable")
    def disable(name: Annotated[str, typer.Argument(help="user name")], db: DbOpt = None) -> None:
        """Disable a user: no login, sessions ended, tokens refused (kept for 'enable')."""
        _set_disabled(name, True, db)

    @users_app.command("enable")
    def enable(name: Annotated[str, typer.Argument(help="user name")], db: DbOpt = None) -> None:
        """Enable a disabled user again (their unrevoked tokens work again)."""
        _set_disabled(name, False, db)

    @users_app.command("token")
    def token(
        name: Annotated[
            str | None, typer.Argument(help="user name (to make a token)", show_default=False)
        ] = None,
        revoke: Annotated[
            int | None,
            typer.Option(
                "--revoke",
                metavar="ID",
                min=1,
                help="revoke the token with this id (see 'dnsieve users tokens')",
                show_default=False,
            ),
        ] = None,
        db: DbOpt = None,
    ) -> None:
        """Print a new API token for the user (use it as 'Authorization: Bearer TOKEN'), or
        revoke one with --revoke ID."""
        require_web()
        from dnsieve.web.users import UserError, UserStore

        if (name is None) == (revoke is None):
            raise fail("give a user name (a new token) or --revoke ID, not both", 2)
        with open_store_or_exit(db) as store:
            users = UserStore(store.engine)
            try:
                if revoke is not None:
                    info = users.get_token(revoke)
                    if info is None or info.revoked_at is not None:
                        raise UserError(f"no active token {revoke}")
                    if name is not None and info.user != name:
                        raise UserError(f"token {revoke} is not {name}'s")
                    users.revoke_token(revoke, actor="cli")
                    typer.echo(f"token {revoke} of {info.user} ({info.prefix}…) revoked")
                    return
                assert name is not None
                tok = users.new_token(name, actor="cli")
            except UserError as exc:
                raise fail(str(exc)) from None
            typer.echo(tok)

    @users_app.command("tokens")
    def tokens(
        name: Annotated[str | None, typer.Argument(help="user name (default: everyone)")] = None,
        all_: Annotated[bool, typer.Option("--all", help="revoked tokens too")] = False,
        db: DbOpt = None,
    ) -> None:
        """API tokens: id, user, first characters, created, last used, revoked (never the
        token itself, which is not stored)."""
        require_web()
        from rich.markup import escape
        from rich.table import Table

        from dnsieve.commands.console import console
        from dnsieve.web.users import UserStore

        with open_store_or_exit(db) as store:
            users = UserStore(store.engine)
            if name is not None and users.get_user(name) is None:
                raise fail(f"no user {name!r}")
            rows = users.list_tokens(name, active=not all_)
        table = Table("id", "user", "token", "created", "last used", "revoked", box=None)

        def when(t: object) -> str:
            return "-" if t is None else f"{t:%Y-%m-%d %H:%M:%S}Z"

        for t in rows:
            table.add_row(
                str(t.id),
                escape(t.user),
                escape(t.prefix) + "…",
                when(t.created_at),
                when(t.last_used),
                when(t.revoked_at),
            )
        console.print(table if rows else "no tokens")

    @users_app.command("audit")
    def audit(
        name: Annotated[str | None, typer.Argument(help="only this account")] = None,
        limit: Annotated[int, typer.Option(min=1, max=100_000, help="lines")] = 50,
        db: DbOpt = None,
    ) -> None:
        """The authentication audit log, newest first: logins, failures, throttled attempts,
        logouts, password/role changes, tokens made and revoked."""
        require_web()
        from rich.markup import escape

        from dnsieve.commands.console import console
        from dnsieve.web.users import UserStore

        with open_store_or_exit(db) as store:
            events = UserStore(store.engine).auth_events(limit, account=name)
        for e in events:
            console.print(
                f"{e.at:%Y-%m-%d %H:%M:%S}Z\t{e.event}\t{escape(e.account)}\t"
                f"{escape(e.address or '-')}\t{escape(e.actor or '-')}\t{escape(e.detail or '')}",
                soft_wrap=True,
            )

    @users_app.command("list")
    def list_users(db: DbOpt = None) -> None:
        """Users and their roles."""
        require_web()
        from rich.markup import escape

        from dnsieve.commands.console import console
        from dnsieve.web.users import UserStore

        with open_store_or_exit(db) as store:
            for u in UserStore(store.engine).list_users():
                state = " (disabled)" if u.disabled else ""
                console.print(f"{escape(u.name)}\t{u.role}{state}")
