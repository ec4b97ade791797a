"""Windowed aggregates per entity and the mergeable state used by streaming.

See :mod:`dnsieve.features.hourly` for the columns of each aggregate and
:mod:`dnsieve.features.state` for the incremental state.
"""

from __future__ import annotations

from dnsieve.features.hourly import (
    AGGREGATES,
    CLIENT_DOMAIN_HOURLY_SCHEMA,
    CLIENT_HOURLY_SCHEMA,
    DISTINCT_COLUMNS,
    DOMAIN_HOURLY_SCHEMA,
    KEYS,
    QTYPE_COLUMNS,
    RCODE_COLUMNS,
    SCHEMAS,
    aggregate,
    client_domain_hourly,
    client_hourly,
    domain_hourly,
    hour_of,
)
from dnsieve.features.state import HourlyFrames, HourlyState

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
    "HourlyFrames",
    "HourlyState",
    "aggregate",
    "client_domain_hourly",
    "client_hourly",
    "domain_hourly",
    "hour_of",
]
