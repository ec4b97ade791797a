"""A generation counter that every write through the alert store advances.

``store_state`` holds one row, ``(1, generation)``.  Each write transaction of
:class:`~dnsieve.alerts.store.AlertStore` adds one to it as its last statement
(on PostgreSQL the row lock is then held only until the commit), so the
counter changes exactly when, and as soon as, the data does.  Other processes
(server workers, the CLI) compare it with the value their cached counts and
allow-list entries were computed at, every half second, instead of trusting
those caches for a fixed 5 s.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    state = op.create_table(
        "store_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.bulk_insert(state, [{"id": 1, "generation": 0}])


def downgrade() -> None:
    op.drop_table("store_state")
