"""The detector contract (ARCHITECTURE §3, §5; STYLE 1–4).

A detector is a small, pure, vectorised kernel.  It never reads files or talks
to a database: an engine hands it a Polars frame of the input it declares in
``requires`` and it returns *scored candidates*, one row per (entity, window),
in the :data:`dnsieve.schema.ANOMALY` shape.  A higher score means more
anomalous.  Deciding which candidates become alerts is not the detector's job:
that is :mod:`dnsieve.calibrate` (global threshold, alert budget).

Hyperparameters live only in ``__init__`` (keyword arguments with defaults, no
logic); fitted state, if any, ends in ``_``.

Inputs a detector may require (``requires``):

``events``
    canonical DnsEvent rows (ARCHITECTURE §2) of the scored period, with its
    trailing baseline.
``domain_hourly`` / ``client_hourly`` / ``client_domain_hourly``
    the hourly aggregates of :mod:`dnsieve.features`.
``flows``
    canonical flows (:data:`dnsieve.schema.FLOW_RECORD`) with the DNS join
    columns of :mod:`dnsieve.features.flowjoin`; flow detectors score
    ``client`` or ``client_dest`` (client × destination address) entities.

Every detector also provides ``example(seed)``: a small, valid, realistic input
frame that the conformance suite (tests/test_detectors_conformance.py) uses
for its generic checks: determinism under a seed, empty input, one row, NaNs
and nulls, hostile strings, order invariance.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

import polars as pl

from dnsieve.schema import ANOMALY

__all__ = [
    "ANOMALY_POLARS_SCHEMA",
    "DetectContext",
    "Detector",
    "EntityType",
    "InputKind",
    "anomaly_frame",
    "empty_anomalies",
]

EntityType = Literal["domain", "client", "client_domain", "client_dest"]
InputKind = Literal["events", "domain_hourly", "client_hourly", "client_domain_hourly", "flows"]

ANOMALY_POLARS_SCHEMA: pl.Schema = pl.from_arrow(ANOMALY.empty_table()).schema  # type: ignore[union-attr]


@dataclass(frozen=True)
class DetectContext:
    """What a detector knows besides its input frame.

    ``start``/``end`` bound the period to *score* ([start, end)); rows before
    ``start`` in the input are baseline only.  ``seed`` makes any sampling
    reproducible.  ``window`` is the scoring window length in seconds chosen
    for this run (short captures get short windows).  ``fit_until``: when set,
    population laws (``fit_population(data, until=...)``) are fitted on the
    baseline before it only, the start of the fit epoch the period lies in
    (causal scoring: :func:`dnsieve.pipeline.detect`).
    """

    start: datetime
    end: datetime
    window: float = 3600.0
    seed: int = 0
    params: dict[str, Any] | None = None
    fit_until: datetime | None = None


class Detector(ABC):
    """Base class: subclasses set the class attributes and implement ``score``."""

    name: ClassVar[str]
    entity_type: ClassVar[EntityType]
    requires: ClassVar[InputKind]
    description: ClassVar[str] = ""
    #: Bar of overwhelming evidence, above the benign maxima on real traffic:
    #: calibration treats a score at or above it as significant whatever the
    #: pooled population, and never alerts below it (see
    #: :func:`dnsieve.calibrate.floor_decision`).  None: calibration alone decides.
    score_floor: ClassVar[float | None] = None
    #: MITRE ATT&CK technique ids this detector's alerts evidence (e.g. ``T1568.002``):
    #: written into every alert's evidence as ``techniques`` and exported as ECS
    #: ``threat.technique.id``.
    techniques: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        """Return scored candidates (ANOMALY shape), higher score = more anomalous."""

    @classmethod
    @abstractmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """A small valid input frame for the conformance suite."""

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters, read from ``__init__``'s signature (scikit-learn style)."""
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def empty_anomalies() -> pl.DataFrame:
    """An empty frame in the ANOMALY shape."""
    return pl.DataFrame(schema=ANOMALY_POLARS_SCHEMA)


def anomaly_frame(
    detector: str,
    entity_type: str,
    entity: pl.Series | list[str],
    window_start: pl.Series | list[datetime],
    window_end: pl.Series | list[datetime],
    score: pl.Series | list[float],
    p_value: pl.Series | list[float | None] | None = None,
    evidence: list[dict[str, Any]] | pl.Series | None = None,
) -> pl.DataFrame:
    """Assemble detector output in the ANOMALY shape (evidence dicts → JSON).

    Rows are sorted by (entity, window_start) so output never depends on input
    order.
    """
    n = len(entity)
    if evidence is None:
        ev = pl.Series("evidence", ["{}"] * n, dtype=pl.String)
    elif isinstance(evidence, pl.Series):
        ev = evidence.cast(pl.String).alias("evidence")
    else:
        ev = pl.Series(
            "evidence",
            [json.dumps(e, sort_keys=True, default=str) for e in evidence],
            dtype=pl.String,
        )
    df = pl.DataFrame(
        {
            "detector": pl.Series([detector] * n, dtype=pl.String),
            "entity_type": pl.Series([entity_type] * n, dtype=pl.String),
            "entity": pl.Series(entity, dtype=pl.String),
            "window_start": pl.Series(window_start).cast(pl.Datetime("us", "UTC")),
            "window_end": pl.Series(window_end).cast(pl.Datetime("us", "UTC")),
            "score": pl.Series(score, dtype=pl.Float64),
            "p_value": pl.Series(p_value if p_value is not None else [None] * n, dtype=pl.Float64),
            "evidence": ev,
        }
    )
    return df.sort(["entity", "window_start", "detector"])
