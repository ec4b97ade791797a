"""Engines: where aggregates and detectors run (``polars`` by default, or ``spark``).

>>> get_engine("polars").name
'polars'
>>> sorted(ENGINES)
['polars', 'spark']
"""

from __future__ import annotations

from typing import Any

from dnsieve.engines.base import (
    AGGREGATE_KINDS,
    ENTITY_COLUMNS,
    Engine,
    EngineUnavailableError,
    entity_columns,
    resolve_files,
)

__all__ = [
    "AGGREGATE_KINDS",
    "ENGINES",
    "ENTITY_COLUMNS",
    "Engine",
    "EngineUnavailableError",
    "entity_columns",
    "get_engine",
    "resolve_files",
]

#: engine names and what they need.
ENGINES: dict[str, str] = {
    "polars": "embedded, always available (the default)",
    "spark": "PySpark, local or a cluster: pip install 'dnsieve[spark]'",
}


def get_engine(name: str = "polars", **kwargs: Any) -> Engine:
    """The engine called ``name``; keyword arguments go to its constructor.

    Raises :class:`EngineUnavailableError` (an ImportError whose message is
    the install command) when the engine's extra is missing, and ValueError
    for an unknown name.
    """
    key = name.strip().lower()
    if key == "polars":
        from dnsieve.engines.polars import PolarsEngine

        return PolarsEngine(**kwargs)
    if key == "spark":
        from dnsieve.engines import spark

        return spark.SparkEngine(**kwargs)
    raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
