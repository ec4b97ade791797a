"""The alert store on SQLAlchemy Core: SQLite (default, WAL) or PostgreSQL by URL.

Open it with :meth:`AlertStore.open`; there is no module-level engine, so
every test and every command can use its own database.  The schema is created
and upgraded by Alembic migrations (``dnsieve/alerts/migrations``), run in code
on open: no ``alembic.ini`` needed.

Where the database is (:func:`resolve_db_url`): ``--db URL`` on the command
line, else ``$DNSIEVE_DB``, else ``sqlite:///<user data dir>/alerts.db``.  A bare
path is taken as a SQLite file.

SQLite connections use WAL journaling with ``synchronous=FULL``: a committed
batch survives a kill -9 or a power loss, and readers (the web UI) never block
the writer.  Write transactions start with ``BEGIN IMMEDIATE``, so two writers
queue on the busy timeout instead of failing half-way.

Allow-lists: each alert records in ``suppressed_by`` the active matching entry
that expires last (see :mod:`dnsieve.rules.match`).  It is computed when
the alert is written and recomputed for the affected alerts when an entry is
added or removed.  Queries treat an alert as suppressed only while that entry
is active (a primary-key join), so an entry's expiry takes effect at once,
with no background job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import polars as pl
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine, RowMapping

from dnsieve.alerts.base import (
    ID_HEX,
    P_SEVERITY,
    REQUIRED,
    STATUSES,
    TP_SEVERITY,
    VERDICTS,
    Alert,
    AlertNotFound,
    AlertSummary,
    AllowEntry,
    AmbiguousId,
    AuditEntry,
    InvalidTransition,
    ModelVersion,
    RunRecord,
    UpsertReport,
    VerdictResult,
    check_transition,
    normalize_status,
    prepare_anomalies,
    status_filter,
    validate_allow,
)
from dnsieve.alerts.merge import (
    DEFAULT_EPISODE_GAP,
    MERGE_ACTOR,
    EpisodePlan,
    Window,
    plan_upsert,
    window_of,
)
from dnsieve.rules.match import (
    AllowListConflict,
    AllowListError,
    AllowMatcher,
    Rule,
    alert_subjects,
    rule_from_mapping,
)

__all__ = [
    "DB_ENV",
    "AlertStore",
    "AlertSummary",
    "default_db_url",
    "metadata",
    "resolve_db_url",
    "upgrade",
]

DB_ENV = "DNSIEVE_DB"
DEFAULT_DB_NAME = "alerts.db"
_PG_MIGRATION_LOCK = 0x646E7376  # "dnsv": serialises concurrent migrations on PostgreSQL
_PG_UPSERT_LOCK = 0x646E7365  # "dnse": serialises episode upserts on PostgreSQL

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- URLs


def default_db_url() -> str:
    """``sqlite:///<user data dir>/alerts.db`` (``~/.local/share/dnsieve`` on Linux)."""
    from dnsieve.config import default_data_dir

    return f"sqlite:///{default_data_dir() / DEFAULT_DB_NAME}"


def resolve_db_url(
    db: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The store URL: ``db`` (``--db``), else ``$DNSIEVE_DB``, else :func:`default_db_url`.

    A value without ``://`` is a SQLite file path.

    >>> resolve_db_url("postgresql+psycopg://u@h/db", env={})
    'postgresql+psycopg://u@h/db'
    >>> resolve_db_url(None, env={"DNSIEVE_DB": "/tmp/a.db"})
    'sqlite:////tmp/a.db'
    """
    env = os.environ if env is None else env
    value = str(db) if db is not None and str(db) else env.get(DB_ENV) or ""
    if not value:
        return default_db_url()
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().absolute()}"


# --------------------------------------------------------------------------- schema


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite stores naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Any:
        """On SQLite, the stored text straight to an aware datetime: one C parse instead of
        SQLAlchemy's parse plus this decorator's hook (a queue page reads 200 of them)."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        parse, decorated = datetime.fromisoformat, self.process_result_value

        def process(value: str | None) -> datetime | None:
            if value is None or not isinstance(value, str):
                return decorated(value, dialect)
            n = len(value)
            if (n == 26 and value[19] == ".") or n == 19:  # naive, as SQLAlchemy stores it:
                return parse(value + "+00:00")  # read as UTC in the same parse
            ts = parse(value)
            return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)

        return process


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


metadata = sa.MetaData()

