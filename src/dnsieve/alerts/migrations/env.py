"""Alembic environment for the alert store.

It is only run in-process by :func:`dnsieve.alerts.store.upgrade`, which
passes an open connection (already inside a transaction) in
``config.attributes["connection"]``.  Offline mode (``--sql``) renders the DDL
for the URL in ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context


def run_offline() -> None:
    config = context.config
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the alert-store migrations through dnsieve.alerts.store.upgrade()")
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if hasattr(context, "config"):  # false when merely imported (doctest collection)
    if context.is_offline_mode():
        run_offline()
    else:
        run_online()
