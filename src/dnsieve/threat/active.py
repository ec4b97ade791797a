"""The "needs review" queue: which alert should an analyst judge next (ARCHITECTURE §6).

A verdict teaches the model most where the model is least sure, and matters
most where the alert would hurt most if it were a threat.  The review
priority of an alert is::

    priority = uncertainty(P(threat)) × impact

``uncertainty`` is the binary entropy of P(threat) in bits (1 at 0.5, 0 at 0
or 1).  ``impact`` grows with the calibrated evidence and with the number of
clients affected::

    impact = (1 + log1p(clients)) × (1 + min(-log10 p, 30) / 10)

with ``clients`` and ``-log10 p`` read from the feature matrix
(:data:`dnsieve.threat.features.FEATURE_NAMES`: ``ev_clients`` is already
``log1p(clients)``).  :func:`next_to_review` picks the next ``k`` alerts,
skipping the ones already judged.

>>> import numpy as np
>>> np.round(uncertainty(np.array([0.5, 0.9, 0.0])), 3).tolist()
[1.0, 0.469, 0.0]
>>> next_to_review(np.array([0.5, 0.5, 0.99]), np.array([1.0, 3.0, 9.0]), k=2).tolist()
[1, 0]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from dnsieve.threat.features import FEATURE_NAMES

__all__ = ["impact", "next_to_review", "review_priority", "uncertainty"]

F = npt.NDArray[np.float64]


def uncertainty(p: npt.ArrayLike) -> F:
    """Binary entropy of P(threat), in bits (0 … 1)."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    h = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return np.asarray(np.where(h < 1e-9, 0.0, h), dtype=np.float64)


def impact(X: npt.ArrayLike) -> F:
    """Impact of each alert from its features: clients affected × evidence strength (≥ 1)."""
    A = np.atleast_2d(np.asarray(X, dtype=np.float64))
    clients = np.maximum(A[:, FEATURE_NAMES.index("ev_clients")], 0.0)
    ctx_clients = np.maximum(A[:, FEATURE_NAMES.index("ctx_dom_clients")], 0.0)
    nlp = np.clip(A[:, FEATURE_NAMES.index("neg_log_p")], 0.0, 30.0)
    return np.asarray(
        (1.0 + np.maximum(clients, ctx_clients)) * (1.0 + nlp / 10.0), dtype=np.float64
    )


def review_priority(p: npt.ArrayLike, impact_: npt.ArrayLike) -> F:
    """``uncertainty(p) × impact``: higher means ask the analyst sooner."""
    return np.asarray(uncertainty(p) * np.asarray(impact_, dtype=np.float64), dtype=np.float64)


def next_to_review(
    p: npt.ArrayLike,
    impact_: npt.ArrayLike,
    k: int,
    exclude: Iterable[int] = (),
) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` alerts with the highest review priority, not in ``exclude``.

    Ties are broken by index, so the choice is deterministic.
    """
    pr = review_priority(p, impact_)
    pr = np.where(np.isfinite(pr), pr, -np.inf)
    ex = np.fromiter(exclude, dtype=np.int64)
    if ex.size:
        pr[ex] = -np.inf
    order = np.lexsort((np.arange(pr.size), -pr))
    order = order[np.isfinite(pr[order])]
    return np.asarray(order[: max(k, 0)], dtype=np.int64)
