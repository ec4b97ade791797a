"""The streams' status as recorded in the alert store (runs page, ``GET /api/stream``).

A running stream records itself as one run (``inputs = {"kind": "stream",
"stream": NAME}``) and rewrites that run's counts every ``[stream]
status_seconds``; a restarted stream starts a new run.  This module reads
the newest run of each stream back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["stream_statuses"]


def stream_statuses(store: Any, limit: int = 500) -> list[dict[str, Any]]:
    """The newest status of every stream among the last ``limit`` runs, newest first.

    Each item is the stream's status (events, events/s, lag per partition, open
    windows, late events, watermark, last checkpoint, last alert, state) with
    the run id and ``updated`` (when the status was last written, UTC).
    """
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for r in store.list_runs(limit=limit):
        if r.inputs.get("kind") != "stream":
            continue
        name = str(r.inputs.get("stream", ""))
        if name in seen:
            continue
        seen.add(name)
        status = dict(r.counts.get("stream", {}))
        updated = r.finished or r.started
        if isinstance(updated, datetime) and updated.tzinfo is None:
            updated = updated.replace(tzinfo=UTC)
        status.update(run=r.id, name=name, updated=updated)
        out.append(status)
    return out