allowlist = sa.Table(
    "allowlist",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("detector", sa.String(64)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime),
    sa.Column("removed_at", UTCDateTime),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("detector", sa.String(64), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("domain", sa.Text),
    sa.Column("client", sa.String(64)),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("p_value", sa.Float),
    sa.Column("threat_probability", sa.Float),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("evidence", _json(), nullable=False),
    sa.Column("features", _json()),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("times_seen", sa.Integer, nullable=False),
    sa.Column("suppressed_by", sa.Integer, sa.ForeignKey("allowlist.id")),
    # the episode (migration 0006): its span, its number of distinct windows, and a capped
    # selection of them as evidence (dnsieve.alerts.merge.summarise_windows)
    sa.Column("episode_start", UTCDateTime),
    sa.Column("episode_end", UTCDateTime),
    sa.Column("n_windows", sa.Integer, nullable=False),
    sa.Column("windows", _json()),
)

#: Every window ever stored, by its own id (:func:`~dnsieve.alerts.base.alert_id` of the
#: window), with the alert (episode) it belongs to: a window seen again counts once, and
#: any window's id (or a merged episode's old id) still finds its alert (migration 0006).
alert_windows = sa.Table(
    "alert_windows",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("alert_id", sa.String(64), nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("p_value", sa.Float),
    sa.Column("times_seen", sa.Integer, nullable=False),
)

verdicts = sa.Table(
    "verdicts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(64), sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("old_status", sa.String(16), nullable=False),
    sa.Column("new_status", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("model_version", sa.Integer),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("params", _json(), nullable=False),
    sa.Column("blob", sa.LargeBinary),
    sa.Column("metrics", _json(), nullable=False),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    sa.Column("active", sa.Boolean, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started", UTCDateTime, nullable=False),
    sa.Column("finished", UTCDateTime),
    sa.Column("inputs", _json(), nullable=False),
    sa.Column("counts", _json(), nullable=False),
    sa.Column("rejects", _json(), nullable=False),
)

#: One row ``(1, generation)``: every write transaction through the store advances it
#: (migration 0005), so other processes can tell when their cached counts are out of date.
store_state = sa.Table(
    "store_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"),
)
_BUMP = (
    sa.update(store_state)
    .where(store_state.c.id == 1)
    .values(generation=store_state.c.generation + 1)
)
_GENERATION = sa.select(store_state.c.generation).where(store_state.c.id == 1)


# --------------------------------------------------------------------------- engine


def _make_engine(url: str) -> Engine:
    u = sa.make_url(url)
    if u.get_backend_name() == "sqlite":
        memory = u.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {}
        if memory:
            kwargs = {"poolclass": sa.pool.StaticPool, "connect_args": {"check_same_thread": False}}
        else:
            Path(u.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs = {"connect_args": {"timeout": 60}}
        engine = sa.create_engine(u, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return sa.create_engine(u, pool_pre_ping=True)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN (pysqlite's own implicit
    # transactions do not cover DDL and cannot be IMMEDIATE).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: the default 2 MiB thrashes at 1M alerts
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("dnsieve_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    location = resources.files("dnsieve.alerts") / "migrations"
    cfg.set_main_option("script_location", str(location))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` in one transaction."""
    from alembic import command

    with engine.connect() as conn:
        conn.execution_options(dnsieve_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            command.upgrade(_alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# --------------------------------------------------------------------------- helpers


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _severity_sql(tp: Any, p: Any, inline: bool = False) -> sa.ColumnElement[str]:
    """Severity in SQL, the same rule as :func:`dnsieve.alerts.base.severity_of`.

    ``inline`` renders the cut-offs and names as SQL literals (our own
    constants) so that the bulk statement's only parameters are column values.
    """

    def lit(v: float | str) -> Any:
        if not inline:
            return v
        return sa.literal_column(repr(float(v)) if isinstance(v, float) else f"'{v}'")

    whens: list[tuple[Any, Any]] = [
        (sa.and_(tp.is_not(None), tp >= lit(cut)), lit(name)) for cut, name in TP_SEVERITY
    ]
    whens.append((tp.is_not(None), lit("low")))
    whens += [(sa.and_(p.is_not(None), p <= lit(cut)), lit(name)) for cut, name in P_SEVERITY]
    return sa.case(*whens, else_=lit("low"))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_HEX = re.compile(r"[0-9a-f]{1,64}")
_A = alerts.c

#: Sort keys of the queue orders, written exactly as the indexes of migration 0003 are, so
#: that both databases walk an index instead of sorting (P(threat) NULL sorts last as -1).
THREAT_KEY: sa.ColumnElement[float] = sa.func.coalesce(
    _A.threat_probability, sa.literal_column("-1.0")
)
SEVERITY_RANK: sa.ColumnElement[int] = sa.literal_column(
    "CASE severity WHEN 'critical' THEN 3 WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END"
)
#: ``(key, descending)`` per queue order; every key is non-null and ``id`` breaks ties.
ORDERS: dict[str, list[tuple[sa.ColumnElement[Any], bool]]] = {
    "threat": [(THREAT_KEY, True), (_A.score, True), (_A.window_start, True), (_A.id, False)],
    "newest": [(_A.window_start, True), (_A.score, True), (_A.id, False)],
    "severity": [(SEVERITY_RANK, True), (THREAT_KEY, True), (_A.score, True), (_A.id, False)],
    "score": [(_A.score, True), (_A.id, False)],
}


def _active_entries(now: datetime) -> sa.Select[Any]:
    return sa.select(allowlist.c.id).where(
        allowlist.c.removed_at.is_(None),
        sa.or_(allowlist.c.expires_at.is_(None), allowlist.c.expires_at > now),
    )


def _suppressed_expr(now: datetime) -> sa.ColumnElement[bool]:
    """The alert's recorded entry is active now (a small uncorrelated subquery, no join)."""
    return sa.and_(_A.suppressed_by.is_not(None), _A.suppressed_by.in_(_active_entries(now)))


def _not_suppressed(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(_A.suppressed_by.is_(None), _A.suppressed_by.not_in(_active_entries(now)))


def _order_by(order: str) -> list[sa.ColumnElement[Any]]:
    return [k.desc() if desc else k.asc() for k, desc in ORDERS[order]]


def _after(order: str, values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """Rows strictly after ``values`` (the sort keys of the last row seen) in ``order``.

    Written as ``k1 <= v1 AND (k1 < v1 OR (k2 ... ))`` (for descending keys) so
    that the leading comparison bounds the index range.
    """
    pairs = list(zip(ORDERS[order], values, strict=True))
    (k, desc), v = pairs[-1]
    cond: sa.ColumnElement[bool] = k < v if desc else k > v
    for (k, desc), v in reversed(pairs[:-1]):
        cond = sa.and_(k <= v if desc else k >= v, sa.or_(k < v if desc else k > v, cond))
    return cond


def _alert(row: RowMapping) -> Alert:
    return Alert(
        id=row["id"],
        detector=row["detector"],
        entity_type=row["entity_type"],
        entity=row["entity"],
        domain=row["domain"],
        client=row["client"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        score=float(row["score"]),
        p_value=row["p_value"],
        threat_probability=row["threat_probability"],
        status=row["status"],
        severity=row["severity"],
        evidence=dict(row["evidence"] or {}),
        features=dict(row["features"]) if row["features"] is not None else None,
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        times_seen=int(row["times_seen"]),
        suppressed_by=row["suppressed_by"],
        episode_start=row.get("episode_start"),
        episode_end=row.get("episode_end"),
        n_windows=int(row.get("n_windows") or 1),
        windows=list(row["windows"]) if row.get("windows") is not None else None,
        suppressed=bool(row.get("suppressed", False)),
    )


#: The columns of :class:`AlertSummary`, in its field order (``suppressed`` is computed).
_SUMMARY = [alerts.c[f] for f in AlertSummary.__dataclass_fields__ if f != "suppressed"]


def _allow(row: RowMapping) -> AllowEntry:
    return AllowEntry(
        id=int(row["id"]),
        kind=row["kind"],
        value=row["value"],
        detector=row["detector"],
        reason=row["reason"],
        author=row["author"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        removed_at=row["removed_at"],
    )


def _audit(row: RowMapping) -> AuditEntry:
    return AuditEntry(
        id=int(row["id"]),
        alert_id=row["alert_id"],
        actor=row["actor"],
        at=row["at"],
        old_status=row["old_status"],
        new_status=row["new_status"],
        comment=row["comment"],
        model_version=row["model_version"],
    )


def _model(row: RowMapping) -> ModelVersion:
    return ModelVersion(
        id=int(row["id"]),
        created_at=row["created_at"],
        kind=row["kind"],
        params=dict(row["params"] or {}),
        metrics=dict(row["metrics"] or {}),
        parent_id=row["parent_id"],
        active=bool(row["active"]),
        blob=bytes(row["blob"]) if row["blob"] is not None else None,
    )


def _run(row: RowMapping) -> RunRecord:
    return RunRecord(
        id=int(row["id"]),
        started=row["started"],
        finished=row["finished"],
        inputs=dict(row["inputs"] or {}),
        counts=dict(row["counts"] or {}),
        rejects=dict(row["rejects"] or {}),
    )


# --------------------------------------------------------------------------- bulk upsert

_COLUMNS: list[str] = [c.name for c in alerts.columns]
_STAGE = "dnsieve_alerts_stage"
_WSTAGE = "dnsieve_windows_stage"
#: The stored episodes of ``[detector, entity, lo, hi]`` pairs (a JSON array) that
#: overlap ``[lo, hi]``: one search of ix_alerts_entity per pair (SQLite).
NEAR_EPISODES_SQLITE = (
    "SELECT a.id FROM json_each(:k) AS k JOIN alerts AS a"
    " ON a.entity = json_extract(k.value, '$[1]')"
    " AND a.detector = json_extract(k.value, '$[0]')"
    " AND a.episode_start <= json_extract(k.value, '$[3]')"
    " AND a.episode_end >= json_extract(k.value, '$[2]')"
)
_BIG_EXPONENT = re.compile(r"[eE][+-]?\d{3}")


def _ts_text(ts: datetime, dialect: str) -> str:
    """A UTC time as the bulk path writes it (the same text SQLAlchemy writes on SQLite)."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    text = ts.isoformat(" ", "microseconds")[:26]
    return text if dialect == "sqlite" else text + "+00"


def _no_constants(name: str) -> Any:
    raise ValueError(name)


_STRICT_JSON = json.JSONDecoder(parse_constant=_no_constants)


def _clean_json(text: str) -> bool:
    """True when ``text`` is a JSON object that :func:`prepare_anomalies` would store unchanged
    (no NaN/Infinity, no overflowing number, no NUL escape)."""
    if "\\u0000" in text or _BIG_EXPONENT.search(text):
        return False
    try:
        return isinstance(_STRICT_JSON.decode(text), dict)
    except ValueError:
        return False


_NUMERIC = (pl.Float64, pl.Float32, pl.Int64, pl.Int32, pl.Int16, pl.Int8, pl.UInt32, pl.UInt16)


def _key_frame(frame: pl.DataFrame) -> pl.DataFrame | None:
    """Validate and key the whole frame column-wise, for :func:`_batch_rows`.

    Returns None when a column's type rules the fast path out (every batch
    then goes through :func:`prepare_anomalies`); else a frame with, per
    input row, ``_clean`` (the row needs no repair or reject), the alert
    ``id`` and the normalised columns.
    """
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"anomaly frame lacks column(s) {', '.join(missing)}")
    sch = frame.schema
    if frame.height == 0 or any(sch[c] != pl.String for c in ("detector", "entity_type", "entity")):
        return None
    if not all(isinstance(sch[c], pl.Datetime) for c in ("window_start", "window_end")):
        return None
    for c in ("score", "p_value", "global_p", "threat_probability"):
        if c in sch and not (sch[c] in _NUMERIC or sch[c] == pl.Null) and c != "score":
            return None
    if sch["score"] not in _NUMERIC:
        return None
    for c in ("evidence", "features"):
        if c in sch and sch[c] not in (pl.String, pl.Null):
            return None

    def utc(c: str) -> pl.Expr:
        tz = sch[c].time_zone  # type: ignore[attr-defined]
        e = pl.col(c)
        e = e.dt.replace_time_zone("UTC") if tz is None else e.dt.convert_time_zone("UTC")
        return e.dt.cast_time_unit("us")

    def finite(c: str) -> pl.Expr:
        if c not in sch:
            return pl.lit(None, dtype=pl.Float64)
        x = pl.col(c).cast(pl.Float64)
        return pl.when(x.is_finite()).then(x).otherwise(None)

    def text(c: str) -> pl.Expr:
        return pl.col(c).cast(pl.String) if c in sch else pl.lit(None, dtype=pl.String)

    keys = ("detector", "entity_type", "entity")
    f = frame.select(
        *keys,
        window_start=utc("window_start"),
        window_end=utc("window_end"),
        score=finite("score"),
        p_value=pl.coalesce(finite("global_p"), finite("p_value")),
        threat_probability=finite("threat_probability"),
        evidence=text("evidence"),
        features=text("features"),
    )
    ok = pl.all_horizontal(
        *[pl.col(c).is_not_null() & ~pl.col(c).str.contains("\x00", literal=True) for c in keys],
        pl.col("detector") != "",
        pl.col("entity_type") != "",
        pl.col("window_start").is_not_null(),
        pl.col("window_end") >= pl.col("window_start"),
        pl.col("score").is_not_null(),
        pl.col("threat_probability").is_null() | pl.col("threat_probability").is_between(0, 1),
    ).fill_null(False)
    f = f.with_columns(_clean=ok)
    for c in ("evidence", "features"):
        values = f[c].to_list()
        good = [v is None or _clean_json(v) for v in values]
        f = f.with_columns(pl.col("_clean") & pl.Series(good, dtype=pl.Boolean))
    us = [pl.col(c).dt.epoch("us").cast(pl.String) for c in ("window_start", "window_end")]
    key = pl.concat_str([pl.col("detector"), pl.col("entity"), *us], separator="\x1f")
    texts = f.select(pl.when(pl.col("_clean")).then(key).alias("k"))["k"].to_list()
    ids = [  # the same key as dnsieve.alerts.base.alert_id
        hashlib.sha256(k.encode("utf-8")).hexdigest()[:ID_HEX] if k is not None else None
        for k in texts
    ]
    f = f.with_columns(id=pl.Series(ids, dtype=pl.String))
    pairs = f.filter("_clean").select("entity_type", "entity").unique()
    subjects = [alert_subjects(t, e) for t, e in pairs.iter_rows()]
    pairs = pairs.with_columns(
        domain=pl.Series([d for d, _ in subjects], dtype=pl.String),
        client=pl.Series([c for _, c in subjects], dtype=pl.String),
    )
    return f.join(pairs, on=["entity_type", "entity"], how="left", maintain_order="left")


def _batch_windows(
    frame: pl.DataFrame,
    keyed: pl.DataFrame | None,
    off: int,
    size: int,
    matcher: AllowMatcher,
    report: UpsertReport,
) -> list[Window]:
    """One batch as windows, unique by window id.

    A batch with any row that is not clean is handed to
    :func:`prepare_anomalies` whole, which counts rejects and repairs.
    """
    b = keyed.slice(off, size) if keyed is not None else None
    if b is None or not b["_clean"].all():
        return [window_of(p) for p in prepare_anomalies(frame.slice(off, size), matcher, report)]
    report.received += b.height
    b = b.with_columns(times_seen=pl.lit(1, dtype=pl.Int64))
    if b["id"].n_unique() < b.height:  # merge repeats: max score with its evidence, min p ...
        first = ("detector", "entity_type", "entity", "domain", "client")
        b = b.group_by("id", maintain_order=True).agg(
            *[pl.col(c).first() for c in (*first, "window_start", "window_end")],
            pl.col("evidence").get(pl.col("score").arg_max()),
            pl.col("score").max(),
            pl.col("p_value").min(),
            pl.col("threat_probability").drop_nulls().last(),
            pl.col("features").drop_nulls().last(),
            times_seen=pl.len().cast(pl.Int64),
        )
    if len(matcher):
        triples = b.select("detector", "entity_type", "entity").unique()
        hits = [matcher.match(d, t, e) for d, t, e in triples.iter_rows()]
        triples = triples.with_columns(
            suppressed_by=pl.Series([r.id if r else None for r in hits], dtype=pl.Int64)
        )
        b = b.join(
            triples, on=["detector", "entity_type", "entity"], how="left", maintain_order="left"
        )
    else:
        b = b.with_columns(suppressed_by=pl.lit(None, dtype=pl.Int64))
    cols = b.select(
        "id",
        "detector",
        "entity_type",
        "entity",
        "domain",
        "client",
        "window_start",
        "window_end",
        "score",
        "p_value",
        "threat_probability",
        pl.col("evidence").fill_null("{}"),
        "features",
        "times_seen",
        "suppressed_by",
    )
    return [Window(*r) for r in cols.iter_rows()]


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


_JSON_COLUMNS = frozenset({"evidence", "features", "windows"})
#: Columns an upsert never changes on a stored alert: its key and subjects, and its status (a merge sets that on its own, :meth:`AlertStore._apply`), so
#: that SQLite leaves the indexes on them alone.
_KEPT = frozenset({"id", "detector", "entity_type", "entity", "domain", "client", "status"})
_TS_COLUMNS = frozenset(
    {"window_start", "window_end", "first_seen", "last_seen", "episode_start", "episode_end"}
)


def _row_values(row: Mapping[str, Any], dialect: str) -> tuple[Any, ...]:
    """A planned alert row as positional column values, as the bulk statement takes them."""
    out = []
    for c in _COLUMNS:
        v = row[c]
        if c in _TS_COLUMNS:
            v = _ts_text(v, dialect)
        elif c in _JSON_COLUMNS:
            v = _json_text(v) if c != "evidence" else json.dumps(v or {})
        out.append(v)
    return tuple(out)


# --------------------------------------------------------------------------- the store


class AlertStore:
    """Alerts, verdicts (audit), allow-lists, model versions and runs in one SQL database.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with AlertStore.open(os.path.join(d, "a.db")) as store:
    ...         store.count_by_status()
    {}
    """

    #: The counts by status, the detector list and the allow-list entries not removed are
    #: cached.  Writes through this store clear them at once; writes through another
    #: ``AlertStore`` (another server worker, the CLI, a pipeline run) advance the store's
    #: generation counter, which is read at most every :attr:`generation_check_s` seconds;
    #: writes that bypass the store (SQL by hand) show after :attr:`cache_ttl` seconds.
    cache_ttl: float = 60.0
    generation_check_s: float = 0.5
    #: quiet time after which a detector × entity's windows start a new alert (episode);
    #: commands set it from ``[alerts] episode_gap_hours``
    episode_gap: timedelta = DEFAULT_EPISODE_GAP

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._cache: dict[str, tuple[float, Any, int | None]] = {}
        self._cache_lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        #: Background recomputations of expired values in flight (see :meth:`_cached`).
        self._refreshing: dict[str, threading.Thread] = {}
        self._generation = 0  # bumped by every write through this store
        # the database's generation counter, as last read, and when (None: read it next time)
        self._db_gen: int | None = None
        self._db_gen_at: float | None = None
        self._has_gen: bool | None = None  # whether the database has that counter (0005)
        self._windows_text: str | None = None
        #: The clock of the cache's TTL (seconds; injectable for tests).
        self.clock: Callable[[], float] = time.monotonic

    @classmethod
    def open(cls, url: str | os.PathLike[str] | None = None, migrate: bool = True) -> AlertStore:
        """Open (creating or upgrading the schema) the store at ``url`` (:func:`resolve_db_url`)."""
        engine = _make_engine(resolve_db_url(url))
        if migrate:
            upgrade(engine)
        return cls(engine)

    def close(self) -> None:
        self.settle()
        self.engine.dispose()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The URL with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(dnsieve_write=True)
            with conn.begin():
                yield conn
                # last, so that PostgreSQL holds the counter's row lock only until the commit
                if self._has_generation(conn):
                    conn.execute(_BUMP)

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    # ------------------------------------------------------------------ alerts

    def _rules(self, conn: Connection, now: datetime) -> list[Rule]:
        q = sa.select(allowlist).where(
            allowlist.c.removed_at.is_(None),
            sa.or_(allowlist.c.expires_at.is_(None), allowlist.c.expires_at > now),
        )
        return [rule_from_mapping(dict(r)) for r in conn.execute(q).mappings()]

    def _upsert_stmt(self, source: sa.Select[Any] | None = None) -> Any:
        """``INSERT ... ON CONFLICT (id) DO UPDATE`` of planned rows: the plan already
        merged them with the stored ones (read under a lock), so every column is set."""
        ins = self._insert(alerts)
        if source is not None:
            ins = ins.from_select(_COLUMNS, source)
        ex = ins.excluded
        return ins.on_conflict_do_update(
            index_elements=[_A.id], set_={c: ex[c] for c in _COLUMNS if c not in _KEPT}
        )

    def _windows_sql(self) -> str:
        """The window upsert, compiled once: of positional rows (SQLite ``executemany``) or
        of the staged rows (PostgreSQL)."""
        if self._windows_text is None:
            cols = [c.name for c in alert_windows.columns]
            if self.dialect == "postgresql":
                stage = sa.table(_WSTAGE, *[sa.column(c) for c in cols])
                stmt = self._windows_stmt(sa.select(*[stage.c[c] for c in cols]))
                self._windows_text = str(stmt.compile(dialect=self.engine.dialect))
            else:
                stmt = self._windows_stmt()
                self._windows_text = str(
                    stmt.compile(dialect=self.engine.dialect, column_keys=cols)
                )
        return self._windows_text

    def _windows_stmt(self, source: sa.Select[Any] | None = None) -> Any:
        ins = self._insert(alert_windows)
        if source is not None:
            ins = ins.from_select([c.name for c in alert_windows.columns], source)
        ex, w = ins.excluded, alert_windows.c
        p_value = sa.case(
            (w.p_value.is_(None), ex.p_value),
            (ex.p_value.is_(None), w.p_value),
            (ex.p_value < w.p_value, ex.p_value),
            else_=w.p_value,
        )
        return ins.on_conflict_do_update(
            index_elements=[w.id],
            set_={
                "alert_id": ex.alert_id,
                "score": sa.case((ex.score > w.score, ex.score), else_=w.score),
                "p_value": p_value,
                "times_seen": w.times_seen + ex.times_seen,
            },
        )

    def upsert_anomalies(
        self,
        frame: pl.DataFrame,
        now: datetime | None = None,
        batch_size: int = 5000,
        gap: timedelta | None = None,
    ) -> UpsertReport:
        """Merge windows into episodes (alerts), one transaction per batch.

        Each window joins the stored episode of its detector × entity that it comes
        within ``gap`` of (:attr:`episode_gap` by default), or starts a new one; a
        window that bridges two episodes merges them, keeping the verdicts and audit
        trail of both (:mod:`dnsieve.alerts.merge`).  A window seen again counts once
        in ``n_windows``; the alert keeps its status, verdicts and first-seen time; its
        score becomes the max (with that window's evidence), its p-value the min,
        ``times_seen`` grows and ``last_seen`` moves on.  Bad rows are counted in the
        report's ``rejects``, never raised.

        Rows are validated, keyed and merged column-wise (the bulk path, see the module
        doc); a batch with a row that needs a repair or a reject goes through
        :func:`~dnsieve.alerts.base.prepare_anomalies` instead, so the report and the
        stored values are the same either way.
        """
        now = _now(now)
        gap = self.episode_gap if gap is None else gap
        report = UpsertReport()
        size = max(1, batch_size)
        keyed = _key_frame(frame)
        sql = self._bulk_sql()
        for off in range(0, frame.height, size):
            with self._write() as conn:
                if self.dialect == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_UPSERT_LOCK}
                    )
                matcher = AllowMatcher(self._rules(conn, now))
                batch = _batch_windows(frame, keyed, off, size, matcher, report)
                if not batch:
                    continue
                known = self._known_windows(conn, [w.id for w in batch])
                stored = self._stored_near(conn, batch, known, gap)
                plan = plan_upsert(batch, known, stored, gap, now)
                self._apply(conn, sql, plan, now)
                self._count(report, plan)
        self._changed()
        return report

    @staticmethod
    def _count(report: UpsertReport, plan: EpisodePlan) -> None:
        report.inserted += plan.inserted
        report.merged += plan.merged
        report.new_windows += plan.new_windows
        report.joined += plan.joined
        report.suppressed += sum(r["suppressed_by"] is not None for r in plan.rows)
        report.ids += [r["id"] for r in plan.rows]

    def _known_windows(self, conn: Connection, ids: Sequence[str]) -> dict[str, str]:
        """Window id → alert id, for the ids already stored."""
        w = alert_windows.c
        out: dict[str, str] = {}
        for i in range(0, len(ids), 900):
            q = sa.select(w.id, w.alert_id).where(w.id.in_(ids[i : i + 900]))
            out.update((str(a), str(b)) for a, b in conn.execute(q))
        return out

    def _stored_near(
        self, conn: Connection, batch: Sequence[Window], known: Mapping[str, str], gap: timedelta
    ) -> dict[str, Alert]:
        """The stored alerts the plan needs: those of the windows seen again, and every
        episode of a new window's detector × entity within ``gap`` of the new windows'
        span (one indexed join on ``(entity, detector, episode_start)``)."""
        span: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        for w in batch:
            if w.id in known:
                continue
            k = (w.detector, w.entity)
            lo, hi = span.get(k, (w.start, w.end))
            span[k] = (min(lo, w.start), max(hi, w.end))
        ids = set(known.values())
        keys = [(d, e, lo - gap, hi + gap) for (d, e), (lo, hi) in span.items()]
        for i in range(0, len(keys), 2000):
            ids.update(self._episodes_within(conn, keys[i : i + 2000]))
        out: dict[str, Alert] = {}
        wanted = sorted(ids)
        for i in range(0, len(wanted), 900):
            q = sa.select(alerts).where(_A.id.in_(wanted[i : i + 900]))
            if self.dialect == "postgresql":
                q = q.with_for_update()
            for r in conn.execute(q).mappings():
                out[r["id"]] = _alert(r)
        return out

    def _episodes_within(
        self, conn: Connection, keys: Sequence[tuple[str, str, datetime, datetime]]
    ) -> list[str]:
        if not keys:
            return []
        if self.dialect == "postgresql":
            q = sa.text(
                "SELECT a.id FROM unnest(CAST(:d AS text[]), CAST(:e AS text[]),"
                " CAST(:lo AS timestamptz[]), CAST(:hi AS timestamptz[])) AS k(d, e, lo, hi)"
                " JOIN alerts a ON a.entity = k.e AND a.detector = k.d"
                " AND a.episode_start <= k.hi AND a.episode_end >= k.lo"
            )
            params: dict[str, Any] = {
                "d": [k[0] for k in keys],
                "e": [k[1] for k in keys],
                "lo": [k[2] for k in keys],
                "hi": [k[3] for k in keys],
            }
        else:
            q = sa.text(NEAR_EPISODES_SQLITE)
            params = {
                "k": json.dumps(
                    [
                        [d, e, _ts_text(lo, "sqlite"), _ts_text(hi, "sqlite")]
                        for d, e, lo, hi in keys
                    ]
                )
            }
        return [str(r[0]) for r in conn.execute(q, params)]

    def _apply(self, conn: Connection, sql: str, plan: EpisodePlan, now: datetime) -> None:
        """Write a plan: alert rows, merges (verdicts and windows move, then the merged
        alert goes), audit notes, windows."""
        if plan.rows:
            self._bulk_write(conn, sql, [_row_values(r, self.dialect) for r in plan.rows])
        if plan.status_changes:
            conn.execute(
                sa.update(alerts)
                .where(_A.id == sa.bindparam("_id"))
                .values(status=sa.bindparam("_status")),
                [{"_id": i, "_status": st} for i, st in plan.status_changes],
            )
        for loser, winner in plan.moves:
            conn.execute(
                sa.update(verdicts).where(verdicts.c.alert_id == loser).values(alert_id=winner)
            )
            conn.execute(
                sa.update(alert_windows)
                .where(alert_windows.c.alert_id == loser)
                .values(alert_id=winner)
            )
            conn.execute(sa.delete(alerts).where(_A.id == loser))
        if plan.notes:
            conn.execute(
                sa.insert(verdicts),
                [
                    {
                        "alert_id": n.alert_id,
                        "actor": MERGE_ACTOR,
                        "at": now,
                        "old_status": n.old_status,
                        "new_status": n.new_status,
                        "comment": n.comment,
                        "model_version": None,
                    }
                    for n in plan.notes
                ],
            )
        if plan.windows:
            d = self.dialect
            rows = [
                (wid, aid, _ts_text(ws, d), _ts_text(we, d), score, p, n)
                for wid, aid, ws, we, score, p, n in plan.windows
            ]
            if d == "postgresql":  # COPY into a staging table, then one upsert from it
                cols = ", ".join(c.name for c in alert_windows.columns)
                conn.exec_driver_sql(
                    f"CREATE TEMPORARY TABLE {_WSTAGE}"
                    " (LIKE alert_windows INCLUDING DEFAULTS) ON COMMIT DROP"
                )
                cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                with cur, cur.copy(f"COPY {_WSTAGE} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                conn.exec_driver_sql(self._windows_sql())
                conn.exec_driver_sql(f"DROP TABLE {_WSTAGE}")
            else:
                conn.exec_driver_sql(self._windows_sql(), rows)

    def _bulk_sql(self) -> str:
        """The upsert of positional column values (SQLite) or of the staged rows (PostgreSQL)."""
        if self.dialect == "postgresql":
            stage = sa.table(_STAGE, *[sa.column(c) for c in _COLUMNS])
            stmt = self._upsert_stmt(sa.select(*[stage.c[c] for c in _COLUMNS]))
            return str(stmt.compile(dialect=self.engine.dialect))
        stmt = self._upsert_stmt()
        return str(stmt.compile(dialect=self.engine.dialect, column_keys=_COLUMNS))

    def _bulk_write(self, conn: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Write one batch of unique-id rows."""
        if self.dialect == "postgresql":
            cols = ", ".join(_COLUMNS)
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {_STAGE} (LIKE alerts INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            dbapi = conn.connection.driver_connection
            cur = dbapi.cursor()  # type: ignore[union-attr]
            with cur, cur.copy(f"COPY {_STAGE} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.exec_driver_sql(sql)
            conn.exec_driver_sql(f"DROP TABLE {_STAGE}")
            return
        conn.exec_driver_sql(sql, rows)

    def _select_alerts(self, now: datetime) -> sa.Select[Any]:
        supp = sa.case((_suppressed_expr(now), True), else_=False).label("suppressed")
        return sa.select(alerts, supp)

    # ------------------------------------------------------------------ queries for the web queue

    def select_alerts(self, now: datetime | None = None) -> sa.Select[Any]:
        """``SELECT`` of the alerts table plus ``suppressed`` (now), to add filters and order to;
        run it with :meth:`fetch_alerts`."""
        return self._select_alerts(_now(now))

    @staticmethod
    def status_in(statuses: Sequence[str]) -> sa.ColumnElement[bool]:
        """Condition: the status is one of ``statuses`` (a few values).

        Written as ``=`` terms rather than ``IN``: SQLAlchemy expands an ``IN`` list into
        the SQL text at every execution, a third of a millisecond per queue page; the
        databases plan both the same."""
        if not statuses:
            return sa.false()
        return sa.or_(*(_A.status == s for s in statuses))

    @staticmethod
    def not_suppressed(now: datetime | None = None) -> sa.ColumnElement[bool]:
        """Condition: no active allow-list entry hides the alert at ``now``."""
        return _not_suppressed(_now(now))

    def fetch_alerts(self, query: sa.Select[Any]) -> list[Alert]:
        """Run a query built on :meth:`select_alerts`."""
        with self.engine.connect() as conn:
            return [_alert(r) for r in conn.execute(query).mappings()]

    def select_summaries(self, now: datetime | None = None) -> sa.Select[Any]:
        """Like :meth:`select_alerts` without the ``evidence`` and ``features`` documents:
        what a list of alerts shows; run it with :meth:`fetch_summaries`."""
        supp = sa.case((_suppressed_expr(_now(now)), True), else_=False).label("suppressed")
        return sa.select(*_SUMMARY, supp)

    def fetch_summaries(self, query: sa.Select[Any]) -> list[AlertSummary]:
        """Run a query built on :meth:`select_summaries` (rows straight into the dataclass)."""
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [AlertSummary(*r) for r in rows]

    def fetch_summaries_counted(
        self, query: sa.Select[Any]
    ) -> tuple[list[AlertSummary], int | None]:
        """:meth:`fetch_summaries` and the number of rows ``query`` matches before its
        ``LIMIT``/``OFFSET`` (``count(*) OVER ()`` read off the first row; ``None`` when the
        page is empty), in one query.

        For queries whose plan visits every match anyway (a selective filter served by an
        index, then a sort): half the work of a separate ``count(*)``.  On a plan that walks
        the sort order's index and stops at the ``LIMIT`` it would read every match instead.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(query.add_columns(sa.func.count().over())).all()
        if not rows:
            return [], None
        return [AlertSummary(*r[:-1]) for r in rows], int(rows[0][-1])

    def domain_or_below(self, domain: str) -> sa.ColumnElement[bool]:
        """Condition: the alert's domain is ``domain`` or a name below it, through an index:
        on PostgreSQL, a prefix of ``reverse(domain)`` (migration 0004: a range scan, where
        the trigram index took ~12 ms at 1M alerts because a domain's trigrams such as
        ``.co`` are common); on SQLite, the trigram search table narrows the ``LIKE``."""
        d = domain.strip().lower().rstrip(".")
        below: sa.ColumnElement[bool]
        if self.dialect == "postgresql":  # LIKE's default escape character is the backslash
            below = sa.func.reverse(_A.domain).like(_escape_like(("." + d)[::-1]) + "%")
        else:
            below = sa.and_(
                self.entity_contains("." + d),
                _A.domain.like("%." + _escape_like(d), escape="\\"),
            )
        return sa.or_(_A.domain == d, below)

    def entity_contains(self, text: str) -> sa.ColumnElement[bool]:
        """Condition: the entity contains ``text`` (case-insensitive), through the trigram
        index of migration 0003 where one can serve it (three characters or more)."""
        term = text.strip().lower()
        found = sa.func.lower(_A.entity).like("%" + _escape_like(term) + "%", escape="\\")
        if self.dialect != "sqlite" or len(term) < 3:
            return found  # PostgreSQL's pg_trgm index serves the LIKE itself
        phrase = '"' + term.replace('"', '""') + '"'
        fts = sa.table("alerts_search", sa.column("id"))
        hits = sa.select(fts.c.id).where(sa.literal_column("alerts_search").op("MATCH")(phrase))
        return sa.and_(_A.id.in_(hits), found)

    def count_where(self, *conditions: sa.ColumnElement[bool]) -> int:
        """Number of alerts matching all ``conditions`` (one ``count(*)``)."""
        q = sa.select(sa.func.count()).select_from(alerts).where(*conditions)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def order_keys(self, order: str) -> list[sa.ColumnElement[Any]]:
        """``ORDER BY`` of a queue order (``threat``, ``newest``, ``severity``, ``score``)."""
        return _order_by(order)

    def after_alert(self, order: str, alert_id: str) -> sa.ColumnElement[bool]:
        """Keyset condition: the alerts after ``alert_id`` in ``order`` (the next page).

        Unlike ``OFFSET``, its cost does not grow with the page number, and a
        page boundary never duplicates or skips an alert when sort keys tie.
        """
        aid = self.resolve_id(alert_id)
        keys = [k for k, _ in ORDERS[order]]
        with self.engine.connect() as conn:
            values = conn.execute(sa.select(*keys).where(_A.id == aid)).one()
        return _after(order, tuple(values))

    def _has_generation(self, conn: Connection) -> bool:
        """Whether the database has migration 0005's counter (a store opened without
        migrating may not): looked up once."""
        if self._has_gen is None:
            self._has_gen = sa.inspect(conn).has_table("store_state")
        return self._has_gen

    def _db_generation(self, t: float) -> int | None:
        """The database's generation counter, read at most every :attr:`generation_check_s`
        seconds (``None`` where there is none: the caches then rely on :attr:`cache_ttl`)."""
        with self._cache_lock:
            at = self._db_gen_at
            if at is not None and 0 <= t - at < self.generation_check_s:
                return self._db_gen
        with self.engine.connect() as conn:
            gen = conn.execute(_GENERATION).scalar() if self._has_generation(conn) else None
        with self._cache_lock:
            self._db_gen, self._db_gen_at = gen, t
        return gen

    def _fresh(self, hit: tuple[float, Any, int | None], t: float, gen: int | None) -> bool:
        """Whether a cached ``(time, value, generation)`` still holds at ``t`` and ``gen``."""
        return 0 <= t - hit[0] < self.cache_ttl and hit[2] == gen

    def _cached(self, key: str, compute: Callable[[], Any], background: bool = False) -> Any:
        """``compute()``, reused until the data may have changed: a write through this store
        clears it; a write through another store advances the generation counter (checked
        every :attr:`generation_check_s` s); anything else shows after :attr:`cache_ttl` s.

        One caller computes a missing value while the others wait for it (per key: other
        keys are not held up).  With ``background``, an *out-of-date* value is still served
        while one thread recomputes it, so that no request waits for an expensive query
        (the counts over 1M alerts take ~0.1 s) because another process wrote; a value
        cleared by a write through this store is recomputed while the caller waits, so
        this store's own writes always show at once.
        """
        gen = self._db_generation(self.clock())
        with self._cache_lock:
            hit = self._cache.get(key)
            t = self.clock()
            if hit is not None and self._fresh(hit, t, gen):
                return hit[1]
            if background and hit is not None:
                if key not in self._refreshing:
                    worker = threading.Thread(
                        target=self._refresh,
                        args=(key, compute, t, self._generation, gen),
                        name=f"dnsieve-cache-{key}",
                        daemon=True,
                    )
                    self._refreshing[key] = worker
                    worker.start()
                return hit[1]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._cache_lock:
                hit = self._cache.get(key)
                t = self.clock()
                if hit is not None and self._fresh(hit, t, gen):
                    return hit[1]  # computed by the caller we waited for
                generation = self._generation
            value = compute()
            self._keep(key, t, value, generation, gen)
            return value

    def _keep(self, key: str, t: float, value: Any, generation: int, gen: int | None) -> None:
        """Cache ``value``, computed at ``t`` when the database's counter read ``gen``, unless
        a write through this store came in the meantime."""
        with self._cache_lock:
            if self._generation == generation:
                self._cache[key] = (t, value, gen)

    def _refresh(
        self, key: str, compute: Callable[[], Any], t: float, generation: int, gen: int | None
    ) -> None:
        try:
            self._keep(key, t, compute(), generation, gen)
        except Exception:  # the old value stays; the next check tries again
            log.warning("refreshing the cached %s failed", key, exc_info=True)
        finally:
            with self._cache_lock:
                self._refreshing.pop(key, None)

    def settle(self) -> None:
        """Wait for the background refreshes in flight (tests, and before :meth:`close`)."""
        with self._cache_lock:
            workers = list(self._refreshing.values())
        for worker in workers:
            worker.join()

    def _changed(self) -> None:
        with self._cache_lock:
            self._generation += 1
            self._cache.clear()
            self._db_gen_at = None  # re-read the counter, which this write advanced

    def _status_groups(self) -> dict[tuple[str, int | None, str], int]:
        """``(status, suppressed_by, detector) → count``: an index-only scan of
        ix_alerts_suppressed_by, cached (see :meth:`_cached`)."""

        def compute() -> dict[tuple[str, int | None, str], int]:
            q = sa.select(_A.status, _A.suppressed_by, _A.detector, sa.func.count()).group_by(
                _A.suppressed_by, _A.status, _A.detector
            )
            with self.engine.connect() as conn:
                return {(st, sb, d): int(n) for st, sb, d, n in conn.execute(q)}

        return dict(self._cached("status_groups", compute, background=True))

    def _live_entries(self) -> list[tuple[int, datetime | None]]:
        """``(id, expires_at)`` of the allow-list entries not removed, cached like the counts
        (an entry that expires in the meantime is told apart by :meth:`_active_entry_ids`)."""

        def compute() -> list[tuple[int, datetime | None]]:
            q = sa.select(allowlist.c.id, allowlist.c.expires_at).where(
                allowlist.c.removed_at.is_(None)
            )
            with self.engine.connect() as conn:
                return [(int(i), exp) for i, exp in conn.execute(q)]

        return list(self._cached("live_entries", compute))

    def _active_entry_ids(self, now: datetime) -> set[int]:
        """The allow-list entries in force at ``now`` (from :meth:`_live_entries`)."""
        return {i for i, exp in self._live_entries() if exp is None or exp > now}

    def count_alerts(
        self,
        status: str | Sequence[str] | None = None,
        include_suppressed: bool = False,
        now: datetime | None = None,
        detector: str | None = None,
    ) -> int:
        """Number of alerts with a status (``open``, ``all``, ...) and optionally a detector,
        from the cached counts (no scan per call)."""
        statuses = status_filter(status)
        active = self._active_entry_ids(_now(now)) if not include_suppressed else set()
        return sum(
            n
            for (st, sb, det), n in self._status_groups().items()
            if (statuses is None or st in statuses)
            and (include_suppressed or sb not in active)
            and (detector is None or det == detector)
        )

    def detector_names(self) -> list[str]:
        """The detectors that have alerts (cached like the counts)."""

        def compute() -> list[str]:
            q: sa.Executable
            with self.engine.connect() as conn:
                if self.dialect == "postgresql":  # a loose index scan: one probe per detector
                    q = sa.text(
                        "WITH RECURSIVE d(v) AS ("
                        " (SELECT detector FROM alerts ORDER BY detector LIMIT 1) UNION ALL"
                        " SELECT (SELECT detector FROM alerts WHERE detector > d.v"
                        " ORDER BY detector LIMIT 1) FROM d WHERE d.v IS NOT NULL)"
                        " SELECT v FROM d WHERE v IS NOT NULL"
                    )
                else:  # SQLite skips through the index on its own
                    q = sa.select(_A.detector).distinct().order_by(_A.detector)
                return [str(d) for d in conn.execute(q).scalars()]

        return list(self._cached("detectors", compute))

    def resolve_id(self, id_or_prefix: str) -> str:
        """Full alert id from an id or a unique prefix."""
        p = id_or_prefix.strip().lower()
        if not _HEX.fullmatch(p):
            raise AlertNotFound(f"not an alert id: {id_or_prefix!r} (ids are hexadecimal)")
        with self.engine.connect() as conn:
            q = sa.select(_A.id).where(_A.id >= p, _A.id < p + "g").order_by(_A.id).limit(6)
            found = list(conn.execute(q).scalars())
            if not found:  # a window's id, or the id of an episode merged into another
                w = alert_windows.c
                q = (
                    sa.select(w.alert_id)
                    .where(w.id >= p, w.id < p + "g")
                    .distinct()
                    .order_by(w.alert_id)
                    .limit(6)
                )
                found = list(conn.execute(q).scalars())
                if len(found) == 1:
                    return str(found[0])
        if not found:
            raise AlertNotFound(f"no alert with id {id_or_prefix!r}")
        if len(found) > 1 and p not in found:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise AmbiguousId(f"id prefix {id_or_prefix!r} is ambiguous: {shown}")
        return p if p in found else found[0]

    def get_alert(self, id_or_prefix: str, now: datetime | None = None) -> Alert:
        aid = self.resolve_id(id_or_prefix)
        with self.engine.connect() as conn:
            row = (
                conn.execute(self._select_alerts(_now(now)).where(_A.id == aid)).mappings().first()
            )
        if row is None:  # pragma: no cover - deleted between the two statements
            raise AlertNotFound(f"no alert with id {id_or_prefix!r}")
        return _alert(row)

    def _filtered(
        self,
        now: datetime,
        status: str | Sequence[str] | None,
        detector: str | None,
        entity: str | None,
        include_suppressed: bool,
    ) -> sa.Select[Any]:
        q = self._select_alerts(now)
        statuses = status_filter(status)
        if statuses is not None:
            q = q.where(self.status_in(statuses))
        if detector:
            q = q.where(_A.detector == detector)
        if entity:
            q = q.where(_A.entity == entity)
        if not include_suppressed:
            q = q.where(_not_suppressed(now))
        return q

    def list_alerts(
        self,
        status: str | Sequence[str] | None = None,
        detector: str | None = None,
        entity: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        include_suppressed: bool = False,
        order: Literal["queue", "recent"] = "queue",
        now: datetime | None = None,
    ) -> list[Alert]:
        q = self._filtered(_now(now), status, detector, entity, include_suppressed)
        q = q.order_by(*_order_by("threat" if order == "queue" else "newest"))
        if limit is not None:
            q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        with self.engine.connect() as conn:
            return [_alert(r) for r in conn.execute(q).mappings()]

    def iter_alerts(
        self,
        status: str | Sequence[str] | None = None,
        detector: str | None = None,
        include_suppressed: bool = False,
        now: datetime | None = None,
        batch: int = 1000,
    ) -> Iterator[Alert]:
        now = _now(now)
        base = self._filtered(now, status, detector, None, include_suppressed).order_by(
            _A.window_start, _A.id
        )
        last: tuple[datetime, str] | None = None
        while True:
            q = base
            if last is not None:
                q = q.where(
                    sa.or_(
                        _A.window_start > last[0],
                        sa.and_(_A.window_start == last[0], _A.id > last[1]),
                    )
                )
            with self.engine.connect() as conn:
                page = [_alert(r) for r in conn.execute(q.limit(batch)).mappings()]
            yield from page
            if len(page) < batch:
                return
            last = (page[-1].window_start, page[-1].id)

    def count_by_status(
        self, include_suppressed: bool = False, now: datetime | None = None
    ) -> dict[str, int]:
        """Alerts per status.  Served from counts per ``(status, allow-list entry)`` that are
        cached for :attr:`cache_ttl` seconds and cleared by every write through this store."""
        active = self._active_entry_ids(_now(now)) if not include_suppressed else set()
        got: dict[str, int] = {}
        for (st, sb, _), n in self._status_groups().items():
            if include_suppressed or sb not in active:
                got[st] = got.get(st, 0) + n
        return {s: got[s] for s in STATUSES if got.get(s)}

    def suppressed_count(self, entry_id: int) -> int:
        """How many stored alerts this entry suppresses (its own expiry not considered)."""
        with self.engine.connect() as conn:
            q = sa.select(sa.func.count()).select_from(alerts).where(_A.suppressed_by == entry_id)
            return int(conn.execute(q).scalar_one())

    # ------------------------------------------------------------------ status workflow

    def _active_model_id(self, conn: Connection) -> int | None:
        q = (
            sa.select(model_versions.c.id)
            .where(model_versions.c.active.is_(True))
            .order_by(model_versions.c.id.desc())
            .limit(1)
        )
        return conn.execute(q).scalar()

    def set_status(
        self,
        alert_id: str,
        status: str,
        actor: str,
        comment: str | None = None,
        now: datetime | None = None,
        model_version: int | None = None,
    ) -> VerdictResult:
        new = normalize_status(status)
        if not actor or not actor.strip():
            raise InvalidTransition("a status change needs an actor (who made it)")
        aid = self.resolve_id(alert_id)
        now = _now(now)
        with self._write() as conn:
            old = conn.execute(sa.select(_A.status).where(_A.id == aid).with_for_update()).scalar()
            if old is None:  # pragma: no cover - deleted meanwhile
                raise AlertNotFound(f"no alert with id {alert_id!r}")
            check_transition(old, new)
            conn.execute(sa.update(alerts).where(_A.id == aid).values(status=new))
            mv = model_version if model_version is not None else self._active_model_id(conn)
            vid = conn.execute(
                sa.insert(verdicts)
                .values(
                    alert_id=aid,
                    actor=actor.strip(),
                    at=now,
                    old_status=old,
                    new_status=new,
                    comment=comment,
                    model_version=mv,
                )
                .returning(verdicts.c.id)
            ).scalar_one()
            row = conn.execute(self._select_alerts(now).where(_A.id == aid)).mappings().one()
        self._changed()
        audit = AuditEntry(int(vid), aid, actor.strip(), now, old, new, comment, mv)
        return VerdictResult(alert=_alert(row), old_status=old, new_status=new, audit=audit)

    def record_verdict(
        self,
        alert_id: str,
        label: str,
        actor: str,
        comment: str | None = None,
        now: datetime | None = None,
    ) -> VerdictResult:
        v = normalize_status(label)
        if v not in VERDICTS:
            raise InvalidTransition(
                f"a verdict is one of threat, benign, not-relevant; got {label!r}"
            )
        return self.set_status(alert_id, v, actor, comment, now)

    def audit_trail(
        self, alert_id: str | None = None, limit: int | None = None
    ) -> list[AuditEntry]:
        q = sa.select(verdicts).order_by(verdicts.c.at, verdicts.c.id)
        if alert_id is not None:
            q = q.where(verdicts.c.alert_id == self.resolve_id(alert_id))
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_audit(r) for r in conn.execute(q).mappings()]

    def set_threat_probabilities(self, probabilities: Mapping[str, float]) -> int:
        rows = [
            {"_id": k, "_tp": min(1.0, max(0.0, float(v)))}
            for k, v in probabilities.items()
            if v is not None and float(v) == float(v)
        ]
        if not rows:
            return 0
        tp = sa.bindparam("_tp", type_=sa.Float)
        stmt = (
            sa.update(alerts)
            .where(_A.id == sa.bindparam("_id"))
            .values(threat_probability=tp, severity=_severity_sql(tp, _A.p_value))
        )
        with self._write() as conn:
            res = conn.execute(stmt, rows)
        return int(res.rowcount)

    # ------------------------------------------------------------------ allow-lists

    def _reevaluate(self, conn: Connection, where: sa.ColumnElement[bool], now: datetime) -> int:
        matcher = AllowMatcher(self._rules(conn, now))
        q = sa.select(_A.id, _A.detector, _A.entity_type, _A.entity, _A.suppressed_by).where(where)
        changes = []
        for r in conn.execute(q):
            rule = matcher.match(r.detector, r.entity_type, r.entity)
            new = rule.id if rule is not None else None
            if new != r.suppressed_by:
                changes.append({"_id": r.id, "_s": new})
        if changes:
            stmt = (
                sa.update(alerts)
                .where(_A.id == sa.bindparam("_id"))
                .values(suppressed_by=sa.bindparam("_s"))
            )
            for i in range(0, len(changes), 5000):
                conn.execute(stmt, changes[i : i + 5000])
        return len(changes)

    @staticmethod
    def _candidates(rule: Rule) -> sa.ColumnElement[bool]:
        """A SQL pre-filter for the alerts a new rule may match (the matcher decides)."""
        cond: sa.ColumnElement[bool]
        if rule.kind == "domain":
            cond = _A.domain == rule.value
        elif rule.kind in ("suffix", "wildcard"):
            key = rule.value[2:] if rule.kind == "wildcard" else rule.value
            cond = sa.or_(_A.domain == key, _A.domain.like("%." + _escape_like(key), escape="\\"))
        elif rule.kind == "client":
            cond = _A.client == rule.value if "/" not in rule.value else _A.client.is_not(None)
        else:
            cond = sa.true()
        if rule.detector is not None:
            cond = sa.and_(cond, _A.detector == rule.detector)
        return cond

    def add_allow(
        self,
        kind: str,
        value: str,
        reason: str,
        author: str,
        detector: str | None = None,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> AllowEntry:
        now = _now(now)
        kind, value, detector, expires_at = validate_allow(
            kind, value, reason, author, detector, expires_at, now
        )
        with self._write() as conn:
            row = (
                conn.execute(
                    sa.insert(allowlist)
                    .values(
                        kind=kind,
                        value=value,
                        detector=detector,
                        reason=reason.strip(),
                        author=author.strip(),
                        created_at=now,
                        expires_at=expires_at,
                    )
                    .returning(*allowlist.c)
                )
                .mappings()
                .one()
            )
            entry = _allow(row)
            self._reevaluate(conn, self._candidates(rule_from_mapping(dict(row))), now)
        self._changed()
        return entry

    def remove_allow(self, entry_id: int, now: datetime | None = None) -> AllowEntry:
        now = _now(now)
        with self._write() as conn:
            row = (
                conn.execute(sa.select(allowlist).where(allowlist.c.id == entry_id))
                .mappings()
                .first()
            )
            if row is None:
                raise AlertNotFound(f"no allow-list entry {entry_id}")
            if row["removed_at"] is not None:
                raise AllowListConflict(f"allow-list entry {entry_id} was already removed")
            conn.execute(
                sa.update(allowlist).where(allowlist.c.id == entry_id).values(removed_at=now)
            )
            self._reevaluate(conn, _A.suppressed_by == entry_id, now)
            row = (
                conn.execute(sa.select(allowlist).where(allowlist.c.id == entry_id))
                .mappings()
                .one()
            )
        self._changed()
        return _allow(row)

    def expire_allow(
        self, entry_id: int, at: datetime | None = None, now: datetime | None = None
    ) -> AllowEntry:
        """End an allow-list entry at ``at`` (default now), keeping it as history.

        The alerts it suppressed are re-matched in the same transaction, so they
        fall back to another active entry or come back to the queue at once.
        Raises :class:`AlertNotFound` for an unknown entry and
        :class:`~dnsieve.rules.match.AllowListError` for a removed or
        expired one, or an expiry in the past.
        """
        now = _now(now)
        at = _now(at) if at is not None else now
        if at < now:
            raise AllowListError("an expiry cannot be set in the past")
        with self._write() as conn:
            q = sa.select(allowlist).where(allowlist.c.id == entry_id)
            row = conn.execute(q).mappings().first()
            if row is None:
                raise AlertNotFound(f"no allow-list entry {entry_id}")
            if row["removed_at"] is not None:
                raise AllowListConflict(f"allow-list entry {entry_id} was removed")
            if row["expires_at"] is not None and row["expires_at"] <= now:
                raise AllowListConflict(f"allow-list entry {entry_id} has already expired")
            conn.execute(
                sa.update(allowlist).where(allowlist.c.id == entry_id).values(expires_at=at)
            )
            # at == now: the entry is no longer active; later: the longest-lasting entry wins
            self._reevaluate(conn, _A.suppressed_by == entry_id, now)
            row = conn.execute(q).mappings().one()
        self._changed()
        return _allow(row)

    def list_allow(
        self, include_inactive: bool = False, now: datetime | None = None
    ) -> list[AllowEntry]:
        now = _now(now)
        q = sa.select(allowlist).order_by(allowlist.c.id)
        if not include_inactive:
            q = q.where(
                allowlist.c.removed_at.is_(None),
                sa.or_(allowlist.c.expires_at.is_(None), allowlist.c.expires_at > now),
            )
        with self.engine.connect() as conn:
            return [_allow(r) for r in conn.execute(q).mappings()]

    # ------------------------------------------------------------------ model versions

    def save_model_version(
        self,
        kind: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
        blob: bytes | None = None,
        parent_id: int | None = None,
        activate: bool = True,
        now: datetime | None = None,
    ) -> ModelVersion:
        now = _now(now)
        with self._write() as conn:
            if activate:
                conn.execute(
                    sa.update(model_versions)
                    .where(model_versions.c.kind == kind)
                    .values(active=False)
                )
            row = (
                conn.execute(
                    sa.insert(model_versions)
                    .values(
                        created_at=now,
                        kind=kind,
                        params=dict(params),
                        metrics=dict(metrics or {}),
                        blob=blob,
                        parent_id=parent_id,
                        active=activate,
                    )
                    .returning(*model_versions.c)
                )
                .mappings()
                .one()
            )
            return _model(row)

    def active_model_version(self, kind: str | None = None) -> ModelVersion | None:
        q = (
            sa.select(model_versions)
            .where(model_versions.c.active.is_(True))
            .order_by(model_versions.c.id.desc())
            .limit(1)
        )
        if kind is not None:
            q = q.where(model_versions.c.kind == kind)
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return _model(row) if row is not None else None

    def list_model_versions(self, kind: str | None = None) -> list[ModelVersion]:
        q = sa.select(model_versions).order_by(model_versions.c.id.desc())
        if kind is not None:
            q = q.where(model_versions.c.kind == kind)
        with self.engine.connect() as conn:
            return [_model(r) for r in conn.execute(q).mappings()]

    def activate_model_version(self, version_id: int) -> ModelVersion:
        with self._write() as conn:
            kind = conn.execute(
                sa.select(model_versions.c.kind).where(model_versions.c.id == version_id)
            ).scalar()
            if kind is None:
                raise AlertNotFound(f"no model version {version_id}")
            conn.execute(
                sa.update(model_versions).where(model_versions.c.kind == kind).values(active=False)
            )
            conn.execute(
                sa.update(model_versions)
                .where(model_versions.c.id == version_id)
                .values(active=True)
            )
            row = (
                conn.execute(sa.select(model_versions).where(model_versions.c.id == version_id))
                .mappings()
                .one()
            )
            return _model(row)

    # ------------------------------------------------------------------ runs

    def start_run(self, inputs: Mapping[str, Any], now: datetime | None = None) -> int:
        with self._write() as conn:
            rid = conn.execute(
                sa.insert(runs)
                .values(started=_now(now), inputs=dict(inputs), counts={}, rejects={})
                .returning(runs.c.id)
            ).scalar_one()
        return int(rid)

    def finish_run(
        self,
        run_id: int,
        counts: Mapping[str, Any],
        rejects: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> RunRecord:
        with self._write() as conn:
            res = conn.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(finished=_now(now), counts=dict(counts), rejects=dict(rejects or {}))
            )
            if res.rowcount == 0:
                raise AlertNotFound(f"no run {run_id}")
            return _run(conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().one())

    def list_runs(self, limit: int | None = None) -> list[RunRecord]:
        q = sa.select(runs).order_by(runs.c.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(q).mappings()]

    def get_model_version(self, version_id: int) -> ModelVersion:
        """One model version with its blob (raises :class:`AlertNotFound`)."""
        q = sa.select(model_versions).where(model_versions.c.id == version_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        if row is None:
            raise AlertNotFound(f"no model version {version_id}")
        return _model(row)
