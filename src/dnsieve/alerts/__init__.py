"""The alert store: alerts, status workflow, audit trail, allow-lists, model versions, exports.

>>> from dnsieve.alerts import AlertStore, MemoryAlertStore, AlertStoreProtocol
>>> isinstance(MemoryAlertStore(), AlertStoreProtocol)
True
"""

from __future__ import annotations

from dnsieve.alerts.base import (
    OPEN_STATUSES,
    STATUSES,
    VERDICTS,
    Alert,
    AlertNotFound,
    AlertStoreError,
    AlertStoreProtocol,
    AllowEntry,
    AmbiguousId,
    AuditEntry,
    InvalidTransition,
    ModelVersion,
    RunRecord,
    UpsertReport,
    VerdictResult,
    alert_id,
    alerts_to_frame,
)
from dnsieve.alerts.memory import MemoryAlertStore
from dnsieve.alerts.store import AlertStore, resolve_db_url

__all__ = [
    "OPEN_STATUSES",
    "STATUSES",
    "VERDICTS",
    "Alert",
    "AlertNotFound",
    "AlertStore",
    "AlertStoreError",
    "AlertStoreProtocol",
    "AllowEntry",
    "AmbiguousId",
    "AuditEntry",
    "InvalidTransition",
    "MemoryAlertStore",
    "ModelVersion",
    "RunRecord",
    "UpsertReport",
    "VerdictResult",
    "alert_id",
    "alerts_to_frame",
    "open_store",
    "resolve_db_url",
]


def open_store(url: str | None = None) -> AlertStore:
    """Open the SQL store at ``url`` (``--db``), ``$DNSIEVE_DB`` or the default file."""
    return AlertStore.open(url)
