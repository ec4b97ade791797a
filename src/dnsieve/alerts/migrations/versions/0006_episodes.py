"""Episodes: one alert per detector × entity campaign instead of one per window.

``alerts`` gains the episode's span (``episode_start``, ``episode_end``), its number of
distinct windows (``n_windows``) and a capped selection of them as evidence (``windows``,
JSON).  The new table ``alert_windows`` keeps every window by its own id with the alert
it belongs to, so a window seen again counts once and any window's id finds its alert.

Existing alerts become one-window episodes: their id is their window's id, which is the
id of an episode's first window, so links, exports and verdicts stay valid; the next
upsert merges new windows into them.  Nothing is deleted.  The entity index gains the
detector and the episode start, for the upsert's look-up of a pair's nearby episodes.

The episode columns stay nullable in the database (SQLite cannot add a NOT NULL column
to a filled table without rebuilding it, which would drop the search triggers); the
store always writes them and reads a missing span as the window's.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column("alerts", _ts("episode_start", nullable=True))
    op.add_column("alerts", _ts("episode_end", nullable=True))
    op.add_column(
        "alerts", sa.Column("n_windows", sa.Integer(), nullable=False, server_default="1")
    )
    op.add_column("alerts", sa.Column("windows", _json(), nullable=True))
    op.execute("UPDATE alerts SET episode_start = window_start, episode_end = window_end")
    op.create_table(
        "alert_windows",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("alert_id", sa.String(64), nullable=False),
        _ts("window_start"),
        _ts("window_end"),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("times_seen", sa.Integer(), nullable=False, server_default="1"),
    )
    op.execute(
        "INSERT INTO alert_windows"
        " (id, alert_id, window_start, window_end, score, p_value, times_seen)"
        " SELECT id, id, window_start, window_end, score, p_value, times_seen FROM alerts"
    )
    op.create_index("ix_alert_windows_alert", "alert_windows", ["alert_id"])
    op.drop_index("ix_alerts_entity", table_name="alerts")
    op.create_index("ix_alerts_entity", "alerts", ["entity", "detector", "episode_start"])


def downgrade() -> None:
    op.drop_index("ix_alerts_entity", table_name="alerts")
    op.create_index("ix_alerts_entity", "alerts", ["entity"])
    op.drop_index("ix_alert_windows_alert", table_name="alert_windows")
    op.drop_table("alert_windows")
    for column in ("windows", "n_windows", "episode_end", "episode_start"):
        op.drop_column("alerts", column)
