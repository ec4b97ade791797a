"""Initial alert-store schema: alerts, verdicts (audit), allowlist, model_versions, runs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(nullable: bool = False, name: str = "") -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _desc(column: str) -> sa.TextClause:
    """Descending with NULLs last on both dialects (SQLite puts NULLs last in DESC already)."""
    pg = op.get_bind().dialect.name == "postgresql"
    return sa.text(f"{column} DESC NULLS LAST" if pg else f"{column} DESC")


def upgrade() -> None:
    op.create_table(
        "allowlist",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("detector", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        _ts(name="created_at"),
        _ts(True, "expires_at"),
        _ts(True, "removed_at"),
        sa.CheckConstraint(
            "kind IN ('domain', 'suffix', 'wildcard', 'client', 'detector_entity')",
            name="ck_allowlist_kind",
        ),
        sa.CheckConstraint("length(reason) > 0", name="ck_allowlist_reason"),
        sa.CheckConstraint("length(author) > 0", name="ck_allowlist_author"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("detector", sa.String(64), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity", sa.Text(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        _ts(name="window_start"),
        _ts(name="window_end"),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("threat_probability", sa.Float(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="new"),
        sa.Column("severity", sa.String(16), nullable=False, server_default="low"),
        sa.Column("evidence", _json(), nullable=False),
        sa.Column("features", _json(), nullable=True),
        _ts(name="first_seen"),
        _ts(name="last_seen"),
        sa.Column("times_seen", sa.Integer(), nullable=False, server_default="1"),
        sa.Column(
            "suppressed_by",
            sa.Integer(),
            sa.ForeignKey("allowlist.id", name="fk_alerts_suppressed_by"),
            nullable=True,
        ),
        sa.CheckConstraint(
            "status IN ('new', 'needs_review', 'threat', 'benign', 'not_relevant')",
            name="ck_alerts_status",
        ),
    )
    op.create_index(
        "ix_alerts_queue", "alerts", ["status", _desc("threat_probability"), _desc("score")]
    )
    op.create_index("ix_alerts_window_start", "alerts", [sa.text("window_start DESC")])
    op.create_index("ix_alerts_entity", "alerts", ["entity"])
    op.create_index("ix_alerts_detector", "alerts", ["detector", "window_start"])
    op.create_index("ix_alerts_domain", "alerts", ["domain"])
    op.create_index("ix_alerts_client", "alerts", ["client"])
    op.create_index("ix_alerts_suppressed_by", "alerts", ["suppressed_by"])

    op.create_table(
        "verdicts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "alert_id",
            sa.String(64),
            sa.ForeignKey("alerts.id", name="fk_verdicts_alert", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("actor", sa.String(200), nullable=False),
        _ts(name="at"),
        sa.Column("old_status", sa.String(16), nullable=False),
        sa.Column("new_status", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
    )
    op.create_index("ix_verdicts_alert", "verdicts", ["alert_id", "at"])
    op.create_index("ix_verdicts_at", "verdicts", ["at"])

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ts(name="created_at"),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=True),
        sa.Column("metrics", _json(), nullable=False),
        sa.Column(
            "parent_id",
            sa.Integer(),
            sa.ForeignKey("model_versions.id", name="fk_model_versions_parent"),
            nullable=True,
        ),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_model_versions_kind", "model_versions", ["kind", "active"])

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _ts(name="started"),
        _ts(True, "finished"),
        sa.Column("inputs", _json(), nullable=False),
        sa.Column("counts", _json(), nullable=False),
        sa.Column("rejects", _json(), nullable=False),
    )
    op.create_index("ix_runs_started", "runs", [sa.text("started DESC")])


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("model_versions")
    op.drop_table("verdicts")
    op.drop_table("alerts")
    op.drop_table("allowlist")
