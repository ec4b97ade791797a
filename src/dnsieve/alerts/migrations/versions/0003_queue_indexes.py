"""Indexes for the web queue at a million alerts.

One index per queue order, written with the very expressions that
:data:`dnsieve.alerts.store.ORDERS` sorts by (P(threat) with NULL as -1, the
severity rank), so that SQLite and PostgreSQL both read a page by walking an
index instead of sorting every matching alert; ``ix_alerts_suppressed_by``
becomes ``(suppressed_by, status, detector)``, for the counts by status and
detector (an index-only scan) as well as the look-ups by allow-list entry; and
a trigram index serves the queue's substring search (PostgreSQL: ``pg_trgm``
on ``lower(entity)``; SQLite: an FTS5 trigram table kept by triggers).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

log = logging.getLogger(__name__)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

THREAT_KEY = "coalesce(threat_probability, -1.0)"
SEVERITY_RANK = (
    "CASE severity WHEN 'critical' THEN 3 WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END"
)


def _t(expr: str) -> sa.TextClause:
    return sa.text(expr)


def upgrade() -> None:
    for name in ("ix_alerts_queue", "ix_alerts_window_start", "ix_alerts_suppressed_by"):
        op.drop_index(name, table_name="alerts")
    op.create_index(
        "ix_alerts_queue",
        "alerts",
        [_t(f"{THREAT_KEY} DESC"), _t("score DESC"), _t("window_start DESC"), "id"],
    )
    op.create_index(
        "ix_alerts_window_start", "alerts", [_t("window_start DESC"), _t("score DESC"), "id"]
    )
    op.create_index(
        "ix_alerts_severity",
        "alerts",
        [_t(f"({SEVERITY_RANK}) DESC"), _t(f"{THREAT_KEY} DESC"), _t("score DESC"), "id"],
    )
    op.create_index("ix_alerts_score", "alerts", [_t("score DESC"), "id"])
    op.create_index("ix_alerts_suppressed_by", "alerts", ["suppressed_by", "status", "detector"])
    if op.get_bind().dialect.name == "postgresql":
        _trigram_index()
    else:
        _sqlite_search()


#: SQLite's trigram full-text index of the alert entities (see ``AlertStore.entity_contains``).
SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE alerts_search USING fts5(entity, id UNINDEXED, tokenize='trigram')",
    "INSERT INTO alerts_search (entity, id) SELECT entity, id FROM alerts",
    "CREATE TRIGGER alerts_search_insert AFTER INSERT ON alerts BEGIN"
    " INSERT INTO alerts_search (entity, id) VALUES (new.entity, new.id); END",
    "CREATE TRIGGER alerts_search_delete AFTER DELETE ON alerts BEGIN"
    " DELETE FROM alerts_search WHERE id = old.id; END",
)


def _sqlite_search() -> None:
    """An FTS5 trigram index of the entities, kept by triggers (an entity never changes)."""
    for sql in SQLITE_SEARCH:
        op.execute(sql)


def _trigram_index() -> None:
    """A trigram index for the queue's substring search (``lower(entity) LIKE '%x%'``).

    ``pg_trgm`` is a trusted extension (PostgreSQL 13+), so the database owner
    may create it.  It goes in schema ``public`` (or stays where it already is),
    never in a per-tenant schema whose ``DROP ... CASCADE`` would take the
    other schemas' indexes with it.  Where it cannot be created, search works
    without the index (a sequential scan) and the migration goes on.
    """
    bind = op.get_bind()
    find = (
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_trgm'"
    )
    schema = bind.exec_driver_sql(find).scalar()
    if schema is None:
        try:
            with bind.begin_nested():  # a failure rolls back to the savepoint only
                bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        except sa.exc.DBAPIError:
            log.warning("pg_trgm unavailable: the queue search will scan the alerts table")
            return
        schema = bind.exec_driver_sql(find).scalar()
    op.execute(
        "CREATE INDEX ix_alerts_entity_trgm ON alerts"
        f' USING gin (lower(entity) "{schema}".gin_trgm_ops)'
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_alerts_entity_trgm")
    else:
        for trigger in ("alerts_search_insert", "alerts_search_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS alerts_search")
    for name in (
        "ix_alerts_suppressed_by",
        "ix_alerts_score",
        "ix_alerts_severity",
        "ix_alerts_window_start",
        "ix_alerts_queue",
    ):
        op.drop_index(name, table_name="alerts")
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_index(
        "ix_alerts_queue",
        "alerts",
        [
            "status",
            _t("threat_probability DESC NULLS LAST" if pg else "threat_probability DESC"),
            _t("score DESC NULLS LAST" if pg else "score DESC"),
        ],
    )
    op.create_index("ix_alerts_window_start", "alerts", [_t("window_start DESC")])
    op.create_index("ix_alerts_suppressed_by", "alerts", ["suppressed_by"])
