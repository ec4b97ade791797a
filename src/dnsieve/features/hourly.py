"""Hourly aggregates per entity (ARCHITECTURE §3 ``features``, issue 3 item 1).

Three windowed aggregates are computed from canonical events
(:data:`dnsieve.schema.DNS_EVENT`), one row per entity and UTC hour:

``domain_hourly``
    per (hour, registered_domain): ``queries``, ``clients`` (distinct non-null
    ``src_ip``), ``subdomains`` (distinct non-empty ``subdomain``), the rcode
    counts ``nxdomain``/``noerror``/``servfail``, the qtype mix
    (:data:`QTYPE_COLUMNS` plus ``qtype_other``) and ``query_bytes`` /
    ``response_bytes`` (sums of ``query_len`` / ``response_len``, nulls as 0).
``client_hourly``
    per (hour, src_ip): ``queries``, ``domains`` (distinct non-null
    ``registered_domain``), ``nxdomain`` and the qtype mix.
``client_domain_hourly``
    per (hour, src_ip, registered_domain): ``queries``, ``nxdomain``,
    ``first_ts``, ``last_ts``.

``hour`` is the start of the UTC hour (``Datetime("us", "UTC")``); every count
is ``Int64``.  Events whose entity key is null (no ``registered_domain``, no
``src_ip``) are left out of the aggregates keyed by it.  ``qtype_other``
counts every query whose qtype is not one of the named types, a null qtype
included, so the qtype columns always add up to ``queries``.

All count and sum columns are mergeable by summation, ``first_ts``/``last_ts``
by min/max.  The distinct counts are exact per hour; merging them needs the
distinct sets, which :class:`dnsieve.features.HourlyState` keeps.

Results are sorted by their key columns, so they never depend on the order of
the input.

>>> import datetime as dt
>>> ev = pl.LazyFrame(
...     {
...         "ts": [dt.datetime(2024, 1, 1, 10, m, tzinfo=dt.timezone.utc) for m in (5, 7, 9)],
...         "src_ip": ["10.0.0.1", "10.0.0.2", "10.0.0.1"],
...         "registered_domain": ["example.com"] * 3,
...         "subdomain": ["www", "", "mail"],
...         "qtype": ["A", "AAAA", "TXT"],
...         "rcode": ["NOERROR", "NXDOMAIN", None],
...         "query_len": pl.Series([40, None, 52], dtype=pl.Int32),
...         "response_len": pl.Series([None, None, None], dtype=pl.Int32),
...     }
... )
>>> row = domain_hourly(ev).collect().row(0, named=True)
>>> row["queries"], row["clients"], row["subdomains"], row["nxdomain"], row["query_bytes"]
(3, 2, 2, 1, 92)
>>> row["qtype_a"] + row["qtype_aaaa"] + row["qtype_txt"] + row["qtype_other"]
3
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

__all__ = [
    "AGGREGATES",
    "CLIENT_DOMAIN_HOURLY_SCHEMA",
    "CLIENT_HOURLY_SCHEMA",
    "DISTINCT_COLUMNS",
    "DOMAIN_HOURLY_SCHEMA",
    "KEYS",
    "QTYPE_COLUMNS",
    "RCODE_COLUMNS",
    "SCHEMAS",
    "aggregate",
    "client_domain_hourly",
    "client_hourly",
    "domain_hourly",
    "hour_of",
]

#: qtype count columns and the qtype name each counts; ``qtype_other`` counts the rest.
QTYPE_COLUMNS: dict[str, str] = {
    "qtype_a": "A",
    "qtype_aaaa": "AAAA",
    "qtype_txt": "TXT",
    "qtype_null": "NULL",
    "qtype_cname": "CNAME",
    "qtype_mx": "MX",
    "qtype_ptr": "PTR",
    "qtype_srv": "SRV",
    "qtype_any": "ANY",
}
#: rcode count columns of ``domain_hourly`` and the rcode name each counts.
RCODE_COLUMNS: dict[str, str] = {
    "nxdomain": "NXDOMAIN",
    "noerror": "NOERROR",
    "servfail": "SERVFAIL",
}

_TS = pl.Datetime("us", "UTC")
_I64 = pl.Int64()
_QTYPE_ALL = [*QTYPE_COLUMNS, "qtype_other"]

DOMAIN_HOURLY_SCHEMA = pl.Schema(
    {
        "hour": _TS,
        "registered_domain": pl.String(),
        "queries": _I64,
        "clients": _I64,
        "subdomains": _I64,
        **{c: _I64 for c in RCODE_COLUMNS},
        **{c: _I64 for c in _QTYPE_ALL},
        "query_bytes": _I64,
        "response_bytes": _I64,
    }
)
CLIENT_HOURLY_SCHEMA = pl.Schema(
    {
        "hour": _TS,
        "src_ip": pl.String(),
        "queries": _I64,
        "domains": _I64,
        "nxdomain": _I64,
        **{c: _I64 for c in _QTYPE_ALL},
    }
)
CLIENT_DOMAIN_HOURLY_SCHEMA = pl.Schema(
    {
        "hour": _TS,
        "src_ip": pl.String(),
        "registered_domain": pl.String(),
        "queries": _I64,
        "nxdomain": _I64,
        "first_ts": _TS,
        "last_ts": _TS,
    }
)

#: output schema of each aggregate, by name.
SCHEMAS: dict[str, pl.Schema] = {
    "domain_hourly": DOMAIN_HOURLY_SCHEMA,
    "client_hourly": CLIENT_HOURLY_SCHEMA,
    "client_domain_hourly": CLIENT_DOMAIN_HOURLY_SCHEMA,
}
#: key columns of each aggregate (the output is sorted by them).
KEYS: dict[str, tuple[str, ...]] = {
    "domain_hourly": ("hour", "registered_domain"),
    "client_hourly": ("hour", "src_ip"),
    "client_domain_hourly": ("hour", "src_ip", "registered_domain"),
}
#: the exact distinct-count columns of each aggregate (not mergeable by summing).
DISTINCT_COLUMNS: dict[str, tuple[str, ...]] = {
    "domain_hourly": ("clients", "subdomains"),
    "client_hourly": ("domains",),
    "client_domain_hourly": (),
}


def hour_of(ts: pl.Expr) -> pl.Expr:
    """Start of the UTC hour of a ``Datetime("us", "UTC")`` expression."""
    return ts.dt.truncate("1h")


def _count(pred: pl.Expr) -> pl.Expr:
    return pred.sum().cast(pl.Int64)


def _qtype_exprs() -> list[pl.Expr]:
    q = pl.col("qtype")
    named = list(QTYPE_COLUMNS.values())
    return [
        *(_count(q == name).alias(col) for col, name in QTYPE_COLUMNS.items()),
        _count(~q.is_in(named).fill_null(False)).alias("qtype_other"),
    ]


def _bytes(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Int64).fill_null(0).sum().cast(pl.Int64)


def domain_sum_exprs() -> list[pl.Expr]:
    """The mergeable (summable) columns of ``domain_hourly``."""
    return [
        pl.len().cast(pl.Int64).alias("queries"),
        *(_count(pl.col("rcode") == v).alias(c) for c, v in RCODE_COLUMNS.items()),
        *_qtype_exprs(),
        _bytes("query_len").alias("query_bytes"),
        _bytes("response_len").alias("response_bytes"),
    ]


def client_sum_exprs() -> list[pl.Expr]:
    """The mergeable (summable) columns of ``client_hourly``."""
    return [
        pl.len().cast(pl.Int64).alias("queries"),
        _count(pl.col("rcode") == "NXDOMAIN").alias("nxdomain"),
        *_qtype_exprs(),
    ]


def client_domain_exprs() -> list[pl.Expr]:
    """The columns of ``client_domain_hourly`` (sums, min and max)."""
    return [
        pl.len().cast(pl.Int64).alias("queries"),
        _count(pl.col("rcode") == "NXDOMAIN").alias("nxdomain"),
        pl.col("ts").min().alias("first_ts"),
        pl.col("ts").max().alias("last_ts"),
    ]


def _with_hour(events: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    return events.lazy().with_columns(hour_of(pl.col("ts")).alias("hour"))


def _finish(lf: pl.LazyFrame, kind: str) -> pl.LazyFrame:
    schema = SCHEMAS[kind]
    return lf.select(list(schema)).cast(schema).sort(list(KEYS[kind]))


def domain_hourly(events: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Hourly aggregates per registered domain (see the module docstring)."""
    sub = pl.col("subdomain")
    lf = (
        _with_hour(events)
        .filter(pl.col("registered_domain").is_not_null())
        .group_by("hour", "registered_domain")
        .agg(
            *domain_sum_exprs(),
            pl.col("src_ip").drop_nulls().n_unique().cast(pl.Int64).alias("clients"),
            pl.when(sub != "").then(sub).drop_nulls().n_unique().cast(pl.Int64).alias("subdomains"),
        )
    )
    return _finish(lf, "domain_hourly")


