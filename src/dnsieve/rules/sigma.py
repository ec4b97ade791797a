"""Sigma rules over DNS events: pySigma conversion to DuckDB SQL over the lake's Parquet.

An analyst's Sigma rule (YAML, ``logsource: category: dns`` or ``product: zeek`` /
``service: dns``) is converted with pySigma's DuckDB backend, after dnsieve's processing
pipeline (:func:`dnsieve_pipeline`) has mapped the field names of Sigma's DNS taxonomy and of
Zeek's ``dns.log`` onto the canonical :data:`dnsieve.schema.DNS_EVENT` columns.  The query
runs over a DuckDB view of the lake's committed Parquet files restricted to a time range.

Field names a rule may use (case as written):

==========================================  ===========================================
Sigma / Zeek field                          canonical column
==========================================  ===========================================
``query``, ``QueryName``,                   ``qname``
``dns.question.name``, ``dns_question_name``
``answer``, ``answers``, ``QueryResults``   ``answers_text`` (the answers joined by ``,``
                                            as Zeek writes them)
``record_type``, ``qtype_name``,            ``qtype`` (names, e.g. ``TXT``)
``QueryType``, ``dns.question.type``
``rcode_name``, ``response_code``,          ``rcode`` (names, e.g. ``NXDOMAIN``)
``dns.response_code``
``src_ip``, ``id.orig_h``, ``ClientIP``     ``src_ip``
``dst_ip``, ``id.resp_h``                   ``dst_ip``
``src_port``, ``id.orig_p``                 ``src_port``
``dst_port``, ``id.resp_p``                 ``dst_port``
``parent_domain``, ``query_etld_plus_one``  ``registered_domain``
``TTLs``                                    ``ttls_text``
``AA``, ``TC``, ``RD``, ``RA``              ``aa``, ``tc``, ``rd``, ``ra``
``query_length``                            ``qname_length``
==========================================  ===========================================

The canonical column names themselves (``qname``, ``qtype``, ``rcode``, ``subdomain``,
``tld``, ``proto``, ``trans_id``, ``rtt``, ``sensor``, ``query_len``, ``response_len``) are
accepted too.  A rule that uses any other field (Zeek's ``Z``, ``rejected``, ``qclass``; a
Windows ``Image``) is **refused** with a :class:`RuleRefused` that names the field: the
canonical schema does not keep it, so the rule could never match as its author meant.

Matching follows Sigma's semantics: string comparisons are case-insensitive (plain
equality included, which pySigma's DuckDB backend otherwise renders as a case-sensitive
``=``), ``%`` and ``_`` in values are literal characters, ``*`` and ``?`` are wildcards.

Correlation rules (``event_count``, ``value_count``, ``temporal``) convert where the
backend supports them; anything else pySigma cannot convert is refused with its reason.

>>> rule = compile_rule('''
... title: TXT to evil
... logsource: {category: dns}
... detection:
...   sel: {query|endswith: '.evil.example', record_type: txt}
...   condition: sel
... ''')
>>> rule.title, rule.kind
('TXT to evil', 'event')
>>> print(rule.where)
qname ILIKE '%.evil.example' ESCAPE '\\' AND lower(qtype) = lower('txt')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

__all__ = [
    "CANONICAL_FIELDS",
    "FIELD_MAP",
    "CompiledRule",
    "RuleRefused",
    "compile_rule",
    "dnsieve_pipeline",
    "events_view_sql",
    "run_rule",
    "run_rule_spark",
]

#: Sigma-taxonomy and Zeek field names → the column of dnsieve's rule view.
FIELD_MAP: dict[str, str] = {
    "query": "qname",
    "QueryName": "qname",
    "dns.question.name": "qname",
    "dns_question_name": "qname",
    "answer": "answers_text",
    "answers": "answers_text",
    "QueryResults": "answers_text",
    "record_type": "qtype",
    "qtype_name": "qtype",
    "QueryType": "qtype",
    "dns.question.type": "qtype",
    "rcode_name": "rcode",
    "response_code": "rcode",
    "dns.response_code": "rcode",
    "id.orig_h": "src_ip",
    "ClientIP": "src_ip",
    "id.resp_h": "dst_ip",
    "id.orig_p": "src_port",
    "id.resp_p": "dst_port",
    "parent_domain": "registered_domain",
    "query_etld_plus_one": "registered_domain",
    "TTLs": "ttls_text",
    "AA": "aa",
    "TC": "tc",
    "RD": "rd",
    "RA": "ra",
    "query_length": "qname_length",
}

#: Columns of the rule view that a rule may name directly.
CANONICAL_FIELDS: frozenset[str] = frozenset(
    {
        "ts", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "trans_id", "qname",
        "qtype", "rcode", "answers_text", "ttls_text", "rtt", "aa", "tc", "rd", "ra",
        "query_len", "response_len", "sensor", "registered_domain", "subdomain", "tld",
        "qname_length",
    }
)  # fmt: skip

#: Columns of the view that hold numbers or booleans, not text.
_NON_TEXT: dict[str, str] = {
    **dict.fromkeys(
        ("src_port", "dst_port", "trans_id", "query_len", "response_len", "qname_length"),
        "a number",
    ),
    "rtt": "a number",
    **dict.fromkeys(("aa", "tc", "rd", "ra"), "a boolean"),
}

_LEVELS = ("informational", "low", "medium", "high", "critical")
_ATTACK_TAG = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)


class RuleRefused(ValueError):
    """A Sigma rule dnsieve cannot run as written; the message names the construct."""


@dataclass(frozen=True)
class CompiledRule:
    """A converted Sigma rule: its metadata and the SQL to run over the ``logs`` view."""

    title: str
    rule_id: str | None
    level: str
    kind: str  # "event" or the correlation type ("event_count", "value_count", ...)
    sql: str  # a full query over the view ``logs``
    where: str | None  # the event rule's predicate (None for correlations)
    techniques: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    fields_used: tuple[str, ...] = ()
    #: the same rule as Spark SQL over the view ``logs`` (pySigma's Databricks backend),
    #: or None when that backend is not installed
    spark_sql: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def dnsieve_pipeline() -> Any:
    """pySigma processing pipeline: Sigma/Zeek DNS field names → dnsieve's rule view.

    Any field that is neither mapped nor a canonical column fails the conversion with a
    message naming it (see :class:`RuleRefused`).
    """
    from sigma.processing.conditions import ExcludeFieldCondition
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import (
        DetectionItemFailureTransformation,
        FieldMappingTransformation,
    )

    known = sorted(CANONICAL_FIELDS | set(FIELD_MAP))
    mapping: dict[str | None, str | list[str]] = {k: v for k, v in FIELD_MAP.items()}
    return ProcessingPipeline(
        name="dnsieve DNS events",
        priority=20,
        items=[
            ProcessingItem(
                identifier="dnsieve_unknown_field",
                transformation=DetectionItemFailureTransformation(
                    "field not in dnsieve's DNS event schema (see docs/rules.md for the "
                    "fields a rule may use)"
                ),
                field_name_conditions=[ExcludeFieldCondition(fields=known)],
            ),
            ProcessingItem(
                identifier="dnsieve_field_mapping",
                transformation=FieldMappingTransformation(mapping),
            ),
        ],
    )


def _backend_class() -> type[Any]:
    """pySigma's DuckDB backend with Sigma's case-insensitive, literal-``%_`` matching."""
    from sigma_backend_duckdb import DuckDBBackend

    class _DnsieveDuckDB(DuckDBBackend):
        escape_char: ClassVar[str] = "\\"
        add_escaped: ClassVar[str] = "%_"
        startswith_expression: ClassVar[str] = "{field} ILIKE '{value}%' ESCAPE '\\'"
        endswith_expression: ClassVar[str] = "{field} ILIKE '%{value}' ESCAPE '\\'"
        contains_expression: ClassVar[str] = "{field} ILIKE '%{value}%' ESCAPE '\\'"
        wildcard_match_expression: ClassVar[str] = "{field} ILIKE '{value}' ESCAPE '\\'"
        wildcard_match_str_expression: ClassVar[str] = "{field} ILIKE '{value}' ESCAPE '\\'"
        eq_token: ClassVar[str] = " = "

        def convert_condition_field_eq_val_str(self, cond: Any, state: Any) -> Any:
            from sigma.types import SpecialChars

            value = cond.value
            if cond.field in _NON_TEXT:
                raise RuleRefused(
                    f"field {cond.field!r} is {_NON_TEXT[cond.field]} but the rule compares it "
                    f"with the text {str(value)!r} (for a comparison use |gt, |lt, |gte or |lte)"
                )
            if not value.contains_special() and SpecialChars.WILDCARD_MULTI not in value:
                field_sql = self.escape_and_quote_field(cond.field)
                plain = str(value).replace("'", "''")
                return f"lower({field_sql}) = lower('{plain}')"
            return super().convert_condition_field_eq_val_str(cond, state)

    return _DnsieveDuckDB


def _fields_of(rule: Any) -> tuple[list[str], list[str]]:
    """(field names used, names of detections holding field-less keyword values)."""
    found: set[str] = set()
    keyword: set[str] = set()
    for name, det in getattr(rule.detection, "detections", {}).items():
        stack = [det]
        while stack:
            item = stack.pop()
            sub = getattr(item, "detection_items", None)
            if sub is not None:
                stack.extend(sub)
            elif getattr(item, "field", None):
                found.add(str(item.field))
            else:
                keyword.add(str(name))
    return sorted(found), sorted(keyword)


def compile_rule(text: str) -> CompiledRule:
    """Convert one Sigma rule (YAML text; a correlation rule with its base rules) to SQL.

    Raises :class:`RuleRefused` for a rule that is not about DNS events, uses a field
    dnsieve does not keep, or uses a construct the backend cannot convert.
    """
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError

    try:
        collection = SigmaCollection.from_yaml(text)
    except SigmaError as exc:
        raise RuleRefused(f"not a valid Sigma rule: {exc}") from None
    except Exception as exc:  # YAML errors and friends
        raise RuleRefused(f"not a valid Sigma rule: {type(exc).__name__}: {exc}") from None
    rules = list(collection.rules)
    if not rules:
        raise RuleRefused("the document holds no Sigma rule")
    errors = [str(e) for r in rules for e in getattr(r, "errors", [])]
    if errors:
        raise RuleRefused(f"invalid Sigma rule: {errors[0]}")
    correlations = [r for r in rules if isinstance(r, SigmaCorrelationRule)]
    main = correlations[-1] if correlations else rules[-1]
    for r in rules:
        if isinstance(r, SigmaCorrelationRule):
            continue
        ls = r.logsource
        if not (
            (ls.category or "").lower() in {"dns", "dns_query"}
            or (ls.service or "").lower() == "dns"
        ):
            what = ", ".join(
                f"{k}: {v}"
                for k, v in (
                    ("category", ls.category),
                    ("product", ls.product),
                    ("service", ls.service),
                )
                if v
            )
            raise RuleRefused(
                f"logsource ({what or 'none'}) is not DNS: dnsieve runs rules with "
                "'category: dns' or 'service: dns'"
            )
    used = [_fields_of(r) for r in rules if not isinstance(r, SigmaCorrelationRule)]
    base_fields = sorted({f for fields, _ in used for f in fields})
    keywords = sorted({k for _, kws in used for k in kws})
    if keywords:
        raise RuleRefused(
            f"detection {', '.join(repr(k) for k in keywords)} holds values without a field "
            "(a keyword search, or an old 'timeframe'/aggregation item): name the field, "
            "and write counts over time as a Sigma correlation rule"
        )
    unknown = [f for f in base_fields if f not in FIELD_MAP and f not in CANONICAL_FIELDS]
    if unknown:
        raise RuleRefused(
            f"field{'s' if len(unknown) > 1 else ''} {', '.join(repr(f) for f in unknown)} "
            "not in dnsieve's DNS event schema (docs/rules.md lists the fields a rule may use)"
        )
    backend = _backend_class()(processing_pipeline=dnsieve_pipeline())
    where: str | None
    spark = _spark_backend()
    spark_sql: str | None = None
    if correlations:
        kind = _corr_kind(main)
        sql, where = _correlation_sql(backend, collection, main), None
        if spark is not None:
            spark_sql = _correlation_sql(spark, collection, main, dialect="spark")
    else:
        kind = "event"
        where = _where_of(backend, collection, main)
        sql = f"SELECT * FROM logs WHERE {where}"
        if spark is not None:
            spark_sql = f"SELECT * FROM logs WHERE {_where_of(spark, collection, main)}"
    tags = tuple(str(t) for t in getattr(main, "tags", []) or [])
    techniques = tuple(m.group(1).upper() for t in tags if (m := _ATTACK_TAG.match(t)))
    level = str(getattr(getattr(main, "level", None), "name", "") or "medium").lower()
    return CompiledRule(
        title=str(main.title),
        rule_id=str(main.id) if getattr(main, "id", None) else None,
        level=level if level in _LEVELS else "medium",
        kind=kind,
        sql=sql,
        where=where,
        techniques=techniques,
        tags=tags,
        fields_used=tuple(base_fields),
        spark_sql=spark_sql,
        description=str(getattr(main, "description", "") or ""),
    )


_HELPERS = {
    "answers_text": "array_to_string(answers, ',') AS answers_text",
    "ttls_text": "array_to_string(CAST(ttls AS VARCHAR[]), ',') AS ttls_text",
    "qname_length": "length(qname) AS qname_length",
}


def events_view_sql(
    files: Sequence[str | Path],
    since: datetime | None,
    until: datetime | None,
    helpers: Iterable[str] | None = None,
) -> str:
    """The ``logs`` view over ``files``: canonical columns plus the rule-only helpers.

    ``helpers`` names the derived columns to add (``answers_text``, ``ttls_text``,
    ``qname_length``; default all).  Time bounds go inside the view so DuckDB pushes
    them into the Parquet scan.
    """
    if not files:
        raise ValueError("no lake files to read")
    quoted = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    conds = []
    if since is not None:
        conds.append(f"ts >= '{_iso(since)}'::TIMESTAMPTZ")
    if until is not None:
        conds.append(f"ts < '{_iso(until)}'::TIMESTAMPTZ")
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    wanted = (
        _HELPERS if helpers is None else {k: v for k, v in _HELPERS.items() if k in set(helpers)}
    )
    extra = "".join(f", {sql}" for sql in wanted.values())
    return (
        f"CREATE OR REPLACE TEMP VIEW logs AS SELECT *{extra} FROM read_parquet([{quoted}]){where}"
    )


def _spark_backend() -> Any | None:
    """pySigma's Databricks (Spark SQL) backend with dnsieve's pipeline, if installed."""
    try:
        from sigma.backends.databricks import DatabricksBackend
    except ImportError:
        return None
    return DatabricksBackend(processing_pipeline=dnsieve_pipeline())


def _where_of(backend: Any, collection: Any, rule: Any) -> str:
    """The SQL predicate of one event rule, converted by the backend."""
    from sigma.exceptions import SigmaError
    from sigma.rule import SigmaRule

    try:
        # A fresh copy: base rules of a correlation are marked to produce no output.
        out = backend.convert_rule(SigmaRule.from_dict(rule.to_dict()))
    except SigmaError as exc:
        raise RuleRefused(f"construct not supported: {exc}") from None
    except NotImplementedError as exc:
        raise RuleRefused(f"construct not supported: {exc}") from None
    if not out:
        raise RuleRefused("pySigma produced no query for this rule")
    prefix = "SELECT * FROM logs WHERE "
    query = str(out[-1])
    return query[len(prefix) :] if query.startswith(prefix) else query


def _corr_kind(corr: Any) -> str:
    """``event_count``, ``value_count``, ``temporal`` ... of a correlation rule."""
    t = corr.type
    return str(getattr(t, "name", t)).lower()


_CORR_OPS = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<=", "EQ": "=", "NEQ": "<>"}


def _correlation_sql(backend: Any, collection: Any, corr: Any, dialect: str = "duckdb") -> str:
    """Sliding-window SQL for an ``event_count`` / ``value_count`` correlation.

    pySigma's DuckDB backend groups over the whole data and ignores ``timespan``; Sigma
    means a sliding window.  Each base event counts the group's events (or distinct
    values) in the ``timespan`` before it (``RANGE ... PRECEDING``); a group matches when
    some window meets the condition.  One row per matching group: the group keys, the
    first and last time the condition held, and the peak count.
    """
    kind = _corr_kind(corr)
    if kind not in ("event_count", "value_count"):
        raise RuleRefused(
            f"correlation type {kind!r} is not supported (event_count and value_count are)"
        )
    collection.resolve_rule_references()
    bases = [ref.rule for ref in corr.rules]
    where = " OR ".join(f"({_where_of(backend, collection, b)})" for b in bases)
    groups = [FIELD_MAP.get(g, g) for g in (corr.group_by or [])]
    bad = [g for g in groups if g not in CANONICAL_FIELDS]
    if bad:
        raise RuleRefused(f"group-by field {', '.join(map(repr, bad))} not in dnsieve's schema")
    seconds = int(corr.timespan.seconds)
    cond = corr.condition
    op = _CORR_OPS.get(getattr(cond.op, "name", str(cond.op)))
    if op is None:
        raise RuleRefused(f"correlation condition {cond.op} is not supported")
    if kind == "value_count":
        ref = getattr(cond, "fieldref", None)
        col = FIELD_MAP.get(str(ref), str(ref)) if ref else None
        if col not in CANONICAL_FIELDS:
            raise RuleRefused(f"value_count field {ref!r} not in dnsieve's schema")
        # Spark has no DISTINCT in window aggregates: the size of the set is the same count.
        agg = f"collect_set({col})" if dialect == "spark" else f"COUNT(DISTINCT {col})"
    else:
        agg = "COUNT(*)"
    part = f"PARTITION BY {', '.join(groups)} " if groups else ""
    keys = ", ".join(groups)
    if dialect == "spark":
        frame = f"ORDER BY CAST(ts AS DOUBLE) RANGE BETWEEN {seconds} PRECEDING AND CURRENT ROW"
    else:
        frame = f"ORDER BY ts RANGE BETWEEN INTERVAL {seconds} SECOND PRECEDING AND CURRENT ROW"
    window = f"{agg} OVER ({part}{frame})"
    if agg.startswith("collect_set"):
        window = f"size({window})"
    return (
        f"SELECT {keys + ', ' if keys else ''}min(ts) AS first_ts, max(ts) AS last_ts, "
        f"max(n) AS {kind} FROM (SELECT *, {window} AS n "
        f"FROM logs WHERE {where}) AS windows WHERE n {op} {int(cond.count)}"
        + (f" GROUP BY {keys}" if keys else "")
    )


def _iso(t: datetime) -> str:
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.isoformat()


_SPARK_HELPERS = {
    "answers_text": "array_join(answers, ',') AS answers_text",
    "ttls_text": "array_join(CAST(ttls AS ARRAY<STRING>), ',') AS ttls_text",
    "qname_length": "length(qname) AS qname_length",
}


def run_rule_spark(
    rule: CompiledRule,
    files: Sequence[str | Path],
    since: datetime | None = None,
    until: datetime | None = None,
    session: Any = None,
) -> pl.DataFrame:
    """Run a compiled rule on Spark over the lake's Parquet ``files`` (same result as
    :func:`run_rule`); only the hits come back to the driver."""
    if rule.spark_sql is None:
        raise RuleRefused("pip install pysigma-backend-databricks to run Sigma rules on Spark")
    from pyspark.sql import functions as F

    from dnsieve.engines.spark import get_session

    spark = session or get_session()
    if not files:
        return pl.DataFrame()
    sdf = spark.read.parquet(*[str(f) for f in files])
    if since is not None:
        sdf = sdf.where(F.col("ts") >= F.lit(_iso(since)).cast("timestamp"))
    if until is not None:
        sdf = sdf.where(F.col("ts") < F.lit(_iso(until)).cast("timestamp"))
    used = {FIELD_MAP.get(f, f) for f in rule.fields_used}
    extra = [v for k, v in _SPARK_HELPERS.items() if k in used]
    sdf.selectExpr("*", *extra).createOrReplaceTempView("logs")
    df = pl.from_arrow(spark.sql(rule.spark_sql).toArrow())
    assert isinstance(df, pl.DataFrame)
    return df


def run_rule(
    rule: CompiledRule,
    files: Sequence[str | Path],
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> pl.DataFrame:
    """Run a compiled rule over Parquet ``files`` (the lake's committed parts) in [since, until).

    Returns the matching events (event rules) or the correlation's groups, as Polars.
    """
    import duckdb

    if not files:
        return pl.DataFrame()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        used = {FIELD_MAP.get(f, f) for f in rule.fields_used}
        con.execute(events_view_sql(files, since, until, helpers=used))
        sql = rule.sql if limit is None else f"SELECT * FROM ({rule.sql}) LIMIT {int(limit)}"
        return con.sql(sql).pl()
    finally:
        con.close()
