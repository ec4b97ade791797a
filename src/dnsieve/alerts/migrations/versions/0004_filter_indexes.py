"""Indexes for the queue's domain and client filters at a million alerts.

* PostgreSQL: ``reverse(domain)``.  "This domain and every name below it" is
  ``domain = d OR domain LIKE '%.d'``; reversed, the second half is a prefix,
  which a B-tree with ``text_pattern_ops`` serves as a range scan whatever the
  database's collation.  The trigram index of 0003 served it before, slowly for
  domains whose trigrams are common (``.co``, ``com``): ~12 ms per query at 1M
  alerts against well under 1 ms now.  SQLite has no ``reverse()``; there the
  trigram search table keeps narrowing the ``LIKE``.
* Both: ``ix_alerts_client`` becomes ``(client, <threat order>, status,
  suppressed_by)``.  A client's page in the default order is then read off the
  index (PostgreSQL walked the queue index and skipped ~10k other alerts for a
  busy client; SQLite sorted all of the client's alerts), and its total is
  counted from the index alone.  Look-ups by client alone use its first column.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

THREAT_KEY = "coalesce(threat_probability, -1.0)"  # as in 0003 and store.ORDERS


def upgrade() -> None:
    op.drop_index("ix_alerts_client", table_name="alerts")
    op.create_index(
        "ix_alerts_client",
        "alerts",
        [
            "client",
            sa.text(f"{THREAT_KEY} DESC"),
            sa.text("score DESC"),
            sa.text("window_start DESC"),
            "id",
            "status",
            "suppressed_by",
        ],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_alerts_domain_rev ON alerts (reverse(domain) text_pattern_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_alerts_domain_rev")
    op.drop_index("ix_alerts_client", table_name="alerts")
    op.create_index("ix_alerts_client", "alerts", ["client"])
