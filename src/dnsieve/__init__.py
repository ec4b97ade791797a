"""dnsieve: sift DNS telemetry for the anomalies that are threats to you.

The public API is small; most users drive dnsieve through the ``dnsieve``
command.  Library users start from :class:`dnsieve.lake.Lake`,
:func:`dnsieve.ingest.read_file` and :mod:`dnsieve.detectors`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from dnsieve.schema import ANOMALY, DNS_EVENT

try:
    __version__ = version("dnsieve")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["ANOMALY", "DNS_EVENT", "__version__"]
