"""Threat definitions: Sigma rules, watchlists and anomaly rules with versions and audit.

``definitions`` holds each definition's current version and state (draft, enabled,
disabled); ``definition_versions`` every body it had; ``definition_events`` the audit trail.
See :mod:`dnsieve.alerts.definitions`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

UTCDateTime = sa.DateTime(timezone=True)  # the store reads these through its UTCDateTime type

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "definitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("techniques", sa.Text, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime),
    )
    op.create_table(
        "definition_versions",
        sa.Column("definition_id", sa.Integer, sa.ForeignKey("definitions.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "definition_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("definition_id", sa.Integer, sa.ForeignKey("definitions.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_definition_events_def", "definition_events", ["definition_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_definition_events_def", table_name="definition_events")
    op.drop_table("definition_events")
    op.drop_table("definition_versions")
    op.drop_table("definitions")
