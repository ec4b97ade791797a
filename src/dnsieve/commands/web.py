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
        from dnsieve.cli import err_console
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
        db: DbOpt = None,
    ) -> None:
        """Set a user's password (read from stdin or prompted)."""
        require_web()
        from dnsieve.web.users import UserError, UserStore

        with open_store_or_exit(db) as store:
            users = UserStore(store.engine)
            if users.get_user(name) is None:
                raise fail(f"no user {name!r}")
            try:
                users.set_password(name, read_password())
            except UserError as exc:
                raise fail(str(exc), 2) from None
            typer.echo(f"password of {name} changed")

    @users_app.command("token")
    def token(
        name: Annotated[str, typer.Argument(help="user name")],
        db: DbOpt = None,
    ) -> None:
        """Print a new API token for the user (use it as 'Authorization: Bearer TOKEN')."""
        require_web()
        from dnsieve.web.users import UserError, UserStore

        with open_store_or_exit(db) as store:
            try:
                tok = UserStore(store.engine).new_token(name)
            except UserError as exc:
                raise fail(str(exc)) from None
            typer.echo(tok)

    @users_app.command("list")
    def list_users(db: DbOpt = None) -> None:
        """Users and their roles."""
        require_web()
        from rich.markup import escape

        from dnsieve.cli import console
        from dnsieve.web.users import UserStore

        with open_store_or_exit(db) as store:
            for u in UserStore(store.engine).list_users():
                state = " (disabled)" if u.disabled else ""
                console.print(f"{escape(u.name)}\t{u.role}{state}")
