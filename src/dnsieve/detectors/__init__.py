"""Detector registry: every detector family registers here, and the
conformance suite runs every registered detector.

>>> "volume" in available() or True
True
"""

from __future__ import annotations

import importlib

from dnsieve.detectors.base import DetectContext, Detector, anomaly_frame, empty_anomalies

__all__ = [
    "REGISTRY",
    "DetectContext",
    "Detector",
    "anomaly_frame",
    "available",
    "empty_anomalies",
    "get",
    "register",
]

REGISTRY: dict[str, type[Detector]] = {}

# Modules whose import registers detectors.  A module that fails to import
# (for example an optional extra missing) is skipped, not fatal.
_FAMILIES: tuple[str, ...] = (
    "dnsieve.detectors.volume",
    "dnsieve.detectors.dga",
    "dnsieve.detectors.tunnel",
    "dnsieve.detectors.nxdomain",
    "dnsieve.detectors.beacon",
    "dnsieve.detectors.visitors",
    "dnsieve.detectors.fastflux",
    "dnsieve.detectors.lookalike",
    "dnsieve.detectors.dga_host",
    "dnsieve.detectors.newdomain",
    "dnsieve.detectors.conn_beacon",
    "dnsieve.detectors.conn_flows",
    "dnsieve.detectors.conn_dns",
)
_loaded = False


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: add a detector to the registry under ``cls.name``."""
    prev = REGISTRY.get(cls.name)
    if prev is not None and prev is not cls and prev.__qualname__ != cls.__qualname__:
        raise ValueError(f"detector name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _FAMILIES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    _loaded = True


def available() -> list[str]:
    """Names of all registered detectors, sorted."""
    _load()
    return sorted(REGISTRY)


def get(name: str) -> type[Detector]:
    """The detector class registered under ``name``."""
    _load()
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown detector {name!r}; available: {', '.join(sorted(REGISTRY))}"
        ) from None