def client_hourly(events: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Hourly aggregates per client (``src_ip``)."""
    lf = (
        _with_hour(events)
        .filter(pl.col("src_ip").is_not_null())
        .group_by("hour", "src_ip")
        .agg(
            *client_sum_exprs(),
            pl.col("registered_domain").drop_nulls().n_unique().cast(pl.Int64).alias("domains"),
        )
    )
    return _finish(lf, "client_hourly")


def client_domain_hourly(events: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Hourly aggregates per (client, registered domain)."""
    lf = (
        _with_hour(events)
        .filter(pl.col("src_ip").is_not_null() & pl.col("registered_domain").is_not_null())
        .group_by("hour", "src_ip", "registered_domain")
        .agg(*client_domain_exprs())
    )
    return _finish(lf, "client_domain_hourly")


#: the aggregate functions, by name.
AGGREGATES: dict[str, Callable[[pl.LazyFrame | pl.DataFrame], pl.LazyFrame]] = {
    "domain_hourly": domain_hourly,
    "client_hourly": client_hourly,
    "client_domain_hourly": client_domain_hourly,
}


def aggregate(kind: str, events: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Compute the aggregate named ``kind`` (a key of :data:`AGGREGATES`)."""
    try:
        fn = AGGREGATES[kind]
    except KeyError:
        raise ValueError(
            f"unknown aggregate {kind!r}; expected one of {', '.join(AGGREGATES)}"
        ) from None
    return fn(events)
