"""CLI command groups contributed by subsystems.

Each module here defines ``register(app: typer.Typer) -> None`` and keeps its
commands thin: parse options, load settings, call one library function, print.
:mod:`dnsieve.cli` calls every ``register`` listed in :data:`MODULES`.  Shared
console helpers come from :mod:`dnsieve.commands.console`; nothing here imports
:mod:`dnsieve.cli`.
"""

from __future__ import annotations

MODULES: tuple[str, ...] = (
    "dnsieve.commands.simulate",
    "dnsieve.commands.detect",
    "dnsieve.commands.domains",
    "dnsieve.commands.run",
    "dnsieve.commands.demo",
    "dnsieve.commands.stream",
    "dnsieve.commands.alerts",
    "dnsieve.commands.allow",
    "dnsieve.commands.train",
    "dnsieve.commands.model",
    "dnsieve.commands.web",
    "dnsieve.commands.lake",
    "dnsieve.commands.rules",
    "dnsieve.commands.flows",
)
