"""Server-side web sessions, per (account, address) login throttling, the auth audit log.

* ``web_sessions``: one row per login.  The session cookie carries only a random
  session id (its SHA-256 is stored), so logging out, a password change, a role
  change or disabling the account ends the session on the server: a saved cookie
  replayed afterwards is refused.
* ``web_login_throttle``: failed logins per (account, address), with the time of
  the last one; the login's exponential back-off is computed from it, so every
  server process (``dnsieve serve --workers N``) throttles alike.
* ``web_auth_events``: logins, failures, throttled attempts, logouts and account
  changes (who, from where, when), for the audit trail.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("web_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("sid_hash", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.UniqueConstraint("sid_hash", name="uq_web_sessions_hash"),
    )
    op.create_index("ix_web_sessions_user", "web_sessions", ["user_id"])
    op.create_table(
        "web_login_throttle",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "address", name="pk_web_login_throttle"),
    )
    op.create_index("ix_web_login_throttle_address", "web_login_throttle", ["address"])
    op.create_table(
        "web_auth_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("detail", sa.String(200), nullable=True),
    )
    op.create_index("ix_web_auth_events_at", "web_auth_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_web_auth_events_at", table_name="web_auth_events")
    op.drop_table("web_auth_events")
    op.drop_index("ix_web_login_throttle_address", table_name="web_login_throttle")
    op.drop_table("web_login_throttle")
    op.drop_index("ix_web_sessions_user", table_name="web_sessions")
    op.drop_table("web_sessions")
